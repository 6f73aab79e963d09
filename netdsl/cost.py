"""Per-layer compute and memory cost of a net, from its Caffe-exact shapes.

Counting convention (that of the Netscope CNN Analyzer, dgschwend/netscope
``src/analyzer.coffee``, and of the published totals it is usually compared
with, e.g. Sze et al., "Efficient Processing of Deep Neural Networks",
Proc. IEEE 105(12), 2017, Table III):

* ``macs``: multiply-accumulates of Convolution, Deconvolution and
  InnerProduct, one per weight per output position (bias additions are not
  counted).  Convolution: ``count(weights) * count(top) / num_output``;
  Deconvolution: ``count(weights) * count(bottom) / channels``, which is the
  work of Caffe's ``backward_cpu_gemm`` that the layer runs forward (Netscope
  approximates this as ``Cin * Cout * Hout * Wout * (kh / sh) * (kw / sw)``
  and ignores ``group``; netdsl counts it exactly); InnerProduct:
  ``count(weights) * count(top) / num_output``.
* ``elementwise``: one operation per output element of an element-wise layer
  (ReLU and the other neuron layers, Dropout, Scale, Bias, BatchNorm); an
  Eltwise combining k bottoms does k - 1 per element.
* ``pooling``: one comparison (MAX) or addition (AVE) per window element per
  output, ``count(top) * kernel_h * kernel_w``; global pooling reads every
  input element once.
* ``params``: every element of the layer's blobs (what Caffe allocates and a
  caffemodel stores, so BatchNorm's mean, variance and moving-average factor
  count too); bytes are ``params * bytes_per_value`` (4: Caffe's float).
* activation bytes: every top's element count times ``bytes_per_value``; a
  top computed in place allocates nothing new.

A layer type without a rule counts 0 in the three operation columns and still
gets its parameter and activation figures.

Each layer type's rule is the ``cost`` of its declaration in :mod:`netdsl.layers`
(one short function returning :class:`~netdsl.layers.registry.Ops`); this module
walks the net, adds up and finds the peak memory.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from google.protobuf.message import Message

from .layers import lookup
from .layers.registry import Ops
from .shapes import LayerShapes, NetShapes, count, infer_shapes


# == the walker, totals and peak memory ===============================================

@dataclass
class LayerCost:
    """One layer's figures: ``output_bytes`` covers all its tops, ``new_bytes``
    those not computed in place (``in_place``: one flag per top)."""
    name: str
    type: str
    macs: int
    elementwise: int
    pooling: int
    params: int
    param_bytes: int
    output_bytes: int
    new_bytes: int
    in_place: List[bool] = field(default_factory=list)


@dataclass
class NetCost:
    """Figures for a whole net (forward pass).

    ``activation_bytes`` is every blob kept at once (what Caffe's Net holds);
    ``peak_bytes`` is the most that is live at any layer when each blob is
    freed after its last reader and the net's outputs are kept, with
    ``peak_layer`` where that happens.
    """
    layers: List[LayerCost]
    bytes_per_value: int
    activation_bytes: int
    peak_bytes: int
    peak_layer: Optional[str]

    @property
    def macs(self) -> int:
        return sum(lc.macs for lc in self.layers)

    @property
    def elementwise(self) -> int:
        return sum(lc.elementwise for lc in self.layers)

    @property
    def pooling(self) -> int:
        return sum(lc.pooling for lc in self.layers)

    @property
    def params(self) -> int:
        return sum(lc.params for lc in self.layers)

    @property
    def param_bytes(self) -> int:
        return sum(lc.param_bytes for lc in self.layers)

    def layer(self, name: str) -> LayerCost:
        """The (first) layer called ``name``."""
        for lc in self.layers:
            if lc.name == name:
                return lc
        raise KeyError(name)


def layer_ops(ls: LayerShapes) -> Ops:
    """The operation counts of one layer (zero for a type without a rule)."""
    lt = lookup(ls.type)
    return lt.cost(ls) if lt is not None and lt.cost is not None else Ops()


def net_cost(net: Union[Message, NetShapes], inputs: Optional[Mapping[str, Sequence[int]]] = None,
             *, phase=None, declared: Optional[Mapping[str, Any]] = None,
             bytes_per_value: int = 4) -> NetCost:
    """MACs, element-wise and pooling operations, parameters and activation
    memory per layer of ``net`` (a NetParameter, shaped with
    :func:`netdsl.shapes.infer_shapes` and the same keywords, or a
    :class:`~netdsl.shapes.NetShapes` already computed)."""
    shapes = net if isinstance(net, NetShapes) else infer_shapes(
        net, inputs, phase=phase, declared=declared)
    bpv = int(bytes_per_value)
    out: List[LayerCost] = []
    for ls in shapes.layers:
        ops = layer_ops(ls)
        sizes = [count(s) * bpv for s in ls.top_shapes]
        flags = [bool(ls.in_place[i]) if i < len(ls.in_place) else False
                 for i in range(len(sizes))]
        out.append(LayerCost(ls.name, ls.type, int(ops.macs), int(ops.elementwise),
                             int(ops.pooling), ls.param_count, ls.param_count * bpv, sum(sizes),
                             sum(s for s, f in zip(sizes, flags) if not f), flags))
    total, peak, where = _activation_memory(shapes, bpv)
    return NetCost(out, bpv, total, peak, where)


def _blob_key(ls_index: int, top_index: int, name: str) -> Any:
    # the anonymous tops of loss layers all share one placeholder name
    return ("auto", ls_index, top_index) if name == "(automatic)" else name


def _activation_memory(shapes: NetShapes, bpv: int) -> Tuple[int, int, Optional[str]]:
    """(all blobs kept, peak with blob lifetimes, layer at the peak).

    A blob lives from the layer that creates it to the last layer that reads
    it or writes it in place; a blob whose last use is as a top is an output
    of the net (Caffe's Net leaves it available) and lives to the end.  In
    place tops share their bottom's memory; Caffe's automatic Split layers
    share it too, so they add nothing.
    """
    layers = shapes.layers
    n = len(layers)
    size: Dict[Any, int] = {}
    start: Dict[Any, int] = {}
    last: Dict[Any, int] = {}
    read_last: Dict[Any, bool] = {}
    for i, ls in enumerate(layers):
        for b in ls.bottoms:
            last[b] = i
            read_last[b] = True
        for j, (t, s) in enumerate(zip(ls.tops, ls.top_shapes)):
            key = _blob_key(i, j, t)
            nbytes = count(s) * bpv
            if key not in start:
                start[key] = i
                size[key] = nbytes
            elif nbytes > size[key]:
                size[key] = nbytes
            last[key] = i
            read_last[key] = False
    births: List[int] = [0] * (n + 1)
    deaths: List[int] = [0] * (n + 1)
    for key, s in size.items():
        births[start[key]] += s
        end = last[key] if read_last.get(key) else n - 1
        deaths[end + 1] += s
    live = peak = 0
    where: Optional[str] = None
    for i in range(n):
        live += births[i] - deaths[i]
        if live > peak:
            peak, where = live, layers[i].name
    return sum(size.values()), peak, where


# -- reports ---------------------------------------------------------------------------

def _si(value: float, unit: str) -> str:
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return "%.2f %s%s" % (value / factor, prefix, unit)
    return "%d %s" % (value, unit) if unit else "%d" % value


def format_cost_table(cost: NetCost) -> str:
    """A text table, one row per layer, then the totals (SI prefixes: G = 10^9)."""
    head = ("layer", "type", "MACs", "elementwise", "pooling", "params", "param bytes",
            "output bytes")
    rows = []
    for lc in cost.layers:
        outb = "{:,}".format(lc.output_bytes)
        if lc.in_place and all(lc.in_place):
            outb += " (in place)"
        rows.append((lc.name, lc.type) + tuple(
            "{:,}".format(v) if v else "-"
            for v in (lc.macs, lc.elementwise, lc.pooling, lc.params, lc.param_bytes)) + (outb,))
    rows.append(("total", "") + tuple("{:,}".format(v) for v in (
        cost.macs, cost.elementwise, cost.pooling, cost.params, cost.param_bytes,
        cost.activation_bytes)))
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    fmt = "  ".join(("%%-%ds" if i < 2 else "%%%ds") % w for i, w in enumerate(widths))
    lines = [fmt % head] + [fmt % r for r in rows]
    where = " at layer '%s'" % cost.peak_layer if cost.peak_layer is not None else ""
    lines.append("%s MACs, %s element-wise and %s pooling operations; %s parameters (%s); "
                 "activations %s (all blobs kept), peak %s%s (each blob freed after its last "
                 "reader); %d bytes per value"
                 % (_si(cost.macs, ""), _si(cost.elementwise, ""), _si(cost.pooling, ""),
                    _si(cost.params, ""), _si(cost.param_bytes, "B"),
                    _si(cost.activation_bytes, "B"), _si(cost.peak_bytes, "B"), where,
                    cost.bytes_per_value))
    return "\n".join(lines) + "\n"


def cost_to_json(cost: NetCost) -> dict:
    """``{"layers": [...], "totals": {...}, "bytes_per_value": 4}`` (JSON-serialisable)."""
    layers = []
    for lc in cost.layers:
        layers.append(asdict(lc))
    totals = {"macs": cost.macs, "elementwise": cost.elementwise, "pooling": cost.pooling,
              "params": cost.params, "param_bytes": cost.param_bytes,
              "activation_bytes": cost.activation_bytes, "peak_bytes": cost.peak_bytes,
              "peak_layer": cost.peak_layer}
    return {"bytes_per_value": cost.bytes_per_value, "layers": layers, "totals": totals}
