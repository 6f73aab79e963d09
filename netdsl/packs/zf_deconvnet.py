"""The Zeiler-Fergus deconvnet visualisation's layer types (piergiaj/caffe-deconvnet,
commit a71d409, May 2015): ``PoolingSwitches``, ``SliceHalf`` and ``InvPooling``.

A convnet's pooling layers become ``PoolingSwitches``, whose one top stacks the
pooled values and their switches along the num axis; ``SliceHalf`` cuts that top
back into the two; in the inverse net ``InvPooling`` takes ``[switches; values]``
(a Concat on axis 0) and puts each value back where its maximum was.  Rules
from the fork's ``caffe/src/caffe/layers/pooling_switches_layer.cpp``,
``slice_half_layer.cpp`` and ``inv_pooling_layer.cpp`` (cited per rule); the
fork's schema adds no parameter message, only the V1 names ``POOLINGSWITCHES``,
``SLICEHALF`` and ``INVPOOLING``, which enable the pack (netdsl.packs.TRIGGERS);
its upgrade_proto.cpp is BVLC's, which knows no V1 type for them, so V1 nets of
these types are not upgraded here either.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Any, List, Tuple

import numpy as np

from ..maps import UndefinedMapException, channel_axis_map
from ..errors import NetdslError
from ..layers.blob import count, enum_name, legacy_dim
from ..layers.pool import PoolGeometry, _pool_map, pool_dims, pool_geometry, pool_onnx
from ..layers.registry import PACKS, Ops, declare
from ._util import axes_map, exact, four_axes, scatter, scatter_onnx

FORK = "piergiaj/caffe-deconvnet"
Shape = Tuple[int, ...]
FLT_MAX = np.finfo(np.float32).max


def _method(layer: Any, what: str) -> str:
    name = enum_name(layer.pooling_param, "pool")
    if name != "MAX":
        raise NetdslError("%s: only MAX pooling is implemented (%s forward for %s is "
                          "NOT_IMPLEMENTED or unlike MAX)" % (layer.type, what, name),
                          layer=layer.name or None, field="pooling_param.pool")
    return name


# -- PoolingSwitches ------------------------------------------------------------------

def switches_tops(layer: Any) -> Tuple[int, int]:
    """vision_layers.hpp: MaxTopBlobs is 2 for MAX (the second top a mask), else 1."""
    return (1, 2 if enum_name(layer.pooling_param, "pool") == "MAX" else 1)


def switches_geometry(layer: Any, shape: Any = None) -> PoolGeometry:
    """PoolingSwitchesLayer::LayerSetUp and Reshape: BVLC pooling's checks and
    pooled size, always rounding up (the fork predates ``round_mode``)."""
    g = pool_geometry(layer, shape)
    if g.ceil_mode or g.out is None:
        return g
    out = pool_dims(shape[2], shape[3], g.kernel[0], g.kernel[1], g.stride[0], g.stride[1],
                    g.pad[0], g.pad[1], True)
    return g._replace(ceil_mode=True, out=out)


def switches_shape(layer: Any, bottoms: List[Shape], ntop: int, g: PoolGeometry) -> List[Shape]:
    """pooling_switches_layer.cpp Reshape: BVLC pooling's pooled size (ceil, the
    last window starting inside the padded input); the top is (2N, C, PH, PW),
    the optional mask top the same."""
    x = bottoms[0]
    four_axes(x, "PoolingSwitches' input")
    return [(2 * x[0], x[1]) + g.out] * ntop


def switches_forward(layer: Any, bottoms: List[np.ndarray], blobs: Any, ctx: Any,
                     g: PoolGeometry) -> List[np.ndarray]:
    """Forward_cpu, MAX: every value starts at -FLT_MAX; the window runs over
    rows [max(ph*s - p, 0), min(ph*s - p + k, H)) and the same for columns, in
    raster order, and takes a value only when it is strictly greater, so the first
    maximum wins and NaN never does.  Values go to top[n], their input position
    ``h * W + w`` (as a float) to top[N + n]; a window with nothing greater than
    -FLT_MAX keeps -FLT_MAX in both.  A second top gets the positions in both
    halves, -1 where none was taken."""
    _method(layer, "the PoolingSwitches")
    x = bottoms[0].astype(np.float32, copy=False)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (pad_h, pad_w) = g.kernel, g.stride, g.pad
    oh, ow = g.out
    best = np.full((n, c, oh, ow), -FLT_MAX, dtype=np.float32)
    where = np.full((n, c, oh, ow), -1, dtype=np.int64)
    hs = np.arange(oh) * sh - pad_h
    ws = np.arange(ow) * sw - pad_w
    for i in range(kh):
        rows = hs + i
        rok = (rows >= 0) & (rows < h)
        for j in range(kw):
            cols = ws + j
            ok = rok[:, None] & ((cols >= 0) & (cols < w))[None, :]
            v = x[:, :, np.clip(rows, 0, h - 1)][:, :, :, np.clip(cols, 0, w - 1)]
            take = ok & (v > best)
            best = np.where(take, v, best)
            where = np.where(take, rows[:, None] * w + cols[None, :], where)
    sw_vals = np.where(where >= 0, where.astype(np.float32), -FLT_MAX).astype(np.float32)
    out = [np.concatenate([best, sw_vals], axis=0)]
    if len(layer.top) > 1:
        mask = where.astype(np.float32)
        out.append(np.concatenate([mask, mask], axis=0))
    return out


def switches_cost(ls: Any) -> Ops:
    # every pooled output visits its window once
    g = switches_geometry(ls.layer, ls.bottom_shapes[0])
    return Ops(pooling=count(ls.top_shapes[0]) // 2 * g.kernel[0] * g.kernel[1])


def switches_onnx(layer: Any, ctx: Any, g: PoolGeometry) -> List[str]:
    """MaxPool with its Indices as BVLC pooling's mask (pool_onnx: the same windows,
    the first maximum's position ``h * W + w``), the values and positions
    concatenated on axis 0.  Every window holds an input cell (the pooled size's
    clip), so the fork's -FLT_MAX / -1 "nothing taken" arises only when no value
    exceeds -FLT_MAX (-inf, NaN), which is not exported exactly."""
    _method(layer, "the PoolingSwitches")
    x = ctx.in_shapes[0]
    y, where = pool_onnx(ctx, ctx.inputs[0], 0, (x[2], x[3]), g.kernel, g.stride, g.pad,
                         g.out, mask=True)
    outs = [ctx.node("Concat", [y, where], out=ctx.top(0), axis=0)]
    if len(layer.top) > 1:
        outs.append(ctx.node("Concat", [where, where], out=ctx.top(1), axis=0))
    return outs


def switches_torch(layer: Any, ctx: Any, g: PoolGeometry) -> str:
    """The helper: Caffe's MAX pooling with its mask, stacked along axis 0."""
    _method(layer, "the PoolingSwitches")
    return "%s(%s, %s, %s, %s, %r)" % (ctx.helper("caffe_pooling_switches"), ctx.x[0],
                                       ctx.lit(tuple(g.kernel)), ctx.lit(tuple(g.stride)),
                                       ctx.lit(tuple(g.pad)), len(layer.top) > 1)


