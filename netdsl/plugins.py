"""Custom and fork layer types: one call registers everything netdsl needs.

A Caffe fork adds layer types (SegNet's ``Upsample``, DeepLab's ``Interp``, ...)
and their parameter messages.  The messages come from the fork's caffe.proto,
compiled at run time (``--proto``, :func:`netdsl.proto.load_schema`); what
netdsl cannot read from a schema is how a type shapes its tops, which
coordinate map it has and what it computes.  :func:`register_layer` declares
those rules as one :class:`~netdsl.layers.registry.LayerType` in the layer
registry (:mod:`netdsl.layers`) that every engine reads::

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
from typing import Any, Callable, Dict, Iterator, Optional

from .errors import NetdslError
from .layers.registry import LayerType, reads_labels
from .plugin_loading import (ENV_VAR, _env_done, _LOADED, _loading, ensure_env_plugins,
                             load_plugin)
from .shape_expressions import ShapeExpressions, expression_param_rule, expression_shape_rule

__all__ = ["register_layer", "unregister_layer", "registered", "load_plugin",
           "ensure_env_plugins", "expression_shape_rule", "expression_param_rule",
           "ShapeExpressions", "temporary_layers", "ENV_VAR"]

# -- registration ------------------------------------------------------------------------

def _builtin(type_name: str) -> bool:
    from .layers.registry import BUILTIN
    return BUILTIN.get(type_name) is not None


_TYPE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def register_layer(type_name: str, *, shape: Any = None, params: Any = None,
                   coord_map: Any = None, forward: Optional[Callable] = None,
                   fillers: Optional[Callable] = None, needs_weights: Any = False,
                   cost: Optional[Callable] = None, onnx: Optional[Callable] = None,
                   torch: Optional[Callable] = None,
                   bottoms: Any = None, tops: Any = None, equal: bool = False,
                   loss: bool = False, in_place: bool = True, override: bool = False,
                   registry: Any = None) -> LayerType:
    """Declare a custom layer type in one call (a :class:`~netdsl.layers.registry.LayerType`).

    ``shape``: a rule ``fn(layer, bottom_shapes, ntop) -> [top shapes]`` or
    expressions, one list of dims per top (:func:`expression_shape_rule`).
    ``params``: the shapes of its learnable blobs, ``fn(layer, bottom_shapes) ->
    [shapes]`` or expressions.  ``coord_map``: ``fn(layer, bottom_shapes_or_None)
    -> (axis, scale, shift)``, a constant ``(axis, scale, shift)``, or
    ``"identity"``.  ``forward``: the numpy forward, ``fn(layer, bottoms, blobs,
    ctx) -> [top arrays]``.  ``fillers``: ``fn(layer, blob_shapes) -> [filler per
    blob]`` (a FillerParameter or a dict; default constant 0 with a warning).
    ``needs_weights``: the forward needs the layer's blobs (bool or ``fn(layer)``).
    ``cost``: ``fn(layer_shapes) -> netdsl.layers.registry.Ops`` for ``shapes --cost``.
    ``onnx``: the export rule, ``fn(layer, ctx) -> [top value names]`` for ``to-onnx``
    (``ctx`` is a :class:`netdsl.export.onnx_graph.Emitter`; see docs/to-onnx.md).
    ``torch``: the PyTorch code rule, ``fn(layer, ctx) -> expression or [one per top]``
    for ``to-torch`` (``ctx`` is a :class:`netdsl.export.torch_code.Coder`; see
    docs/to-torch.md).
    ``bottoms``/``tops``: blob counts, an int, ``(min, max)`` (None: unbounded)
    or ``fn(layer)`` giving either; ``equal``, ``loss`` and ``in_place`` as in
    :class:`~netdsl.layers.registry.LayerType`.

    The type goes into ``registry`` (default: the one in use, see
    :func:`netdsl.layers.use_layers`).  BVLC's own types are refused unless
    ``override`` is true.  Registering a type again replaces its rules.  Errors
    other than :class:`~netdsl.errors.NetdslError` raised by a rule are reported
    as NetdslErrors naming the type and the plugin.
    """
    from .layers import current
    if not isinstance(type_name, str) or not _TYPE_NAME.match(type_name):
        raise NetdslError("a layer type name is an identifier (letters, digits, _), not %r"
                          % (type_name,))
    reg = registry if registry is not None else current()
    if not override and _builtin(type_name) and type_name not in reg.own():
        raise NetdslError("`%s` is a built-in layer type; pass override=True to replace its "
                          "rules" % type_name)
    source = _loading[-1] if _loading else None
    if shape is not None:
        if not callable(shape):
            shape = expression_shape_rule(shape, type_name=type_name)
            if tops is None and len(shape.exprs) > 1:
                tops = len(shape.exprs)
        shape = _guard(shape, "shape rule", type_name, source)
    if params is not None:
        if not callable(params):
            params = expression_param_rule(params, type_name=type_name)
        params = _guard(params, "parameter rule", type_name, source)
    if coord_map is not None:
        coord_map = _guard(_as_coord_rule(coord_map, type_name), "coordinate map", type_name,
                           source)
    if forward is not None:
        if not callable(forward):
            raise NetdslError("forward for `%s` must be a function (layer, bottoms, blobs, ctx) "
                              "-> [arrays], not %s" % (type_name, type(forward).__name__))
        forward = _guard(forward, "numpy forward", type_name, source)
    if fillers is not None:
        fillers = _guard(fillers, "filler rule", type_name, source)
    if cost is not None:
        cost = _guard(cost, "cost rule", type_name, source)
    if onnx is not None:
        onnx = _guard(onnx, "ONNX export rule", type_name, source)
    if torch is not None:
        torch = _guard(torch, "PyTorch export rule", type_name, source)
    # reads labels (left out of deploy nets) as the type it replaces does, or, for a new
    # type, when its name ends in Loss as Caffe's losses' names do (netdsl 0.1's rule)
    labels = reads_labels(type_name)
    return reg.add(LayerType(type_name, family="plugin", bottoms=bottoms, tops=tops, equal=equal,
                             loss=loss, labels=labels, in_place=in_place, shape=shape,
                             params=params, fillers=fillers, coord_map=coord_map, forward=forward,
                             needs_weights=needs_weights, cost=cost, onnx=onnx, torch=torch,
                             source=source))


def unregister_layer(type_name: str) -> None:
    """Undo :func:`register_layer` for ``type_name`` in the registry in use (a
    built-in type it overrode gets its own rules back)."""
    from .layers import current
    reg = current()
    while reg is not None and not reg.builtin_registry:
        if reg.remove(type_name) is not None:
            return
        reg = reg.parent


def registered() -> Dict[str, LayerType]:
    """Type name -> :class:`~netdsl.layers.registry.LayerType` of every custom type
    registered in the registries in use (not BVLC's own)."""
    from .layers import current
    out: Dict[str, LayerType] = {}
    reg = current()
    while reg is not None and not reg.builtin_registry:
        for k, v in reg.own().items():
            out.setdefault(k, v)
        reg = reg.parent
    return out


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
        from .maps import IDENTITY
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

    The block registers into a child of the registry in use (see
    :func:`netdsl.layers.use_layers`), which is dropped at its end, and plugins
    loaded in the block are forgotten, so loading them again re-registers.
    """
    from .layers import use_layers
    loaded, env_done = dict(_LOADED), set(_env_done)
    try:
        with use_layers():
            yield
    finally:
        _LOADED.clear()
        _LOADED.update(loaded)
        _env_done.clear()
        _env_done.update(env_done)
