"""Small helpers shared by the converters: argument forms, slicing, reshaping
and broadcasting with stock layers."""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from netdsl.errors import NetdslError
from netdsl.convert.graph import Blob, Context
from netdsl.convert.recipes import nchw, pair

__all__ = ["pair", "nchw", "axis", "array", "reshape", "slice_axis", "concat",
           "broadcast_to"]


def axis(dim: int, ndim: int) -> int:
    return dim + ndim if dim < 0 else dim


def array(v: Any) -> Optional[np.ndarray]:
    return None if v is None else np.ascontiguousarray(v, dtype=np.float32)


def reshape(cx: Context, x: Blob, shape: Sequence[int]) -> Blob:
    """``x.reshape(shape)``: a Reshape layer (nothing when the shape is unchanged)."""
    shape = tuple(int(d) for d in shape)
    if shape == x.shape:
        return x
    dims = [0 if i == 0 and len(shape) and x.ndim and shape[0] == x.shape[0] else d
            for i, d in enumerate(shape)]
    return Blob(cx.L.Reshape(x.top, shape={"dim": dims}), shape)


def slice_axis(cx: Context, x: Blob, ax: int, bounds: Sequence[Tuple[int, int]]) -> List[Blob]:
    """The parts ``[a, b)`` of ``x`` along ``ax`` (each part one Slice top); the
    bounds are ascending and disjoint.  A part that is all of ``x`` is ``x``."""
    size = x.shape[ax]
    if len(bounds) == 1 and tuple(bounds[0]) == (0, size):
        return [x]
    points: List[int] = []
    for a, b in bounds:
        for p in (a, b):
            if 0 < p < size and p not in points:
                points.append(p)
    points.sort()
    tops = cx.L.Slice(x.top, axis=ax, slice_point=points, ntop=len(points) + 1)
    edges = [0] + points + [size]
    out = []
    for a, b in bounds:
        if a != b and edges.count(a) and edges.count(b) and edges.index(b) == edges.index(a) + 1:
            shape = list(x.shape)
            shape[ax] = b - a
            out.append(Blob(tops[edges.index(a)], shape))
        else:
            raise NetdslError("internal: slice bounds %r on %d" % (bounds, size))
    return out


def concat(cx: Context, parts: Sequence[Blob], ax: int) -> Blob:
    if len(parts) == 1:
        return parts[0]
    shape = list(parts[0].shape)
    shape[ax] = sum(p.shape[ax] for p in parts)
    return Blob(cx.L.Concat(*[p.top for p in parts], axis=ax), shape)


def broadcast_to(cx: Context, x: Blob, shape: Sequence[int]) -> Blob:
    """``x.expand(shape)`` (same rank) with exact copies: size-1 spatial axes of
    a 4-D blob by a grouped Deconvolution whose kernel is all ones (each value
    copied), other axes by Concat of copies."""
    shape = tuple(int(d) for d in shape)
    if len(shape) != x.ndim:
        x = reshape(cx, x, (1,) * (len(shape) - x.ndim) + x.shape)
    if x.shape == shape:
        return x
    for ax, (have, want) in enumerate(zip(x.shape, shape)):
        if have != want and have != 1:
            raise NetdslError("cannot broadcast %s to %s" % (x.shape, shape))
    if x.ndim == 4 and (x.shape[2], x.shape[3]) != (shape[2], shape[3]):
        kh = shape[2] if x.shape[2] == 1 else 1
        kw = shape[3] if x.shape[3] == 1 else 1
        c = x.shape[1]
        top = cx.L.Deconvolution(x.top, convolution_param={
            "num_output": c, "group": c, "kernel_h": kh, "kernel_w": kw, "bias_term": False,
            "weight_filler": {"type": "constant", "value": 1.0}},
            param=[{"lr_mult": 0, "decay_mult": 0}])
        x = Blob(top, (x.shape[0], c, shape[2], shape[3]))
    for ax in range(x.ndim):
        if x.shape[ax] != shape[ax]:
            x = concat(cx, [x] * shape[ax], ax)
    return x
