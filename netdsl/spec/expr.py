"""``${...}`` references in spec values: variables and small expressions.

``${name}`` (or ``${stage.nout}``) is looked up directly; anything else is a
Jinja2 expression evaluated in the sandbox (``${2 * f - f % 2}``,
``${100 if i == 1 else 1}``, ``${name | upper}``).  A value that is exactly one
``${...}`` keeps the result's type; inside a longer string the result is
formatted into the text.  ``$${`` writes a literal ``${``.  Unknown names are
errors with a suggestion.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..errors import NetdslError, did_you_mean
from .load import Node, ScalarNode, error

_NAME_PATH = re.compile(r"^\s*([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\s*$")
_IDENT = re.compile(r"[A-Za-z_]\w*")

_env = None
_compiled: Dict[str, Tuple[str, Any, Tuple[str, ...]]] = {}


def _jinja_env():
    global _env
    if _env is None:
        import jinja2
        from .load import _bounded_env_class  # the sandbox, with ** and * kept bounded
        _env = _bounded_env_class()(undefined=jinja2.StrictUndefined)
    return _env


def _compile(expr: str, node: Optional[Node], col: int) -> Tuple[str, Any, Tuple[str, ...]]:
    hit = _compiled.get(expr)
    if hit is not None:
        return hit
    m = _NAME_PATH.match(expr)
    if m:
        parts = tuple(m.group(1).split("."))
        out: Tuple[str, Any, Tuple[str, ...]] = ("path", parts, parts[:1])
    else:
        import jinja2
        from jinja2 import meta
        env = _jinja_env()
        try:
            ast = env.parse("{{ " + expr + " }}")
            fn = env.compile_expression(expr, undefined_to_none=False)
        except jinja2.TemplateSyntaxError as exc:
            raise error(node, "bad expression `${%s}`: %s" % (expr, exc.message),
                        column_offset=col) from None
        except (RecursionError, MemoryError):  # Jinja2's parser on very deep nesting
            raise error(node, "bad expression `${%s}`: nested too deeply" % expr,
                        column_offset=col) from None
        names = meta.find_undeclared_variables(ast)
        order = []
        for tok in _IDENT.finditer(expr):
            if tok.group(0) in names and tok.group(0) not in order:
                order.append(tok.group(0))
        out = ("jinja", fn, tuple(order))
    _compiled[expr] = out
    return out


def evaluate(expr: str, scope: Dict[str, Any], node: Optional[Node] = None, col: int = 0) -> Any:
    """The value of one ``${expr}`` in ``scope``."""
    kind, data, names = _compile(expr, node, col)
    for name in names:
        if name not in scope:
            raise error(node, "unknown variable `%s`" % name, column_offset=col,
                        hint=did_you_mean(name, [k for k in scope if not k.startswith("_")]))
    if kind == "path":
        value = scope[data[0]]
        for i, part in enumerate(data[1:], 1):
            if isinstance(value, dict) and part in value:
                value = value[part]
            else:
                have = list(value) if isinstance(value, dict) else []
                raise error(node, "`%s` has no `%s`" % (".".join(data[:i]), part),
                            column_offset=col, hint=did_you_mean(part, have))
        return value
    try:
        return data(**scope)
    except NetdslError:
        raise
    except Exception as exc:  # jinja2 runtime errors, arithmetic, sandbox refusals
        msg = getattr(exc, "message", None) or str(exc)
        raise error(node, "cannot evaluate `${%s}`: %s" % (expr, msg),
                    column_offset=col) from None


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


def text_format(value: Any) -> str:
    """A value as it reads inside a string (YAML spelling for booleans and null)."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    return str(value)


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
            parts.append(text_format(evaluate(expr, scope, node, _col(node, start + 2))))
        last = end
    parts.append(text[last:])
    return "".join(parts)


def has_refs(text: str) -> bool:
    return "${" in text


Evaluator = Callable[[Node, Dict[str, Any]], Any]