declare("PoolingSwitches", family="zf_deconvnet", registry=PACKS, bottoms=1,
        tops=switches_tops, reads=("pooling_param",), geometry=switches_geometry,
        shape=switches_shape, coord_map=_pool_map, forward=switches_forward,
        cost=switches_cost, torch=switches_torch, onnx=switches_onnx,
        source="netdsl.packs.zf_deconvnet")


# -- SliceHalf --------------------------------------------------------------------------

def _half_axis(layer: Any, shape: Shape) -> int:
    """slice_half_layer.cpp Reshape: ``slice_dim`` when set (0 <= it < axes), else
    ``axis`` (default 1, negative counts from the end); not both."""
    sp = layer.slice_param
    if sp.HasField("axis") and sp.HasField("slice_dim"):
        raise NetdslError("Either axis or slice_dim should be specified; not both.",
                          layer=layer.name or None, field="slice_param.axis")
    axis = sp.slice_dim if sp.HasField("slice_dim") else sp.axis
    if not -len(shape) <= axis < len(shape) or (sp.HasField("slice_dim") and axis < 0):
        raise NetdslError("SliceHalf axis %d out of range for %d axes" % (axis, len(shape)),
                          layer=layer.name or None, field="slice_param.axis")
    return axis % len(shape)


def half_shape(layer: Any, bottoms: List[Shape], ntop: int) -> List[Shape]:
    """LayerSetUp puts one slice point at the bottom's ``num() / 2`` (Blob::num, the
    legacy first axis), whatever ``slice_point`` says; Reshape cuts the axis there:
    tops of ``num/2`` and ``dim - num/2`` along it.  Exactly two tops."""
    x = tuple(bottoms[0])
    axis = _half_axis(layer, x)
    point = legacy_dim(x, 0) // 2
    dim = x[axis]
    if ntop != 2:
        raise NetdslError("SliceHalf has one slice point, so exactly 2 tops (got %d)" % ntop,
                          layer=layer.name or None)
    if point <= 0 or point >= dim:
        raise NetdslError("SliceHalf cuts axis %d (size %d) at num/2 = %d, which must lie "
                          "strictly inside it (slice_half_layer.cpp)" % (axis, dim, point),
                          layer=layer.name or None, field="slice_param.axis")
    return [x[:axis] + (point,) + x[axis + 1:], x[:axis] + (dim - point,) + x[axis + 1:]]


