"""netdsl's expression language: ``${...}`` in specs and custom-layer shape expressions.

One grammar and one evaluator serve both.  The grammar is Python's expression
grammar, restricted (parsed with :mod:`ast`, never run with ``eval``), plus
the Jinja2 spellings specs have used:

* numbers, strings (``'scale_'``), ``none``/``true``/``false`` (or ``None``,
  ``True``, ``False``), lists ``[a, b]``;
* names, looked up in a scope (spec variables; a layer's ``N C H W``,
  bottoms and parameters); ``a.b`` reads a key of a mapping or a field of a
  message, ``a[i]`` an item (negative ``i`` counts from the end);
* ``+ - * / // %``: ``/`` is exact (fractions), ``//`` and ``%`` floor as in
  Python; ``+`` also joins two strings and ``a ~ b`` joins any two values as text;
* ``< <= > >= == !=``, ``in``, ``not in``, ``x is none``, ``x is not none``,
  ``and or not`` (giving one of their operands, as in Python and Jinja2),
  ``a if cond else b``;
* functions ``ceil floor int float abs min max len length upper lower string
  has``, called as ``f(x, ...)`` or applied as a filter ``x | f`` /
  ``x | f(...)`` (the value on the left is the first argument).

A scope answers ``name(identifier)``; values that have fields answer
``attr(name)`` and ``has(name)``.  Errors are :class:`ExprError`; the caller
adds where the expression is (spec line and column, or layer and axis).
"""
from __future__ import annotations

import ast
import functools
import io
import math
import tokenize
from fractions import Fraction
from typing import Any, Callable, Dict, List, Optional, Union

from .errors import did_you_mean

__all__ = ["ExprError", "Expression", "parse", "evaluate", "to_text", "FUNCTIONS", "LITERALS"]

Number = Union[int, float, Fraction]


#: the longest expression text accepted (longer ones are refused before parsing)
MAX_LENGTH = 4000
#: the deepest expression tree accepted (the evaluator recurses)
MAX_DEPTH = 100


class ExprError(Exception):
    """A mistake in an expression; the caller turns it into a located NetdslError.

    ``lookup`` is true when a name or key was not found (the message then
    stands on its own); ``hint`` is a "did you mean" suggestion, if any.
    """

    def __init__(self, message: str, *, hint: Optional[str] = None, lookup: bool = False
                 ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.lookup = lookup

    def __str__(self) -> str:
        return self.message + ("; " + self.hint if self.hint else "")


#: functions, callable as ``f(x, ...)`` or as filters ``x | f(...)``
FUNCTIONS = ("ceil", "floor", "int", "float", "abs", "min", "max", "len", "length",
             "upper", "lower", "string", "has")
#: the names that are constants
LITERALS = {"none": None, "None": None, "true": True, "True": True, "false": False,
             "False": False}
_ARITH = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod)
_CMP = (ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Eq, ast.NotEq, ast.In, ast.NotIn, ast.Is,
        ast.IsNot)
_ALLOWED = (ast.Expression, ast.Load, ast.Name, ast.Attribute, ast.IfExp, ast.BoolOp, ast.And,
            ast.Or, ast.Not, ast.USub, ast.UAdd, ast.Subscript, ast.Compare, ast.List,
            ast.Tuple, ast.MatMult, ast.BitOr) + _ARITH + _CMP
_KEYWORDS = frozenset(("and", "or", "not", "if", "else", "in", "is", "lambda", "for"))


class Expression:
    """A parsed, checked expression; :func:`evaluate` gives its value in a scope."""

    __slots__ = ("text", "tree")

    def __init__(self, text: str, tree: ast.Expression) -> None:
        self.text = text
        self.tree = tree

    def evaluate(self, scope: Any) -> Any:
        return evaluate(self, scope)

    def __repr__(self) -> str:
        return "Expression(%r)" % self.text


def parse(text: str, *, strings: bool = True) -> Expression:
    """Parse and check ``text``; ``strings=False`` admits numbers only as constants.

    Raises :class:`ExprError` for a syntax error or a construct outside the
    language.  Results are memoised per text (a bounded cache).
    """
    return _parse(text, strings)


