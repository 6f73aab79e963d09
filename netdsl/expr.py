"""netdsl's expression language: ``${...}`` in specs and custom-layer shape expressions.

One evaluator serves both, on a Python :mod:`ast` tree (never run with
``eval``).  Spec values (``parse(text, jinja=True)``) are read with Jinja2's
parser, as netdsl 0.1 read them, and give 0.1's values (it ran them in Jinja2's
sandbox) except that ``/`` is exact: also ``%`` formatting, slices, tuples and
mappings, ``**``, Jinja2's filters and tests, and the methods of text, lists
and mappings listed in STR_METHODS, LIST_METHODS and DICT_METHODS (the
``_j_`` functions).  Shape expressions and ``parse(text)`` use the smaller
language below: Python's expression grammar, restricted, plus the Jinja2
spellings specs have used:

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

    __slots__ = ("text", "tree", "jinja")

    def __init__(self, text: str, tree: ast.Expression, jinja: bool = False) -> None:
        self.text = text
        self.tree = tree
        self.jinja = jinja

    def evaluate(self, scope: Any) -> Any:
        return evaluate(self, scope)

    def __repr__(self) -> str:
        return "Expression(%r)" % self.text


def parse(text: str, *, strings: bool = True, jinja: bool = False) -> Expression:
    """Parse and check ``text``; ``strings=False`` admits numbers only as constants.

    ``jinja=True`` is the language of spec values: also every Jinja2
    expression netdsl 0.1 evaluated (the ``_j_`` functions below).  Raises
    :class:`ExprError` for a syntax error or a construct outside the
    language.  Results are memoised per text (a bounded cache).
    """
    return _parse(text, strings, jinja)


@functools.lru_cache(maxsize=4096)
def _parse(text: str, strings: bool, jinja: bool = False) -> Expression:
    if len(text) > MAX_LENGTH:
        raise ExprError("longer than %d characters" % MAX_LENGTH)
    if jinja:   # Jinja2's own grammar and precedence (filters bind tightest)
        tree = _j_parse(text.strip())
    else:
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
    if jinja:
        _j_check(tree)
    else:
        _check(tree, strings)
    return Expression(text.strip(), tree, jinja)


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
    if expr.jinja:
        return _j_evaluate(expr, scope)
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
    if scope.__class__ is _JScope:
        v = _j_eval(node, scope)
        if v is not _PASS:
            return v
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


# -- the language of spec values: every Jinja2 expression netdsl 0.1 evaluated ---------
#
# netdsl 0.1 evaluated a spec's ``${...}`` with Jinja2's SandboxedEnvironment
# (StrictUndefined, Jinja2's default filters and tests).  With ``jinja=True``
# the same expressions give the same values, except ``/``, which stays exact
# (``${8 / 2}`` is 4, not 4.0).  Filters and tests are Jinja2's own, called
# through a sandboxed environment; methods are those of text (all of Jinja2's
# sandbox allows), of lists (count, index) and of mappings (get, items, keys,
# values); results are bounded in size.

#: the longest text or list a repetition, padding or format width may make
MAX_ITEMS = 1 << 22
#: methods of lists and mappings (the sandbox's others change the value in place)
LIST_METHODS = ("count", "index")
DICT_METHODS = ("get", "items", "keys", "values")
STR_METHODS = tuple(sorted(m for m in dir(str) if not m.startswith("_") and m != "maketrans"))
_NO_ELSE = "__netdsl_no_else__"
_PASS = object()
_ENV: List[Any] = []


def _j_env() -> Any:
    """The sandboxed Jinja2 environment (StrictUndefined) and a context for its filters."""
    if not _ENV:
        import jinja2
        from jinja2.sandbox import SandboxedEnvironment
        env = SandboxedEnvironment(undefined=jinja2.StrictUndefined)
        _ENV.extend([env, env.from_string("").new_context({})])
    return _ENV[0]


class _JScope:
    """A scope evaluated in the spec language (see :func:`_eval`)."""

    __slots__ = ("scope",)

    def __init__(self, scope: Any) -> None:
        self.scope = scope

    def name(self, name: str) -> Any:
        return self.scope.name(name)


def _j_parse(text: str) -> ast.Expression:
    """``text`` parsed by Jinja2's parser (as 0.1 did), as the tree netdsl evaluates."""
    import jinja2
    from jinja2.parser import Parser
    try:
        parser = Parser(_j_env(), text, state="variable")
        node = parser.parse_expression()
        if not parser.stream.eos:
            raise jinja2.TemplateSyntaxError("unexpected %s after the expression"
                                             % parser.stream.current.type, 1)
        return ast.Expression(body=_j_tree(node))
    except jinja2.TemplateSyntaxError as exc:
        raise ExprError("syntax error: %s" % exc.message) from None
    except (RecursionError, MemoryError):
        raise ExprError("nested too deeply") from None


