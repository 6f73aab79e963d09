"""Pooling: ``max_pool2d`` / ``avg_pool2d`` through the parity recipes (ceil
and floor rounding, ``count_include_pad``), ``divisor_override`` as a grouped
Convolution of ones / divisor, adaptive pooling when every window is the same
(global, or an output size that divides the input)."""
from __future__ import annotations

from typing import List, Tuple

import numpy as np

from netdsl.netspec import params as P
from netdsl.convert import recipes
from netdsl.convert.graph import Blob, Context, Op
from netdsl.convert.families.common import concat, nchw, pair, slice_axis
from netdsl.convert.table import register_converter


@register_converter("aten.max_pool2d", "aten.max_pool2d_with_indices")
def max_pool2d(cx: Context, op: Op) -> Blob:
    x = op["input"]
    nchw(x.shape, op)
    k = pair(op["kernel_size"])
    stride = op.get("stride") or k
    top = recipes.max_pool2d(x.top, x.shape, k, pair(stride), pair(op.get("padding", 0)),
                             pair(op.get("dilation", 1)), bool(op.get("ceil_mode", False)),
                             name=op.name)
    out = Blob(top, op.out_shape[0] if isinstance(op.out_shape, list) else op.out_shape)
    if op.key == "aten.max_pool2d_with_indices":
        return (out, None)  # type: ignore[return-value]
    return out


@register_converter("aten.avg_pool2d")
def avg_pool2d(cx: Context, op: Op) -> Blob:
    x = op["input"]
    nchw(x.shape, op)
    k = pair(op["kernel_size"])
    stride = pair(op.get("stride") or k)
    pad = pair(op.get("padding", 0))
    ceil = bool(op.get("ceil_mode", False))
    divisor = op.get("divisor_override")
    if divisor is not None:
        # sum over the window (zeros in the padding add nothing) times 1/divisor:
        # a grouped Convolution with a kernel of 1/divisor; its windows are
        # PyTorch's floor-rounded ones
        if ceil:
            out_h = recipes.pool_output_size(x.shape[2], k[0], stride[0], pad[0], True)
            out_w = recipes.pool_output_size(x.shape[3], k[1], stride[1], pad[1], True)
            if (out_h, out_w) != (recipes.pool_output_size(x.shape[2], k[0], stride[0], pad[0],
                                                           False),
                                  recipes.pool_output_size(x.shape[3], k[1], stride[1], pad[1],
                                                           False)):
                raise op.error("divisor_override with ceil_mode windows past the input has "
                               "no exact layer")
        c = x.shape[1]
        w = np.full((c, 1, k[0], k[1]), 1.0 / float(divisor), np.float32)
        top = cx.L.Convolution(x.top, name=op.name, convolution_param={
            "num_output": c, "group": c, "kernel_h": k[0], "kernel_w": k[1],
            "stride_h": stride[0], "stride_w": stride[1], "pad_h": pad[0], "pad_w": pad[1],
            "bias_term": False})
        cx.weights[op.name] = [w]
        return Blob(top, op.out_shape)
    top = recipes.avg_pool2d(x.top, x.shape, k, stride, pad, ceil,
                             bool(op.get("count_include_pad", True)), name=op.name)
    return Blob(top, op.out_shape)


def _windows(size: int, out: int) -> List[Tuple[int, int]]:
    """PyTorch's adaptive pooling windows on one axis: [floor(i*H/o), ceil((i+1)*H/o))."""
    return [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]


