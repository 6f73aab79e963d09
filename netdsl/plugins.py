"""Custom and fork layer types: one call registers everything netdsl needs.

A Caffe fork adds layer types (SegNet's ``Upsample``, DeepLab's ``Interp``, ...)
and their parameter messages.  The messages come from the fork's caffe.proto,
compiled at run time (``--proto``, :func:`netdsl.proto.load_schema`); what
netdsl cannot read from a schema is how a type shapes its tops, which
coordinate map it has and what it computes.  :func:`register_layer` puts those
rules into the registries of :mod:`netdsl.shapes`, :mod:`netdsl.coord_map` and
:mod:`netdsl.forward`::

    from netdsl.plugins import register_layer

    register_layer("Upsample2x", bottoms=1, tops=1,
                   shape=[["N", "C", "2 * H", "2 * W"]],
                   coord_map=(1, 2, 0.5),
                   forward=lambda layer, bottoms, blobs, ctx: [
                       bottoms[0].repeat(2, axis=2).repeat(2, axis=3)])

A plugin is a Python module (by import name or file path) that makes such
calls when imported: :func:`load_plugin`, ``--plugin MODULE`` on every CLI
verb, or the comma-separated list in the ``NETDSL_PLUGINS`` environment
variable (loaded by :func:`ensure_env_plugins`, which the CLI and
:func:`load_plugin` call before their first use).

Shapes may also be declared as expressions over the bottoms' dims and the
layer's parameters (:func:`expression_shape_rule`), evaluated by a small AST
evaluator that admits arithmetic and a few functions only.  The syntax is in
docs/custom-layers.md.
"""
from __future__ import annotations

import ast
import contextlib
import functools
import hashlib
import importlib
import importlib.util
import math
import os
import re
import sys
import traceback
from dataclasses import dataclass
from fractions import Fraction
from types import ModuleType
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from google.protobuf.message import Message

from .errors import NetdslError, did_you_mean

__all__ = ["register_layer", "unregister_layer", "registered", "LayerPlugin", "load_plugin",
           "ensure_env_plugins", "expression_shape_rule", "expression_param_rule",
           "ShapeExpressions", "temporary_layers", "ENV_VAR"]

#: environment variable naming plugin modules or files, comma-separated
ENV_VAR = "NETDSL_PLUGINS"

Shape = Tuple[int, ...]
ExprList = Sequence[Sequence[Union[str, int]]]


# -- registration ------------------------------------------------------------------------

@dataclass
class LayerPlugin:
    """What :func:`register_layer` registered for one type, and where it came from."""
    type_name: str
    shape: Optional[Callable] = None
    params: Optional[Callable] = None
    coord_map: Optional[Callable] = None
    forward: Optional[Callable] = None
    bottoms: Any = None
    tops: Any = None
    source: Optional[str] = None


_MISSING = object()
_REGISTERED: Dict[str, LayerPlugin] = {}
# type -> {registry name: the entry it replaced (or _MISSING)}, to undo a registration
_SAVED: Dict[str, Dict[str, Any]] = {}
_loading: List[str] = []      # plugins being imported (innermost last)


def _registries() -> Dict[str, dict]:
    from . import coord_map, shapes
    regs = {"shape": shapes.SHAPE_RULES, "counts": shapes.BLOB_COUNTS,
            "params": shapes.PARAM_RULES, "coord_map": coord_map.COORD_MAPS}
    if "netdsl.forward" in sys.modules:   # numpy is imported only when needed
        from .forward import FORWARD
        regs["forward"] = FORWARD
    return regs


def _builtin(type_name: str) -> bool:
    from . import schema, shapes
    if type_name in _REGISTERED:
        return False
    return type_name in shapes.SHAPE_RULES or type_name in schema.KNOWN_TYPES


