"""``${...}`` references in spec values, evaluated with netdsl's expression language.

``${name}``, ``${stage.nout}`` and expressions (``${2 * f - f % 2}``,
``${100 if i == 1 else 1}``, ``${'res%s%s' % (s, u)}``, ``${name | upper}``) are
Jinja2 expressions, evaluated by :mod:`netdsl.expr` (``jinja=True``: Jinja2's
grammar, the values netdsl 0.1 got from Jinja2's sandbox, exact ``/``) with the
spec's variables as names; a block body also has ``${bottom}``, the blob it
reads (:class:`Unresolved` when that cannot be known).  A value that is exactly
one ``${...}`` keeps the result's type (an exact fraction becomes a float);
inside a longer string the result is formatted into the text.  ``$${`` writes a literal ``${``.
Unknown names are errors with a suggestion, located at the reference.
"""
from __future__ import annotations

import ast
from fractions import Fraction
from typing import Any, Dict, List, Optional, Tuple

from ..errors import did_you_mean
from ..expr import LITERALS, ExprError, evaluate as _evaluate, parse, to_text
from .load import Node, ScalarNode, SequenceNode, error, pairs, scalar

__all__ = ["substitute", "evaluate", "value", "Unresolved"]

_names: Dict[str, str] = {}   # ${...} text -> the variable it names, when it is one name


class Unresolved:
    """A variable whose value cannot be known; reading it is an error saying why."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


class _Variables:
    """The spec's variables as the names of an expression."""

    __slots__ = ("values",)

    def __init__(self, values: Dict[str, Any]) -> None:
        self.values = values

    def name(self, name: str) -> Any:
        try:
            v = self.values[name]
        except KeyError:
            raise ExprError("unknown variable `%s`" % name, lookup=True,
                            hint=did_you_mean(name, [k for k in self.values
                                                     if not k.startswith("_")])) from None
        if isinstance(v, Unresolved):
            raise ExprError(v.reason, lookup=True)
        return v


def _plain(value: Any) -> Any:
    # exact fractions (``${7 / 2}``) become floats in a spec value
    if isinstance(value, Fraction):
        return int(value) if value.denominator == 1 else float(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def evaluate(expr: str, scope: Dict[str, Any], node: Optional[Node] = None, col: int = 0) -> Any:
    """The value of one ``${expr}`` in ``scope``."""
    name = _names.get(expr)
    if name is not None and name in scope and not isinstance(scope[name], Unresolved):
        return _plain(scope[name])      # ${name}: the common case, looked up at once
    try:
        parsed = parse(expr, jinja=True)
    except ExprError as exc:
        raise error(node, "bad expression `${%s}`: %s" % (expr, exc.message), hint=exc.hint,
                    column_offset=col) from None
    body = parsed.tree.body
    if isinstance(body, ast.Name) and body.id not in LITERALS:
        _names[expr] = body.id
    try:
        return _plain(_evaluate(parsed, _Variables(scope)))
    except ExprError as exc:
        message = exc.message if exc.lookup else "cannot evaluate `${%s}`: %s" % (expr,
                                                                                 exc.message)
        raise error(node, message, hint=exc.hint, column_offset=col) from None


def _spans(text: str, node: Optional[Node]) -> List[Tuple[int, int, Optional[str]]]:
    """(start, end, expr) of each ``${...}``; expr None for an escaped ``$${``."""
    out = []
    i = 0
    n = len(text)
    while True:
        j = text.find("${", i)
        if j < 0:
            return out
        if j > 0 and text[j - 1] == "$":
            out.append((j - 1, j + 2, None))
            i = j + 2
            continue
        depth = 0
        k = j + 2
        quote = None
        while k < n:
            c = text[k]
            if quote:
                if c == "\\":
                    k += 1
                elif c == quote:
                    quote = None
            elif c in "'\"":
                quote = c
            elif c == "{":
                depth += 1
            elif c == "}":
                if depth == 0:
                    break
                depth -= 1
            k += 1
        if k >= n:
            raise error(node, "unclosed `${` (missing `}`)", column_offset=_col(node, j))
        expr = text[j + 2:k]
        if not expr.strip():
            raise error(node, "empty `${}`", column_offset=_col(node, j))
        out.append((j, k + 1, expr))
        i = k + 1


def _col(node: Optional[Node], index: int) -> int:
    # column of a character in a one-line scalar (quoted scalars start one later)
    if node is None or not isinstance(node, ScalarNode):
        return 0
    if node.start_mark.line != node.end_mark.line:
        return 0
    return index + (1 if node.style in ("'", '"') else 0)


def substitute(text: str, scope: Dict[str, Any], node: Optional[Node] = None) -> Any:
    """``text`` with its ``${...}`` replaced; a lone ``${...}`` keeps its value's type."""
    if "${" not in text:
        return text
    spans = _spans(text, node)
    if len(spans) == 1 and spans[0][2] is not None and spans[0][0] == 0 \
            and spans[0][1] == len(text):
        return evaluate(spans[0][2], scope, node, _col(node, 2))
    parts = []
    last = 0
    for start, end, expr in spans:
        parts.append(text[last:start])
        if expr is None:
            parts.append("${")
        else:
            parts.append(to_text(evaluate(expr, scope, node, _col(node, start + 2))))
        last = end
    parts.append(text[last:])
    return "".join(parts)


# -- node values ---------------------------------------------------------------------------

_VARIES = object()   # a node whose value depends on ${...}


def _constant(node: Node) -> Any:
    """The node's value when it has no ``${...}`` anywhere (cached on the node), else _VARIES."""
    try:
        return node._netdsl_const  # type: ignore[attr-defined]
    except AttributeError:
        pass
    if isinstance(node, ScalarNode):
        v = scalar(node)
        out = _VARIES if type(v) is str and "${" in v else v
    elif isinstance(node, SequenceNode):
        items = [_constant(n) for n in node.value]
        out = _VARIES if any(i is _VARIES for i in items) else items
    else:
        d = {}
        out = d
        for k, _, vn in pairs(node):
            c = _constant(vn)
            if c is _VARIES:
                out = _VARIES
            elif out is not _VARIES:
                d[k] = c
    node._netdsl_const = out  # type: ignore[attr-defined]
    return out


def value(node: Node, scope: Dict[str, Any]) -> Any:
    """A node's value with ``${...}`` substituted.

    Values without references are computed once and shared: callers copy
    before they change one.
    """
    try:
        c = node._netdsl_const  # type: ignore[attr-defined]
    except AttributeError:
        c = _constant(node)
    if c is not _VARIES:
        return c
    if isinstance(node, ScalarNode):
        return substitute(scalar(node), scope, node)
    if isinstance(node, SequenceNode):
        return [value(n, scope) for n in node.value]
    return {k: value(v, scope) for k, _, v in pairs(node)}
