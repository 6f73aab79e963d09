"""Reductions and softmax: ``mean``/``sum`` over the spatial axes of a 4-D blob
(global AVE Pooling; a sum as a grouped Convolution of ones), over the channel
axis (a 1x1 Convolution of ones or 1/C), over a tail of axes (Reduction,
Caffe target only); ``amax`` over the spatial axes (global MAX Pooling) or the
channel axis (Slice into channels, Eltwise MAX: the largest value itself);
``softmax`` -> Softmax, ``log_softmax`` -> Softmax + Log."""
from __future__ import annotations

from typing import List, Tuple

import numpy as np

from netdsl.netspec import params as P
from netdsl.torch.graph import Blob, Context, Op
from netdsl.torch.ops.common import axis, reshape
from netdsl.torch.table import register_converter


def _operand(cx: Context, op: Op) -> Tuple[Blob, List[int]]:
    """The input and the reduced axes, with reduced axes of size 1 (which
    reduce to themselves) reshaped away first."""
    x = op["input"]
    dims = op.get("dim")
    if dims is None or (isinstance(dims, (list, tuple)) and len(dims) == 0):
        dims = list(range(x.ndim))
    if isinstance(dims, int):
        dims = [dims]
    dims = sorted({axis(int(d), x.ndim) for d in dims})
    unit = [d for d in dims if x.shape[d] == 1]
    if unit and len(unit) < x.ndim:
        x = reshape(cx, x, [s for i, s in enumerate(x.shape) if i not in unit])
        dims = [d - sum(u < d for u in unit) for d in dims if d not in unit]
    return x, dims


def _reduce(cx: Context, op: Op, mean: bool) -> Blob:
    x, dims = _operand(cx, op)
    if not dims:
        return reshape(cx, x, op.out_shape)
    keep = tuple(1 if i in dims else s for i, s in enumerate(x.shape))
    if x.ndim == 4 and dims == [2, 3]:
        n, c, h, w = x.shape
        if mean:
            top = cx.L.Pooling(x.top, pool=P.Pooling.AVE, global_pooling=True)
        else:
            top = cx.L.Convolution(x.top, name=op.name, convolution_param={
                "num_output": c, "group": c, "kernel_h": h, "kernel_w": w, "bias_term": False})
            cx.weights[op.name] = [np.ones((c, 1, h, w), np.float32)]
        return reshape(cx, Blob(top, keep), op.out_shape)
    if x.ndim == 4 and dims == [1]:
        n, c, h, w = x.shape
        top = cx.L.Convolution(x.top, name=op.name, convolution_param={
            "num_output": 1, "kernel_size": 1, "bias_term": False})
        cx.weights[op.name] = [np.full((1, c, 1, 1), 1.0 / c if mean else 1.0, np.float32)]
        return reshape(cx, Blob(top, keep), op.out_shape)
    if dims == list(range(dims[0], x.ndim)) and dims[0] > 0:
        if cx.target == "opencv":
            raise op.error("a reduction over the last axes needs Caffe's Reduction layer, "
                           "which OpenCV's Caffe importer does not run")
        top = cx.L.Reduction(x.top, operation=P.Reduction.MEAN if mean else P.Reduction.SUM,
                             axis=dims[0])
        return reshape(cx, Blob(top, x.shape[:dims[0]]), op.out_shape)
    raise op.error("a %s over axes %s of a %s tensor has no exact Caffe layer"
                   % ("mean" if mean else "sum", dims, x.shape))


@register_converter("aten.mean")
def mean(cx: Context, op: Op) -> Blob:
    return _reduce(cx, op, True)


@register_converter("aten.sum")
def sum_(cx: Context, op: Op) -> Blob:
    return _reduce(cx, op, False)


@register_converter("aten.amax")
def amax(cx: Context, op: Op) -> Blob:
    x, dims = _operand(cx, op)
    if not dims:
        return reshape(cx, x, op.out_shape)
    keep = tuple(1 if i in dims else s for i, s in enumerate(x.shape))
    if x.ndim == 4 and dims == [2, 3]:
        top = cx.L.Pooling(x.top, name=op.name, pool=P.Pooling.MAX, global_pooling=True)
        return reshape(cx, Blob(top, keep), op.out_shape)
    if x.ndim == 4 and dims == [1]:
        c = x.shape[1]
        if c == 1:
            return reshape(cx, x, op.out_shape)
        parts = cx.L.Slice(x.top, axis=1, slice_point=list(range(1, c)), ntop=c)
        top = cx.L.Eltwise(*parts, operation=P.Eltwise.MAX)
        return reshape(cx, Blob(top, keep), op.out_shape)
    raise op.error("a max over axes %s of a %s tensor has no exact Caffe layer"
                   % (dims, x.shape))


def _softmax_axis(op: Op) -> int:
    x = op["input"]
    return axis(int(op.get("dim", -1)), x.ndim)


@register_converter("aten.softmax", "aten._softmax")
def softmax(cx: Context, op: Op) -> Blob:
    x = op["input"]
    return Blob(cx.L.Softmax(x.top, axis=_softmax_axis(op)), op.out_shape)


@register_converter("aten.log_softmax", "aten._log_softmax")
def log_softmax(cx: Context, op: Op) -> Blob:
    x = op["input"]
    return Blob(cx.L.Log(cx.L.Softmax(x.top, axis=_softmax_axis(op))), op.out_shape)
