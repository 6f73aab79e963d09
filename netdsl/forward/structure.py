"""Layers that make, copy or rearrange blobs: Input, DummyData, Parameter,
Split, Silence, Concat, Slice, Flatten, Reshape, Crop, Tile, Reduction."""
from __future__ import annotations

from typing import List

import numpy as np
from google.protobuf.message import Message

from ..errors import NetdslError
from .core import Context, blob_as, register


def _axis(axis: int, ndim: int, field: str = "axis") -> int:
    a = axis + ndim if axis < 0 else axis
    if not 0 <= a < ndim:
        raise NetdslError("axis %d is out of range for a %d-D blob" % (axis, ndim), field=field)
    return a


@register("Input")
def input_layer(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
                ctx: Context) -> List[np.ndarray]:
    """The arrays given as inputs (a declared Input blob is never made up)."""
    missing = [t for t in layer.top if t not in ctx.inputs]
    shapes = layer.input_param.shape
    what = []
    for t in missing:
        i = list(layer.top).index(t)
        if shapes:
            s = shapes[0] if len(shapes) == 1 else shapes[min(i, len(shapes) - 1)]
            what.append("'%s' (shape %s)" % (t, "x".join(str(d) for d in s.dim)))
        else:
            what.append("'%s'" % t)
    raise NetdslError("no array given for input %s" % ", ".join(what))


@register("DummyData")
def dummy_data(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
               ctx: Context) -> List[np.ndarray]:
    """Blobs of the declared shapes, filled by ``data_filler`` (one for all tops or
    one per top; default constant 0).  Constant fillers give Caffe's values;
    random ones draw from the same distribution, not Caffe's random stream."""
    from ..weights import fill
    p = layer.dummy_data_param
    n = len(layer.top)
    legacy = len(p.num) > 0
    shapes = []
    for i in range(n):
        if legacy:
            def pick(field):
                values = list(getattr(p, field))
                if len(values) not in (1, n):
                    raise NetdslError("%s has %d values for %d tops" % (field, len(values), n),
                                      field=field)
                return values[0] if len(values) == 1 else values[i]
            shapes.append([int(pick(f)) for f in ("num", "channels", "height", "width")])
        else:
            if len(p.shape) not in (1, n):
                raise NetdslError("shape has %d entries for %d tops" % (len(p.shape), n),
                                  field="shape")
            s = p.shape[0] if len(p.shape) == 1 else p.shape[i]
            shapes.append([int(d) for d in s.dim])
    fillers = list(p.data_filler)
    if len(fillers) not in (0, 1, n):
        raise NetdslError("data_filler has %d entries for %d tops" % (len(fillers), n),
                          field="data_filler")
    out = []
    for i, shape in enumerate(shapes):
        f = fillers[0] if len(fillers) == 1 else (fillers[i] if fillers else None)
        if f is not None and f.type != "constant":
            out.append(fill(f, shape, ctx.rng))
        else:
            value = np.float32(f.value) if f is not None else np.float32(0)
            out.append(np.full(shape, value, dtype=np.float32))
    return out


@register("Parameter")
def parameter(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
              ctx: Context) -> List[np.ndarray]:
    """Its one blob, shaped by ``parameter_param.shape``."""
    shape = [int(d) for d in layer.parameter_param.shape.dim]
    return [blob_as(blobs[0], shape, layer, 0)]


@register("Split")
def split(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
          ctx: Context) -> List[np.ndarray]:
    return [bottoms[0]] * ctx.ntop


@register("Silence")
def silence(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
            ctx: Context) -> List[np.ndarray]:
    return []


@register("Concat")
def concat(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
           ctx: Context) -> List[np.ndarray]:
    """Along ``axis`` (``concat_dim`` when set); other axes must agree."""
    p = layer.concat_param
    axis = p.concat_dim if p.HasField("concat_dim") else p.axis
    axis = _axis(axis, bottoms[0].ndim)
    for i, b in enumerate(bottoms[1:], 1):
        if b.ndim != bottoms[0].ndim or any(
                b.shape[d] != bottoms[0].shape[d] for d in range(b.ndim) if d != axis):
            raise NetdslError("bottom %d has shape %s, not concatenable with %s on axis %d"
                              % (i, b.shape, bottoms[0].shape, axis))
    return [np.concatenate(bottoms, axis=axis)]


