"""Element-wise layers: neurons (ReLU ... Log), Eltwise, Scale, Bias, Dropout.

Each follows the arithmetic of its BVLC ``*_layer.cpp`` in float32.
"""
from __future__ import annotations

from typing import List, Sequence

import numpy as np
from google.protobuf.message import Message

from ..errors import NetdslError
from .core import TRAIN, Context, blob_as, register

_F = np.float32


def _one(fn):
    """Adapt ``fn(layer, x) -> y`` to the registry signature."""
    def wrapped(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
                ctx: Context) -> List[np.ndarray]:
        return [fn(layer, bottoms[0])]
    wrapped.__doc__ = fn.__doc__
    wrapped.__name__ = fn.__name__
    return wrapped


@register("ReLU")
@_one
def relu(layer: Message, x: np.ndarray) -> np.ndarray:
    """``max(x, 0) + negative_slope * min(x, 0)``."""
    slope = _F(layer.relu_param.negative_slope)
    y = np.maximum(x, _F(0))
    if slope != 0:
        y = y + slope * np.minimum(x, _F(0))
    return y


@register("Sigmoid")
@_one
def sigmoid(layer: Message, x: np.ndarray) -> np.ndarray:
    """``0.5 tanh(0.5 x) + 0.5`` (Caffe's form of 1 / (1 + e^-x))."""
    return _F(0.5) * np.tanh(_F(0.5) * x) + _F(0.5)


@register("TanH")
@_one
def tanh(layer: Message, x: np.ndarray) -> np.ndarray:
    return np.tanh(x)


@register("AbsVal")
@_one
def absval(layer: Message, x: np.ndarray) -> np.ndarray:
    return np.abs(x)


@register("BNLL")
@_one
def bnll(layer: Message, x: np.ndarray) -> np.ndarray:
    """``log(1 + e^x)``: ``x + log(1 + e^-x)`` for x > 0."""
    return np.where(x > 0, x + np.log1p(np.exp(-np.abs(x))), np.log1p(np.exp(np.minimum(x, 0))))


@register("ELU")
@_one
def elu(layer: Message, x: np.ndarray) -> np.ndarray:
    """``x`` for x > 0, else ``alpha (e^x - 1)``."""
    alpha = _F(layer.elu_param.alpha)
    return np.where(x > 0, x, alpha * (np.exp(np.minimum(x, _F(0))) - _F(1)))


@register("Threshold")
@_one
def threshold(layer: Message, x: np.ndarray) -> np.ndarray:
    """1 where ``x > threshold``, else 0."""
    return (x > _F(layer.threshold_param.threshold)).astype(np.float32)


@register("Clip")
@_one
def clip(layer: Message, x: np.ndarray) -> np.ndarray:
    p = layer.clip_param
    return np.maximum(_F(p.min), np.minimum(x, _F(p.max)))


@register("Swish")
@_one
def swish(layer: Message, x: np.ndarray) -> np.ndarray:
    """``x * sigmoid(beta x)``."""
    b = _F(layer.swish_param.beta)
    return x * (_F(0.5) * np.tanh(_F(0.5) * b * x) + _F(0.5))


@register("Power")
@_one
def power(layer: Message, x: np.ndarray) -> np.ndarray:
    """``(shift + scale x) ^ power``; when ``power * scale == 0`` every value is
    ``shift ^ power`` (1 when power is 0), without reading x."""
    p = layer.power_param
    pw, sc, sh = _F(p.power), _F(p.scale), _F(p.shift)
    if pw * sc == 0:
        return np.full(x.shape, _F(1) if pw == 0 else np.power(sh, pw), dtype=np.float32)
    y = x
    if sc != 1:
        y = sc * y
    if sh != 0:
        y = y + sh
    if pw != 1:
        y = np.power(y, pw)
    return np.array(y, dtype=np.float32, copy=True)


@register("Exp")
@_one
def exp(layer: Message, x: np.ndarray) -> np.ndarray:
    """``base ^ (shift + scale x)`` as ``base^shift * exp(ln(base) scale x)``
    (base -1 means e)."""
    p = layer.exp_param
    base = _F(p.base)
    if base != -1 and not base > 0:
        raise NetdslError("base must be > 0 or -1 (e), got %g" % base, field="base")
    log_base = _F(1) if base == -1 else _F(np.log(base))
    inner = log_base * _F(p.scale)
    shift = _F(p.shift)
    outer = _F(1) if shift == 0 else (_F(np.exp(shift)) if base == -1 else _F(base ** shift))
    y = np.exp(x if inner == 1 else inner * x)
    return y if outer == 1 else outer * y


@register("Log")
@_one
def log(layer: Message, x: np.ndarray) -> np.ndarray:
    """``log_base(shift + scale x)`` as ``ln(shift + scale x) / ln(base)``."""
    p = layer.log_param
    base = _F(p.base)
    if base != -1 and not base > 0:
        raise NetdslError("base must be > 0 or -1 (e), got %g" % base, field="base")
    base_scale = _F(1) if base == -1 else _F(1) / _F(np.log(base))
    y = x
    if p.scale != 1:
        y = _F(p.scale) * y
    if p.shift != 0:
        y = y + _F(p.shift)
    y = np.log(y)
    return y if base_scale == 1 else base_scale * y