_TYPE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def register_layer(type_name: str, *, shape: Any = None, params: Any = None,
                   coord_map: Any = None, forward: Optional[Callable] = None,
                   bottoms: Any = None, tops: Any = None, equal: bool = False,
                   loss: bool = False, in_place: bool = True, override: bool = False
                   ) -> LayerPlugin:
    """Register the rules of a custom layer type in one call.

    ``shape``: a rule ``fn(layer, bottom_shapes, ntop) -> [top shapes]`` (as
    :func:`netdsl.shapes.rule` takes) or expressions, one list of dims per top
    (:func:`expression_shape_rule`).  ``params``: the shapes of its learnable
    blobs, ``fn(layer, bottom_shapes) -> [shapes]`` or expressions.
    ``coord_map``: ``fn(layer, bottom_shapes_or_None) -> (axis, scale, shift)``,
    a constant ``(axis, scale, shift)``, or ``"identity"``.  ``forward``: the
    numpy forward, ``fn(layer, bottoms, blobs, ctx) -> [top arrays]``.
    ``bottoms``/``tops``: blob counts, an int, ``(min, max)`` (None: unbounded)
    or ``fn(layer)`` giving either; ``equal``, ``loss`` and ``in_place`` as in
    :class:`netdsl.shapes.BlobCounts`.

    BVLC's own types are refused unless ``override`` is true.  Registering a
    type again replaces its rules.  Errors other than
    :class:`~netdsl.errors.NetdslError` raised by a rule are reported as
    NetdslErrors naming the type and the plugin.
    """
    if not isinstance(type_name, str) or not _TYPE_NAME.match(type_name):
        raise NetdslError("a layer type name is an identifier (letters, digits, _), not %r"
                          % (type_name,))
    if not override and _builtin(type_name):
        raise NetdslError("`%s` is a built-in layer type; pass override=True to replace its "
                          "rules" % type_name)
    source = _loading[-1] if _loading else None
    rec = LayerPlugin(type_name, bottoms=bottoms, tops=tops, source=source)
    if shape is not None:
        if not callable(shape):
            shape = expression_shape_rule(shape, type_name=type_name)
            if tops is None and len(shape.exprs) > 1:
                rec.tops = tops = len(shape.exprs)
        rec.shape = _guard(shape, "shape rule", type_name, source)
    if params is not None:
        if not callable(params):
            params = expression_param_rule(params, type_name=type_name)
        rec.params = _guard(params, "parameter rule", type_name, source)
    if coord_map is not None:
        rec.coord_map = _guard(_as_coord_rule(coord_map, type_name), "coordinate map",
                               type_name, source)
    if forward is not None:
        if not callable(forward):
            raise NetdslError("forward for `%s` must be a function (layer, bottoms, blobs, ctx) "
                              "-> [arrays], not %s" % (type_name, type(forward).__name__))
        rec.forward = _guard(forward, "numpy forward", type_name, source)
    unregister_layer(type_name)
    from . import coord_map as cm
    from . import shapes
    saved: Dict[str, Any] = {}

    def put(reg_name: str, registry: dict, value: Any) -> None:
        saved[reg_name] = registry.get(type_name, _MISSING)
        registry[type_name] = value

    if rec.shape is not None:
        put("shape", shapes.SHAPE_RULES, rec.shape)
    if rec.shape is not None or bottoms is not None or tops is not None:
        put("counts", shapes.BLOB_COUNTS,
            shapes.BlobCounts(bottoms=bottoms, tops=tops, equal=equal, auto_top=loss, loss=loss,
                              in_place=in_place))
    if rec.params is not None:
        put("params", shapes.PARAM_RULES, rec.params)
    if rec.coord_map is not None:
        put("coord_map", cm.COORD_MAPS, rec.coord_map)
    if rec.forward is not None:
        from .forward import FORWARD
        put("forward", FORWARD, rec.forward)
    _SAVED[type_name] = saved
    _REGISTERED[type_name] = rec
    return rec


def unregister_layer(type_name: str) -> None:
    """Undo :func:`register_layer` for ``type_name`` (restoring rules it replaced)."""
    saved = _SAVED.pop(type_name, None)
    _REGISTERED.pop(type_name, None)
    if not saved:
        return
    regs = _registries()
    if "forward" in saved and "forward" not in regs:
        from .forward import FORWARD
        regs["forward"] = FORWARD
    for reg_name, old in saved.items():
        reg = regs[reg_name]
        if old is _MISSING:
            reg.pop(type_name, None)
        else:
            reg[type_name] = old