_J_BINOPS = {"Add": ast.Add, "Sub": ast.Sub, "Mul": ast.Mult, "Div": ast.Div,
             "FloorDiv": ast.FloorDiv, "Mod": ast.Mod, "Pow": ast.Pow}
_J_CMP = {"eq": ast.Eq, "ne": ast.NotEq, "lt": ast.Lt, "lteq": ast.LtE, "gt": ast.Gt,
          "gteq": ast.GtE, "in": ast.In, "notin": ast.NotIn}
_J_UNARY = {"Neg": ast.USub, "Pos": ast.UAdd, "Not": ast.Not}


def _j_call(func: ast.expr, node: Any) -> ast.expr:
    """A Jinja2 call-like node (Call, Filter, Test) as ``func(args, key=value)``."""
    if node.dyn_args is not None or node.dyn_kwargs is not None:
        raise ExprError("`*` and `**` arguments are not allowed")
    if not node.args and not node.kwargs and not isinstance(func, ast.Attribute) and \
            node.__class__.__name__ != "Call":
        return func
    return ast.Call(func=func, args=[_j_tree(a) for a in node.args],
                    keywords=[ast.keyword(arg=k.key, value=_j_tree(k.value))
                              for k in node.kwargs])


def _j_tree(node: Any) -> ast.expr:
    """A Jinja2 expression node as the Python ``ast`` node netdsl evaluates: a filter
    is ``x | f(...)``, a test ``x is t(...)``, ``~`` the ``@`` operator."""
    kind = node.__class__.__name__
    load = ast.Load()
    if kind == "Const":
        return ast.Constant(value=node.value)
    if kind == "Name":
        return ast.Name(id=node.name, ctx=load)
    if kind in _J_BINOPS:
        return ast.BinOp(left=_j_tree(node.left), op=_J_BINOPS[kind](), right=_j_tree(node.right))
    if kind in _J_UNARY:
        return ast.UnaryOp(op=_J_UNARY[kind](), operand=_j_tree(node.node))
    if kind in ("And", "Or"):
        return ast.BoolOp(op=ast.And() if kind == "And" else ast.Or(),
                          values=[_j_tree(node.left), _j_tree(node.right)])
    if kind == "Concat":
        out = _j_tree(node.nodes[0])
        for part in node.nodes[1:]:
            out = ast.BinOp(left=out, op=ast.MatMult(), right=_j_tree(part))
        return out
    if kind == "Compare":
        return ast.Compare(left=_j_tree(node.expr), ops=[_J_CMP[o.op]() for o in node.ops],
                           comparators=[_j_tree(o.expr) for o in node.ops])
    if kind == "CondExpr":
        orelse = ast.Name(id=_NO_ELSE, ctx=load) if node.expr2 is None else _j_tree(node.expr2)
        return ast.IfExp(test=_j_tree(node.test), body=_j_tree(node.expr1), orelse=orelse)
    if kind in ("Tuple", "List"):
        items = [_j_tree(i) for i in node.items]
        if kind == "Tuple":
            return ast.Tuple(elts=items, ctx=load)
        return ast.List(elts=items, ctx=load)
    if kind == "Dict":
        return ast.Dict(keys=[_j_tree(p.key) for p in node.items],
                        values=[_j_tree(p.value) for p in node.items])
    if kind == "Getattr":
        return ast.Attribute(value=_j_tree(node.node), attr=node.attr, ctx=load)
    if kind == "Getitem":
        arg = node.arg
        key = ast.Slice(lower=_j_opt(arg.start), upper=_j_opt(arg.stop), step=_j_opt(arg.step)) \
            if arg.__class__.__name__ == "Slice" else _j_tree(arg)
        return ast.Subscript(value=_j_tree(node.node), slice=key, ctx=load)
    if kind == "Filter":
        return ast.BinOp(left=_j_tree(node.node), op=ast.BitOr(),
                         right=_j_call(ast.Name(id=node.name, ctx=load), node))
    if kind == "Test":
        return ast.Compare(left=_j_tree(node.node), ops=[ast.Is()],
                           comparators=[_j_call(ast.Name(id=node.name, ctx=load), node)])
    if kind == "Call":
        return _j_call(_j_tree(node.node), node)
    raise ExprError("`%s` is not allowed in an expression" % kind.lower())


