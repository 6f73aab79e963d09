"""The emitter an ONNX export rule writes through, and the graph it builds.

A type's ``onnx`` rule (declared with its other rules in :mod:`netdsl.layers`)
is ``fn(layer, ctx[, geo]) -> [value name per top]``; ``ctx`` is an
:class:`Emitter` for that layer: its bottoms' value names and shapes, its tops'
shapes, its weight blobs, the opset, and ways to add nodes and initialisers.
It imports no ``onnx``: nodes are kept as plain tuples and become protobuf
messages in :mod:`.onnx_model`.

Names: an initialiser made from a layer's weight blob ``i`` is ``<layer>/<i>``
(``conv1/0`` is conv1's weights, ``conv1/1`` its bias); other constants and
helper values are ``<layer>/<what>`` with a number when needed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..errors import NetdslError
from ..layers.runtime import np
from .weights import LayerBlobsMixin

__all__ = ["Graph", "Emitter", "Node"]


@dataclass
class Node:
    op: str
    inputs: List[str]
    outputs: List[str]
    attrs: Dict[str, Any]
    name: str
    domain: str = ""


@dataclass
class Graph:
    """Nodes, initialisers (name -> array, or a callable giving it), graph inputs and
    outputs; ``aliases`` maps a top's value name to the value a rule gave for it."""
    opset: int
    dynamic_batch: bool = False
    nodes: List[Node] = field(default_factory=list)
    initializers: Dict[str, Any] = field(default_factory=dict)
    inputs: Dict[str, Tuple[int, ...]] = field(default_factory=dict)
    outputs: List[str] = field(default_factory=list)
    aliases: Dict[str, str] = field(default_factory=dict)
    used: Dict[str, None] = field(default_factory=dict)
    blob_of: Dict[str, str] = field(default_factory=dict)

    def resolve(self, name: str) -> str:
        while name in self.aliases:
            name = self.aliases[name]
        return name

    def fresh(self, base: str) -> str:
        name, k = base, 1
        while name in self.used:
            k += 1
            name = "%s_%d" % (base, k)
        self.used[name] = None
        return name