def registered() -> Dict[str, LayerPlugin]:
    """Type name -> :class:`LayerPlugin` of every type registered so far."""
    return dict(_REGISTERED)


def _guard(fn: Callable, what: str, type_name: str, source: Optional[str]) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args: Any) -> Any:
        try:
            return fn(*args)
        except NetdslError:
            raise
        except Exception as exc:  # a bug in a plugin: say whose
            where = " (plugin %s)" % source if source else ""
            raise NetdslError("the %s of layer type `%s`%s failed: %s: %s"
                              % (what, type_name, where, type(exc).__name__, exc)) from exc
    return wrapper


def _as_coord_rule(spec: Any, type_name: str) -> Callable:
    if callable(spec):
        return spec
    if spec == "identity":
        from .coord_map import IDENTITY
        return lambda layer, shapes=None: IDENTITY
    if isinstance(spec, (tuple, list)) and len(spec) == 3:
        const = tuple(spec)
        return lambda layer, shapes=None: const
    raise NetdslError("coord_map for `%s` must be a function (layer, bottom_shapes) -> "
                      "(axis, scale, shift), a constant (axis, scale, shift) or 'identity'"
                      % type_name)


# -- loading plugin modules -----------------------------------------------------------------

_LOADED: Dict[str, ModuleType] = {}
_env_done: set = set()


def _is_path(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or os.sep in spec or os.path.isfile(spec)


def load_plugin(module_or_path: str) -> ModuleType:
    """Import a plugin: a module name (``my_layers``, ``pkg.layers``) or a ``.py`` file.

    The module registers its layer types when imported (with
    :func:`register_layer`).  Each plugin is imported once per process.
    Errors (no such module or file, a syntax error, an exception while the
    module runs) are NetdslErrors located in the plugin's file.
    """
    ensure_env_plugins()
    return _load(module_or_path)


def _load(module_or_path: str) -> ModuleType:
    spec = str(module_or_path).strip()
    if not spec:
        raise NetdslError("empty plugin name")
    if _is_path(spec):
        path = os.path.abspath(os.path.expanduser(spec))
        key = path
    else:
        path, key = None, spec
    if key in _LOADED:
        return _LOADED[key]
    _loading.append(path or spec)
    try:
        if path is not None:
            mod = _import_file(spec, path)
        else:
            mod = _import_name(spec)
    finally:
        _loading.pop()
    _LOADED[key] = mod
    return mod


def _import_name(name: str) -> ModuleType:
    try:
        if name in sys.modules:   # imported before: run it again so it registers again
            return importlib.reload(sys.modules[name])
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise NetdslError("no plugin module named '%s'" % name,
                              hint="give a file path (e.g. plugins/%s.py) or put the module's "
                                   "directory on PYTHONPATH" % name.rsplit(".", 1)[-1]) from None
        raise _module_error(exc, None, name) from exc
    except NetdslError:
        raise
    except SyntaxError as exc:
        raise NetdslError("syntax error in plugin: %s" % exc.msg, file=exc.filename,
                          line=exc.lineno, column=exc.offset) from None
    except Exception as exc:
        raise _module_error(exc, getattr(sys.modules.get(name), "__file__", None), name) from exc


def _import_file(spec: str, path: str) -> ModuleType:
    if not os.path.isfile(path):
        raise NetdslError("no such plugin file", file=spec)
    stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
    name = "netdsl_plugin_%s_%s" % (stem, hashlib.sha1(path.encode("utf-8")).hexdigest()[:8])
    mspec = importlib.util.spec_from_file_location(name, path)
    if mspec is None or mspec.loader is None:
        raise NetdslError("cannot import this file as a Python module", file=spec)
    mod = importlib.util.module_from_spec(mspec)
    sys.modules[name] = mod
    try:
        mspec.loader.exec_module(mod)
    except NetdslError as exc:
        sys.modules.pop(name, None)
        raise _locate_in(exc, path)
    except SyntaxError as exc:
        sys.modules.pop(name, None)
        raise NetdslError("syntax error in plugin: %s" % exc.msg, file=spec, line=exc.lineno,
                          column=exc.offset) from None
    except Exception as exc:
        sys.modules.pop(name, None)
        raise _module_error(exc, path, spec) from exc
    return mod


def _plugin_frame(exc: BaseException, path: Optional[str]) -> Optional[traceback.FrameSummary]:
    if path is None:
        return None
    want = os.path.abspath(path)
    hit = None
    for fs in traceback.extract_tb(exc.__traceback__):
        if os.path.abspath(fs.filename) == want:
            hit = fs
    return hit


def _module_error(exc: BaseException, path: Optional[str], spec: str) -> NetdslError:
    fs = _plugin_frame(exc, path)
    return NetdslError("plugin '%s' failed while loading: %s: %s"
                       % (spec, type(exc).__name__, exc),
                       file=fs.filename if fs else path, line=fs.lineno if fs else None)


def _locate_in(exc: NetdslError, path: str) -> NetdslError:
    if exc.file is None:
        fs = _plugin_frame(exc, path)
        if fs is not None:
            exc.located(file=fs.filename, line=fs.lineno)
    return exc


def ensure_env_plugins() -> List[ModuleType]:
    """Load the plugins ``NETDSL_PLUGINS`` names (comma-separated), each once."""
    value = os.environ.get(ENV_VAR, "")
    out = []
    for item in value.split(","):
        item = item.strip()
        if not item or item in _env_done:
            continue
        _env_done.add(item)
        try:
            out.append(_load(item))
        except NetdslError as exc:
            _env_done.discard(item)
            exc.message = "%s (from $%s)" % (exc.message, ENV_VAR)
            raise
    return out


# -- shape expressions ---------------------------------------------------------------------

_FUNCS = ("ceil", "floor", "min", "max", "int", "abs", "len", "has")
_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//",
           ast.Mod: "%"}