def _j_opt(node: Any) -> Optional[ast.expr]:
    return None if node is None else _j_tree(node)


def _j_check(tree: ast.Expression) -> None:
    env = _j_env()
    exempt = set()   # the Name/Call nodes naming a filter or a test
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            fn = node.right.func if isinstance(node.right, ast.Call) else node.right
            if not isinstance(fn, ast.Name) or (fn.id not in env.filters
                                                and fn.id not in FUNCTIONS):
                raise ExprError("`|` applies a filter to the value on its left (e.g. "
                                "`name | upper`)", hint=did_you_mean(
                                    getattr(fn, "id", ""), list(env.filters) + list(FUNCTIONS))
                                or "filters: %s" % ", ".join(sorted(env.filters)))
            exempt.update((id(node.right), id(fn)))
        if isinstance(node, ast.Compare):
            for op, right in zip(node.ops, node.comparators):
                if isinstance(op, (ast.Is, ast.IsNot)) and not _is_literal(right):
                    fn = right.func if isinstance(right, ast.Call) else right
                    if not isinstance(fn, ast.Name) or fn.id not in env.tests:
                        raise ExprError("`is` takes a test (e.g. `x is none`, `n is even`, "
                                        "`n is divisibleby 3`)", hint=did_you_mean(
                                            getattr(fn, "id", ""), list(env.tests)) or
                                        "tests: %s" % ", ".join(sorted(env.tests)))
                    exempt.update((id(right), id(fn)))
    for node in ast.walk(tree):
        _j_check_node(node, id(node) in exempt)


def _j_check_node(node: ast.AST, exempt: bool) -> None:
    if isinstance(node, ast.Constant):
        if node.value is None or isinstance(node.value, (bool, int, float, str)):
            return
        raise ExprError("constants are numbers and text, not %r" % (node.value,))
    if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
        raise ExprError("`%s`: names starting with `_` are not readable" % _src(node))
    if isinstance(node, ast.Call):
        if node.keywords and any(k.arg is None for k in node.keywords):
            raise ExprError("`**` arguments are not allowed")
        if any(isinstance(a, ast.Starred) for a in node.args):
            raise ExprError("`*` arguments are not allowed")
        if exempt or (isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS):
            return
        if isinstance(node.func, ast.Attribute):
            if node.func.attr in STR_METHODS + LIST_METHODS + DICT_METHODS:
                return
            raise ExprError("`.%s()` is not a method here" % node.func.attr, hint=_METHODS_HINT)
        raise ExprError("`%s` is not a function here (functions: %s; filters with `|`)"
                        % (_src(node.func), ", ".join(FUNCTIONS)))
    if isinstance(node, ast.Name) and node.id.startswith("__") and node.id != _NO_ELSE:
        raise ExprError("`%s`: names starting with `__` are not readable" % node.id)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Pow, ast.BitOr)):
        return
    if isinstance(node, (ast.Slice, ast.Dict, ast.keyword, ast.Pow)) or isinstance(node, _ALLOWED):
        return
    if isinstance(node, (ast.BinOp, ast.UnaryOp)):
        if isinstance(getattr(node, "op", None), _ARITH + (ast.MatMult, ast.USub, ast.UAdd,
                                                          ast.Not)):
            return
        raise ExprError("operator not allowed (use + - * / // % **)")
    raise ExprError("`%s` is not allowed in an expression" % type(node).__name__.lower())


_METHODS_HINT = ("methods: of text %s; of lists %s; of mappings %s"
                 % (", ".join(STR_METHODS), ", ".join(LIST_METHODS), ", ".join(DICT_METHODS)))


