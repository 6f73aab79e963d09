"""Functions shared by the layer packs: parameter lookup, axis checks, C division, scatter."""
from __future__ import annotations

from fractions import Fraction
from typing import Any, Sequence

import numpy as np

from ..errors import NetdslError


def param(layer: Any, name: str, fork: str) -> Any:
    """The layer's ``name`` message, or a located error saying the schema in use
    lacks it (the fork's caffe.proto is needed: ``--proto``)."""
    if name not in layer.DESCRIPTOR.fields_by_name:
        raise NetdslError("layer type %s reads `%s`, which the schema in use does not have"
                          % (layer.type, name), field=name,
                          hint="load the caffe.proto of %s with --proto (or `proto:` in a "
                               "spec)" % fork)
    return getattr(layer, name)


def four_axes(shape: Sequence[int], what: str) -> None:
    if len(shape) != 4:
        raise NetdslError("%s must have 4 axes (num, channels, height, width); got %s"
                          % (what, tuple(shape)))


def tdiv(a: int, b: int) -> int:
    """C++ integer division: truncates toward zero."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def exact(x: Fraction):
    return int(x) if x.denominator == 1 else x


def axes_map(scale: Sequence, shift: Sequence):
    """A map on axis 1 with per-axis values, one value when both axes agree."""
    scale, shift = tuple(scale), tuple(shift)
    if len(set(scale)) == 1 and len(set(shift)) == 1:
        scale, shift = scale[:1], shift[:1]
    return 1, scale, shift


def scatter(values: np.ndarray, switches: np.ndarray, out_h: int, out_w: int,
            what: str) -> np.ndarray:
    """``top[n, c].flat[switch] = value`` for every value, zeros elsewhere.

    The C++ loops run over the values in order, so when two values name one
    position the later one stays; so it is here.  A switch outside the output
    plane is an error (SegNet: "upsample top index ... out of range").
    """
    n, c, h, w = values.shape
    plane = out_h * out_w
    idx = switches.reshape(n * c, h * w).astype(np.int64)   # static_cast<int>
    if idx.size and (idx.max() >= plane or idx.min() < 0):
        bad = int(idx.max()) if idx.max() >= plane else int(idx.min())
        raise NetdslError("%s index %d out of range for a %dx%d output - check that the "
                          "scale or geometry matches the pooling that made the switches"
                          % (what, bad, out_h, out_w))
    flat = (np.arange(n * c, dtype=np.int64)[:, None] * plane + idx).ravel()
    vals = values.reshape(-1).astype(np.float32)
    out = np.zeros(n * c * plane, dtype=np.float32)
    # last writer wins: keep each position's last occurrence
    rev_flat, rev_vals = flat[::-1], vals[::-1]
    pos, first = np.unique(rev_flat, return_index=True)
    out[pos] = rev_vals[first]
    return out.reshape(n, c, out_h, out_w)


def scatter_onnx(ctx: Any, values: str, switches: str, shape: Sequence[int], out_h: int,
                 out_w: int) -> str:
    """:func:`scatter` in ONNX: each (n, c) plane of ``values`` (of ``shape``) written
    into a zero plane of ``out_h`` x ``out_w`` at the flat positions ``switches``
    holds (floats, truncated as ``static_cast<int>``), by ScatterElements along the
    flattened plane.  ONNX leaves the order of writes to one position undefined
    (``reduction='none'``), so the last write is made the only one: per plane the
    keys ``position * L + order`` (L values a plane) are sorted (TopK, ascending),
    and every value whose position the next sorted value shares goes to a spare
    cell past the plane, which is cut off afterwards."""
    n, c, h, w = (int(d) for d in shape)
    size, plane = h * w, out_h * out_w
    flat = ctx.reshape(values, (n, c, size), in_shape=shape)
    idx = ctx.node("Cast", [ctx.reshape(switches, (n, c, size), in_shape=shape)], to=7)
    if size > 1:
        order = ctx.const(np.arange(size, dtype=np.int64), "order", np.int64)
        keys = ctx.node("Add", [ctx.node("Mul", [idx, ctx.const(np.int64(size), "count",
                                                                np.int64)]), order])
        _, perm = ctx.node("TopK", [keys, ctx.ints([size], "k")], n_out=2, axis=2,
                           largest=0, sorted=1)
        idx = ctx.node("GatherElements", [idx, perm], axis=2)
        flat = ctx.node("GatherElements", [flat, perm], axis=2)
        head = ctx.slice(idx, [0], [size - 1], [2])
        later = ctx.slice(idx, [1], [size], [2])
        spare = ctx.const(np.int64(plane), "spare", np.int64)
        kept = ctx.node("Where", [ctx.node("Equal", [head, later]), spare, head])
        idx = ctx.node("Concat", [kept, ctx.slice(idx, [size - 1], [size], [2])], axis=2)
    zeros = ctx.node("Expand", [ctx.scalar(0.0, "zero"),
                                ctx.shape_of(values, shape, 2, [plane + 1])])
    y = ctx.slice(ctx.node("ScatterElements", [zeros, idx, flat], axis=2), [0], [plane], [2])
    return ctx.reshape(y, (n, c, out_h, out_w), out=ctx.top(0), in_shape=shape)