@register("PReLU")
def prelu(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
          ctx: Context) -> List[np.ndarray]:
    """``max(x, 0) + a_c min(x, 0)``, one slope per channel (axis 1) or one shared."""
    x = bottoms[0]
    channels = x.shape[1] if x.ndim >= 2 else 1
    if layer.prelu_param.channel_shared:
        a = blob_as(blobs[0], (1,), layer, 0, "slope blob")
        return [np.maximum(x, _F(0)) + a[0] * np.minimum(x, _F(0))]
    a = blob_as(blobs[0], (channels,), layer, 0, "slope blob")
    shape = [1] * x.ndim
    if x.ndim >= 2:
        shape[1] = channels
    return [np.maximum(x, _F(0)) + a.reshape(shape) * np.minimum(x, _F(0))]


@register("Dropout")
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
    return [x * keep * _F(1.0 / (1.0 - ratio))]


# -- multi-input ---------------------------------------------------------------

@register("Eltwise")
def eltwise(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
            ctx: Context) -> List[np.ndarray]:
    """PROD, SUM (``sum coeff_i x_i``, coefficients default 1) or MAX, of equal shapes."""
    p = layer.eltwise_param
    for i, b in enumerate(bottoms[1:], 1):
        if b.shape != bottoms[0].shape:
            raise NetdslError("bottom %d has shape %s, bottom 0 %s; Eltwise needs equal shapes"
                              % (i, b.shape, bottoms[0].shape))
    coeff = list(p.coeff)
    if coeff and len(coeff) != len(bottoms):
        raise NetdslError("%d coefficients for %d bottoms" % (len(coeff), len(bottoms)),
                          field="coeff")
    if p.operation == 0:
        y = bottoms[0]
        for b in bottoms[1:]:
            y = y * b
        return [np.array(y, dtype=np.float32)]
    if p.operation == 1:
        coeff = coeff or [1.0] * len(bottoms)
        y = np.zeros_like(bottoms[0])
        for c, b in zip(coeff, bottoms):
            y = y + (b if c == 1 else _F(c) * b)
        return [y]
    if p.operation == 2:
        y = bottoms[0]
        for b in bottoms[1:]:
            y = np.maximum(y, b)
        return [np.array(y, dtype=np.float32)]
    raise NetdslError("unknown Eltwise operation %d" % p.operation, field="operation")


def _axis(axis: int, ndim: int, field: str = "axis") -> int:
    a = axis + ndim if axis < 0 else axis
    if not 0 <= a <= ndim:
        raise NetdslError("axis %d is out of range for a %d-D blob" % (axis, ndim), field=field)
    return a


def _broadcast_shape(x: np.ndarray, axis: int, param_shape: Sequence[int]) -> List[int]:
    return [1] * axis + list(param_shape) + [1] * (x.ndim - axis - len(param_shape))


def _operand(layer: Message, x: np.ndarray, bottoms: List[np.ndarray],
             blobs: List[np.ndarray], axis_field: int, num_axes: int, what: str
             ) -> tuple:
    """(operand reshaped to broadcast against x, number of blobs used)."""
    if len(bottoms) > 1:
        other = bottoms[1]
        axis = _axis(axis_field, x.ndim)
        pshape = list(other.shape)
        used = 0
    else:
        axis = _axis(axis_field, x.ndim)
        if num_axes < -1:
            raise NetdslError("num_axes must be >= -1", field="num_axes")
        end = x.ndim if num_axes == -1 else axis + num_axes
        if end > x.ndim:
            raise NetdslError("axis %d + num_axes %d exceed the input's %d axes"
                              % (axis, num_axes, x.ndim), field="num_axes")
        pshape = list(x.shape[axis:end])
        if not blobs:
            raise NetdslError("%s with one bottom needs its blob in the weights" % layer.type)
        other = blob_as(blobs[0], pshape, layer, 0, what)
        used = 1
    if list(x.shape[axis:axis + len(pshape)]) != pshape:
        raise NetdslError("%s shape %s does not match the input shape %s from axis %d"
                          % (what, tuple(pshape), x.shape, axis))
    return other.reshape(_broadcast_shape(x, axis, pshape)), used


@register("Scale")
def scale(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
          ctx: Context) -> List[np.ndarray]:
    """``x * s (+ b)``, ``s`` (bottom 1 or blob 0) broadcast over the axes from
    ``axis``; the bias is the next blob when ``bias_term``."""
    p = layer.scale_param
    x = bottoms[0]
    s, used = _operand(layer, x, bottoms, blobs, p.axis, p.num_axes, "scale")
    y = x * s
    if p.bias_term:
        if len(blobs) <= used:
            raise NetdslError("bias_term is set but the weights have no bias blob")
        b = blob_as(blobs[used], s.shape, layer, used, "bias blob")
        y = y + b
    return [y]


@register("Bias")
def bias(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
         ctx: Context) -> List[np.ndarray]:
    """``x + b``, ``b`` (bottom 1 or blob 0) broadcast over the axes from ``axis``."""
    p = layer.bias_param
    x = bottoms[0]
    b, _ = _operand(layer, x, bottoms, blobs, p.axis, p.num_axes, "bias")
    return [x + b]