def _j_evaluate(expr: Expression, scope: Any) -> Any:
    import jinja2
    try:
        v = _eval(expr.tree.body, _JScope(scope))
        if isinstance(v, jinja2.Undefined):
            raise ExprError(_undefined_text(v))
        return v
    except ExprError:
        raise
    except jinja2.UndefinedError as exc:
        raise ExprError("a value is undefined: %s" % exc) from None
    except jinja2.TemplateError as exc:     # a filter's or the sandbox's refusal
        raise ExprError(exc.message or str(exc)) from None
    except (TypeError, ValueError, ArithmeticError, RecursionError, LookupError,
            AttributeError) as exc:
        raise ExprError("%s: %s" % (type(exc).__name__, exc)) from None


def _undefined_text(v: Any) -> str:
    hint = getattr(v, "_undefined_hint", None)
    return "the value is undefined%s" % (": " + hint if hint else "")


def _jv(v: Any) -> Any:
    """A value as Jinja2 saw it in 0.1: an exact fraction is an int or a float."""
    if isinstance(v, Fraction):
        return int(v) if v.denominator == 1 else float(v)
    if isinstance(v, list):
        return [_jv(x) for x in v]
    if isinstance(v, tuple):
        return tuple(_jv(x) for x in v)
    if isinstance(v, dict):
        return {k: _jv(x) for k, x in v.items()}
    return v


def _j_soft(node: ast.AST, scope: Any) -> Any:
    """``node``'s value, or Jinja2's undefined for a missing key (a bare unknown
    name stays an error, as 0.1 checked names first)."""
    if isinstance(node, ast.Name):
        return _eval(node, scope)
    try:
        return _eval(node, scope)
    except ExprError as exc:
        if not exc.lookup:
            raise
        import jinja2
        return jinja2.StrictUndefined(hint=exc.message)


def _j_eval(node: ast.AST, scope: Any) -> Any:
    if isinstance(node, ast.Name) and node.id == _NO_ELSE:
        import jinja2
        return jinja2.StrictUndefined(hint="`a if c` without else, and c is false")
    if isinstance(node, ast.Tuple):
        return tuple(_eval(e, scope) for e in node.elts)
    if isinstance(node, ast.Dict):
        return {_eval(k, scope): _eval(v, scope) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.Subscript):
        base = _eval(node.value, scope)
        if isinstance(node.slice, ast.Slice):
            return _j_slice(base, node, scope)
        key = _eval(node.slice, scope)
        return _item(list(base) if isinstance(base, tuple) else base, key, node)
    if isinstance(node, ast.BinOp):
        if isinstance(node.op, ast.BitOr):
            return _j_filter(node, scope)
        return _j_binop(node, _eval(node.left, scope), _eval(node.right, scope))
    if isinstance(node, ast.Compare):
        return _j_compare(node, scope)
    if isinstance(node, ast.Attribute):
        base = _eval(node.value, scope)
        if isinstance(base, dict) or hasattr(base, "attr"):
            return _attr(base, node.attr, node.value)
        raise ExprError("`%s` is %s, which has no field `%s`%s" % (
            _src(node.value), _kind(base), node.attr,
            "; call a method: `%s()`" % _src(node) if node.attr in STR_METHODS + LIST_METHODS
            else ""), hint=_METHODS_HINT, lookup=True)   # undefined, as Jinja2's
    if isinstance(node, ast.Call):
        if isinstance(node.func, ast.Attribute):
            return _j_method(node, scope)
        if node.keywords:
            raise ExprError("%s() takes no keyword arguments" % node.func.id)  # type: ignore
    return _PASS


def _j_slice(base: Any, node: ast.Subscript, scope: Any) -> Any:
    if not isinstance(base, (list, tuple, str)):
        raise ExprError("`%s` cannot be sliced" % _src(node.value))
    sl = node.slice
    parts = []
    for part in (sl.lower, sl.upper, sl.step):  # type: ignore[attr-defined]
        v = None if part is None else _norm(_eval(part, scope))
        v = int(v) if isinstance(v, bool) else v
        if v is not None and not isinstance(v, int):
            raise ExprError("a slice bound must be an integer, not %s" % to_text(v))
        parts.append(v)
    if parts[2] == 0:
        raise ExprError("a slice step cannot be zero")
    return base[slice(*parts)]


def _j_text(v: Any) -> str:
    return str(_jv(v))