_CMPOPS = {ast.Lt: lambda a, b: a < b, ast.LtE: lambda a, b: a <= b,
           ast.Gt: lambda a, b: a > b, ast.GtE: lambda a, b: a >= b,
           ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b}
_DIMS = {"N": 0, "C": 1, "H": 2, "W": 3}
_BOTTOM_NAME = re.compile(r"^b(\d+)$")


class _ExprError(Exception):
    """Raised inside evaluation; turned into a located NetdslError by the caller."""


def _check_syntax(text: str) -> ast.Expression:
    """Parse ``text`` and admit only the constructs the evaluator knows."""
    if len(text) > 4000:
        raise _ExprError("longer than 4000 characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        col = " at column %d" % exc.offset if exc.offset else ""
        raise _ExprError("syntax error%s: %s" % (col, exc.msg)) from None
    except (RecursionError, MemoryError):  # Python's parser on very deep nesting
        raise _ExprError("nested too deeply") from None
    depths = [(tree, 0)]
    while depths:  # the evaluator recurses: keep trees shallow
        node, d = depths.pop()
        if d > 100:
            raise _ExprError("nested more than 100 deep")
        depths.extend((c, d + 1) for c in ast.iter_child_nodes(node))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Expression, ast.Load, ast.Name, ast.Attribute, ast.IfExp,
                             ast.BoolOp, ast.And, ast.Or, ast.Not, ast.USub, ast.UAdd,
                             ast.Subscript, ast.Compare)):
            continue
        if isinstance(node, tuple(_CMPOPS)) or isinstance(node, tuple(_BINOPS)):
            continue
        if isinstance(node, ast.Constant):
            if isinstance(node.value, (int, float)) and not isinstance(node.value, complex):
                continue
            raise _ExprError("only numbers are allowed as constants, not %r" % (node.value,))
        if isinstance(node, ast.BinOp):
            if type(node.op) not in _BINOPS:
                raise _ExprError("operator not allowed (use + - * / // %)")
            continue
        if isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, (ast.USub, ast.UAdd, ast.Not)):
                raise _ExprError("operator not allowed")
            continue
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCS:
                name = ast.unparse(node.func)
                raise _ExprError("`%s` is not a function here (functions: %s)"
                                 % (name, ", ".join(_FUNCS)))
            if node.keywords:
                raise _ExprError("keyword arguments are not allowed")
            continue
        raise _ExprError("`%s` is not allowed in a shape expression"
                         % type(node).__name__.lower())
    return tree