@functools.lru_cache(maxsize=4096)
def _parse(text: str, strings: bool) -> Expression:
    if len(text) > MAX_LENGTH:
        raise ExprError("longer than %d characters" % MAX_LENGTH)
    src = _joined(text.strip())
    try:
        tree = ast.parse(src, mode="eval")
    except SyntaxError as exc:
        col = " at column %d" % exc.offset if exc.offset else ""
        raise ExprError("syntax error%s: %s" % (col, exc.msg)) from None
    except (RecursionError, MemoryError):   # Python's parser on very deep nesting
        raise ExprError("nested too deeply") from None
    depths = [(tree, 0)]
    while depths:   # the evaluator recurses: keep trees shallow
        node, d = depths.pop()
        if d > MAX_DEPTH:
            raise ExprError("nested more than %d deep" % MAX_DEPTH)
        depths.extend((c, d + 1) for c in ast.iter_child_nodes(node))
    _check(tree, strings)
    return Expression(text.strip(), tree)


def _joined(text: str) -> str:
    """``text`` with each binary ``~`` spelt ``@`` (same length), which Python parses.

    ``@`` itself is not in the language, and ``#`` would start a comment.
    """
    text = text.replace("\r", " ").replace("\n", " ")
    if "~" not in text and "@" not in text and "#" not in text:
        return text
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError):
        return text  # ast.parse reports it
    chars = list(text)
    prev = None
    for tok in tokens:
        if tok.type == tokenize.COMMENT:
            raise ExprError("`#` is not allowed (at column %d)" % (tok.start[1] + 1))
        if tok.type == tokenize.OP and tok.string == "@":
            raise ExprError("operator not allowed (use + - * / // %)")
        if tok.type == tokenize.OP and tok.string == "~" and prev is not None and (
                (prev.type in (tokenize.NAME, tokenize.NUMBER, tokenize.STRING)
                 and prev.string not in _KEYWORDS)
                or (prev.type == tokenize.OP and prev.string in ")]}")):
            chars[tok.start[1]] = "@"
        if tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                            tokenize.ENDMARKER):
            prev = tok
    return "".join(chars)


def _check(tree: ast.Expression, strings: bool) -> None:
    for node in ast.walk(tree):
        if isinstance(node, _ALLOWED):
            if isinstance(node, ast.Compare):
                for op, right in zip(node.ops, node.comparators):
                    if isinstance(op, (ast.Is, ast.IsNot)) and not _is_literal(right):
                        raise ExprError("`is` compares with none, true or false "
                                        "(x is none, x is not none)")
            continue
        if isinstance(node, ast.Constant):
            v = node.value
            if v is None or isinstance(v, (bool, int, float)) or (strings and isinstance(v, str)):
                continue
            raise ExprError("only numbers are allowed as constants, not %r" % (v,))
        if isinstance(node, ast.BinOp):
            if isinstance(node.op, ast.BitOr):
                fn = node.right.func if isinstance(node.right, ast.Call) else node.right
                if not isinstance(fn, ast.Name) or fn.id not in FUNCTIONS:
                    raise ExprError("`|` applies a function to the value on its left (e.g. "
                                    "`name | upper`); functions: %s" % ", ".join(FUNCTIONS))
            elif not isinstance(node.op, _ARITH + (ast.MatMult,)):
                raise ExprError("operator not allowed (use + - * / // %)")
            continue
        if isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, (ast.USub, ast.UAdd, ast.Not)):
                raise ExprError("operator not allowed")
            continue
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                raise ExprError("`%s` is not a function here (functions: %s)"
                                % (ast.unparse(node.func), ", ".join(FUNCTIONS)))
            if node.keywords:
                raise ExprError("keyword arguments are not allowed")
            continue
        raise ExprError("`%s` is not allowed in an expression" % type(node).__name__.lower())


