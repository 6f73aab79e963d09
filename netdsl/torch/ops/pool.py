"""Pooling: ``max_pool2d`` / ``avg_pool2d`` through the parity recipes (ceil
and floor rounding, ``count_include_pad``), ``divisor_override`` as a grouped
Convolution of ones / divisor, adaptive pooling when every window is the same
(global, or an output size that divides the input)."""
from __future__ import annotations

import numpy as np

from netdsl.netspec import params as P
from netdsl.ops import pytorch as recipes
from netdsl.torch.graph import Blob, Context, Op
from netdsl.torch.ops.common import need_4d, pair
from netdsl.torch.table import register_converter


@register_converter("aten.max_pool2d", "aten.max_pool2d_with_indices")
def max_pool2d(cx: Context, op: Op) -> Blob:
    x = op["input"]
    need_4d(op, x)
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
    need_4d(op, x)
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


def _adaptive(cx: Context, op: Op, pool: int) -> Blob:
    x = op["input"]
    out_shape = op.out_shape[0] if isinstance(op.out_shape, list) else op.out_shape
    need_4d(op, x)
    oh, ow = pair(op["output_size"])
    h, w = x.shape[2], x.shape[3]
    oh = h if oh is None else oh
    if (oh, ow) == (1, 1):
        top = cx.L.Pooling(x.top, name=op.name, pool=pool, global_pooling=True)
        return Blob(top, out_shape)
    if oh % h == 0 and ow % w == 0:
        # every output window is one input pixel: copies, by a grouped
        # Deconvolution with a kernel of ones (kernel = stride = the factor)
        fh, fw = oh // h, ow // w
        c = x.shape[1]
        top = cx.L.Deconvolution(x.top, name=op.name, convolution_param={
            "num_output": c, "group": c, "kernel_h": fh, "kernel_w": fw, "stride_h": fh,
            "stride_w": fw, "bias_term": False})
        cx.weights[op.name] = [np.ones((c, 1, fh, fw), np.float32)]
        return Blob(top, out_shape)
    if h % oh or w % ow:
        raise op.error("adaptive pooling from %dx%d to %dx%d has windows of different sizes; "
                       "only global pooling and output sizes that divide the input are exact "
                       "in Caffe's Pooling" % (h, w, oh, ow),
                       hint="choose an input size divisible by the output size")
    kh, kw = h // oh, w // ow
    top = cx.L.Pooling(x.top, name=op.name, pool=pool, kernel_h=kh, kernel_w=kw,
                       stride_h=kh, stride_w=kw)
    return Blob(top, out_shape)


@register_converter("aten.adaptive_avg_pool2d", "aten._adaptive_avg_pool2d")
def adaptive_avg_pool2d(cx: Context, op: Op) -> Blob:
    return _adaptive(cx, op, P.Pooling.AVE)


@register_converter("aten.adaptive_max_pool2d")
def adaptive_max_pool2d(cx: Context, op: Op):
    return (_adaptive(cx, op, P.Pooling.MAX), None)