class _Blob:
    """A bottom's shape as seen by expressions: ``N C H W``, ``shape[i]``, ``axes``."""
    __slots__ = ("shape", "index")

    def __init__(self, shape: Shape, index: int) -> None:
        self.shape = shape
        self.index = index

    def attr(self, name: str) -> Any:
        if name in _DIMS:
            return _legacy(self.shape, _DIMS[name], "bottom[%d]" % self.index)
        if name == "shape":
            return list(self.shape)
        if name == "axes":
            return len(self.shape)
        if name == "count":
            out = 1
            for d in self.shape:
                out *= d
            return out
        raise _ExprError("a bottom has N, C, H, W, shape, axes and count, not `%s`%s"
                         % (name, _hint(name, list(_DIMS) + ["shape", "axes", "count"])))


def _legacy(shape: Shape, index: int, what: str) -> int:
    # Blob::LegacyShape: at most 4 axes; missing axes count as 1
    if len(shape) > 4:
        raise _ExprError("%s has %d axes %s; N, C, H and W (Caffe's legacy accessors) need at "
                         "most 4 (use shape[i])" % (what, len(shape), tuple(shape)))
    return shape[index] if index < len(shape) else 1


class _Msg:
    """A parameter message as seen by expressions: fields with the schema's defaults."""
    __slots__ = ("msg", "path")

    def __init__(self, msg: Message, path: str) -> None:
        self.msg = msg
        self.path = path

    def field(self, name: str):
        fd = self.msg.DESCRIPTOR.fields_by_name.get(name)
        if fd is None:
            raise _ExprError("%s has no field `%s`%s" % (
                self.path, name, _hint(name, list(self.msg.DESCRIPTOR.fields_by_name))))
        return fd

    def attr(self, name: str) -> Any:
        fd = self.field(name)
        value = getattr(self.msg, name)
        if fd.message_type is not None:
            if _repeated(fd):
                return [_Msg(v, "%s.%s[%d]" % (self.path, name, i)) for i, v in enumerate(value)]
            return _Msg(value, "%s.%s" % (self.path, name))
        if _repeated(fd):
            return list(value)
        return value

    def has(self, name: str) -> bool:
        fd = self.field(name)
        if _repeated(fd):
            return len(getattr(self.msg, name)) > 0
        return self.msg.HasField(name)


def _repeated(fd) -> bool:
    from .schema import is_repeated
    return is_repeated(fd)


def _hint(name: str, cands: Sequence[str]) -> str:
    h = did_you_mean(name, cands)
    return "; " + h if h else ""


class _Scope:
    """Names an expression can use, for one layer and its bottom shapes."""

    def __init__(self, layer: Message, bottoms: Sequence[Shape], ntop: int) -> None:
        self.layer = layer
        self.bottoms = [tuple(int(d) for d in b) for b in bottoms]
        self.ntop = ntop

    def blob(self, i: int) -> _Blob:
        if not 0 <= i < len(self.bottoms):
            raise _ExprError("bottom[%d] does not exist: the layer has %d bottom%s"
                             % (i, len(self.bottoms), "" if len(self.bottoms) == 1 else "s"))
        return _Blob(self.bottoms[i], i)

    def param(self) -> _Msg:
        from .schema import param_field_of
        own = param_field_of(self.layer.DESCRIPTOR, self.layer.type)
        if own is None:
            raise _ExprError("`param` is the layer's own parameter message, but the schema has "
                             "no %sParameter; name a LayerParameter field instead (e.g. "
                             "pooling_param.kernel_size), or load the fork's schema (--proto)"
                             % self.layer.type)
        return _Msg(getattr(self.layer, own), own)

    def name(self, name: str) -> Any:
        if name in _DIMS:
            return self.blob(0).attr(name)
        m = _BOTTOM_NAME.match(name)
        if m:
            return self.blob(int(m.group(1)))
        if name == "bottom":
            return [_Blob(b, i) for i, b in enumerate(self.bottoms)]
        if name == "param":
            return self.param()
        if name == "layer":
            return _Msg(self.layer, "layer")
        if name == "ntop":
            return self.ntop
        if name == "nbottom":
            return len(self.bottoms)
        if name in ("True", "False"):
            return name == "True"
        fields = self.layer.DESCRIPTOR.fields_by_name
        if name in fields and fields[name].message_type is not None:
            return _Msg(getattr(self.layer, name), name)
        known = ["N", "C", "H", "W", "bottom", "param", "layer", "ntop", "nbottom"] + \
            [f for f in fields if f.endswith("_param")]
        raise _ExprError("unknown name `%s` (names: N C H W, b0 b1 ..., bottom[i], param, "
                         "<type>_param, ntop, nbottom)%s" % (name, _hint(name, known)))


