"""Padding: constant (the parity recipe :func:`netdsl.convert.recipes.pad`),
reflect and replicate (rows and columns sliced out and concatenated: copies)."""
from __future__ import annotations

from typing import List

from netdsl.convert import recipes
from netdsl.convert.graph import Blob, Context, Op
from netdsl.convert.families.common import concat, nchw, slice_axis
from netdsl.convert.table import register_converter


def edge_pad(cx: Context, x: Blob, ax: int, lo: int, hi: int, mode: str) -> Blob:
    """``lo``/``hi`` rows copied from the edges along ``ax`` (reflect: mirrored
    without the edge row; replicate: the edge row repeated)."""
    size = x.shape[ax]
    if mode == "reflect":
        before = list(range(lo, 0, -1))
        after = list(range(size - 2, size - 2 - hi, -1))
    else:
        before, after = [0] * lo, [size - 1] * hi
    wanted = sorted(set(before + after))
    if any(i < 0 or i >= size for i in wanted):
        raise ValueError("padding larger than the input")
    parts = slice_axis(cx, x, ax, [(i, i + 1) for i in wanted]) if wanted else []
    row = dict(zip(wanted, parts))
    seq: List[Blob] = [row[i] for i in before] + [x] + [row[i] for i in after]
    return concat(cx, seq, ax)


def _pad(cx: Context, op: Op, pads, mode: str, value: float) -> Blob:
    x = op["input"]
    pads = [int(p) for p in pads]
    if mode == "constant":
        nchw(x.shape, op)
        if len(pads) > 4 and any(pads[4:]):
            raise op.error("only the last two axes can be padded")
        return Blob(recipes.pad(x.top, x.shape, pads[:4], value), op.out_shape)
    if mode not in ("reflect", "replicate"):
        raise op.error("padding mode %r has no exact Caffe layers" % mode)
    if min(pads) < 0:
        raise op.error("negative %s padding" % mode)
    y = x
    for k in range(0, len(pads), 2):
        ax = x.ndim - 1 - k // 2
        if pads[k] or pads[k + 1]:
            try:
                y = edge_pad(cx, y, ax, pads[k], pads[k + 1], mode)
            except ValueError:
                raise op.error("%s padding of %d on an axis of %d"
                               % (mode, max(pads[k], pads[k + 1]), x.shape[ax])) from None
    return Blob(recipes.own(y.top), y.shape)


@register_converter("aten.constant_pad_nd")
def constant_pad(cx: Context, op: Op) -> Blob:
    return _pad(cx, op, op["pad"], "constant", float(op.get("value", 0.0)))


@register_converter("aten.pad")
def pad(cx: Context, op: Op) -> Blob:
    return _pad(cx, op, op["pad"], op.get("mode", "constant"), float(op.get("value", 0.0)))


@register_converter("aten.reflection_pad2d", "aten.reflection_pad1d")
def reflection_pad(cx: Context, op: Op) -> Blob:
    return _pad(cx, op, op["padding"], "reflect", 0.0)


@register_converter("aten.replication_pad2d", "aten.replication_pad1d")
def replication_pad(cx: Context, op: Op) -> Blob:
    return _pad(cx, op, op["padding"], "replicate", 0.0)
