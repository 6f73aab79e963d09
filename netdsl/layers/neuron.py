"""Element-wise (neuron) layers: ReLU, Sigmoid, TanH, AbsVal, BNLL, ELU, Threshold,
Clip, Swish, Power, Exp, Log, Dropout and PReLU (BVLC src/caffe/layers/*_layer.cpp).
"""
from __future__ import annotations

from typing import List

from google.protobuf.message import Message

from ..errors import NetdslError
from .blob import elementwise_cost, Shape, err, identity_map, legacy_dim, shape_str
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


@_one
def exp(layer: Message, x: np.ndarray) -> np.ndarray:
    """``base ^ (shift + scale x)`` as ``base^shift * exp(ln(base) scale x)``
    (base -1 means e)."""
    p = layer.exp_param
    base = np.float32(p.base)
    if base != -1 and not base > 0:
        raise NetdslError("base must be > 0 or -1 (e), got %g" % base, field="base")
    log_base = np.float32(1) if base == -1 else np.float32(np.log(base))
    inner = log_base * np.float32(p.scale)
    shift = np.float32(p.shift)
    if shift == 0:
        outer = np.float32(1)
    else:
        outer = np.float32(np.exp(shift)) if base == -1 else np.float32(base ** shift)
    y = np.exp(x if inner == 1 else inner * x)
    return y if outer == 1 else outer * y


@_one
def log(layer: Message, x: np.ndarray) -> np.ndarray:
    """``log_base(shift + scale x)`` as ``ln(shift + scale x) / ln(base)``."""
    p = layer.log_param
    base = np.float32(p.base)
    if base != -1 and not base > 0:
        raise NetdslError("base must be > 0 or -1 (e), got %g" % base, field="base")
    base_scale = np.float32(1) if base == -1 else np.float32(1) / np.float32(np.log(base))
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


# -- declarations ----------------------------------------------------------------------

_NEURON = dict(family="neuron", bottoms=1, tops=1, shape=_neuron, coord_map=identity_map,
               cost=elementwise_cost)
declare("AbsVal", forward=absval, **_NEURON)
declare("BNLL", forward=bnll, **_NEURON)
declare("Clip", forward=clip, **_NEURON)
declare("Dropout", forward=dropout, **_NEURON)
declare("ELU", forward=elu, **_NEURON)
declare("Exp", forward=exp, **_NEURON)
declare("Log", forward=log, **_NEURON)
declare("Power", forward=power, **_NEURON)
declare("ReLU", forward=relu, **_NEURON)
declare("Sigmoid", forward=sigmoid, **_NEURON)
declare("Swish", forward=swish, **_NEURON)
declare("TanH", forward=tanh, **_NEURON)
declare("Threshold", forward=threshold, **_NEURON)
declare("PReLU", family="neuron", bottoms=1, tops=1, shape=_prelu, params=_prelu_params,
        fillers=_prelu_fillers, coord_map=identity_map, forward=prelu, needs_weights=True,
        cost=elementwise_cost)