def _j_binop(node: ast.BinOp, a: Any, b: Any) -> Any:
    op = node.op
    if isinstance(op, ast.MatMult):      # `a ~ b`: str() of each, as Jinja2
        return _j_text(a) + _j_text(b)
    if isinstance(op, ast.Mod) and isinstance(a, str):
        return _j_percent(a, b)
    if isinstance(op, ast.Add) and (isinstance(a, (str, list, tuple)) or
                                    isinstance(b, (str, list, tuple))):
        if type(a) is not type(b):
            raise ExprError("`+` joins two texts or two lists; for text write `a ~ b`")
        return a + b
    if isinstance(op, ast.Mult):
        for seq, n in ((a, b), (b, a)):
            if isinstance(seq, (str, list, tuple)):
                n = int(n) if isinstance(n, bool) else _norm(n)
                if not isinstance(n, int):
                    raise ExprError("a text or list is repeated a whole number of times")
                if len(seq) * n > MAX_ITEMS:
                    raise ExprError("repeating %d items %d times is too large" % (len(seq), n))
                return seq * n
    a, b = _num(a, _src(node.left)), _num(b, _src(node.right))
    if isinstance(op, ast.Pow):
        return _j_pow(a, b)
    if isinstance(op, ast.Mult) and isinstance(a, int) and isinstance(b, int) and \
            a.bit_length() + b.bit_length() > 4096:
        raise ExprError("the product is too large a number")
    return _arith(node, a, b)


def _j_pow(a: Number, b: Number) -> Number:
    b = _norm(b)
    if isinstance(b, int) and not isinstance(a, float):
        a = _norm(a)
        base_bits = max(abs(a.numerator).bit_length(), abs(a.denominator).bit_length(), 1) \
            if isinstance(a, Fraction) else max(abs(a).bit_length(), 1)
        if abs(b) * base_bits > 4096 and a not in (0, 1, -1):
            raise ExprError("%s ** %d is too large a number" % (to_text(a), b))
        if b < 0 and a == 0:
            raise ExprError("division by zero: 0 ** %d" % b)
        return _norm(Fraction(a) ** b)
    out = float(a) ** float(b)
    if isinstance(out, complex):
        raise ExprError("%s ** %s: a negative number to a fractional power is not a real "
                        "number" % (to_text(a), to_text(b)))
    return out


_PERCENT = None


def _j_percent(fmt: str, args: Any) -> str:
    """Python's (and Jinja2's) ``text % value`` / ``text % (a, b)``, widths bounded."""
    import re
    global _PERCENT
    if _PERCENT is None:
        _PERCENT = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[a-zA-Z%]")
    for m in _PERCENT.finditer(fmt):
        for g in m.groups():
            if g == "*" or (g and int(g) > MAX_ITEMS):
                raise ExprError("a `%%` format width must be a number up to %d" % MAX_ITEMS)
    return fmt % _jv(args)


def _j_compare(node: ast.Compare, scope: Any) -> bool:
    left_node = node.left
    left = _j_soft(left_node, scope) if _tests_defined(node) else _eval(left_node, scope)
    for op, right_node in zip(node.ops, node.comparators):
        if isinstance(op, (ast.Is, ast.IsNot)) and not _is_literal(right_node):
            ok = _j_test(left, right_node, scope)
            if ok == isinstance(op, ast.IsNot):
                return False
            continue
        right = _eval(right_node, scope)
        if isinstance(op, (ast.In, ast.NotIn)) and isinstance(right, (tuple, dict)):
            ok = (_jv(left) in _jv(right)) == isinstance(op, ast.In)
        elif isinstance(op, (ast.Lt, ast.LtE, ast.Gt, ast.GtE)) and \
                isinstance(left, (list, tuple)) and isinstance(right, (list, tuple)):
            ok = _SEQ_CMP[type(op)](_jv(left), _jv(right))
        else:
            ok = _compare(op, left, right, left_node, right_node)
        if not ok:
            return False
        left, left_node = right, right_node
    return True


_SEQ_CMP: Dict[type, Callable[[Any, Any], bool]] = {
    ast.Lt: lambda a, b: a < b, ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b, ast.GtE: lambda a, b: a >= b}


def _tests_defined(node: ast.Compare) -> bool:
    right = node.comparators[0]
    fn = right.func if isinstance(right, ast.Call) else right
    return isinstance(node.ops[0], (ast.Is, ast.IsNot)) and isinstance(fn, ast.Name) and \
        fn.id in ("defined", "undefined")


