"""The layer-type registry: one :class:`LayerType` per Caffe layer type.

A LayerType is everything netdsl knows about a type, declared once: Caffe's
blob-count rules (``ExactNumBottomBlobs`` and friends in ``layer.hpp``), the
parameter messages it reads, its geometry parser, shape rule, learnable-blob
shapes, fillers, coordinate map and numpy forward.  The engines (shape
inference, coordinate maps, forward, weight initialisation, reports) look a
type up here and keep no per-type knowledge of their own.

Registries nest: the built-in one holds BVLC's types (filled once, when the
family modules are imported); the plugin registry above it holds types that
plugin modules register; :func:`use_layers` makes a child registry the one in
use for a block of code (a spec's ``custom_layers``), in the current thread or
task only (a :class:`contextvars.ContextVar`).

Rule signatures (``layer`` is a LayerParameter, shapes are int tuples)::

    geometry(layer, shape_or_None) -> value object         (parsed once per layer)
    shape(layer, bottom_shapes, ntop[, geo]) -> [top shapes]
    params(layer, bottom_shapes[, geo]) -> [learnable blob shapes]
    coord_map(layer, bottom_shapes_or_None[, geo]) -> (axis, scale, shift)
    forward(layer, bottoms, blobs, ctx[, geo]) -> [top arrays]
    fillers(layer, blob_shapes) -> [FillerParameter or dict per blob]
    cost(layer_shapes) -> Ops                                (netdsl.cost's counts)
    onnx(layer, ctx[, geo]) -> [top value names]             (netdsl.export's ONNX emitter)
    torch(layer, ctx[, geo]) -> expression or [one per top]   (netdsl.export's PyTorch code)

A type that declares ``geometry`` receives the parsed value as the last
argument of each of its rules; the engines parse it once per layer.
"""
from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from ..errors import NetdslError

__all__ = ["LayerType", "Registry", "BUILTIN", "PACKS", "PLUGINS", "declare", "lookup", "current",
           "use_layers"]


@dataclass
class Ops:
    """Operation counts of one layer's forward pass (netdsl.cost's convention):
    multiply-accumulates, element-wise operations and pooling-window reads."""
    macs: int = 0
    elementwise: int = 0
    pooling: int = 0


