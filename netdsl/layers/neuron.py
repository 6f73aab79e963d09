"""Element-wise (neuron) layers: ReLU, Sigmoid, TanH, AbsVal, BNLL, ELU, Threshold,
Clip, Swish, Power, Exp, Log, Dropout and PReLU (BVLC src/caffe/layers/*_layer.cpp).
"""
from __future__ import annotations

from typing import Any, List, Tuple

from google.protobuf.message import Message

from ..errors import NetdslError
from .blob import elementwise_cost, Shape, err, identity_map, legacy_dim, shape_str
from .blob import f32_code
from .registry import declare
from .runtime import TRAIN, Context, blob_as, np


NEURON_TYPES = ("AbsVal", "BNLL", "Clip", "Dropout", "ELU", "Exp", "Log", "Power", "ReLU",
                "Sigmoid", "Swish", "TanH", "Threshold")


def _neuron(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # neuron_layer.cpp: top shaped like bottom
    if layer.type in ("Exp", "Log"):
        p = layer.exp_param if layer.type == "Exp" else layer.log_param
        if p.base != -1 and not p.base > 0:
            raise err("base must be strictly positive (or -1 for e); got %g" % p.base,
                      "%s_param.base" % layer.type.lower())
    return [bottoms[0]]


def _prelu(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # prelu_layer.cpp: at least 2 axes; slopes per channel (legacy channels())
    _prelu_channels(bottoms[0])
    return [bottoms[0]]


def _prelu_channels(shape: Shape) -> int:
    if len(shape) < 2:
        raise err("Number of axes of bottom blob must be >=2 (got %s)" % shape_str(shape))
    return legacy_dim(shape, 1)


def _prelu_params(layer: Message, bottoms: List[Shape]) -> List[Shape]:
    c = _prelu_channels(bottoms[0])
    return [()] if layer.prelu_param.channel_shared else [(c,)]




def _one(fn):
    """Adapt ``fn(layer, x) -> y`` to the registry signature."""
    def wrapped(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
                ctx: Context) -> List[np.ndarray]:
        return [fn(layer, bottoms[0])]
    wrapped.__doc__ = fn.__doc__
    wrapped.__name__ = fn.__name__
    return wrapped


def relu(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
         ctx: Context) -> List[np.ndarray]:
    """``max(x, 0) + negative_slope * min(x, 0)`` (relu_layer.cpp); in place when
    the engine allows it."""
    return [_relu(layer, bottoms[0], ctx.inplace)]


def _relu(layer: Message, x: np.ndarray, inplace: bool = False) -> np.ndarray:
    slope = np.float32(layer.relu_param.negative_slope)
    if slope == 0:
        return np.maximum(x, np.float32(0), out=x if inplace else None)
    y = np.maximum(x, np.float32(0))
    if slope != 0:
        y = y + slope * np.minimum(x, np.float32(0))
    return y


@_one
def sigmoid(layer: Message, x: np.ndarray) -> np.ndarray:
    """``0.5 tanh(0.5 x) + 0.5`` (Caffe's form of 1 / (1 + e^-x))."""
    return np.float32(0.5) * np.tanh(np.float32(0.5) * x) + np.float32(0.5)


@_one
def tanh(layer: Message, x: np.ndarray) -> np.ndarray:
    return np.tanh(x)


@_one
def absval(layer: Message, x: np.ndarray) -> np.ndarray:
    return np.abs(x)


@_one
def bnll(layer: Message, x: np.ndarray) -> np.ndarray:
    """``log(1 + e^x)``: ``x + log(1 + e^-x)`` for x > 0."""
    return np.where(x > 0, x + np.log1p(np.exp(-np.abs(x))), np.log1p(np.exp(np.minimum(x, 0))))


@_one
def elu(layer: Message, x: np.ndarray) -> np.ndarray:
    """``x`` for x > 0, else ``alpha (e^x - 1)``."""
    alpha = np.float32(layer.elu_param.alpha)
    return np.where(x > 0, x, alpha * (np.exp(np.minimum(x, np.float32(0))) - np.float32(1)))


@_one
def threshold(layer: Message, x: np.ndarray) -> np.ndarray:
    """1 where ``x > threshold``, else 0."""
    return (x > np.float32(layer.threshold_param.threshold)).astype(np.float32)


@_one
def clip(layer: Message, x: np.ndarray) -> np.ndarray:
    p = layer.clip_param
    return np.maximum(np.float32(p.min), np.minimum(x, np.float32(p.max)))


@_one
def swish(layer: Message, x: np.ndarray) -> np.ndarray:
    """``x * sigmoid(beta x)``."""
    b = np.float32(layer.swish_param.beta)
    return x * (np.float32(0.5) * np.tanh(np.float32(0.5) * b * x) + np.float32(0.5))


@_one
def power(layer: Message, x: np.ndarray) -> np.ndarray:
    """``(shift + scale x) ^ power``; when ``power * scale == 0`` every value is
    ``shift ^ power`` (1 when power is 0), without reading x."""
    p = layer.power_param
    pw, sc, sh = np.float32(p.power), np.float32(p.scale), np.float32(p.shift)
    if pw * sc == 0:
        return np.full(x.shape, np.float32(1) if pw == 0 else np.power(sh, pw), dtype=np.float32)
    y = x
    if sc != 1:
        y = sc * y
    if sh != 0:
        y = y + sh
    if pw != 1:
        y = np.power(y, pw)
    return np.array(y, dtype=np.float32, copy=True)


def _checked_base(base: float) -> Any:
    base = np.float32(base)
    if base != -1 and not base > 0:
        raise NetdslError("base must be > 0 or -1 (e), got %g" % base, field="base")
    return base


def exp_factors(layer: Message) -> Tuple[Any, Any]:
    """exp_layer.cpp LayerSetUp: ``base ^ (shift + scale x)`` is ``outer * exp(inner
    x)`` with ``inner = ln(base) scale`` and ``outer = base^shift`` (base -1 means e),
    in float32."""
    p = layer.exp_param
    base = _checked_base(p.base)
    log_base = np.float32(1) if base == -1 else np.float32(np.log(base))
    inner = log_base * np.float32(p.scale)
    shift = np.float32(p.shift)
    if shift == 0:
        return inner, np.float32(1)
    return inner, np.float32(np.exp(shift)) if base == -1 else np.float32(base ** shift)


def log_base_scale(layer: Message) -> Any:
    """log_layer.cpp LayerSetUp: ``1 / ln(base)`` in float32 (1 for base -1, e)."""
    base = _checked_base(layer.log_param.base)
    return np.float32(1) if base == -1 else np.float32(1) / np.float32(np.log(base))


@_one
def exp(layer: Message, x: np.ndarray) -> np.ndarray:
    """``base ^ (shift + scale x)`` as ``base^shift * exp(ln(base) scale x)``
    (base -1 means e)."""
    inner, outer = exp_factors(layer)
    y = np.exp(x if inner == 1 else inner * x)
    return y if outer == 1 else outer * y


@_one
def log(layer: Message, x: np.ndarray) -> np.ndarray:
    """``log_base(shift + scale x)`` as ``ln(shift + scale x) / ln(base)``."""
    p = layer.log_param
    base_scale = log_base_scale(layer)
    y = x
    if p.scale != 1:
        y = np.float32(p.scale) * y
    if p.shift != 0:
        y = y + np.float32(p.shift)
    y = np.log(y)
    return y if base_scale == 1 else base_scale * y


def prelu(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
          ctx: Context) -> List[np.ndarray]:
    """``max(x, 0) + a_c min(x, 0)``, one slope per channel (axis 1) or one shared."""
    x = bottoms[0]
    channels = x.shape[1] if x.ndim >= 2 else 1
    if layer.prelu_param.channel_shared:
        a = blob_as(blobs[0], (1,), layer, 0, "slope blob")
        return [np.maximum(x, np.float32(0)) + a[0] * np.minimum(x, np.float32(0))]
    a = blob_as(blobs[0], (channels,), layer, 0, "slope blob")
    shape = [1] * x.ndim
    if x.ndim >= 2:
        shape[1] = channels
    return [np.maximum(x, np.float32(0)) + a.reshape(shape) * np.minimum(x, np.float32(0))]


def dropout(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
            ctx: Context) -> List[np.ndarray]:
    """TEST: identity.  TRAIN: keep with probability ``1 - ratio`` and scale the
    kept values by ``1 / (1 - ratio)`` (Caffe scales at train time)."""
    x = bottoms[0]
    if ctx.phase != TRAIN:
        return [x]
    ratio = float(layer.dropout_param.dropout_ratio)
    if not 0 <= ratio < 1:
        raise NetdslError("dropout_ratio must be in [0, 1), got %g" % ratio,
                          field="dropout_ratio")
    keep = ctx.rng.random(x.shape) >= ratio
    return [x * keep * np.float32(1.0 / (1.0 - ratio))]


def _prelu_fillers(layer: Message, shapes: List[Shape]) -> list:
    # prelu_layer.cpp: `filler`, constant 0.25 when unset
    p = layer.prelu_param
    return [p.filler if p.HasField("filler") else {"type": "constant", "value": 0.25}] * len(shapes)


# -- ONNX export -------------------------------------------------------------------------

def _affine(ctx, x: str, scale: float, shift: float, last: bool) -> str:
    """``shift + scale x`` (each step only when it changes the value); ``last``: the
    final node writes the top."""
    if scale != 1:
        x = ctx.node("Mul", [x, ctx.scalar(scale, "scale")],
                     out=ctx.top(0) if last and shift == 0 else None)
    if shift != 0:
        x = ctx.node("Add", [x, ctx.scalar(shift, "shift")], out=ctx.top(0) if last else None)
    return x


def _unary(op: str, **attrs):
    def rule(layer: Message, ctx) -> List[str]:
        return [ctx.node(op, ctx.inputs, out=ctx.top(0), **attrs)]
    rule.__doc__ = "ONNX %s, the same function as Caffe's layer." % op
    return rule


def _relu_onnx(layer: Message, ctx) -> List[str]:
    """``max(x, 0) + slope min(x, 0)`` is LeakyRelu(alpha=slope) for every slope."""
    slope = float(np.float32(layer.relu_param.negative_slope))
    if slope == 0:
        return [ctx.node("Relu", ctx.inputs, out=ctx.top(0))]
    return [ctx.node("LeakyRelu", ctx.inputs, out=ctx.top(0), alpha=slope)]


def _elu_onnx(layer: Message, ctx) -> List[str]:
    return [ctx.node("Elu", ctx.inputs, out=ctx.top(0), alpha=float(layer.elu_param.alpha))]


def _threshold_onnx(layer: Message, ctx) -> List[str]:
    """threshold_layer.cpp: 1 where ``x > threshold`` (strictly), else 0."""
    t = ctx.scalar(layer.threshold_param.threshold, "threshold")
    return [ctx.node("Cast", [ctx.node("Greater", [ctx.inputs[0], t])], out=ctx.top(0), to=1)]


def _clip_onnx(layer: Message, ctx) -> List[str]:
    p = layer.clip_param
    return [ctx.node("Clip", [ctx.inputs[0], ctx.scalar(p.min, "min"), ctx.scalar(p.max, "max")],
                     out=ctx.top(0))]


def _swish_onnx(layer: Message, ctx) -> List[str]:
    """swish_layer.cpp: ``x * sigmoid(beta x)``."""
    x = ctx.inputs[0]
    bx = _affine(ctx, x, float(np.float32(layer.swish_param.beta)), 0.0, False)
    return [ctx.node("Mul", [x, ctx.node("Sigmoid", [bx])], out=ctx.top(0))]


def _power_onnx(layer: Message, ctx) -> List[str]:
    """power_layer.cpp: ``(shift + scale x) ^ power``; with ``power * scale == 0``
    every value is ``shift ^ power`` (1 for power 0), x unread."""
    p = layer.power_param
    pw, sc, sh = (float(np.float32(v)) for v in (p.power, p.scale, p.shift))
    x = ctx.inputs[0]
    if pw * sc == 0:
        value = 1.0 if pw == 0 else float(np.power(np.float32(sh), np.float32(pw)))
        return [ctx.node("Expand", [ctx.scalar(value, "value"), ctx.node("Shape", [x])],
                         out=ctx.top(0))]
    if pw == 1 and sc == 1 and sh == 0:
        return [ctx.node("Identity", [x], out=ctx.top(0))]
    y = _affine(ctx, x, sc, sh, pw == 1)
    if pw != 1:
        y = ctx.node("Pow", [y, ctx.scalar(pw, "power")], out=ctx.top(0))
    return [y]


def _exp_onnx(layer: Message, ctx) -> List[str]:
    """exp_layer.cpp: ``base^shift * exp(ln(base) scale x)`` (base -1: e)."""
    inner, outer = (float(v) for v in exp_factors(layer))
    y = ctx.node("Exp", [_affine(ctx, ctx.inputs[0], inner, 0.0, False)],
                 out=ctx.top(0) if outer == 1 else None)
    return [y if outer == 1 else ctx.node("Mul", [y, ctx.scalar(outer, "outer")],
                                          out=ctx.top(0))]


def _log_onnx(layer: Message, ctx) -> List[str]:
    """log_layer.cpp: ``ln(shift + scale x) / ln(base)`` (base -1: e)."""
    p = layer.log_param
    base_scale = float(log_base_scale(layer))
    y = _affine(ctx, ctx.inputs[0], float(np.float32(p.scale)), float(np.float32(p.shift)),
                False)
    y = ctx.node("Log", [y], out=ctx.top(0) if base_scale == 1 else None)
    return [y if base_scale == 1 else ctx.node("Mul", [y, ctx.scalar(base_scale, "base")],
                                               out=ctx.top(0))]


def _dropout_onnx(layer: Message, ctx) -> List[str]:
    """TEST phase: the identity, so the layer is removed (its top is its bottom)."""
    return [ctx.inputs[0]]


def _prelu_onnx(layer: Message, ctx) -> List[str]:
    """prelu_layer.cpp: one slope per channel (axis 1), broadcast as (C, 1, ...), or
    one shared slope."""
    shape = ctx.in_shapes[0]
    if layer.prelu_param.channel_shared:
        slope = ctx.weight(0, (1,))
    else:
        c = _prelu_channels(shape)
        slope = ctx.weight(0, (c,) + (1,) * max(len(shape) - 2, 0))
    return [ctx.node("PRelu", [ctx.inputs[0], slope], out=ctx.top(0))]


def _call_torch(fmt: str):
    """A rule writing ``fmt % x`` (the neurons PyTorch has as they are in Caffe)."""
    def rule(layer: Message, ctx) -> str:
        return fmt % ctx.x[0]
    return rule


def _relu_torch(layer: Message, ctx) -> str:
    """relu_layer.cpp: ``max(x, 0) + negative_slope * min(x, 0)``."""
    slope = float(np.float32(layer.relu_param.negative_slope))
    return ("torch.relu(%s)" % ctx.x[0] if slope == 0 else
            "F.leaky_relu(%s, %s)" % (ctx.x[0], f32_code(slope)))


def _neuron_param_torch(layer: Message, ctx) -> str:
    """ELU (``alpha (exp(x) - 1)`` below 0), Threshold (1 where ``x > t``, strictly),
    Clip, Swish (``x * sigmoid(beta x)``) with their parameters."""
    x = ctx.x[0]
    if layer.type == "ELU":
        return "F.elu(%s, %s)" % (x, f32_code(layer.elu_param.alpha))
    if layer.type == "Threshold":
        return "(%s > %s).to(%s.dtype)" % (x, f32_code(layer.threshold_param.threshold), x)
    if layer.type == "Clip":
        p = layer.clip_param
        return "torch.clamp(%s, %s, %s)" % (x, f32_code(p.min), f32_code(p.max))
    return "%s * torch.sigmoid(%s * %s)" % (x, f32_code(layer.swish_param.beta), x)


def _affine_torch(x: str, scale: float, shift: float) -> str:
    y = x if scale == 1 else "%s * %s" % (f32_code(scale), x)
    return y if shift == 0 else "(%s + %s)" % (f32_code(shift), y)


def _power_torch(layer: Message, ctx) -> str:
    """power_layer.cpp: ``(shift + scale x) ^ power``; with ``power * scale == 0``
    every value is ``shift ^ power`` (1 for power 0)."""
    p = layer.power_param
    pw, sc, sh = (float(np.float32(v)) for v in (p.power, p.scale, p.shift))
    x = ctx.x[0]
    if pw * sc == 0:
        value = 1.0 if pw == 0 else float(np.power(np.float32(sh), np.float32(pw)))
        return "torch.full_like(%s, %s)" % (x, f32_code(value))
    y = _affine_torch(x, sc, sh)
    return y if pw == 1 else "%s ** %s" % (y if y == x or y.startswith("(") else "(%s)" % y,
                                           f32_code(pw))


def _exp_torch(layer: Message, ctx) -> str:
    """exp_layer.cpp: ``base^shift * exp(ln(base) scale x)`` (base -1: e)."""
    inner, outer = (float(v) for v in exp_factors(layer))
    y = "torch.exp(%s)" % _affine_torch(ctx.x[0], inner, 0.0)
    return y if outer == 1 else "%s * %s" % (f32_code(outer), y)


def _log_torch(layer: Message, ctx) -> str:
    """log_layer.cpp: ``ln(shift + scale x) / ln(base)`` (base -1: e)."""
    p = layer.log_param
    base_scale = float(log_base_scale(layer))
    y = "torch.log(%s)" % _affine_torch(ctx.x[0], float(np.float32(p.scale)),
                                         float(np.float32(p.shift))).strip("()")
    return y if base_scale == 1 else "%s * %s" % (f32_code(base_scale), y)


def _dropout_torch(layer: Message, ctx) -> str:
    """nn.Dropout(dropout_ratio): the identity in eval(), and in train() Caffe's
    dropout (dropout_layer.cpp scales the kept values by 1 / (1 - ratio))."""
    mod = ctx.module("nn.Dropout(%s)" % f32_code(layer.dropout_param.dropout_ratio))
    return "%s(%s)" % (mod, ctx.x[0])


def _prelu_torch(layer: Message, ctx) -> str:
    """prelu_layer.cpp: one slope per channel (axis 1), or one shared: nn.PReLU."""
    n = 1 if layer.prelu_param.channel_shared else _prelu_channels(ctx.in_shapes[0])
    mod = ctx.module("nn.PReLU(%d)" % n, {"weight": ctx.blob(0, (n,))})
    return "%s(%s)" % (mod, ctx.x[0])



# -- declarations ----------------------------------------------------------------------

_NEURON = dict(family="neuron", bottoms=1, tops=1, shape=_neuron, coord_map=identity_map,
               cost=elementwise_cost)
declare("AbsVal", forward=absval, onnx=_unary("Abs"), torch=_call_torch("torch.abs(%s)"), **_NEURON)
declare("BNLL", forward=bnll, onnx=_unary("Softplus"), torch=_call_torch("F.softplus(%s)"),
        **_NEURON)
declare("Clip", forward=clip, onnx=_clip_onnx, torch=_neuron_param_torch, **_NEURON)
declare("Dropout", forward=dropout, onnx=_dropout_onnx, torch=_dropout_torch, **_NEURON)
declare("ELU", forward=elu, onnx=_elu_onnx, torch=_neuron_param_torch, **_NEURON)
declare("Exp", forward=exp, onnx=_exp_onnx, torch=_exp_torch, **_NEURON)
declare("Log", forward=log, onnx=_log_onnx, torch=_log_torch, **_NEURON)
declare("Power", forward=power, onnx=_power_onnx, torch=_power_torch, **_NEURON)
declare("ReLU", forward=relu, onnx=_relu_onnx, torch=_relu_torch, **_NEURON)
declare("Sigmoid", forward=sigmoid, onnx=_unary("Sigmoid"),
        torch=_call_torch("torch.sigmoid(%s)"), **_NEURON)
declare("Swish", forward=swish, onnx=_swish_onnx, torch=_neuron_param_torch, **_NEURON)
declare("TanH", forward=tanh, onnx=_unary("Tanh"), torch=_call_torch("torch.tanh(%s)"), **_NEURON)
declare("Threshold", forward=threshold, onnx=_threshold_onnx, torch=_neuron_param_torch, **_NEURON)
declare("PReLU", family="neuron", bottoms=1, tops=1, shape=_prelu, params=_prelu_params,
        fillers=_prelu_fillers, coord_map=identity_map, forward=prelu, needs_weights=True,
        cost=elementwise_cost, onnx=_prelu_onnx, torch=_prelu_torch)