def half_forward(layer: Any, bottoms: List[np.ndarray], blobs: Any, ctx: Any):
    """Forward_cpu: the two ranges of the axis, copied."""
    x = bottoms[0]
    axis = _half_axis(layer, x.shape)
    point = legacy_dim(x.shape, 0) // 2
    return [np.ascontiguousarray(p) for p in np.split(x, [point], axis=axis)]


def half_map(layer: Any, shapes: Any = None):
    sp = layer.slice_param
    axis = sp.slice_dim if sp.HasField("slice_dim") else sp.axis
    return channel_axis_map(axis, layer, shapes, "slice_param.axis")


def halves_onnx(ctx: Any, x: str, shape: Shape, axis: int, point: int,
                outs: List[Any]) -> List[str]:
    """``x`` cut at ``point`` along ``axis``: Slice, or, on the batch axis of a
    dynamic batch, Split into equal halves (``point`` is then half the axis)."""
    dim = shape[axis]
    if axis == 0 and ctx.graph.dynamic_batch:
        if dim != 2 * point:
            raise ctx.refuse("an odd batch (%d) cut at its half cannot follow a dynamic "
                             "batch" % dim, hint="export without --dynamic-batch")
        attrs = {"num_outputs": 2} if ctx.opset >= 18 else {}
        return ctx.node("Split", [x], out=outs if all(outs) else None, n_out=2, axis=0,
                        **attrs)
    return [ctx.slice(x, [0], [point], [axis], out=outs[0]),
            ctx.slice(x, [point], [dim], [axis], out=outs[1])]


def half_onnx(layer: Any, ctx: Any) -> List[str]:
    """Two Slices of the axis at the bottom's ``num() / 2``."""
    x = tuple(ctx.in_shapes[0])
    return halves_onnx(ctx, ctx.inputs[0], x, _half_axis(layer, x), legacy_dim(x, 0) // 2,
                       [ctx.top(0), ctx.top(1)])


def half_torch(layer: Any, ctx: Any) -> str:
    """torch.split at num / 2 along the axis (half_shape's sizes), num read from the
    tensor, so the module takes any batch."""
    axis = _half_axis(layer, ctx.in_shapes[0])
    return ("(lambda t: torch.split(t, [t.shape[0] // 2, t.shape[%d] - t.shape[0] // 2], "
            "%d))(%s)" % (axis, axis, ctx.x[0]))


declare("SliceHalf", family="zf_deconvnet", registry=PACKS, bottoms=1, tops=(2, 2),
        reads=("slice_param",), shape=half_shape, coord_map=half_map, forward=half_forward,
        torch=half_torch, onnx=half_onnx, source="netdsl.packs.zf_deconvnet")


# -- InvPooling ------------------------------------------------------------------------

def inv_geometry(layer: Any, shape: Any = None) -> PoolGeometry:
    """inv_pooling_layer.cpp LayerSetUp: the pooling checks of BVLC's PoolingLayer
    (kernel_size OR kernel_h/w, pad OR pad_h/w, stride OR stride_h/w; global
    pooling's kernel is the input's height and width)."""
    g = pool_geometry(layer, None)
    if g.global_pooling and shape is not None:
        four_axes(shape, "InvPooling's input")
        return PoolGeometry((shape[2], shape[3]), g.stride, g.pad, True, g.ceil_mode, None)
    return g


