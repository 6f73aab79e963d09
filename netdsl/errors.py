"""One error type for everything a user can get wrong, rendered once at the CLI edge."""
from __future__ import annotations

import difflib
from typing import Iterable, Optional


#: characters besides \n and \r that str.splitlines breaks lines at
_LINE_BREAKS = frozenset("\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


class NetdslError(Exception):
    """A user-facing error: what is wrong, where it is, and a hint when one is close.

    ``file``/``line``/``column`` locate it in a source text (1-based), ``layer``
    and ``field`` in a net.  ``str(err)`` renders all of it on one line
    (``file:line:col: layer 'x': field `f`: message; did you mean `g`?``);
    ``detail`` is an optional excerpt (the offending source line with a caret)
    that the command line prints, indented, below that line.
    """

    def __init__(self, message: str, *, file: Optional[str] = None,
                 line: Optional[int] = None, column: Optional[int] = None,
                 layer: Optional[str] = None, field: Optional[str] = None,
                 hint: Optional[str] = None, detail: Optional[str] = None) -> None:
        super().__init__(message)
        self.detail = detail
        self.message = message
        self.file = file
        self.line = line
        self.column = column
        self.layer = layer
        self.field = field
        self.hint = hint

    def located(self, *, file: Optional[str] = None, line: Optional[int] = None,
                column: Optional[int] = None, layer: Optional[str] = None) -> "NetdslError":
        """Fill in location parts that are still unknown; returns self."""
        if self.file is None and file is not None:
            self.file = file
        if self.line is None and line is not None:
            self.line, self.column = line, column
        if self.layer is None and layer is not None:
            self.layer = layer
        return self

    def __str__(self) -> str:
        return self.explain()

    def explain(self) -> str:
        """The located one-line rendering (what the command line prints)."""
        where = ""
        if self.file:
            where = self.file
            if self.line:
                where += ":%d" % self.line
                if self.column:
                    where += ":%d" % self.column
            where += ": "
        elif self.line:
            where = "line %d" % self.line + (", column %d" % self.column if self.column else "") + ": "
        ctx = ""
        if self.layer:
            ctx += "layer '%s': " % self.layer
        text = where + ctx + self.message
        if self.hint:
            text += "; " + self.hint
        if "\n" in text or "\r" in text:  # one line, always (the CLI prints one)
            text = " ".join(text.split())
        if any(c in _LINE_BREAKS for c in text):  # the other characters str.splitlines splits at
            text = "".join("\\x%02x" % ord(c) if c in _LINE_BREAKS and ord(c) < 256 else
                           "\\u%04x" % ord(c) if c in _LINE_BREAKS else c for c in text)
        return text


class _AlsoBuiltin(NetdslError):
    """A NetdslError that is also the builtin exception pycaffe raises in the same case.

    ``pycaffe`` is pycaffe's own message where scripts and tests match on it:
    ``str(err)`` is then that text, and :meth:`explain` keeps netdsl's
    located explanation.
    """

    def __init__(self, message: str, *, pycaffe: Optional[str] = None, **where) -> None:
        super().__init__(message, **where)
        self.pycaffe = pycaffe

    def __str__(self) -> str:
        return self.pycaffe if self.pycaffe is not None else self.explain()


class NetdslTypeError(_AlsoBuiltin, TypeError):
    """A NetdslError that is also a TypeError."""


class NetdslValueError(_AlsoBuiltin, ValueError):
    """A NetdslError that is also a ValueError."""


class NetdslKeyError(_AlsoBuiltin, KeyError):
    """A NetdslError that is also a KeyError (``str`` is the message, not its repr)."""


class NetdslAttributeError(_AlsoBuiltin, AttributeError):
    """A NetdslError that is also an AttributeError (protobuf's unknown field)."""


class NetdslRuntimeError(_AlsoBuiltin, RuntimeError):
    """A NetdslError that is also a RuntimeError."""


class NetdslAssertionError(_AlsoBuiltin, AssertionError):
    """A NetdslError that is also an AssertionError (pycaffe ``assert``s there)."""


def closest(name: str, candidates: Iterable[str], n: int = 3) -> list:
    """Candidates close to ``name`` (case-insensitive), best first."""
    if len(name) > 100:  # no name is that long; difflib would only spend time on it
        return []
    lower = {c.lower(): c for c in candidates if len(c) <= 200}
    key = name.lower()
    scored = sorted(((difflib.SequenceMatcher(None, key, c).ratio(), c) for c in lower),
                    key=lambda t: -t[0])
    scored = [(r, c) for r, c in scored if r >= 0.6]
    if not scored:
        return []
    best = scored[0][0]
    # keep only candidates nearly as close as the best one
    return [lower[c] for r, c in scored[:n] if r >= best - 0.08]


def did_you_mean(name: str, candidates: Iterable[str]) -> Optional[str]:
    """A "did you mean `x`?" hint, or None when nothing is close."""
    hits = closest(name, candidates)
    if not hits:
        return None
    if len(hits) == 1:
        return "did you mean `%s`?" % hits[0]
    return "did you mean " + " or ".join("`%s`" % h for h in hits) + "?"