def _j_args(call: Optional[ast.AST], scope: Any) -> Any:
    if not isinstance(call, ast.Call):
        return [], {}
    args = [_jv(_eval(a, scope)) for a in call.args]
    kwargs = {k.arg: _jv(_eval(k.value, scope)) for k in call.keywords}
    for v in list(args) + list(kwargs.values()):
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) > MAX_ITEMS:
            raise ExprError("an argument of %d is too large (at most %d)" % (v, MAX_ITEMS))
    return args, kwargs


def _j_test(value: Any, right: ast.AST, scope: Any) -> bool:
    fn = right.func if isinstance(right, ast.Call) else right
    args, kwargs = _j_args(right, scope)
    return bool(_j_env().call_test(fn.id, _jv(value), args, kwargs))  # type: ignore


def _j_filter(node: ast.BinOp, scope: Any) -> Any:
    right = node.right
    fn = right.func if isinstance(right, ast.Call) else right
    name = fn.id  # type: ignore[attr-defined]
    env = _j_env()
    if name not in env.filters:
        return _filter(node, scope)
    value = _j_soft(node.left, scope) if name in ("default", "d") else _eval(node.left, scope)
    if name in ("min", "max") and not isinstance(value, (list, tuple, str, dict)):
        return _filter(node, scope)          # netdsl's `x | max(y)`: the larger of x and y
    args, kwargs = _j_args(right, scope)
    if name == "format" and isinstance(value, str):   # Jinja2's: value % (kwargs or args)
        if args and kwargs:
            raise ExprError("`format` takes values or names, not both")
        return _j_percent(value, kwargs or tuple(args))
    if name in ("center", "indent", "wordwrap", "truncate") and isinstance(value, str) \
            and len(value) > MAX_ITEMS:
        raise ExprError("the text is too long for `%s`" % name)
    out = env.call_filter(name, _jv(value), args, kwargs, context=_ENV[1])
    if name in ("map", "select", "reject", "selectattr", "rejectattr", "reverse", "batch",
                "slice") and not isinstance(out, (str, list, tuple, dict)):
        out = list(out)
    return out


def _j_method(node: ast.Call, scope: Any) -> Any:
    func = node.func
    base = _eval(func.value, scope)  # type: ignore[attr-defined]
    name = func.attr  # type: ignore[attr-defined]
    args, kwargs = _j_args(node, scope)
    if isinstance(base, str) and name in STR_METHODS:
        if name in ("format", "format_map"):
            return _safe_format(base, args if name == "format" else [],
                                kwargs if name == "format" else (args[0] if args else {}))
        return getattr(base, name)(*args, **kwargs)
    if isinstance(base, (list, tuple)) and name in LIST_METHODS:
        return getattr(_jv(base), name)(*args, **kwargs)
    if isinstance(base, dict) and name in DICT_METHODS:
        out = getattr(base, name)(*args, **kwargs)
        return out if name == "get" else list(out)
    raise ExprError("`%s` is %s, which has no method `%s` here"
                    % (_src(func.value), _kind(base), name), hint=_METHODS_HINT)


def _kind(v: Any) -> str:
    if isinstance(v, str):
        return "text"
    if isinstance(v, (list, tuple)):
        return "a list"
    if isinstance(v, dict):
        return "a mapping"
    return "a number" if isinstance(v, (int, float, Fraction)) else "a value"


def _safe_format(fmt: str, args: List[Any], kwargs: Any) -> str:
    """``str.format`` with plain fields only (no ``{0.attr}``), widths bounded."""
    import string

    class _Formatter(string.Formatter):
        def get_field(self, field_name, a, kw):
            if "." in field_name or "[" in field_name:
                raise ExprError("format fields name an argument ({0}, {name}), not `%s`"
                                % field_name)
            return super().get_field(field_name, a, kw)

        def format_field(self, value, spec):
            import re
            if any(int(d) > MAX_ITEMS for d in re.findall(r"\d+", spec)):
                raise ExprError("a format width must be up to %d" % MAX_ITEMS)
            return super().format_field(value, spec)

    return _Formatter().vformat(fmt, tuple(_jv(args)), _jv(dict(kwargs)))