def _adaptive_axis(cx: Context, op: Op, x: Blob, ax: int, out: int, pool: int, name: str
                   ) -> Blob:
    """Adaptive pooling along spatial axis ``ax`` (2 or 3) only."""
    size = x.shape[ax]
    wins = _windows(size, out)
    other = 1
    shape = list(x.shape)
    shape[ax] = out
    if out == size:
        return x
    kernel = lambda k: {"kernel_h": k, "kernel_w": other} if ax == 2 else \
        {"kernel_h": other, "kernel_w": k}   # noqa: E731
    stride = lambda st: {"stride_h": st, "stride_w": 1} if ax == 2 else \
        {"stride_h": 1, "stride_w": st}   # noqa: E731
    if out % size == 0:
        # each window is one input pixel, repeated: a grouped Deconvolution of ones
        f, c = out // size, x.shape[1]
        top = cx.L.Deconvolution(x.top, name=name, convolution_param=dict(
            num_output=c, group=c, bias_term=False, **kernel(f), **stride(f)))
        cx.weights[name] = [np.ones((c, 1) + ((f, 1) if ax == 2 else (1, f)), np.float32)]
        return Blob(top, shape)
    sizes = {b - a for a, b in wins}
    step = wins[1][0] - wins[0][0] if out > 1 else 1
    if len(sizes) == 1 and all(a == i * step for i, (a, _) in enumerate(wins)) and step > 0:
        # windows of one size at one step: a Pooling, cut to `out` when Caffe's
        # ceil rounding gives more
        k = sizes.pop()
        top = cx.L.Pooling(x.top, name=name, pool=pool, **kernel(k), **stride(step))
        got = -(-(size - k) // step) + 1
        full = list(x.shape)
        full[ax] = got
        y = Blob(top, full)
        return slice_axis(cx, y, ax, [(0, out)])[0] if got != out else y
    # windows of different sizes: each its own Slice and Pooling, then Concat
    parts = []
    for i, (a, b) in enumerate(wins):
        piece = slice_axis(cx, x, ax, [(a, b)])[0]
        top = cx.L.Pooling(piece.top, name="%s/%d" % (name, i), pool=pool, **kernel(b - a),
                           stride=1)
        pshape = list(x.shape)
        pshape[ax] = 1
        parts.append(Blob(top, pshape))
    return concat(cx, parts, ax)


def _adaptive(cx: Context, op: Op, pool: int) -> Blob:
    """``adaptive_*_pool2d``: global pooling for 1x1; otherwise each spatial axis
    by its windows (PyTorch's [floor(i*H/o), ceil((i+1)*H/o))): one input pixel
    repeated (a Deconvolution of ones), one size at one step (a Pooling), or
    windows of different sizes (Slice + Pooling each + Concat).  Pooling over
    the product of two windows equals pooling over each axis in turn (the mean
    of means of equal-count rows; the max of maxima)."""
    x = op["input"]
    out_shape = op.out_shape[0] if isinstance(op.out_shape, list) else op.out_shape
    nchw(x.shape, op)
    oh, ow = pair(op["output_size"])
    h, w = x.shape[2], x.shape[3]
    oh = h if oh is None else oh
    if (oh, ow) == (1, 1):
        top = cx.L.Pooling(x.top, name=op.name, pool=pool, global_pooling=True)
        return Blob(top, out_shape)
    if h % oh == 0 and w % ow == 0:   # one Pooling for both axes
        kh, kw = h // oh, w // ow
        top = cx.L.Pooling(x.top, name=op.name, pool=pool, kernel_h=kh, kernel_w=kw,
                           stride_h=kh, stride_w=kw)
        return Blob(top, out_shape)
    y = _adaptive_axis(cx, op, x, 2, oh, pool, op.name)
    y = _adaptive_axis(cx, op, y, 3, ow, pool, op.name if y is x else op.name + "/w")
    return Blob(y.top, out_shape) if y.shape == tuple(out_shape) else y


@register_converter("aten.adaptive_avg_pool2d", "aten._adaptive_avg_pool2d")
def adaptive_avg_pool2d(cx: Context, op: Op) -> Blob:
    return _adaptive(cx, op, P.Pooling.AVE)


@register_converter("aten.adaptive_max_pool2d")
def adaptive_max_pool2d(cx: Context, op: Op):
    return (_adaptive(cx, op, P.Pooling.MAX), None)