class Emitter(LayerBlobsMixin):
    """What an export rule sees of one layer (``layer``, ``inputs``: bottom value
    names, ``in_shapes``, ``out_shapes``, ``opset``, ``blobs``) and how it adds to
    the graph (:meth:`node`, :meth:`weight`, :meth:`const`, :meth:`ints`, and
    helpers whose form depends on the opset)."""

    def __init__(self, graph: Graph, step: Any, blobs: Callable[[], List[Any]]) -> None:
        self.graph = graph
        self.step = step
        self.layer = step.layer
        self.inputs = [graph.resolve(v) for v in step.bottom_values]
        self.in_shapes = list(step.bottom_shapes)
        self.out_shapes = list(step.top_shapes)
        self.opset = graph.opset
        self._blobs = blobs
        self._cache: Optional[List[Any]] = None

    # -- the layer's data: blobs and blob() (LayerBlobsMixin)

    def refuse(self, why: str, hint: Optional[str] = None) -> NetdslError:
        stop = ",".join(dict.fromkeys(self.layer.bottom))
        return NetdslError("%s layer cannot be exported to ONNX: %s" % (self.layer.type, why),
                           layer=self.layer.name,
                           hint=hint or ("export the blobs before it with --outputs %s" % stop
                                         if stop else None))

    def top(self, index: int = 0) -> str:
        """The value name reserved for top ``index`` (give it as a node's ``out``)."""
        return self.step.top_values[index]

    # -- adding to the graph
    def node(self, op: str, inputs: Sequence[str], out: Any = None, n_out: int = 1,
             domain: str = "", **attrs: Any) -> Any:
        """Add a node; returns its output name (a list when ``n_out`` > 1).  ``out``:
        the output name(s), e.g. ``ctx.top(0)``; fresh helper names otherwise."""
        g = self.graph
        if out is None:
            outs = [g.fresh("%s/%s" % (self.layer.name, op.lower())) for _ in range(n_out)]
        else:
            outs = [out] if isinstance(out, str) else list(out)
            for o in outs:
                g.used[o] = None
        g.nodes.append(Node(op, list(inputs), outs, {k: v for k, v in attrs.items()
                                                     if v is not None},
                            g.fresh("%s/%s_node" % (self.layer.name, op.lower())), domain))
        return outs[0] if len(outs) == 1 and n_out == 1 else outs

    def weight(self, index: int, shape: Optional[Sequence[int]] = None,
               transform: Optional[Callable[[Any], Any]] = None) -> str:
        """An initialiser ``<layer>/<index>`` of weight blob ``index`` (reshaped,
        then ``transform``-ed when given)."""
        arr = self.blob(index, shape)
        if transform is not None:
            arr = transform(arr)
        name = self.graph.fresh("%s/%d" % (self.layer.name, index))
        self.graph.initializers[name] = np.ascontiguousarray(arr, dtype=arr.dtype)
        return name

    def const(self, value: Any, what: str = "const", dtype: Any = None) -> str:
        """An initialiser ``<layer>/<what>`` holding ``value`` (float32 unless ``dtype``)."""
        arr = np.asarray(value, dtype=dtype or np.float32)
        name = self.graph.fresh("%s/%s" % (self.layer.name, what))
        self.graph.initializers[name] = arr
        return name

    def ints(self, values: Sequence[int], what: str = "ints") -> str:
        """An int64 1-D initialiser (shapes, axes, starts, ends)."""
        return self.const(np.asarray(list(values), dtype=np.int64).reshape(-1), what, np.int64)

    # -- helpers whose ONNX form differs by opset
    def reshape(self, x: str, shape: Sequence[int], out: Any = None,
                in_shape: Optional[Sequence[int]] = None) -> str:
        """Reshape to ``shape``; with a dynamic batch the batch axis is kept (0)
        when the first axis is the input's."""
        dims = [int(d) for d in shape]
        src = in_shape if in_shape is not None else self.in_shapes[0]
        if self.graph.dynamic_batch and dims and src and dims[0] == src[0]:
            dims[0] = 0
        return self.node("Reshape", [x, self.ints(dims, "shape")], out=out)

    def shape_of(self, x: str, x_shape: Sequence[int], keep: int, tail: Sequence[int]) -> str:
        """A shape: the first ``keep`` axes of ``x`` then ``tail``; read from ``x`` at
        run time with a dynamic batch, a constant otherwise."""
        if not self.graph.dynamic_batch:
            return self.ints(list(x_shape[:keep]) + list(tail), "shape")
        lead = self.slice(self.node("Shape", [x]), [0], [keep], [0])
        return self.node("Concat", [lead, self.ints(tail, "tail")], axis=0)

    def slice(self, x: str, starts: Sequence[int], ends: Sequence[int], axes: Sequence[int],
              out: Any = None) -> str:
        return self.node("Slice", [x, self.ints(starts, "starts"), self.ints(ends, "ends"),
                                   self.ints(axes, "axes")], out=out)

    def reduce(self, op: str, x: str, axes: Sequence[int], keepdims: int = 1,
               out: Any = None) -> str:
        """ReduceSum (axes an input from opset 13) or ReduceMean/Max/L2... (from 18)."""
        if op == "ReduceSum" or self.opset >= 18:
            return self.node(op, [x, self.ints(axes, "axes")], out=out, keepdims=keepdims)
        return self.node(op, [x], out=out, axes=list(axes), keepdims=keepdims)

    def unsqueeze(self, x: str, axes: Sequence[int], out: Any = None) -> str:
        return self.node("Unsqueeze", [x, self.ints(axes, "axes")], out=out)

    def squeeze(self, x: str, axes: Sequence[int], out: Any = None) -> str:
        return self.node("Squeeze", [x, self.ints(axes, "axes")], out=out)

    def scalar(self, value: float, what: str = "scalar") -> str:
        return self.const(np.float32(value), what)