@dataclass(frozen=True)
class LayerType:
    """One Caffe layer type, as every engine sees it.

    Blob counts (``layer.hpp``): ``bottoms``/``tops`` are an exact count, a
    ``(min, max)`` pair (None: no bound) or ``fn(layer)`` giving either (Caffe's
    ``ExactNum``/``Min``/``MaxBottomBlobs``); ``equal`` is
    ``EqualNumBottomTopBlobs``; ``loss`` marks a ``LossLayer`` (``AutoTopBlobs``,
    loss_weight 1 by default); ``in_place`` is False where Caffe's Reshape CHECKs
    that top != bottom.

    Rules (signatures in the module docstring): ``geometry``, ``shape``,
    ``params``, ``fillers``, ``coord_map``, ``forward``, ``cost``, ``onnx`` (the
    export rule: emits ONNX nodes through a :class:`netdsl.export.onnx_graph.Emitter`),
    ``torch`` (the PyTorch code rule: writes the layer's statement through a
    :class:`netdsl.export.torch_code.Coder`).

    Facts the engines ask about:

    * ``reads``: parameter messages the type reads besides ``<type>_param``;
    * ``needs_weights`` (bool or ``fn(layer)``): the forward needs the layer's blobs;
    * ``fixed_blobs(layer)``: the fillers give the blobs their final values (a fixed
      upsampling kernel), so Caffe's setup alone makes them;
    * ``surgery(layer, geo)``: the FCN surgery (``"interp"``, ``"nearest"``) a layer
      without fillers expects, or None;
    * ``labels``: the layer reads labels (losses, Accuracy): a deploy net has none;
    * ``map_bottoms``: how many bottoms the coordinate map relates to the top (Crop:
      its first; None: all of them, which must then agree);
    * ``opaque``: shapes and blobs come from code netdsl does not run (Python layers),
      so only declared shapes are known;
    * ``empty_hint(layer, bottoms, axis, geo)`` explains an output size below 1, and
      ``size_field`` names the field to blame for it;
    * ``source``: the plugin that registered the type; ``builtin``: one of BVLC's.
    """
    name: str
    family: str = ""
    bottoms: Any = None
    tops: Any = None
    equal: bool = False
    loss: bool = False
    in_place: bool = True
    reads: Tuple[str, ...] = ()
    geometry: Optional[Callable[..., Any]] = None
    shape: Optional[Callable[..., Any]] = None
    params: Optional[Callable[..., Any]] = None
    fillers: Optional[Callable[..., Any]] = None
    coord_map: Optional[Callable[..., Any]] = None
    forward: Optional[Callable[..., Any]] = None
    cost: Optional[Callable[..., Ops]] = None
    onnx: Optional[Callable[..., Any]] = None
    torch: Optional[Callable[..., Any]] = None
    needs_weights: Any = False
    fixed_blobs: Optional[Callable[..., bool]] = None
    surgery: Optional[Callable[..., Optional[str]]] = None
    labels: bool = False
    map_bottoms: Optional[int] = None
    opaque: bool = False
    empty_hint: Optional[Callable[..., str]] = None
    size_field: Optional[str] = None
    source: Optional[str] = None
    builtin: bool = False
    extra: Dict[str, Any] = field(default_factory=dict, compare=False)

    # -- engine entry points: each rule of a type with a geometry parser takes the
    # parsed value last; these parse it when the caller has not

    def parse(self, layer: Any, shape: Any) -> Any:
        """The type's geometry value for ``layer`` on a bottom of ``shape`` (None
        when the type has no geometry parser)."""
        return None if self.geometry is None else self.geometry(layer, shape)

    def top_shapes(self, layer: Any, bottoms: List[Tuple[int, ...]], ntop: int,
                   geo: Any = None) -> List[Tuple[int, ...]]:
        if self.geometry is None:
            return self.shape(layer, bottoms, ntop)
        if geo is None:
            geo = self.geometry(layer, bottoms[0] if bottoms else None)
        return self.shape(layer, bottoms, ntop, geo)

    def param_shapes(self, layer: Any, bottoms: List[Tuple[int, ...]],
                     geo: Any = None) -> List[Tuple[int, ...]]:
        if self.params is None:
            return []
        if self.geometry is None:
            return self.params(layer, bottoms)
        if geo is None:
            geo = self.geometry(layer, bottoms[0] if bottoms else None)
        return self.params(layer, bottoms, geo)

    def map(self, layer: Any, bottoms: Any, geo: Any = None) -> Any:
        if self.geometry is None:
            return self.coord_map(layer, bottoms)
        if geo is None:
            geo = self.geometry(layer, bottoms[0] if bottoms else None)
        return self.coord_map(layer, bottoms, geo)

    def run(self, layer: Any, bottoms: List[Any], blobs: List[Any], ctx: Any,
            geo: Any = None) -> List[Any]:
        if self.geometry is None:
            return self.forward(layer, bottoms, blobs, ctx)
        if geo is None:
            geo = self.geometry(layer, tuple(bottoms[0].shape) if bottoms else None)
        return self.forward(layer, bottoms, blobs, ctx, geo)

    def export_onnx(self, layer: Any, ctx: Any, geo: Any = None) -> List[str]:
        """The value names of the tops, after the ``onnx`` rule emitted its nodes."""
        if self.geometry is None:
            return self.onnx(layer, ctx)
        return self.onnx(layer, ctx, geo)

    def export_torch(self, layer: Any, ctx: Any, geo: Any = None) -> Any:
        """The PyTorch expression(s) of the tops, from the ``torch`` rule."""
        if self.geometry is None:
            return self.torch(layer, ctx)
        return self.torch(layer, ctx, geo)

    def wants_weights(self, layer: Any) -> bool:
        nw = self.needs_weights
        return bool(nw(layer)) if callable(nw) else bool(nw)