def _is_literal(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return node.value is None or isinstance(node.value, bool)
    return isinstance(node, ast.Name) and node.id in LITERALS


# -- evaluation --------------------------------------------------------------------------


def evaluate(expr: Expression, scope: Any) -> Any:
    """The value of ``expr``: names come from ``scope.name(identifier)``.

    Exact results that are whole numbers are ints; other fractions stay
    :class:`fractions.Fraction` (the caller decides: a shape dim must be an
    integer, a spec value becomes a float).
    """
    try:
        return _eval(expr.tree.body, scope)
    except (TypeError, ValueError, ArithmeticError, RecursionError) as exc:   # ceil(nan), 1/0
        raise ExprError("%s: %s" % (type(exc).__name__, exc)) from None


def _src(node: ast.AST) -> str:
    return ast.unparse(node).replace(" @ ", " ~ ")


def _norm(v: Any) -> Any:
    if isinstance(v, Fraction) and v.denominator == 1:
        return int(v)
    return v


def _num(v: Any, what: str) -> Number:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, (int, float, Fraction)):
        return v
    if isinstance(v, list):
        raise ExprError("%s is a list (e.g. a repeated field); index it, e.g. %s[0]"
                        % (what, what))
    raise ExprError("%s is not a number" % what)


def _truth(v: Any, node: ast.AST) -> bool:
    if v is None or isinstance(v, (bool, int, float, Fraction, str, list, tuple, dict)):
        return bool(v)
    raise ExprError("`%s` is neither true nor false" % _src(node))