def _num(v: Any, what: str) -> Union[int, float, Fraction]:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, (int, float, Fraction)):
        return v
    if isinstance(v, list):
        raise _ExprError("%s is a repeated field (a list); index it, e.g. %s[0]" % (what, what))
    raise _ExprError("%s is not a number" % what)


def _norm(v: Any) -> Any:
    if isinstance(v, Fraction) and v.denominator == 1:
        return int(v)
    return v


def _src(node: ast.AST) -> str:
    return ast.unparse(node)


def _eval(node: ast.AST, scope: _Scope) -> Any:
    if isinstance(node, ast.Expression):
        return _eval(node.body, scope)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return scope.name(node.id)
    if isinstance(node, ast.Attribute):
        base = _eval(node.value, scope)
        if isinstance(base, (_Blob, _Msg)):
            return base.attr(node.attr)
        raise _ExprError("`%s` has no attributes" % _src(node.value))
    if isinstance(node, ast.Subscript):
        base = _eval(node.value, scope)
        sl = node.slice
        idx = _num(_eval(sl, scope), _src(sl))
        if not isinstance(base, list):
            raise _ExprError("`%s` cannot be indexed" % _src(node.value))
        if not isinstance(_norm(idx), int):
            raise _ExprError("an index must be an integer, not %s" % idx)
        try:
            return base[int(idx)]
        except IndexError:
            raise _ExprError("index %d out of range: `%s` has %d entries"
                             % (int(idx), _src(node.value), len(base))) from None
    if isinstance(node, ast.UnaryOp):
        v = _eval(node.operand, scope)
        if isinstance(node.op, ast.Not):
            return not _truth(v, node.operand)
        v = _num(v, _src(node.operand))
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp):
        a = _num(_eval(node.left, scope), _src(node.left))
        b = _num(_eval(node.right, scope), _src(node.right))
        op = type(node.op)
        if op is ast.Add:
            return _norm(a + b)
        if op is ast.Sub:
            return _norm(a - b)
        if op is ast.Mult:
            return _norm(a * b)
        if b == 0:
            raise _ExprError("division by zero in `%s`" % _src(node))
        if op is ast.Div:
            if isinstance(a, float) or isinstance(b, float):
                return a / b
            return _norm(Fraction(a) / Fraction(b))
        if op is ast.FloorDiv:
            return _norm(Fraction(a) // Fraction(b)) if not isinstance(a, float) and \
                not isinstance(b, float) else a // b
        return _norm(Fraction(a) % Fraction(b)) if not isinstance(a, float) and \
            not isinstance(b, float) else a % b
    if isinstance(node, ast.Compare):
        left = _num(_eval(node.left, scope), _src(node.left))
        for op, right_node in zip(node.ops, node.comparators):
            right = _num(_eval(right_node, scope), _src(right_node))
            if not _CMPOPS[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            for v in node.values:
                if not _truth(_eval(v, scope), v):
                    return False
            return True
        for v in node.values:
            if _truth(_eval(v, scope), v):
                return True
        return False
    if isinstance(node, ast.IfExp):
        if _truth(_eval(node.test, scope), node.test):
            return _eval(node.body, scope)
        return _eval(node.orelse, scope)
    if isinstance(node, ast.Call):
        return _call(node, scope)
    raise _ExprError("`%s` is not allowed" % _src(node))  # pragma: no cover (checked earlier)


def _truth(v: Any, node: ast.AST) -> bool:
    if isinstance(v, list):
        return bool(v)
    return bool(_num(v, _src(node)))


def _call(node: ast.Call, scope: _Scope) -> Any:
    fn = node.func.id  # type: ignore[attr-defined]
    args = node.args
    if fn == "has":
        if len(args) != 1 or not isinstance(args[0], ast.Attribute):
            raise _ExprError("has() takes one field, e.g. has(param.upsample_h)")
        base = _eval(args[0].value, scope)
        if not isinstance(base, _Msg):
            raise _ExprError("has() takes a field of a parameter message, not `%s`"
                             % _src(args[0]))
        return base.has(args[0].attr)
    vals = [_eval(a, scope) for a in args]
    if fn == "len":
        if len(vals) != 1 or not isinstance(vals[0], list):
            raise _ExprError("len() takes one list (a repeated field, bottom, or a shape)")
        return len(vals[0])
    nums = [_num(v, _src(a)) for v, a in zip(vals, args)]
    if fn in ("min", "max"):
        if not nums:
            raise _ExprError("%s() needs at least one argument" % fn)
        return (min if fn == "min" else max)(nums)
    if len(nums) != 1:
        raise _ExprError("%s() takes one argument, got %d" % (fn, len(nums)))
    x = nums[0]
    if fn == "ceil":
        return math.ceil(x)
    if fn == "floor":
        return math.floor(x)
    if fn == "int":
        return math.trunc(x)     # a C++ cast: toward zero
    return abs(x)


class ShapeExpressions:
    """A shape (or parameter-shape) rule made of expressions; see :func:`expression_shape_rule`."""

    def __init__(self, exprs: Any, *, type_name: Optional[str] = None,
                 what: str = "shape", per_top: bool = True) -> None:
        self.what = what
        self.type_name = type_name
        self.per_top = per_top
        self.exprs: List[List[Union[str, int]]] = _expr_lists(exprs, what)
        self._trees: List[List[Any]] = []
        for i, dims in enumerate(self.exprs):
            row = []
            for j, e in enumerate(dims):
                if isinstance(e, bool) or not isinstance(e, (int, str)):
                    raise NetdslError("%s expression [%d][%d] of %s is %r; give a string or an "
                                      "int" % (what, i, j, self._owner(), e))
                if isinstance(e, int):
                    row.append(e)
                    continue
                try:
                    row.append(_check_syntax(e))
                except (_ExprError, RecursionError) as exc:  # RecursionError: deep nesting
                    raise NetdslError("%s expression `%s` of %s: %s"
                                      % (what, e, self._owner(), exc), field=what) from None
            self._trees.append(row)

    def _owner(self) -> str:
        return "layer type `%s`" % self.type_name if self.type_name else "a custom layer"

    def evaluate(self, layer: Message, bottoms: Sequence[Sequence[int]], count: int
                 ) -> List[Shape]:
        """The shapes for ``count`` tops (or blobs) of ``layer``."""
        n = len(self._trees)
        if self.per_top and n == 1:
            rows = [0] * count
        elif not self.per_top or n == count:
            rows = list(range(n))
        else:
            raise NetdslError("%d %s expressions for %d tops (give one list for all tops or "
                              "one per top)" % (n, self.what, count), field="top")
        scope = _Scope(layer, bottoms, count)
        cache: Dict[int, Shape] = {}
        out: List[Shape] = []
        for r in rows:
            if r not in cache:
                cache[r] = tuple(self._dim(layer, scope, r, j) for j in range(len(self._trees[r])))
            out.append(cache[r])
        return out

    def _dim(self, layer: Message, scope: _Scope, r: int, j: int) -> int:
        tree = self._trees[r][j]
        if isinstance(tree, int):
            return tree
        text = self.exprs[r][j]
        try:
            v = _norm(_eval(tree, scope))
            if isinstance(v, bool):
                v = int(v)
            if isinstance(v, float) and v.is_integer():
                v = int(v)
            if not isinstance(v, int):
                raise _ExprError("the value %s is not an integer (round with //, ceil(), "
                                 "floor() or int())" % (v if not isinstance(v, Fraction)
                                                        else "%s (= %g)" % (v, float(v))))
        except (_ExprError, ArithmeticError, ValueError, RecursionError) as exc:  # ceil(nan), ...
            raise NetdslError("%s expression `%s` (%s %d, axis %d): %s"
                              % (self.what, text, "top" if self.per_top else "blob", r, j, exc),
                              layer=layer.name or None, field=self.what) from None
        return v

    def __repr__(self) -> str:
        return "ShapeExpressions(%r)" % (self.exprs,)


def _expr_lists(exprs: Any, what: str) -> List[List[Union[str, int]]]:
    if isinstance(exprs, str):
        raise NetdslError("%s expressions are a list of dims per top, e.g. [['N', 'C', '2*H', "
                          "'2*W']], not one string" % what)
    try:
        rows = list(exprs)
    except TypeError:
        raise NetdslError("%s expressions are a list of dims per top, not %r"
                          % (what, exprs)) from None
    if rows and all(isinstance(x, (str, int)) and not isinstance(x, bool) for x in rows):
        rows = [rows]          # one top given as a flat list of dims
    out = []
    for r in rows:
        if isinstance(r, str):
            raise NetdslError("%s expressions: each top is a list of dims, got the string %r"
                              % (what, r))
        out.append(list(r))
    return out


def expression_shape_rule(exprs: Any, *, type_name: Optional[str] = None) -> Callable:
    """A shape rule from expressions: one list of dims per top (or one list for all).

    Each dim is an int or an expression string over the bottoms' dims and the
    layer's parameters, e.g. ``[["N", "C", "H * param.scale", "W * param.scale"]]``.
    Syntax errors raise at once; evaluation errors are NetdslErrors naming the
    layer and the expression.  The rule has the signature
    ``rule(layer, bottom_shapes, ntop)`` of :data:`netdsl.shapes.SHAPE_RULES`.
    """
    se = ShapeExpressions(exprs, type_name=type_name, what="shape")

    def rule(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
        return se.evaluate(layer, bottoms, ntop)
    rule.exprs = se.exprs  # type: ignore[attr-defined]
    rule.expressions = se  # type: ignore[attr-defined]
    return rule


def expression_param_rule(exprs: Any, *, type_name: Optional[str] = None) -> Callable:
    """A learnable-blob shape rule from expressions: one list of dims per blob."""
    se = ShapeExpressions(exprs, type_name=type_name, what="param shape", per_top=False)

    def rule(layer: Message, bottoms: List[Shape]) -> List[Shape]:
        return se.evaluate(layer, bottoms, len(se.exprs))
    rule.exprs = se.exprs  # type: ignore[attr-defined]
    rule.expressions = se  # type: ignore[attr-defined]
    return rule


@contextlib.contextmanager
def temporary_layers() -> Iterator[None]:
    """Undo every registration and plugin load made inside the ``with`` block.

    Types registered in the block are unregistered (restoring what they
    replaced), types re-registered get their previous rules back, and plugins
    loaded in the block are forgotten, so loading them again re-registers.
    """
    before = dict(_REGISTERED)
    saved = {t: dict(_SAVED.get(t, {})) for t in before}
    values = {t: {name: reg.get(t, _MISSING) for name, reg in _registries().items()}
              for t in before}
    loaded, env_done = dict(_LOADED), set(_env_done)
    try:
        yield
    finally:
        for t in list(_REGISTERED):
            if t not in before:
                unregister_layer(t)
        for t, rec in before.items():
            if _REGISTERED.get(t) is rec:
                continue
            regs = _registries()
            for name, old in values[t].items():
                if old is _MISSING:
                    regs[name].pop(t, None)
                else:
                    regs[name][t] = old
            _REGISTERED[t] = rec
            _SAVED[t] = saved[t]
        _LOADED.clear()
        _LOADED.update(loaded)
        _env_done.clear()
        _env_done.update(env_done)