class Registry:
    """Layer types by name, falling back to a parent registry."""

    def __init__(self, parent: Optional["Registry"] = None, name: str = "") -> None:
        self.parent = parent
        self.name = name
        self.builtin_registry = False
        self._types: Dict[str, LayerType] = {}

    def get(self, type_name: str) -> Optional[LayerType]:
        reg: Optional[Registry] = self
        while reg is not None:
            lt = reg._types.get(type_name)
            if lt is not None:
                return lt
            reg = reg.parent
        return None

    def __contains__(self, type_name: str) -> bool:
        return self.get(type_name) is not None

    def own(self) -> Dict[str, LayerType]:
        """The types registered in this registry itself (not its parents)."""
        return dict(self._types)

    def names(self) -> List[str]:
        out: Dict[str, None] = {}
        reg: Optional[Registry] = self
        while reg is not None:
            out.update(dict.fromkeys(reg._types))
            reg = reg.parent
        return sorted(out)

    def add(self, lt: LayerType) -> LayerType:
        self._types[lt.name] = lt
        return lt

    def remove(self, type_name: str) -> Optional[LayerType]:
        return self._types.pop(type_name, None)

    def child(self, name: str = "") -> "Registry":
        return Registry(self, name)

    def __repr__(self) -> str:
        return "<Registry %s: %d own types>" % (self.name or "?", len(self._types))


#: BVLC's layer types, filled once by the family modules of netdsl.layers
BUILTIN = Registry(name="builtin")
BUILTIN.builtin_registry = True
#: the fork layer packs of netdsl.packs (enabled by a fork schema or ``--plugin``)
PACKS = BUILTIN.child("packs")
#: types registered by plugin modules (``--plugin``, NETDSL_PLUGINS, load_plugin)
PLUGINS = PACKS.child("plugins")

_CURRENT: contextvars.ContextVar[Registry] = contextvars.ContextVar("netdsl_layers",
                                                                    default=PLUGINS)


def current() -> Registry:
    """The registry in use in this thread or task."""
    return _CURRENT.get()


def lookup(type_name: str) -> Optional[LayerType]:
    """The LayerType called ``type_name`` in the registry in use, or None."""
    return _CURRENT.get().get(type_name)


def activate(registry: Registry) -> None:
    """Make ``registry`` the one in use in the current context (for code that runs
    in a context of its own, e.g. one ``contextvars.copy_context().run(...)``)."""
    _CURRENT.set(registry)


@contextlib.contextmanager
def use_layers(registry: Optional[Registry] = None) -> Iterator[Registry]:
    """Make ``registry`` (a new child of the one in use when None) the registry in
    use inside the block, for this thread or task only."""
    reg = registry if registry is not None else _CURRENT.get().child("temporary")
    token = _CURRENT.set(reg)
    try:
        yield reg
    finally:
        _CURRENT.reset(token)


def reads_labels(type_name: str) -> bool:
    """Whether layers of ``type_name`` read labels (losses, Accuracy), so that a
    deploy net has none; a type the registry does not know counts when its name
    ends in ``Loss``, as Caffe's loss layers' names do."""
    lt = lookup(type_name)
    return lt.labels if lt is not None else type_name.endswith("Loss")


def declare(name: str, *more: str, registry: Registry = BUILTIN, **fields: Any) -> LayerType:
    """Declare a layer type (and aliases ``more`` sharing its rules) in ``registry``."""
    if "family" not in fields:
        raise NetdslError("declare(%r): give family=" % name)
    lt = registry.add(LayerType(name, builtin=registry is BUILTIN, **fields))
    for other in more:
        registry.add(replace(lt, name=other))
    return lt