def to_text(value: Any) -> str:
    """A value as text (YAML spelling for booleans and null, fractions as decimals)."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, Fraction):
        value = _norm(value)
        if isinstance(value, Fraction):
            value = float(value)
    return str(value)


def _eval(node: ast.AST, scope: Any) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in LITERALS:
            return LITERALS[node.id]
        return scope.name(node.id)
    if isinstance(node, ast.Attribute):
        return _attr(_eval(node.value, scope), node.attr, node.value)
    if isinstance(node, ast.Subscript):
        return _item(_eval(node.value, scope), _eval(node.slice, scope), node)
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_eval(e, scope) for e in node.elts]
    if isinstance(node, ast.UnaryOp):
        v = _eval(node.operand, scope)
        if isinstance(node.op, ast.Not):
            return not _truth(v, node.operand)
        v = _num(v, _src(node.operand))
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp):
        if isinstance(node.op, ast.BitOr):
            return _filter(node, scope)
        a = _eval(node.left, scope)
        b = _eval(node.right, scope)
        if isinstance(node.op, ast.MatMult):      # `a ~ b`
            return to_text(a) + to_text(b)
        if isinstance(node.op, ast.Add) and isinstance(a, str) and isinstance(b, str):
            return a + b
        return _arith(node, _num(a, _src(node.left)), _num(b, _src(node.right)))
    if isinstance(node, ast.Compare):
        left = _eval(node.left, scope)
        for op, right_node in zip(node.ops, node.comparators):
            right = _eval(right_node, scope)
            if not _compare(op, left, right, node.left, right_node):
                return False
            left = right
        return True
    if isinstance(node, ast.BoolOp):
        want = isinstance(node.op, ast.Or)
        v = None
        for sub in node.values:
            v = _eval(sub, scope)
            if _truth(v, sub) == want:
                return v
        return v
    if isinstance(node, ast.IfExp):
        if _truth(_eval(node.test, scope), node.test):
            return _eval(node.body, scope)
        return _eval(node.orelse, scope)
    if isinstance(node, ast.Call):
        return _call(node.func.id, node.args, None, scope)  # type: ignore[attr-defined]
    raise ExprError("`%s` is not allowed" % _src(node))  # pragma: no cover (checked by parse)


def _attr(base: Any, name: str, base_node: ast.AST) -> Any:
    if isinstance(base, dict):
        if name in base:
            return base[name]
        raise ExprError("`%s` has no `%s`" % (_src(base_node), name),
                        hint=did_you_mean(name, [str(k) for k in base]), lookup=True)
    if hasattr(base, "attr"):
        return base.attr(name)
    raise ExprError("`%s` has no attributes" % _src(base_node))


def _item(base: Any, key: Any, node: ast.Subscript) -> Any:
    if isinstance(base, dict):
        if key in base:
            return base[key]
        raise ExprError("`%s` has no key %r" % (_src(node.value), key),
                        hint=did_you_mean(str(key), [str(k) for k in base]), lookup=True)
    if not isinstance(base, (list, str)):
        raise ExprError("`%s` cannot be indexed" % _src(node.value))
    idx = _norm(_num(key, _src(node.slice)))
    if not isinstance(idx, int):
        raise ExprError("an index must be an integer, not %s" % idx)
    try:
        return base[idx]
    except IndexError:
        raise ExprError("index %d out of range: `%s` has %d entries"
                        % (idx, _src(node.value), len(base))) from None


def _arith(node: ast.BinOp, a: Number, b: Number) -> Number:
    op = node.op
    if isinstance(op, ast.Add):
        return _norm(a + b)
    if isinstance(op, ast.Sub):
        return _norm(a - b)
    if isinstance(op, ast.Mult):
        return _norm(a * b)
    if b == 0:
        raise ExprError("division by zero in `%s`" % _src(node))
    exact = not isinstance(a, float) and not isinstance(b, float)
    if isinstance(op, ast.Div):
        return _norm(Fraction(a) / Fraction(b)) if exact else a / b
    if isinstance(op, ast.FloorDiv):
        return _norm(Fraction(a) // Fraction(b)) if exact else a // b
    return _norm(Fraction(a) % Fraction(b)) if exact else a % b


def _compare(op: ast.cmpop, a: Any, b: Any, a_node: ast.AST, b_node: ast.AST) -> bool:
    if isinstance(op, ast.Is):
        return a is b
    if isinstance(op, ast.IsNot):
        return a is not b
    if isinstance(op, (ast.Eq, ast.NotEq)):
        same = _norm(a) == _norm(b)
        return same if isinstance(op, ast.Eq) else not same
    if isinstance(op, (ast.In, ast.NotIn)):
        if not isinstance(b, (list, str, dict)):
            raise ExprError("`%s` is not a list, a mapping or text" % _src(b_node))
        if isinstance(b, str) and not isinstance(a, str):
            raise ExprError("`%s` is not text" % _src(a_node))
        found = a in b
        return found if isinstance(op, ast.In) else not found
    if not (isinstance(a, str) and isinstance(b, str)):
        a, b = _num(a, _src(a_node)), _num(b, _src(b_node))
    if isinstance(op, ast.Lt):
        return a < b
    if isinstance(op, ast.LtE):
        return a <= b
    if isinstance(op, ast.Gt):
        return a > b
    return a >= b


def _filter(node: ast.BinOp, scope: Any) -> Any:
    right = node.right
    if isinstance(right, ast.Call):
        return _call(right.func.id, right.args, node.left, scope)  # type: ignore[attr-defined]
    return _call(right.id, [], node.left, scope)  # type: ignore[attr-defined]


def _call(fn: str, args: List[ast.AST], piped: Optional[ast.AST], scope: Any) -> Any:
    nodes = ([piped] if piped is not None else []) + list(args)
    if fn == "has":
        if len(nodes) != 1 or not isinstance(nodes[0], ast.Attribute):
            raise ExprError("has() takes one field, e.g. has(param.upsample_h)")
        base = _eval(nodes[0].value, scope)
        if isinstance(base, dict):
            return nodes[0].attr in base
        if not hasattr(base, "has"):
            raise ExprError("has() takes a field of a parameter message, not `%s`"
                            % _src(nodes[0]))
        return base.has(nodes[0].attr)
    vals = [_eval(a, scope) for a in nodes]
    if fn in ("len", "length"):
        if len(vals) != 1 or not isinstance(vals[0], (list, str, dict)):
            raise ExprError("len() takes one list (a repeated field, bottom, or a shape)")
        return len(vals[0])
    if fn in ("upper", "lower", "string"):
        if len(vals) != 1:
            raise ExprError("%s() takes one argument, got %d" % (fn, len(vals)))
        text = vals[0] if isinstance(vals[0], str) else to_text(vals[0])
        return text.upper() if fn == "upper" else text.lower() if fn == "lower" else text
    nums = [_num(v, _src(a)) for v, a in zip(vals, nodes)]
    if fn in ("min", "max"):
        if not nums:
            raise ExprError("%s() needs at least one argument" % fn)
        return (min if fn == "min" else max)(nums)
    if len(nums) != 1:
        raise ExprError("%s() takes one argument, got %d" % (fn, len(nums)))
    return _ONE[fn](nums[0])


_ONE: Dict[str, Callable[[Number], Number]] = {
    "ceil": math.ceil,
    "floor": math.floor,
    "int": math.trunc,        # a C++ cast: toward zero
    "float": float,
    "abs": abs,
}
