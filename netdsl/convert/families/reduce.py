"""Reductions and softmax: ``mean``/``sum`` over the spatial axes of a 4-D blob
(global AVE Pooling; a sum as a grouped Convolution of ones), over the channel
axis (a 1x1 Convolution of ones or 1/C); ``amax`` over the spatial axes (global
MAX Pooling) or the channel axis (Slice into channels, Eltwise MAX: the largest
value itself); any other axes, a run of adjacent axes at a time, by a Pooling
(AVE or MAX) or a Convolution of ones over the (P, 1, R, S) view;
``softmax`` -> Softmax, ``log_softmax`` -> Softmax + Log."""
from __future__ import annotations

from typing import Any, List, Tuple

import numpy as np

from netdsl.netspec import params as P
from netdsl.convert.graph import Blob, Context, Op
from netdsl.convert.families.common import axis, reshape
from netdsl.convert.table import register_converter


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
    return _reduce_runs(cx, op, x, dims, "mean" if mean else "sum")


def _reduce_runs(cx: Context, op: Op, x: Blob, dims: List[int], kind: str) -> Blob:
    """Any reduction, one run of adjacent axes at a time (the last run first):
    the blob viewed as (P, 1, R, S) -- P the values before the run, R the run's,
    S those after -- and reduced over R by a Pooling of kernel (R, 1) (AVE or
    MAX) or, for a sum, a Convolution of ones of that kernel; the run's axes
    stay as 1s until the final Reshape."""
    runs: List[List[int]] = []
    for d in dims:
        if runs and d == runs[-1][-1] + 1:
            runs[-1].append(d)
        else:
            runs.append([d])
    shape = list(x.shape)
    for k, run in enumerate(reversed(runs)):
        a, b = run[0], run[-1] + 1
        p, r, s = (int(np.prod(shape[:a], dtype=np.int64)),
                   int(np.prod(shape[a:b], dtype=np.int64)),
                   int(np.prod(shape[b:], dtype=np.int64)))
        v = reshape(cx, x, (p, 1, r, s))
        name = op.name if k == 0 else "%s/%d" % (op.name, k + 1)
        if kind == "sum":
            top = cx.L.Convolution(v.top, name=name, convolution_param={
                "num_output": 1, "kernel_h": r, "kernel_w": 1, "bias_term": False})
            cx.weights[name] = [np.ones((1, 1, r, 1), np.float32)]
        else:
            top = cx.L.Pooling(v.top, name=name, pool=P.Pooling.AVE if kind == "mean"
                               else P.Pooling.MAX, kernel_h=r, kernel_w=1, stride=1)
        shape[a:b] = [1] * (b - a)
        x = reshape(cx, Blob(top, (p, 1, 1, s)), shape)
    return reshape(cx, x, op.out_shape)


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
    return _reduce_runs(cx, op, x, dims, "max")


@register_converter("aten.amin")
def amin(cx: Context, op: Op) -> Blob:
    """min = -max(-x) (negations are exact)."""
    x = op["input"]
    neg = Blob(cx.L.Power(x.top, scale=-1.0), x.shape)
    sub = Op(op.key, dict(op.args, input=neg), op.out_shape, op.name, op.module, op.source)
    return Blob(cx.L.Power(amax(cx, sub).top, scale=-1.0), op.out_shape)


@register_converter("aten.max", "aten.min")
def max_min(cx: Context, op: Op) -> Any:
    """``max(x, dim)`` / ``min(x, dim)``: the values (amax / amin; the indices
    have no Caffe blob); ``max(x)`` over everything; ``max(a, b)``: maximum."""
    from netdsl.convert.families.arithmetic import maximum, minimum
    largest = op.key.endswith("max")
    if "other" in op.args:
        return (maximum if largest else minimum)(cx, op)
    shape = op.out_shape[0] if isinstance(op.out_shape, list) else op.out_shape
    args = {"input": op["input"], "dim": op.args.get("dim"),
            "keepdim": op.args.get("keepdim", False)}
    sub = Op(op.key, args, shape, op.name, op.module, op.source)
    values = amax(cx, sub) if largest else amin(cx, sub)
    return (values, None) if isinstance(op.out_shape, list) else values


@register_converter("aten.linalg_vector_norm", "aten.norm")
def vector_norm(cx: Context, op: Op) -> Blob:
    """The 2-norm over ``dim``: Power 2, a sum (as ``sum``), Power 0.5."""
    x = op["input"]
    order = op.args.get("ord", op.args.get("p", 2))
    if order not in (2, 2.0, None):
        raise op.error("only the 2-norm has an exact Caffe recipe (ord %r)" % (order,))
    sq = Blob(cx.L.Power(x.top, power=2.0), x.shape)
    args = {"input": sq, "dim": op.args.get("dim"), "keepdim": op.args.get("keepdim", False)}
    total = _reduce(cx, Op(op.key, args, op.out_shape, op.name, op.module, op.source), False)
    return Blob(cx.L.Power(total.top, power=0.5), op.out_shape)


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
