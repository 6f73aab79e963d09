"""ONNX op -> the one op table (:mod:`netdsl.convert.table`).

Each adapter reads an ONNX node's attributes and inputs and calls the ATen
converters with the arguments they take (``Conv`` -> ``aten.conv2d`` with
stride, padding, dilation, groups); the Caffe-side recipes live only in
:mod:`netdsl.convert.families` and :mod:`netdsl.convert.recipes`.  ``ADAPTERS`` maps an
ONNX op type to ``fn(node) -> result`` and ``ATEN`` records which table
entries each ONNX op reaches (for the documentation's op table).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from netdsl.errors import NetdslError
from netdsl.convert import table
from netdsl.convert.graph import Blob, Context, Op
from netdsl.convert.families.common import slice_axis

Adapter = Callable[["ONode"], Any]

#: ONNX op type -> adapter
ADAPTERS: Dict[str, Adapter] = {}
#: ONNX op type -> the ATen table keys it is converted with
ATEN: Dict[str, Tuple[str, ...]] = {}
#: ONNX op types that pass their first input through
PASS_THROUGH = ("Identity", "Dropout")
#: ONNX op types that only move values.  When one has no exact layer (a
#: Transpose that moves the batch axis, a GatherND), the converter follows where
#: each value comes from instead (the op run on the source positions) and
#: emits copies once a reader needs a blob (netdsl.onnx.convert)
MOVEMENT = ("Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Gather", "GatherND",
            "Slice", "Split", "Expand", "DepthToSpace", "SpaceToDepth")


def adapter(*types: str, aten: Sequence[str] = ()) -> Callable[[Adapter], Adapter]:
    def deco(fn: Adapter) -> Adapter:
        for t in types:
            ADAPTERS[t] = fn
            ATEN[t] = tuple(aten)
        return fn
    return deco


class ONode:
    """One ONNX node being converted: its inputs resolved (Blob, numpy array or
    None for an omitted optional input), attributes, output shapes, the layer
    name it gets and the model's opset."""

    def __init__(self, cx: Context, node: Any, inputs: List[Any], attrs: Dict[str, Any],
                 out_shapes: List[Optional[Tuple[int, ...]]], name: str, opset: int,
                 users: int = 1) -> None:
        self.cx, self.node, self.inputs, self.attrs = cx, node, inputs, attrs
        self.out_shapes, self.name, self.opset, self.users = out_shapes, name, opset, users
        self.op_type = node.op_type
        self._calls = 0

    @property
    def out_shape(self) -> Tuple[int, ...]:
        return self.out_shapes[0]

    def inp(self, i: int) -> Any:
        return self.inputs[i] if i < len(self.inputs) else None

    def attr(self, name: str, default: Any = None) -> Any:
        return self.attrs.get(name, default)

    def blob(self, i: int = 0) -> Blob:
        x = self.inp(i)
        if not isinstance(x, Blob):
            raise self.error("input %d must be computed from the graph inputs (a constant "
                             "here has no Caffe blob)" % i)
        return x

    def const(self, i: int, what: str) -> Optional[np.ndarray]:
        v = self.inp(i)
        if v is not None and not isinstance(v, np.ndarray):
            raise self.error("the %s (input %d) must be a constant (an initialiser), not "
                             "computed from the graph inputs" % (what, i))
        return v

    def ints(self, i: int, what: str) -> Optional[List[int]]:
        v = self.const(i, what)
        return None if v is None else [int(x) for x in np.asarray(v).reshape(-1)]

    def error(self, message: str, hint: Optional[str] = None) -> NetdslError:
        return NetdslError(message, layer=self.name, hint=hint)

    def located(self, err: NetdslError) -> NetdslError:
        """``err`` as "<op> node '<name>' (opset N): what is wrong"."""
        msg = err.message
        if msg.startswith(self.op_type + ": "):  # a converter's op.error prefix
            msg = msg[len(self.op_type) + 2:]
        return NetdslError("%s node '%s' (opset %d): %s" % (self.op_type, self.node.name,
                                                             self.opset, msg),
                           layer=err.layer or self.name, hint=err.hint)

    def call(self, key: str, out_shape: Any = None, **args: Any) -> Any:
        """Run the table's converter for ``key`` on ``args``; the first call names
        its layers after the node, later ones ``<name>/<k>``."""
        fn = table.lookup(key)
        if fn is None:  # pragma: no cover - the table has every key used here
            raise self.error("internal: no converter %s" % key)
        self._calls += 1
        name = self.name if self._calls == 1 else "%s/%d" % (self.name, self._calls)
        op = Op(key, args, self.out_shape if out_shape is None else out_shape, name,
                target=self.op_type, users=self.users)
        return fn(self.cx, op)


