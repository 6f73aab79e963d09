"""add / sub / rsub / mul / div between blobs, broadcasts and constants.

Blob with blob: Eltwise (SUM with coefficients, PROD; division is the product
with ``Power(power=-1)``); a broadcast SE-style product ``x * s`` with ``s`` of
shape (N, C, 1, 1) is a two-bottom Scale (``axis: 0``) on ``s`` flattened to
(N, C); other broadcasts copy the smaller operand out first (Concat, or a
Deconvolution with a kernel of ones for spatial axes).  Blob with a number: a
Power layer (``x + c`` shift, ``x * c`` scale, ``c - x`` scale -1 shift c), one
rounding as in PyTorch.  Blob with a constant tensor: a Scale layer whose blob
is the constant (and, for a sum, a scale of ones with the constant as bias).
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from netdsl.netspec import params as P
from netdsl.convert.graph import Blob, Context, Op
from netdsl.convert.families.common import broadcast_to, reshape
from netdsl.convert.table import register_converter


def _scalar(v: Any) -> Optional[float]:
    if isinstance(v, (bool, int, float)):
        return float(v)
    if isinstance(v, np.ndarray) and v.size == 1:
        return float(v.reshape(-1)[0])
    return None


def _power(cx: Context, x: Blob, out_shape, **p: float) -> Blob:
    top = x.top
    if x.shape != tuple(out_shape):
        x = broadcast_to(cx, x, out_shape)
        top = x.top
    return Blob(cx.L.Power(top, **{k: float(v) for k, v in p.items()}), out_shape)


def _scale_const(cx: Context, op: Op, x: Blob, scale: Optional[np.ndarray],
                 bias: Optional[np.ndarray]) -> Blob:
    """``x * scale + bias`` with constant tensors broadcast to ``x``: a Scale
    layer over the axes where they vary."""
    out = tuple(op.out_shape)
    if x.shape != out:
        x = broadcast_to(cx, x, out)
    consts = [c for c in (scale, bias) if c is not None]
    shaped = [np.asarray(c, np.float32).reshape((1,) * (len(out) - c.ndim) + c.shape)
              for c in consts]
    varying = [i for i in range(len(out)) if any(c.shape[i] != 1 for c in shaped)]
    a, b = (varying[0], varying[-1] + 1) if varying else (len(out) - 1, len(out))
    blob_shape = out[a:b]

    def part(c: Optional[np.ndarray], default: float) -> np.ndarray:
        if c is None:
            return np.full(blob_shape, default, np.float32)
        c = np.asarray(c, np.float32)
        c = c.reshape((1,) * (len(out) - c.ndim) + c.shape)[
            tuple([0] * a + [slice(None)] * (b - a) + [0] * (len(out) - b))]
        return np.ascontiguousarray(np.broadcast_to(c, blob_shape), np.float32)
    p: dict = {"axis": a, "num_axes": b - a}
    if bias is not None:
        p["bias_term"] = True
    top = cx.L.Scale(x.top, name=op.name, scale_param=p)
    cx.weights[op.name] = [part(scale, 1.0)] + ([part(bias, 0.0)] if bias is not None else [])
    return Blob(top, out)


def _scale_by_blob(cx: Context, x: Blob, s: Blob, out) -> Optional[Blob]:
    """``x * s`` when ``s`` is ``x``'s leading dims followed by ones: a two-bottom
    Scale on ``s`` reshaped to those leading dims."""
    if x.shape != tuple(out) or s.ndim != x.ndim:
        return None
    k = s.ndim
    while k > 0 and s.shape[k - 1] == 1:
        k -= 1
    if k == 0 or s.shape[:k] != x.shape[:k] or k == x.ndim:
        return None
    flat = reshape(cx, s, s.shape[:k])
    return Blob(cx.L.Scale(x.top, flat.top, axis=0), out)


def _binary(cx: Context, op: Op, kind: str, a: Any, b: Any, alpha: float = 1.0) -> Blob:
    out = tuple(op.out_shape)
    L = cx.L
    if isinstance(a, Blob) and isinstance(b, Blob):
        if kind == "mul":
            for x, s in ((a, b), (b, a)):
                r = _scale_by_blob(cx, x, s, out)
                if r is not None:
                    return r
        a2, b2 = broadcast_to(cx, a, out), broadcast_to(cx, b, out)
        if kind == "add" or kind == "sub":
            coeff = alpha if kind == "add" else -alpha
            if coeff == 1.0:
                top = L.Eltwise(a2.top, b2.top, operation=P.Eltwise.SUM)
            else:
                top = L.Eltwise(a2.top, b2.top, operation=P.Eltwise.SUM, coeff=[1.0, coeff])
        elif kind == "mul":
            top = L.Eltwise(a2.top, b2.top, operation=P.Eltwise.PROD)
        else:
            top = L.Eltwise(a2.top, L.Power(b2.top, power=-1.0), operation=P.Eltwise.PROD)
        return Blob(top, out)
    # one side is a constant
    if isinstance(a, Blob):
        x, c, left = a, b, False
    else:
        x, c, left = b, a, True
    s = _scalar(c)
    if s is not None and (not isinstance(c, np.ndarray) or c.ndim <= x.ndim):
        if kind == "add":
            return _power(cx, x, out, shift=s * alpha)
        if kind == "sub":
            return (_power(cx, x, out, scale=-alpha, shift=s) if left
                    else _power(cx, x, out, shift=-s * alpha))
        if kind == "mul":
            return _power(cx, x, out, scale=s)
        if left:  # c / x
            return _power(cx, Blob(L.Power(x.top, power=-1.0), x.shape), out, scale=s)
        return _power(cx, x, out, scale=1.0 / s)
    c = np.asarray(c, np.float32)
    if kind == "add":
        return _scale_const(cx, op, x, None, c * np.float32(alpha))
    if kind == "sub":
        if left:
            return _scale_const(cx, op, x, np.full(c.shape, -alpha, np.float32), c)
        return _scale_const(cx, op, x, None, -c * np.float32(alpha))
    if kind == "mul":
        return _scale_const(cx, op, x, c, None)
    if left:
        inv = Blob(L.Power(x.top, power=-1.0), x.shape)
        return _scale_const(cx, op, inv, c, None)
    return _scale_const(cx, op, x, (1.0 / c.astype(np.float64)).astype(np.float32), None)


def _extreme(cx: Context, op: Op, a: Any, b: Any, largest: bool) -> Blob:
    """max(a, b) as Eltwise MAX of the two (broadcast) blobs; min(a, b) =
    -max(-a, -b) (negations are exact).  A constant side is made a blob by
    ``x * 0 + c`` on the computed side (exact for finite values)."""
    out = tuple(op.out_shape)
    if not isinstance(a, Blob) and not isinstance(b, Blob):
        raise op.error("internal: max/min of constants is computed when converting")
    blobs = []
    for k, v in enumerate((a, b)):
        if isinstance(v, Blob):
            blobs.append(broadcast_to(cx, v, out))
        else:
            src = a if isinstance(a, Blob) else b
            sub = Op(op.key, {}, out, "%s/const%d" % (op.name, k), op.module, op.source)
            c = np.broadcast_to(np.asarray(v, np.float32), out)
            blobs.append(_scale_const(cx, sub, src, np.zeros(out, np.float32), c))
    if not largest:
        blobs = [Blob(cx.L.Power(x.top, scale=-1.0), out) for x in blobs]
    top = cx.L.Eltwise(*[x.top for x in blobs], operation=P.Eltwise.MAX)
    if not largest:
        top = cx.L.Power(top, scale=-1.0)
    return Blob(top, out)


@register_converter("aten.maximum", "aten.fmax")
def maximum(cx: Context, op: Op) -> Blob:
    return _extreme(cx, op, op["input"], op["other"], True)


@register_converter("aten.minimum", "aten.fmin")
def minimum(cx: Context, op: Op) -> Blob:
    return _extreme(cx, op, op["input"], op["other"], False)


@register_converter("aten.where")
def where(cx: Context, op: Op) -> Blob:
    """``where(cond, a, b)`` with a constant condition (masked_fill with a constant
    mask; PyTorch's exporter writes uneven adaptive pooling so): ``a * m + b * (1 - m)``
    with m the condition as 0/1, a Scale per computed side (a constant side is the
    bias), summed when both are computed.  Exact for finite values: each value
    times 1 plus the other times 0."""
    cond, a, b = op["condition"], op["input"], op["other"]
    if isinstance(cond, Blob):
        raise op.error("a condition computed from the net's inputs selects per value; "
                       "Caffe has no such layer")
    m = np.asarray(cond, bool).astype(np.float32)
    if not isinstance(a, Blob) and not isinstance(b, Blob):
        raise op.error("internal: where of constants is computed when converting")

    def part(v: Any, mask: np.ndarray, suffix: str, bias: Any = None) -> Blob:
        sub = Op(op.key, {}, op.out_shape, op.name + suffix, op.module, op.source)
        return _scale_const(cx, sub, v, mask, bias)
    if isinstance(a, Blob) and isinstance(b, Blob):
        x, y = part(a, m, "/true"), part(b, 1 - m, "/false")
        return Blob(cx.L.Eltwise(x.top, y.top, operation=P.Eltwise.SUM), tuple(op.out_shape))
    blob, mask, const = (a, m, b) if isinstance(a, Blob) else (b, 1 - m, a)
    const = np.asarray(const, np.float32) * (1 - mask)
    return part(blob, mask, "", const if const.any() else None)


def _alpha(op: Op) -> float:
    return float(op.get("alpha", 1))


@register_converter("aten.add")
def add(cx: Context, op: Op) -> Blob:
    return _binary(cx, op, "add", op["input"], op["other"], _alpha(op))


@register_converter("aten.sub")
def sub(cx: Context, op: Op) -> Blob:
    return _binary(cx, op, "sub", op["input"], op["other"], _alpha(op))


@register_converter("aten.rsub")
def rsub(cx: Context, op: Op) -> Blob:
    # rsub(input, other, alpha) = other - alpha * input
    a = op["input"]
    alpha = _alpha(op)
    if alpha != 1.0:
        raise op.error("rsub with alpha other than 1")
    return _binary(cx, op, "sub", op["other"], a)


@register_converter("aten.mul")
def mul(cx: Context, op: Op) -> Blob:
    return _binary(cx, op, "mul", op["input"], op["other"])


@register_converter("aten.div")
def div(cx: Context, op: Op) -> Blob:
    if op.get("rounding_mode") is not None:
        raise op.error("division with rounding_mode has no Caffe layer")
    return _binary(cx, op, "div", op["input"], op["other"])