@register("Slice")
def slice_layer(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
                ctx: Context) -> List[np.ndarray]:
    """Cut along ``axis`` (``slice_dim`` when set) at ``slice_point`` (one fewer
    than the tops), or into equal parts."""
    p = layer.slice_param
    x = bottoms[0]
    axis = _axis(p.slice_dim if p.HasField("slice_dim") else p.axis, x.ndim)
    dim = x.shape[axis]
    n = ctx.ntop
    points = [int(v) for v in p.slice_point]
    if points:
        if len(points) != n - 1:
            raise NetdslError("%d slice points for %d tops (need %d)" % (len(points), n, n - 1),
                              field="slice_point")
        bounds = [0] + points + [dim]
        if any(b1 <= b0 for b0, b1 in zip(bounds, bounds[1:])):
            raise NetdslError("slice points %s must increase strictly inside (0, %d)"
                              % (points, dim), field="slice_point")
    else:
        if n == 0 or dim % n:
            raise NetdslError("cannot cut %d into %d equal parts" % (dim, n), field="slice_point")
        bounds = [dim // n * i for i in range(n + 1)]
    index = [slice(None)] * x.ndim
    out = []
    for b0, b1 in zip(bounds, bounds[1:]):
        index[axis] = slice(b0, b1)
        out.append(x[tuple(index)])
    return out


@register("Flatten")
def flatten(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
            ctx: Context) -> List[np.ndarray]:
    """Axes ``axis`` .. ``end_axis`` merged into one."""
    p = layer.flatten_param
    x = bottoms[0]
    a = _axis(p.axis, x.ndim)
    e = _axis(p.end_axis, x.ndim, "end_axis")
    shape = x.shape[:a] + (int(np.prod(x.shape[a:e + 1], dtype=np.int64)),) + x.shape[e + 1:]
    return [x.reshape(shape)]


@register("Reshape")
def reshape(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
            ctx: Context) -> List[np.ndarray]:
    """Axes ``axis`` .. ``axis + num_axes`` replaced by ``shape``: 0 copies the
    bottom's axis at that position, one -1 is inferred."""
    p = layer.reshape_param
    x = bottoms[0]
    nd = x.ndim
    start = p.axis + nd + 1 if p.axis < 0 else p.axis
    if not 0 <= start <= nd:
        raise NetdslError("axis %d is out of range" % p.axis, field="axis")
    end = nd if p.num_axes == -1 else start + p.num_axes
    if p.num_axes < -1 or end > nd:
        raise NetdslError("num_axes %d is out of range" % p.num_axes, field="num_axes")
    dims = [int(d) for d in p.shape.dim]
    new = []
    infer = None
    for i, d in enumerate(dims):
        if d == 0:
            if start + i >= nd:
                raise NetdslError("dim %d is 0 but the bottom has no axis %d" % (i, start + i),
                                  field="shape")
            new.append(x.shape[start + i])
        elif d == -1:
            if infer is not None:
                raise NetdslError("only one dim may be -1", field="shape")
            infer = i
            new.append(1)
        elif d < 0:
            raise NetdslError("dim %d is %d" % (i, d), field="shape")
        else:
            new.append(d)
    shape = list(x.shape[:start]) + new + list(x.shape[end:])
    known = int(np.prod(shape, dtype=np.int64))
    if infer is not None:
        if known == 0 or x.size % known:
            raise NetdslError("cannot infer dim %d: %d values over %d" % (infer, x.size, known),
                              field="shape")
        shape[start + infer] = x.size // known
    if int(np.prod(shape, dtype=np.int64)) != x.size:
        raise NetdslError("shape %s has %d values, the bottom %s has %d"
                          % (shape, int(np.prod(shape)), x.shape, x.size), field="shape")
    return [x.reshape(shape)]


@register("Crop")
def crop(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
         ctx: Context) -> List[np.ndarray]:
    """Bottom 0 cut to bottom 1's size on the axes from ``axis``, starting at
    ``offset`` (one value for all those axes, or one each; default 0)."""
    p = layer.crop_param
    x, ref = bottoms
    if x.ndim != ref.ndim:
        raise NetdslError("bottoms have %d and %d axes" % (x.ndim, ref.ndim))
    axis = _axis(p.axis, x.ndim)
    offs = [int(o) for o in p.offset]
    n_crop = x.ndim - axis
    if offs and len(offs) not in (1, n_crop):
        raise NetdslError("%d offsets for %d cropped axes" % (len(offs), n_crop), field="offset")
    index = []
    for d in range(x.ndim):
        if d < axis:
            index.append(slice(None))
            continue
        o = (offs[0] if len(offs) == 1 else offs[d - axis]) if offs else 0
        if o + ref.shape[d] > x.shape[d]:
            raise NetdslError("axis %d: offset %d + size %d exceeds the bottom's %d"
                              % (d, o, ref.shape[d], x.shape[d]), field="offset")
        index.append(slice(o, o + ref.shape[d]))
    return [x[tuple(index)]]


@register("Tile")
def tile(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
         ctx: Context) -> List[np.ndarray]:
    """The blob repeated ``tiles`` times along ``axis`` (whole blocks)."""
    p = layer.tile_param
    x = bottoms[0]
    axis = _axis(p.axis, x.ndim)
    reps = [1] * x.ndim
    reps[axis] = int(p.tiles)
    return [np.tile(x, reps)]


@register("Reduction")
def reduction(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
              ctx: Context) -> List[np.ndarray]:
    """SUM, ASUM, SUMSQ or MEAN over all axes from ``axis`` on, times ``coeff``."""
    p = layer.reduction_param
    x = bottoms[0]
    axis = p.axis + x.ndim if p.axis < 0 else p.axis
    flat = x.reshape(x.shape[:axis] + (-1,))
    op = p.operation
    if op == 1:
        y = flat.sum(axis=-1, dtype=np.float32)
    elif op == 2:
        y = np.abs(flat).sum(axis=-1, dtype=np.float32)
    elif op == 3:
        y = (flat * flat).sum(axis=-1, dtype=np.float32)
    elif op == 4:
        y = flat.sum(axis=-1, dtype=np.float32) / np.float32(flat.shape[-1])
    else:
        raise NetdslError("unknown reduction %d" % op, field="operation")
    return [np.asarray(y * np.float32(p.coeff), dtype=np.float32)]
