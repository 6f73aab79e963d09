"""Element-wise activations with stock layers.

Clamping uses only ReLU, Power and Eltwise (OpenCV's Caffe importer has no
Clip): ``max(x, lo) = relu(x - lo) + lo`` (just ReLU when ``lo`` is 0) and
``min(y, hi) = y - relu(y - hi)``, which returns ``y`` itself wherever
``y <= hi``.  hardswish / hardsigmoid are ``x * clamp(x + 3, 0, 6) / 6`` and
``clamp(x + 3, 0, 6) / 6``; silu is ``x * sigmoid(x)``.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from netdsl.netspec import params as P
from netdsl.convert import recipes
from netdsl.convert.graph import Blob, Context, Op
from netdsl.convert.families.common import array
from netdsl.convert.table import register_converter
from netdsl.weights.caffemodel.writer import LegacyBlob


def _x(op: Op) -> Blob:
    x = op["input"]
    if not isinstance(x, Blob):
        raise op.error("the input must be computed from the net's inputs")
    return x


def clamp_top(cx: Context, top, lo: Optional[float], hi: Optional[float]):
    L = cx.L
    if lo is not None:
        if lo == 0:
            top = L.ReLU(top)
        else:
            top = L.Power(L.ReLU(L.Power(top, shift=-float(lo))), shift=float(lo))
    if hi is not None:
        over = L.ReLU(L.Power(top, shift=-float(hi)))
        top = L.Eltwise(top, over, operation=P.Eltwise.SUM, coeff=[1.0, -1.0])
    return top


def _num(v) -> Optional[float]:
    if v is None:
        return None
    if isinstance(v, np.ndarray):
        if v.size != 1:
            raise ValueError
        return float(v.reshape(-1)[0])
    return float(v)


@register_converter("aten.relu")
def relu(cx: Context, op: Op) -> Blob:
    return Blob(cx.L.ReLU(_x(op).top), op.out_shape)


@register_converter("aten.relu6")
def relu6(cx: Context, op: Op) -> Blob:
    return Blob(clamp_top(cx, _x(op).top, 0.0, 6.0), op.out_shape)


@register_converter("aten.hardtanh")
def hardtanh(cx: Context, op: Op) -> Blob:
    return Blob(clamp_top(cx, _x(op).top, float(op.get("min_val", -1.0)),
                          float(op.get("max_val", 1.0))), op.out_shape)


@register_converter("aten.clamp", "aten.clip", "aten.clamp_min", "aten.clamp_max")
def clamp(cx: Context, op: Op) -> Blob:
    try:
        lo, hi = _num(op.args.get("min")), _num(op.args.get("max"))
    except ValueError:
        raise op.error("clamp bounds must be numbers") from None
    if op.key == "aten.clamp_max":
        lo, hi = None, hi
    return Blob(clamp_top(cx, _x(op).top, lo, hi), op.out_shape)


@register_converter("aten.leaky_relu")
def leaky_relu(cx: Context, op: Op) -> Blob:
    return Blob(cx.L.ReLU(_x(op).top, negative_slope=float(op.get("negative_slope", 0.01))),
                op.out_shape)


@register_converter("aten.prelu", "aten._prelu_kernel")
def prelu(cx: Context, op: Op) -> Blob:
    x = _x(op)
    w = op["weight"]
    if not isinstance(w, np.ndarray):
        raise op.error("the PReLU weight must be a parameter")
    w = array(w).reshape(-1)
    shared = w.size == 1 and (x.ndim < 2 or x.shape[1] != 1)
    top = cx.L.PReLU(x.top, name=op.name, prelu_param={"channel_shared": bool(shared)})
    # a shared slope is Caffe's 0-axis blob (prelu_layer.cpp), stored 1x1x1x1, which
    # Caffe's loader and OpenCV's both take; one value per channel otherwise
    cx.weights[op.name] = [LegacyBlob(w.reshape(())) if shared else w]
    return Blob(top, op.out_shape)


def _elu(cx: Context, op: Op, alpha: float, scale: float, input_scale: float) -> Blob:
    """``scale * elu(input_scale * x, alpha)``: ELU with Power layers around it
    for the scales (SELU, CELU)."""
    top = _x(op).top
    if input_scale != 1.0:
        top = cx.L.Power(top, scale=input_scale)
    top = cx.L.ELU(top, alpha=alpha)
    if scale != 1.0:
        top = cx.L.Power(top, scale=scale)
    return Blob(top, op.out_shape)


@register_converter("aten.elu")
def elu(cx: Context, op: Op) -> Blob:
    return _elu(cx, op, float(op.get("alpha", 1.0)), float(op.get("scale", 1.0)),
                float(op.get("input_scale", 1.0)))


@register_converter("aten.selu")
def selu(cx: Context, op: Op) -> Blob:
    # PyTorch's constants (torch.nn.SELU)
    return _elu(cx, op, 1.6732632423543772848170429916717, 1.0507009873554804934193349852946,
                1.0)


@register_converter("aten.celu")
def celu(cx: Context, op: Op) -> Blob:
    """``max(0, x) + min(0, alpha (exp(x / alpha) - 1))`` = ``alpha elu(x / alpha)``."""
    a = float(op.get("alpha", 1.0))
    return _elu(cx, op, 1.0, a, 1.0 / a)


@register_converter("aten.mish")
def mish(cx: Context, op: Op) -> Blob:
    """``x tanh(softplus(x))``: BNLL, TanH, Eltwise PROD."""
    x = _x(op)
    t = cx.L.TanH(cx.L.BNLL(x.top))
    return Blob(cx.L.Eltwise(x.top, t, operation=P.Eltwise.PROD), op.out_shape)


@register_converter("aten.log_sigmoid", "aten.log_sigmoid_forward")
def log_sigmoid(cx: Context, op: Op):
    """``-softplus(-x)``: Power(scale -1), BNLL, Power(scale -1)."""
    x = _x(op)
    top = cx.L.Power(cx.L.BNLL(cx.L.Power(x.top, scale=-1.0)), scale=-1.0)
    if op.key == "aten.log_sigmoid_forward":
        return (Blob(top, op.out_shape[0]), None)
    return Blob(top, op.out_shape)


@register_converter("aten.gelu")
def gelu(cx: Context, op: Op) -> Blob:
    """``approximate='tanh'``: ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`` with
    Power, Eltwise and TanH.  The erf form (the default): the stock-layer
    approximation of :func:`netdsl.convert.recipes.gelu_erf` (at most 6.1e-7 relative
    to the exact GELU)."""
    x = _x(op)
    if op.get("approximate", "none") != "tanh":
        return Blob(recipes.gelu_erf(x.top), op.out_shape)
    L = cx.L
    cube = L.Power(x.top, power=3.0)
    inner = L.Eltwise(x.top, cube, operation=P.Eltwise.SUM, coeff=[1.0, 0.044715])
    t = L.TanH(L.Power(inner, scale=0.7978845608028654))
    half = L.Power(t, scale=0.5, shift=0.5)
    return Blob(L.Eltwise(x.top, half, operation=P.Eltwise.PROD), op.out_shape)


@register_converter("aten.erf")
def erf(cx: Context, op: Op) -> Blob:
    """``torch.erf``: :func:`netdsl.convert.recipes.erf` (absolute error below 6e-7)."""
    return Blob(recipes.erf(_x(op).top), op.out_shape)


@register_converter("aten.sigmoid")
def sigmoid(cx: Context, op: Op) -> Blob:
    return Blob(cx.L.Sigmoid(_x(op).top), op.out_shape)


@register_converter("aten.tanh")
def tanh(cx: Context, op: Op) -> Blob:
    return Blob(cx.L.TanH(_x(op).top), op.out_shape)


@register_converter("aten.silu")
def silu(cx: Context, op: Op) -> Blob:
    x = _x(op)
    return Blob(cx.L.Eltwise(x.top, cx.L.Sigmoid(x.top), operation=P.Eltwise.PROD),
                op.out_shape)


@register_converter("aten.hardsigmoid")
def hardsigmoid(cx: Context, op: Op) -> Blob:
    x = _x(op)
    c = clamp_top(cx, cx.L.Power(x.top, shift=3.0), 0.0, 6.0)
    return Blob(cx.L.Power(c, scale=1.0 / 6.0), op.out_shape)


@register_converter("aten.hardswish")
def hardswish(cx: Context, op: Op) -> Blob:
    x = _x(op)
    c = clamp_top(cx, cx.L.Power(x.top, shift=3.0), 0.0, 6.0)
    prod = cx.L.Eltwise(x.top, c, operation=P.Eltwise.PROD)
    return Blob(cx.L.Power(prod, scale=1.0 / 6.0), op.out_shape)


@register_converter("aten.softplus")
def softplus(cx: Context, op: Op) -> Blob:
    """``log(1 + exp(beta x)) / beta``: BNLL (PyTorch returns ``x`` past its
    threshold, where the two differ by less than 1e-8 relative)."""
    x = _x(op)
    beta = float(op.get("beta", 1.0))
    if beta == 1.0:
        return Blob(cx.L.BNLL(x.top), op.out_shape)
    y = cx.L.BNLL(cx.L.Power(x.top, scale=beta))
    return Blob(cx.L.Power(y, scale=1.0 / beta), op.out_shape)


@register_converter("aten.abs")
def absval(cx: Context, op: Op) -> Blob:
    return Blob(cx.L.AbsVal(_x(op).top), op.out_shape)


@register_converter("aten.exp")
def exp(cx: Context, op: Op) -> Blob:
    return Blob(cx.L.Exp(_x(op).top), op.out_shape)


@register_converter("aten.log")
def log(cx: Context, op: Op) -> Blob:
    return Blob(cx.L.Log(_x(op).top), op.out_shape)


def _power(cx: Context, op: Op, power: float) -> Blob:
    return Blob(cx.L.Power(_x(op).top, power=float(power)), op.out_shape)


@register_converter("aten.pow")
def pow_(cx: Context, op: Op) -> Blob:
    e = op.args.get("exponent")
    if isinstance(e, Blob) or not isinstance(e, (int, float)):
        raise op.error("only a number as the exponent maps to Caffe's Power")
    return _power(cx, op, e)


@register_converter("aten.square")
def square(cx: Context, op: Op) -> Blob:
    return _power(cx, op, 2.0)


@register_converter("aten.sqrt")
def sqrt(cx: Context, op: Op) -> Blob:
    return _power(cx, op, 0.5)


@register_converter("aten.rsqrt")
def rsqrt(cx: Context, op: Op) -> Blob:
    return _power(cx, op, -0.5)


@register_converter("aten.reciprocal")
def reciprocal(cx: Context, op: Op) -> Blob:
    return _power(cx, op, -1.0)


@register_converter("aten.neg")
def neg(cx: Context, op: Op) -> Blob:
    return Blob(cx.L.Power(_x(op).top, scale=-1.0), op.out_shape)


def _fill(cx: Context, op: Op, value: float) -> Blob:
    if not _float_dtype(op.args.get("dtype")):
        raise op.error("only float32 tensors have Caffe blobs")
    return Blob(cx.L.Power(_x(op).top, scale=0.0, shift=float(value)), op.out_shape)


def _float_dtype(dtype) -> bool:
    return dtype is None or str(dtype) in ("torch.float32", "torch.float", "6")


@register_converter("aten.zeros_like")
def zeros_like(cx: Context, op: Op) -> Blob:
    """A constant blob shaped like ``x``: Power with scale 0 (Caffe fills ``shift``)."""
    return _fill(cx, op, 0.0)


@register_converter("aten.ones_like")
def ones_like(cx: Context, op: Op) -> Blob:
    return _fill(cx, op, 1.0)


@register_converter("aten.full_like")
def full_like(cx: Context, op: Op) -> Blob:
    return _fill(cx, op, float(op["fill_value"]))


@register_converter("aten._to_copy", "aten.to", "aten.type_as")
def to_copy(cx: Context, op: Op) -> Blob:
    """``x.float()`` / ``x.to(float32)`` / a device move: the same blob."""
    dtype = op.args.get("dtype")
    other = op.args.get("other")
    if not _float_dtype(dtype) or (other is not None and not isinstance(other, Blob)):
        raise op.error("only float32 tensors have Caffe blobs (a cast to %s)" % (dtype,))
    return _x(op)
