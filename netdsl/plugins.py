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

import contextlib
import functools
import re
import sys
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, Optional

from .errors import NetdslError
from .plugin_loading import (ENV_VAR, _env_done, _LOADED, _loading, ensure_env_plugins,
                             load_plugin)
from .shape_expressions import ShapeExpressions, expression_param_rule, expression_shape_rule

__all__ = ["register_layer", "unregister_layer", "registered", "LayerPlugin", "load_plugin",
           "ensure_env_plugins", "expression_shape_rule", "expression_param_rule",
           "ShapeExpressions", "temporary_layers", "ENV_VAR"]

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