def inv_shape(layer: Any, bottoms: List[Shape], ntop: int, g: PoolGeometry) -> List[Shape]:
    """Reshape: (N / 2, C, H * s - s - 2p + k, W * s - s - 2p + k) from a bottom
    (N, C, H, W); a second top the same."""
    x = bottoms[0]
    four_axes(x, "InvPooling's input")
    size = tuple(x[2 + i] * g.stride[i] - g.stride[i] - 2 * g.pad[i] + g.kernel[i]
                 for i in range(2))
    return [(x[0] // 2, x[1]) + size] * ntop


def inv_forward(layer: Any, bottoms: List[np.ndarray], blobs: Any, ctx: Any,
                g: PoolGeometry) -> List[np.ndarray]:
    """Forward_cpu, MAX: the top starts at zero; for each image n < N/2 and channel,
    over the bottom's positions in raster order, ``top[n, c].flat[int(switch)] =
    value`` with the switch from bottom[n] and the value from bottom[N/2 + n]:
    plain assignment (the last write wins), the switch truncated toward zero and
    read as ``h * OW + w`` of the output plane.  A second top (MaxTopBlobs 2 for
    MAX) is shaped like the first and never written: zeros."""
    _method(layer, "the InvPooling")
    x = bottoms[0].astype(np.float32, copy=False)
    half = x.shape[0] // 2
    top = inv_shape(layer, [x.shape], 1, g)[0]
    out = scatter(x[half:2 * half], x[:half], top[2], top[3], "InvPooling switch")
    return [out, np.zeros_like(out)][:len(layer.top)]   # a second top is never written


def inv_map(layer: Any, shapes: Any = None, g: Any = None):
    # the inverse of the pooling it undoes: y = s x + (k - 1) / 2 - p
    g = g or inv_geometry(layer)
    if g.global_pooling:
        raise UndefinedMapException("global pooling has no coordinate map",
                                    layer=layer.name or None)
    return axes_map(g.stride, [exact(Fraction(g.kernel[i] - 1, 2) - g.pad[i])
                               for i in range(2)])


def inv_cost(ls: Any) -> Ops:
    # one assignment per value (half the bottom)
    return Ops(elementwise=count(ls.bottom_shapes[0]) // 2)


def inv_onnx(layer: Any, ctx: Any, g: PoolGeometry) -> List[str]:
    """The bottom's two halves on axis 0 (switches, values; a last odd image is
    unused), then :func:`scatter_onnx`: exact for overlapping windows too, the last
    write to a position being the one kept, as the fork's loop keeps it."""
    _method(layer, "the InvPooling")
    x = tuple(ctx.in_shapes[0])
    half = x[0] // 2
    if x[0] % 2 and not ctx.graph.dynamic_batch:
        src = ctx.slice(ctx.inputs[0], [0], [2 * half], [0])
    else:
        src = ctx.inputs[0]
    switches, values = halves_onnx(ctx, src, (2 * half,) + x[1:], 0, half, [None, None])
    _, _, oh, ow = ctx.out_shapes[0]
    out = [scatter_onnx(ctx, values, switches, (half,) + x[1:], oh, ow)]
    if len(layer.top) > 1:    # never written: zeros shaped like the first top
        out.append(ctx.node("Expand", [ctx.scalar(0.0, "zero"), ctx.node("Shape", [out[0]])],
                            out=ctx.top(1)))
    return out


def inv_torch(layer: Any, ctx: Any, g: PoolGeometry) -> Any:
    """The helper (each value to its switch); a second top is zeros, as the fork
    never writes it."""
    _method(layer, "the InvPooling")
    _, _, oh, ow = ctx.out_shapes[0]
    y = "%s(%s, %d, %d)" % (ctx.helper("caffe_inv_pooling"), ctx.x[0], oh, ow)
    if len(layer.top) == 1:
        return y
    return "(lambda y: (y, torch.zeros_like(y)))(%s)" % y


declare("InvPooling", family="zf_deconvnet", registry=PACKS, bottoms=1, tops=switches_tops,
        reads=("pooling_param",), geometry=inv_geometry, shape=inv_shape,
        coord_map=inv_map, forward=inv_forward, cost=inv_cost, torch=inv_torch, onnx=inv_onnx,
        source="netdsl.packs.zf_deconvnet")