def _float(v: Any) -> float:
    return float(np.asarray(v, np.float64).reshape(-1)[0])


def _f32(v: Optional[np.ndarray]) -> Optional[np.ndarray]:
    return None if v is None else np.ascontiguousarray(v, np.float32)


def spatial_pads(n: ONode, in_hw: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
                 dilations: Sequence[int]) -> Tuple[int, int, int, int]:
    """(top, left, bottom, right) from ``pads`` / ``auto_pad`` (SAME_*: output
    ``ceil(in / stride)``, the odd pixel at the end for SAME_UPPER, at the
    start for SAME_LOWER)."""
    auto = n.attr("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        out = []
        for size, k, s, d in zip(in_hw, kernel, strides, dilations):
            o = -(-size // s)
            total = max((o - 1) * s + (k - 1) * d + 1 - size, 0)
            lo = total // 2 if auto == "SAME_UPPER" else total - total // 2
            out.append((lo, total - lo))
        return (out[0][0], out[1][0], out[0][1], out[1][1])
    if auto == "VALID":
        return (0, 0, 0, 0)
    pads = [int(p) for p in n.attr("pads", [0, 0, 0, 0])]
    if len(pads) != 4:
        raise n.error("only 2-D windows convert (pads %s)" % pads)
    return (pads[0], pads[1], pads[2], pads[3])


def _need_2d(n: ONode, x: Blob, kernel: Sequence[int]) -> None:
    if x.ndim != 4 or len(kernel) != 2:
        raise n.error("only 2-D %s (4-D N, C, H, W input) converts; input shape %s"
                      % (n.op_type, x.shape))


# -- convolution, dense --------------------------------------------------------------

@adapter("Conv", aten=["aten.conv2d"])
def conv(n: ONode) -> Any:
    x, w = n.blob(0), _f32(n.const(1, "weight"))
    b = _f32(n.const(2, "bias"))
    kernel = list(w.shape[2:])
    _need_2d(n, x, kernel)
    strides = n.attr("strides", [1, 1])
    dil = n.attr("dilations", [1, 1])
    pads = spatial_pads(n, x.shape[2:], kernel, strides, dil)
    return n.call("aten.conv2d", input=x, weight=w, bias=b, stride=list(strides),
                  padding=list(pads), dilation=list(dil), groups=int(n.attr("group", 1)))


@adapter("ConvTranspose", aten=["aten.conv_transpose2d"])
def conv_transpose(n: ONode) -> Any:
    """ONNX's begin/end pads (or ``output_shape``, auto_pad) become PyTorch's
    ``padding`` = begin and ``output_padding`` = begin - end + output_padding;
    a negative one is a Slice of the last rows."""
    x, w = n.blob(0), _f32(n.const(1, "weight"))
    b = _f32(n.const(2, "bias"))
    kernel = list(w.shape[2:])
    _need_2d(n, x, kernel)
    strides = [int(s) for s in n.attr("strides", [1, 1])]
    dil = [int(d) for d in n.attr("dilations", [1, 1])]
    opad = [int(p) for p in n.attr("output_padding", [0, 0])]
    group = int(n.attr("group", 1))
    full = [s * (i - 1) + (k - 1) * d + 1
            for i, k, s, d in zip(x.shape[2:], kernel, strides, dil)]
    out_shape = n.attr("output_shape")
    auto = n.attr("auto_pad", "NOTSET")
    if out_shape is not None or auto in ("SAME_UPPER", "SAME_LOWER"):
        want = list(out_shape)[-2:] if out_shape is not None else [
            i * s for i, s in zip(x.shape[2:], strides)]
        begin, end = [], []
        for f, o, p in zip(full, want, opad):
            total = f + p - int(o)
            lo = total // 2 if auto == "SAME_UPPER" else total - total // 2
            begin.append(lo)
            end.append(total - lo)
    elif auto == "VALID":
        begin, end = [0, 0], [0, 0]
    else:
        pads = [int(p) for p in n.attr("pads", [0, 0, 0, 0])]
        begin, end = pads[:2], pads[2:]
    if min(begin + end) < 0:
        raise n.error("negative padding (pads %s %s) has no exact layer" % (begin, end))
    tpad = [b0 - e0 + p for b0, e0, p in zip(begin, end, opad)]
    inter = tuple(n.out_shape[:2]) + tuple(
        f - 2 * b0 + max(t, 0) for f, b0, t in zip(full, begin, tpad))
    y = n.call("aten.conv_transpose2d", out_shape=inter, input=x, weight=w, bias=b,
               stride=strides, padding=begin, output_padding=[max(t, 0) for t in tpad], groups=group, dilation=dil)
    final = tuple(n.out_shape)
    if any(t < 0 for t in tpad):
        for ax in (2, 3):
            if y.shape[ax] != final[ax]:
                y = slice_axis(n.cx, y, ax, [(0, final[ax])])[0]
    return Blob(y.top, final)


@adapter("Gemm", aten=["aten.linear"])
def gemm(n: ONode) -> Any:
    """``alpha A B' + beta C`` with a constant ``B``: InnerProduct with
    ``alpha B`` as the weight and ``beta C`` as the bias (C one row)."""
    if int(n.attr("transA", 0)):
        raise n.error("Gemm with transA has no layer (the input would be transposed)")
    x = n.blob(0)
    w = n.const(1, "weight B")
    w = np.asarray(w, np.float64)
    w = w if int(n.attr("transB", 0)) else w.T
    alpha, beta = float(n.attr("alpha", 1.0)), float(n.attr("beta", 1.0))
    if alpha != 1.0:
        w = w * alpha
    c = n.const(2, "bias C")
    bias = None
    if c is not None:
        c = np.asarray(c, np.float64) * beta
        if c.ndim == 2 and c.shape[0] != 1:
            raise n.error("a Gemm bias C with %d rows is not a bias" % c.shape[0])
        bias = np.broadcast_to(c.reshape(-1), (w.shape[0],)).astype(np.float32)
    return n.call("aten.linear", input=x, weight=w.astype(np.float32), bias=bias)


@adapter("MatMul", aten=["aten.matmul"])
def matmul(n: ONode) -> Any:
    x = n.blob(0)
    if isinstance(n.inp(1), Blob):
        err = n.error("a product of two computed tensors (as attention computes): no stock "
                      "Caffe form exists", hint="stock BVLC Caffe has no layer that "
                      "multiplies two computed matrices, so attention-style blocks stay "
                      "refused; convert up to the value before it with --outputs NAME")
        err.no_stock_form = True  # type: ignore[attr-defined]
        raise err
    w = n.const(1, "second operand")
    if w.ndim != 2:
        raise n.error("only a product with a constant 2-D matrix (a weight) maps to "
                      "InnerProduct")
    return n.call("aten.matmul", input=x, other=_f32(w))


# -- pooling ---------------------------------------------------------------------------

def _pool_args(n: ONode, unequal_ok: bool = False
               ) -> Tuple[Blob, List[int], List[int], Tuple[int, int, int, int]]:
    x = n.blob(0)
    k = [int(v) for v in n.attr("kernel_shape")]
    _need_2d(n, x, k)
    s = [int(v) for v in n.attr("strides", [1, 1])]
    d = [int(v) for v in n.attr("dilations", [1, 1])]
    pads = spatial_pads(n, x.shape[2:], k, s, d)
    if not unequal_ok and pads[:2] != pads[2:]:
        raise n.error("average pooling with unequal begin/end pads %s has no exact Caffe "
                      "layer" % (list(pads),))
    if d != [1, 1]:
        raise n.error("Caffe's Pooling has no dilation")
    return x, k, s, pads


@adapter("MaxPool", aten=["aten.max_pool2d", "aten.pad"])
def max_pool(n: ONode) -> Any:
    """Unequal begin/end pads: the difference is edge rows copied on that side
    (every window reaching into the padding holds the edge pixel, so copies of
    it never change a maximum), then the equal part is the pooling's pad."""
    if len(n.node.output) > 1 and n.node.output[1]:
        raise n.error("MaxPool's Indices output has no Caffe blob")
    x, k, s, (t, lft, btm, r) = _pool_args(n, unequal_ok=True)
    if (t, lft) != (btm, r):
        extra = [max(lft - r, 0), max(r - lft, 0), max(t - btm, 0), max(btm - t, 0)]
        shape = (x.shape[0], x.shape[1], x.shape[2] + extra[2] + extra[3],
                 x.shape[3] + extra[0] + extra[1])
        x = n.call("aten.pad", out_shape=shape, input=x, pad=extra, mode="replicate",
                   value=0.0)
        t, lft = min(t, btm), min(lft, r)
    return n.call("aten.max_pool2d", input=x, kernel_size=k, stride=s, padding=[t, lft],
                  dilation=[1, 1], ceil_mode=bool(n.attr("ceil_mode", 0)))


@adapter("AveragePool", aten=["aten.avg_pool2d"])
def avg_pool(n: ONode) -> Any:
    x, k, s, p = _pool_args(n)
    return n.call("aten.avg_pool2d", input=x, kernel_size=k, stride=s, padding=list(p[:2]),
                  ceil_mode=bool(n.attr("ceil_mode", 0)),
                  count_include_pad=bool(n.attr("count_include_pad", 0)))


@adapter("GlobalAveragePool", aten=["aten.adaptive_avg_pool2d"])
def global_avg(n: ONode) -> Any:
    return n.call("aten.adaptive_avg_pool2d", input=n.blob(0), output_size=[1, 1])


@adapter("GlobalMaxPool", aten=["aten.adaptive_max_pool2d"])
def global_max(n: ONode) -> Any:
    return n.call("aten.adaptive_max_pool2d", out_shape=[n.out_shape, n.out_shape],
                  input=n.blob(0), output_size=[1, 1])[0]


# -- activations ------------------------------------------------------------------------

_UNARY = {"Relu": "aten.relu", "Sigmoid": "aten.sigmoid", "Tanh": "aten.tanh",
          "Abs": "aten.abs", "Exp": "aten.exp", "Log": "aten.log", "Sqrt": "aten.sqrt",
          "Neg": "aten.neg", "Reciprocal": "aten.reciprocal", "HardSwish": "aten.hardswish",
          "Mish": "aten.mish", "Softplus": "aten.softplus", "Erf": "aten.erf"}


def _unary(key: str) -> Adapter:
    def fn(n: ONode) -> Any:
        return n.call(key, input=n.blob(0))
    fn.__name__ = key.split(".")[-1]
    return fn


for _t, _k in _UNARY.items():
    adapter(_t, aten=[_k])(_unary(_k))


@adapter("LeakyRelu", aten=["aten.leaky_relu"])
def leaky_relu(n: ONode) -> Any:
    return n.call("aten.leaky_relu", input=n.blob(0),
                  negative_slope=float(n.attr("alpha", 0.01)))


@adapter("Elu", aten=["aten.elu"])
def elu(n: ONode) -> Any:
    return n.call("aten.elu", input=n.blob(0), alpha=float(n.attr("alpha", 1.0)))


@adapter("Selu", aten=["aten.elu"])
def selu(n: ONode) -> Any:
    """``gamma * elu(x, alpha)``."""
    return n.call("aten.elu", input=n.blob(0),
                  alpha=float(n.attr("alpha", 1.67326319217681884765625)),
                  scale=float(n.attr("gamma", 1.05070102214813232421875)))


@adapter("Celu", aten=["aten.celu"])
def celu(n: ONode) -> Any:
    return n.call("aten.celu", input=n.blob(0), alpha=float(n.attr("alpha", 1.0)))


@adapter("Gelu", aten=["aten.gelu"])
def gelu(n: ONode) -> Any:
    return n.call("aten.gelu", input=n.blob(0), approximate=n.attr("approximate", "none"))


@adapter("PRelu", aten=["aten.prelu"])
def prelu(n: ONode) -> Any:
    x = n.blob(0)
    slope = _f32(n.const(1, "slope"))
    full = slope.reshape((1,) * (x.ndim - slope.ndim) + slope.shape)
    varying = [i for i, d in enumerate(full.shape) if d != 1]
    if varying not in ([], [1]):
        raise n.error("a PRelu slope of shape %s is neither one value nor one per channel"
                      % (slope.shape,))
    return n.call("aten.prelu", input=x, weight=slope.reshape(-1))


@adapter("HardSigmoid", aten=["aten.hardsigmoid", "aten.mul", "aten.add", "aten.clamp"])
def hard_sigmoid(n: ONode) -> Any:
    """``max(0, min(1, alpha x + beta))``: PyTorch's hardsigmoid for alpha 1/6,
    beta 1/2; otherwise a Power (scale, shift) and the clamp."""
    alpha, beta = float(n.attr("alpha", 0.2)), float(n.attr("beta", 0.5))
    x = n.blob(0)
    if abs(alpha - 1.0 / 6.0) < 1e-7 and beta == 0.5:
        return n.call("aten.hardsigmoid", input=x)
    y = n.call("aten.mul", input=x, other=alpha)
    y = n.call("aten.add", input=y, other=beta)
    return n.call("aten.clamp", input=y, min=0.0, max=1.0)


@adapter("Clip", aten=["aten.clamp"])
def clip(n: ONode) -> Any:
    if n.opset < 11:
        lo, hi = n.attr("min"), n.attr("max")
    else:
        lo, hi = n.const(1, "min"), n.const(2, "max")
        lo = None if lo is None else _float(lo)
        hi = None if hi is None else _float(hi)
    return n.call("aten.clamp", input=n.blob(0), min=lo, max=hi)


@adapter("Pow", aten=["aten.pow"])
def pow_(n: ONode) -> Any:
    e = n.const(1, "exponent")
    if e.size != 1:
        raise n.error("only one number as the exponent maps to Caffe's Power")
    return n.call("aten.pow", input=n.blob(0), exponent=_float(e))


# -- arithmetic -------------------------------------------------------------------------

def _binary(key: str) -> Adapter:
    def fn(n: ONode) -> Any:
        a, b = n.inp(0), n.inp(1)
        for v in (a, b):
            if isinstance(v, np.ndarray) and v.dtype.kind not in "f":
                raise n.error("arithmetic with a %s constant on a float blob" % v.dtype)
        return n.call(key, input=_f32(a) if isinstance(a, np.ndarray) else a,
                      other=_f32(b) if isinstance(b, np.ndarray) else b)
    fn.__name__ = key.split(".")[-1]
    return fn


for _t, _k in (("Add", "aten.add"), ("Sub", "aten.sub"), ("Mul", "aten.mul"),
               ("Div", "aten.div")):
    adapter(_t, aten=[_k])(_binary(_k))


def _extreme(key: str) -> Adapter:
    def fn(n: ONode) -> Any:
        vals = [_f32(v) if isinstance(v, np.ndarray) else v for v in n.inputs if v is not None]
        y = vals[0]
        for k, v in enumerate(vals[1:]):   # variadic: one pair at a time
            last = k == len(vals) - 2
            shape = n.out_shape if last else tuple(np.broadcast_shapes(
                tuple(getattr(y, "shape", ())), tuple(getattr(v, "shape", ()))))
            y = n.call(key, out_shape=shape, input=y, other=v)
        return y
    return fn


adapter("Max", aten=["aten.maximum"])(_extreme("aten.maximum"))
adapter("Min", aten=["aten.minimum"])(_extreme("aten.minimum"))


@adapter("Tile", aten=["aten.tile"])
def tile(n: ONode) -> Any:
    return n.call("aten.tile", input=n.blob(0), dims=n.ints(1, "repeats"))


@adapter("Where", aten=["aten.where"])
def where(n: ONode) -> Any:
    cond = n.const(0, "condition")
    a, b = n.inp(1), n.inp(2)
    return n.call("aten.where", condition=cond,
                  input=_f32(a) if isinstance(a, np.ndarray) else a,
                  other=_f32(b) if isinstance(b, np.ndarray) else b)


# -- shapes -----------------------------------------------------------------------------

@adapter("Concat", aten=["aten.cat"])
def concat(n: ONode) -> Any:
    return n.call("aten.cat", tensors=list(n.inputs), dim=int(n.attr("axis")))


@adapter("Split", aten=["aten.split_with_sizes"])
def split(n: ONode) -> Any:
    x = n.blob(0)
    ax = int(n.attr("axis", 0))
    ax = ax + x.ndim if ax < 0 else ax
    sizes = n.ints(1, "split") if n.opset >= 13 else n.attr("split")
    if sizes is None:
        count = int(n.attr("num_outputs", len(n.node.output)))
        step = -(-x.shape[ax] // count)
        sizes = [min(step, x.shape[ax] - i) for i in range(0, x.shape[ax], step)]
    return n.call("aten.split_with_sizes", out_shape=list(n.out_shapes), input=x,
                  split_sizes=[int(s) for s in sizes], dim=ax)


@adapter("Slice", aten=["aten.slice"])
def slice_(n: ONode) -> Any:
    x = n.blob(0)
    if n.opset < 10:
        starts, ends = n.attr("starts"), n.attr("ends")
        axes, steps = n.attr("axes"), None
    else:
        starts, ends = n.ints(1, "starts"), n.ints(2, "ends")
        axes, steps = n.ints(3, "axes"), n.ints(4, "steps")
    axes = list(range(len(starts))) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    y = x
    for a, s, e, st in zip(axes, starts, ends, steps):
        a = a + x.ndim if a < 0 else a
        size = y.shape[a]
        if st < 1:  # a backward slice: a moved value (netdsl.onnx.convert)
            raise n.error("slicing with step %d has no Caffe layer" % st)
        s = max(-size, min(size, int(s)))
        e = max(-size, min(size, int(e)))
        s0 = s + size if s < 0 else s
        e0 = e + size if e < 0 else e
        if (s0, e0, st) == (0, size, 1):
            continue
        shape = list(y.shape)
        shape[a] = len(range(s0, e0, st))
        y = n.call("aten.slice", out_shape=tuple(shape), input=y, dim=a, start=s0, end=e0,
                   step=st)
    return y


@adapter("Reshape", "Flatten", "Squeeze", "Unsqueeze", aten=["aten.reshape"])
def reshape(n: ONode) -> Any:
    return n.call("aten.reshape", input=n.blob(0), shape=list(n.out_shape))


@adapter("Expand", aten=["aten.expand"])
def expand(n: ONode) -> Any:
    return n.call("aten.expand", input=n.blob(0), size=list(n.out_shape))


@adapter("Transpose", aten=["aten.permute"])
def transpose(n: ONode) -> Any:
    x = n.blob(0)
    perm = n.attr("perm", list(range(x.ndim))[::-1])
    return n.call("aten.permute", input=x, dims=[int(p) for p in perm])


@adapter("Gather", aten=["aten.select", "aten.slice", "aten.index_select"])
def gather(n: ONode) -> Any:
    """A constant index: ``select``; a run of consecutive indices: ``slice``;
    any other constant indices: ``index_select`` (Slice + Concat)."""
    x = n.blob(0)
    idx = np.asarray(n.const(1, "indices"))
    ax = int(n.attr("axis", 0))
    ax = ax + x.ndim if ax < 0 else ax
    flat = [int(i) + x.shape[ax] if int(i) < 0 else int(i) for i in idx.reshape(-1)]
    if idx.ndim == 0:
        return n.call("aten.select", input=x, dim=ax, index=flat[0])
    if flat and flat == list(range(flat[0], flat[0] + len(flat))):
        # a run of consecutive indices (of any index shape): a Slice, then the shape
        shape = list(x.shape)
        shape[ax] = len(flat)
        y = x if len(flat) == x.shape[ax] else n.call(
            "aten.slice", out_shape=tuple(shape), input=x, dim=ax, start=flat[0],
            end=flat[0] + len(flat), step=1)
        return y if tuple(y.shape) == tuple(n.out_shape) else n.call(
            "aten.reshape", input=y, shape=list(n.out_shape))
    shape = list(x.shape)
    shape[ax] = len(flat)
    y = n.call("aten.index_select", out_shape=tuple(shape), input=x, dim=ax,
               index=np.asarray(flat))
    return y if tuple(y.shape) == tuple(n.out_shape) else n.call(
        "aten.reshape", input=y, shape=list(n.out_shape))


@adapter("GatherND", aten=["aten.index"])
def gather_nd(n: ONode) -> Any:
    """GatherND (batch_dims 0) indexes the leading axes, the batch axis first:
    exact only on a value whose axes were moved (see :data:`MOVEMENT`)."""
    raise n.error("it indexes the leading axes of its data, the batch axis first; Caffe "
                  "cannot express that exactly")


@adapter("DepthToSpace", aten=["aten.pixel_shuffle"])
def depth_to_space(n: ONode) -> Any:
    return n.call("aten.pixel_shuffle", input=n.blob(0), upscale_factor=int(n.attr("blocksize")),
                  mode=n.attr("mode", "DCR"))


@adapter("SpaceToDepth", aten=["aten.pixel_unshuffle"])
def space_to_depth(n: ONode) -> Any:
    return n.call("aten.pixel_unshuffle", input=n.blob(0),
                  downscale_factor=int(n.attr("blocksize")), mode="DCR")


@adapter("Cast", aten=["aten._to_copy"])
def cast(n: ONode) -> Any:
    from onnx import TensorProto
    if int(n.attr("to")) != TensorProto.FLOAT:
        raise n.error("only float32 tensors have Caffe blobs (a cast to type %d)"
                      % int(n.attr("to")))
    return n.blob(0)


# -- softmax, reductions ----------------------------------------------------------------

def _softmax(n: ONode, key: str) -> Any:
    x = n.blob(0)
    if n.opset >= 13:
        return n.call(key, input=x, dim=int(n.attr("axis", -1)), half_to_float=False)
    # before opset 13: over all axes from `axis` on (the input seen as 2-D)
    ax = int(n.attr("axis", 1))
    ax = ax + x.ndim if ax < 0 else ax
    if ax == x.ndim - 1:
        return n.call(key, input=x, dim=ax, half_to_float=False)
    flat = (int(np.prod(x.shape[:ax])), int(np.prod(x.shape[ax:])))
    v = n.call("aten.reshape", out_shape=flat, input=x, shape=list(flat))
    y = n.call(key, out_shape=flat, input=v, dim=1, half_to_float=False)
    return n.call("aten.reshape", input=y, shape=list(x.shape))


@adapter("Softmax", aten=["aten.softmax"])
def softmax(n: ONode) -> Any:
    return _softmax(n, "aten.softmax")


@adapter("LogSoftmax", aten=["aten.log_softmax"])
def log_softmax(n: ONode) -> Any:
    return _softmax(n, "aten.log_softmax")


def _reduce(key: str, axes_input_from: int) -> Adapter:
    def fn(n: ONode) -> Any:
        x = n.blob(0)
        axes = n.ints(1, "axes") if n.opset >= axes_input_from else n.attr("axes")
        if not axes:
            if int(n.attr("noop_with_empty_axes", 0)):
                return x
            axes = list(range(x.ndim))
        return n.call(key, input=x, dim=[int(a) for a in axes],
                      keepdim=bool(n.attr("keepdims", 1)))
    return fn


adapter("ReduceMin", aten=["aten.amin"])(_reduce("aten.amin", 18))
adapter("ReduceL2", aten=["aten.linalg_vector_norm"])(_reduce("aten.linalg_vector_norm", 18))
adapter("ReduceMean", aten=["aten.mean"])(_reduce("aten.mean", 18))
adapter("ReduceSum", aten=["aten.sum"])(_reduce("aten.sum", 13))
adapter("ReduceMax", aten=["aten.amax"])(_reduce("aten.amax", 18))


# -- resizing, padding, normalisation ----------------------------------------------------

def _resize(n: ONode, mode: str, coord: str, nearest: str, scales: Optional[np.ndarray],
            sizes: Optional[Sequence[int]]) -> Any:
    x = n.blob(0)
    if x.ndim != 4:
        raise n.error("only 4-D (N, C, H, W) resizing converts")
    if mode not in ("nearest", "linear"):
        raise n.error("Resize mode %r has no exact Caffe layers (nearest and linear do)" % mode)
    if coord not in ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"):
        raise n.error("coordinate_transformation_mode %r has no recipe" % coord)
    key = "aten.upsample_nearest2d" if mode == "nearest" else "aten.upsample_bilinear2d"
    args: Dict[str, Any] = {"input": x, "output_size": None,
                            "align_corners": coord == "align_corners",
                            "coordinate_transformation_mode": coord, "nearest_mode": nearest}
    if scales is not None and scales.size:
        s = [float(v) for v in scales.reshape(-1)]
        if len(s) != 4 or s[0] != 1.0 or s[1] != 1.0:
            raise n.error("only the spatial axes of a 4-D tensor can be resized (scales %s)"
                          % s)
        args["scale_factors"] = (s[2], s[3])
    else:
        if sizes is None or len(sizes) != 4 or tuple(sizes[:2]) != x.shape[:2]:
            raise n.error("only the spatial axes of a 4-D tensor can be resized (sizes %s)"
                          % (sizes,))
    return n.call(key, **args)


@adapter("Resize", aten=["aten.upsample_nearest2d", "aten.upsample_bilinear2d"])
def resize(n: ONode) -> Any:
    if n.attr("antialias", 0) or n.attr("axes") is not None:
        raise n.error("Resize with antialias or axes is not converted")
    coord = n.attr("coordinate_transformation_mode", "half_pixel")
    if coord == "tf_crop_and_resize":
        raise n.error("coordinate_transformation_mode tf_crop_and_resize has no recipe")
    scales = n.const(2, "scales")
    sizes = n.ints(3, "sizes")
    return _resize(n, n.attr("mode", "nearest"), coord, n.attr("nearest_mode",
                   "round_prefer_floor"), scales, sizes)


@adapter("Upsample", aten=["aten.upsample_nearest2d", "aten.upsample_bilinear2d"])
def upsample(n: ONode) -> Any:
    """Opsets 7-9: ``asymmetric`` coordinates, nearest rounds down."""
    scales = n.attr("scales")
    scales = np.asarray(scales if scales is not None else n.const(1, "scales"), np.float32)
    mode = n.attr("mode", "nearest")
    mode = "linear" if mode in ("linear", "bilinear") else mode
    return _resize(n, mode, "asymmetric", "floor", scales, None)


@adapter("Pad", aten=["aten.pad"])
def pad(n: ONode) -> Any:
    x = n.blob(0)
    if n.opset < 11:
        pads, value = [int(p) for p in n.attr("pads")], float(n.attr("value", 0.0))
        axes = None
    else:
        pads = n.ints(1, "pads")
        v = n.const(2, "constant_value")
        value = 0.0 if v is None or v.size == 0 else _float(v)
        axes = n.ints(3, "axes")
    axes = list(range(x.ndim)) if axes is None else [a + x.ndim if a < 0 else a for a in axes]
    k = len(axes)
    begin = {a: pads[i] for i, a in enumerate(axes)}
    end = {a: pads[k + i] for i, a in enumerate(axes)}
    tpad: List[int] = []
    for a in range(x.ndim - 1, -1, -1):
        tpad += [begin.get(a, 0), end.get(a, 0)]
    while len(tpad) > 2 and tpad[-2:] == [0, 0]:
        tpad = tpad[:-2]
    mode = n.attr("mode", "constant")
    mode = {"edge": "replicate"}.get(mode, mode)
    if mode not in ("constant", "reflect", "replicate"):
        raise n.error("padding mode %r has no exact Caffe layers" % mode)
    return n.call("aten.pad", input=x, pad=tpad, mode=mode, value=value)


@adapter("BatchNormalization", aten=["aten.batch_norm"])
def batch_norm(n: ONode) -> Any:
    if int(n.attr("training_mode", 0)):
        raise n.error("batch norm in training mode has no inference layer")
    return n.call("aten.batch_norm", input=n.blob(0), weight=_f32(n.const(1, "scale")),
                  bias=_f32(n.const(2, "bias")), running_mean=_f32(n.const(3, "mean")),
                  running_var=_f32(n.const(4, "var")), training=False, momentum=0.1,
                  eps=float(n.attr("epsilon", 1e-5)), cudnn_enabled=False)


@adapter("InstanceNormalization", aten=["aten.instance_norm"])
def instance_norm(n: ONode) -> Any:
    """Statistics over all axes after the channel axis: a 3-D or 5-D input is
    seen as (N, C, rest, 1) (how a group norm is exported: a reshape to
    (N, G, rest) first)."""
    x = n.blob(0)
    if x.ndim != 4 and x.ndim >= 3:
        view = (x.shape[0], x.shape[1], int(np.prod(x.shape[2:])), 1)
        v = n.call("aten.reshape", out_shape=view, input=x, shape=list(view))
        y = n.call("aten.instance_norm", out_shape=view, input=v,
                   weight=_f32(n.const(1, "scale")), bias=_f32(n.const(2, "bias")),
                   running_mean=None, running_var=None, use_input_stats=True, momentum=0.1,
                   eps=float(n.attr("epsilon", 1e-5)), cudnn_enabled=False)
        return n.call("aten.reshape", input=y, shape=list(x.shape))
    return n.call("aten.instance_norm", input=x, weight=_f32(n.const(1, "scale")),
                  bias=_f32(n.const(2, "bias")), running_mean=None, running_var=None,
                  use_input_stats=True, momentum=0.1, eps=float(n.attr("epsilon", 1e-5)),
                  cudnn_enabled=False)


@adapter("LayerNormalization", aten=["aten.layer_norm"])
def layer_norm(n: ONode) -> Any:
    x = n.blob(0)
    ax = int(n.attr("axis", -1))
    ax = ax + x.ndim if ax < 0 else ax
    return n.call("aten.layer_norm", out_shape=x.shape, input=x,
                  normalized_shape=list(x.shape[ax:]), weight=_f32(n.const(1, "scale")),
                  bias=_f32(n.const(2, "bias")), eps=float(n.attr("epsilon", 1e-5)))


def supported() -> List[str]:
    """The ONNX op types converted (besides folded constant subgraphs; the
    scatters are moved values of the graph walk, netdsl.onnx.convert)."""
    return sorted(set(ADAPTERS) | set(PASS_THROUGH) | {"Constant", "Shape", "Size", "ScatterND",
                                                       "ScatterElements"})


__all__ = ["ADAPTERS", "ATEN", "ONode", "adapter", "supported"]

