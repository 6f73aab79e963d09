"""Layers that move, join or reshape blobs: Crop, Concat, Slice, Split, Eltwise,
Flatten, Reshape, Tile, Reduction, ArgMax, BatchReindex, Filter, Silence.
"""
from __future__ import annotations

from typing import List

from google.protobuf.message import Message

from ..maps import Map, canon_axis, channel_axis_map
from ..errors import NetdslError
from .blob import (Noted, Shape, canonical_axis, count, enum_name, err, identity_map, same_shapes,
                   shape_str)
from .blob import f32_code
from .registry import Ops, declare
from .runtime import Context, np


def _crop(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # crop_layer.cpp: axes from crop_param.axis take bottom[1]'s size, shifted by offset
    p = layer.crop_param
    a, b = bottoms
    start = canonical_axis(p.axis, a, "crop_param.axis")
    no = len(p.offset)
    if no > 1 and start + no != len(a):
        raise err("number of offset values specified must be equal to the number of dimensions "
                  "following axis: %d offsets, axis %d of a %d-axis blob" % (no, start, len(a)),
                  "crop_param.offset")
    out = list(a)
    for i in range(start, len(a)):
        if i >= len(b):
            raise err("bottom[1] %s has no axis %d to crop bottom[0] %s to"
                      % (shape_str(b), i, shape_str(a)), "crop_param.axis")
        off = p.offset[0] if no == 1 else (p.offset[i - start] if no else 0)
        if a[i] - off < b[i]:
            raise err("the crop for dimension %d is out-of-bounds with size %d and offset %d: "
                      "bottom[0] has %d (Caffe requires bottom[0].shape(i) - offset >= "
                      "bottom[1].shape(i); %d - %d = %d < %d)"
                      % (i, b[i], off, a[i], a[i], off, a[i] - off, b[i]), "crop_param.offset")
        out[i] = b[i]
    return [tuple(out)]


def _concat(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # concat_layer.cpp: same shape except on the concat axis, whose sizes add up
    p = layer.concat_param
    first = bottoms[0]
    if p.HasField("axis") and p.HasField("concat_dim"):
        raise err("Either axis or concat_dim should be specified; not both", "concat_param.axis")
    if p.HasField("concat_dim"):
        axis = p.concat_dim
        if axis >= len(first):
            raise err("concat_dim %d out of range for %d-axis bottoms" % (axis, len(first)),
                      "concat_param.concat_dim")
    else:
        axis = canonical_axis(p.axis, first, "concat_param.axis")
    out = list(first)
    for i in range(1, len(bottoms)):
        b = bottoms[i]
        if len(b) != len(first):
            raise err("All inputs must have the same #axes: bottom[0] %s vs bottom[%d] %s"
                      % (shape_str(first), i, shape_str(b)))
        for j in range(len(first)):
            if j != axis and b[j] != first[j]:
                raise err("All inputs must have the same shape, except at concat_axis %d: "
                          "bottom[0] %s vs bottom[%d] %s differ on axis %d"
                          % (axis, shape_str(first), i, shape_str(b), j))
        out[axis] += b[axis]
    return [tuple(out)]


def _slice(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # slice_layer.cpp: slice_point splits the axis; none splits it evenly
    p = layer.slice_param
    shape = bottoms[0]
    if p.HasField("axis") and p.HasField("slice_dim"):
        raise err("Either axis or slice_dim should be specified; not both", "slice_param.axis")
    if p.HasField("slice_dim"):
        axis = p.slice_dim
        if axis >= len(shape):
            raise err("slice_dim %d out of range for a %d-axis bottom" % (axis, len(shape)),
                      "slice_param.slice_dim")
    else:
        axis = canonical_axis(p.axis, shape, "slice_param.axis")
    size = shape[axis]
    points = list(p.slice_point)
    if points:
        if len(points) != ntop - 1:
            raise err("%d slice_point values for %d tops (Caffe needs one fewer than the tops)"
                      % (len(points), ntop), "slice_param.slice_point")
        if ntop > size:
            raise err("%d tops cannot slice axis %d of size %d" % (ntop, axis, size),
                      "slice_param.slice_point")
        sizes, prev = [], 0
        for sp in points:
            if sp <= prev:
                raise err("slice_point values must increase and be positive (%d after %d)"
                          % (sp, prev), "slice_param.slice_point")
            sizes.append(sp - prev)
            prev = sp
        if size - prev < 0:
            # slice_layer.cpp pushes bottom_slice_axis - prev unchecked; Blob::Reshape then
            # CHECKs every dim >= 0 while the net is set up
            raise err("slice_point %d is past the end of axis %d (size %d): the last top would "
                      "have %d entries, and Caffe's Blob::Reshape fails (\"Check failed: shape[i] "
                      ">= 0\") when it sets the net up" % (prev, axis, size, size - prev),
                      "slice_param.slice_point")
        if size - prev == 0:
            # Caffe builds this net (an empty top is a legal blob) but its forward aborts
            # when it reads the empty top's data (blob.cpp: "Check failed: data_")
            raise err("slice_point %d leaves nothing for the last top: axis %d has size %d; "
                      "Caffe sets such a net up but aborts in its forward (blob.cpp: \"Check "
                      "failed: data_\")" % (prev, axis, size), "slice_param.slice_point")
        sizes.append(size - prev)
    else:
        if size % ntop:
            raise err("Number of top blobs (%d) should evenly divide input slice axis (%d)"
                      % (ntop, size), "slice_param.slice_point")
        sizes = [size // ntop] * ntop
    return [shape[:axis] + (s,) + shape[axis + 1:] for s in sizes]


def _split(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    return [bottoms[0]] * ntop


def _eltwise(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # eltwise_layer.cpp: identical shapes; coefficients only for SUM, one per bottom
    p = layer.eltwise_param
    if len(p.coeff) not in (0, len(bottoms)):
        raise err("Eltwise Layer takes one coefficient per bottom blob (%d coefficients, %d "
                  "bottoms)" % (len(p.coeff), len(bottoms)), "eltwise_param.coeff")
    if enum_name(p, "operation") == "PROD" and len(p.coeff):
        raise err("Eltwise layer only takes coefficients for summation", "eltwise_param.coeff")
    same_shapes(bottoms, "Eltwise")
    return [bottoms[0]]


def _flatten(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # flatten_layer.cpp: axes [axis, end_axis] become one
    p = layer.flatten_param
    shape = bottoms[0]
    start = canonical_axis(p.axis, shape, "flatten_param.axis")
    end = canonical_axis(p.end_axis, shape, "flatten_param.end_axis")
    if end + 1 < start:
        raise err("end_axis %d comes before axis %d" % (end, start), "flatten_param.end_axis")
    return [shape[:start] + (count(shape, start, end + 1),) + shape[end + 1:]]


def _reshape(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # reshape_layer.cpp: dims 0 copy the bottom's, one -1 is inferred; axis/num_axes
    # choose the replaced range
    p = layer.reshape_param
    shape = bottoms[0]
    dims = [int(d) for d in p.shape.dim]
    inferred = -1
    copy_axes = []
    constant = 1
    for i, d in enumerate(dims):
        if d == 0:
            copy_axes.append(i)
        elif d == -1:
            if inferred != -1:
                raise err("new shape contains multiple -1 dims; at most a single (1) value of "
                          "-1 may be specified", "reshape_param.shape")
            inferred = i
        else:
            if d < -1:
                raise err("dim %d is invalid (sizes are >= 1, 0 to copy, -1 to infer)" % d,
                          "reshape_param.shape")
            constant *= d
    n = len(shape)
    start = p.axis if p.axis >= 0 else n + p.axis + 1
    if start < 0 or start > n:
        raise err("axis %d out of range for %d-D input blob" % (p.axis, n), "reshape_param.axis")
    if p.num_axes < -1:
        raise err("num_axes must be >= 0, or -1 for all", "reshape_param.num_axes")
    end = n if p.num_axes == -1 else start + p.num_axes
    if end > n:
        raise err("end_axis = axis + num_axes = %d is out of range for a %d-axis input"
                  % (end, n), "reshape_param.num_axes")
    top = list(shape[:start]) + dims + list(shape[end:])
    for i in copy_axes:
        if start + i >= n:
            raise err("new shape contains a 0, but there was no corresponding bottom axis to "
                      "copy (dim %d, input %s)" % (i, shape_str(shape)), "reshape_param.shape")
        top[start + i] = shape[start + i]
    total = count(shape)
    if inferred >= 0:
        explicit = constant * count(shape, 0, start) * count(shape, end)
        for i in copy_axes:
            explicit *= top[start + i]
        if explicit == 0 or total % explicit:
            raise err("bottom count (%d) must be divisible by the product of the specified "
                      "dimensions (%d) to infer the -1" % (total, explicit), "reshape_param.shape")
        top[start + inferred] = total // explicit
    if count(top) != total:
        raise err("output count must match input count: %s has %d elements, input %s has %d"
                  % (shape_str(top), count(top), shape_str(shape), total), "reshape_param.shape")
    return [tuple(top)]


def _tile(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # tile_layer.cpp: the axis is multiplied by tiles
    p = layer.tile_param
    shape = bottoms[0]
    axis = canonical_axis(p.axis, shape, "tile_param.axis")
    if not p.HasField("tiles"):
        raise err("Number of tiles must be specified", "tile_param.tiles")
    if p.tiles <= 0:
        raise err("Number of tiles must be positive.", "tile_param.tiles")
    return [shape[:axis] + (shape[axis] * p.tiles,) + shape[axis + 1:]]


def _reduction(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # reduction_layer.cpp: the axes from axis on are reduced away
    shape = bottoms[0]
    axis = canonical_axis(layer.reduction_param.axis, shape, "reduction_param.axis")
    return [shape[:axis]]


def _argmax(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # argmax_layer.cpp: with axis, that axis becomes top_k; without, (N, 1 or 2, top_k, 1...)
    p = layer.argmax_param
    shape = bottoms[0]
    k = p.top_k
    if k < 1:
        raise err("top k must not be less than 1.", "argmax_param.top_k")
    if p.HasField("axis"):
        axis = canonical_axis(p.axis, shape, "argmax_param.axis")
        if k > shape[axis]:
            raise err("top_k %d must be less than or equal to the dimension of the axis (%d)"
                      % (k, shape[axis]), "argmax_param.top_k")
        return [shape[:axis] + (k,) + shape[axis + 1:]]
    if k > count(shape, 1):
        raise err("top_k %d must be less than or equal to the dimension of the flattened bottom "
                  "blob per instance (%d)" % (k, count(shape, 1)), "argmax_param.top_k")
    out = [1] * max(len(shape), 3)
    out[0] = shape[0]
    out[2] = k
    if p.out_max_val:
        out[1] = 2
    return [tuple(out)]


def _batch_reindex(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # batch_reindex_layer.cpp: (len(indices),) + bottom[0].shape[1:]
    if len(bottoms[1]) != 1:
        raise err("the index blob (bottom[1]) must have 1 axis; got %s" % shape_str(bottoms[1]))
    return [(bottoms[1][0],) + bottoms[0][1:]]


def _filter(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # filter_layer.cpp: the kept items depend on the selector's values; at set-up Caffe
    # shapes each top like its bottom (the full batch)
    if ntop != len(bottoms) - 1:
        raise err("Filter takes one top per bottom except the selector: %d bottoms, %d tops"
                  % (len(bottoms), ntop))
    sel = bottoms[-1]
    for i in range(1, len(sel)):
        if sel[i] != 1:
            raise err("Selector blob dimensions must be singletons (1), except the first; "
                      "selector %s" % shape_str(sel))
    for i, b in enumerate(bottoms[:-1]):
        if not b or b[0] != sel[0]:
            raise err("Each bottom should have the same 0th dimension as the selector blob: "
                      "bottom[%d] %s vs selector %s" % (i, shape_str(b), shape_str(sel)))
    return Noted([(bottoms[0][0],) + b[1:] for b in bottoms[:-1]],
                 "the first dimension depends on the selector at run time; shown is the "
                 "set-up shape (the whole batch)")


def _silence(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    return []


def _crop_map(layer: Message, shapes=None) -> Map:
    cp = layer.crop_param
    axis = canon_axis(cp.axis, layer, shapes, "crop_param.axis")
    offsets = tuple(cp.offset) or (0,)
    return axis - 1, (1,), tuple(-o for o in offsets)


def _concat_map(layer: Message, shapes=None) -> Map:
    cp = layer.concat_param
    axis = cp.concat_dim if cp.HasField("concat_dim") else cp.axis
    return channel_axis_map(axis, layer, shapes, "concat_param.axis")


def _slice_map(layer: Message, shapes=None) -> Map:
    sp = layer.slice_param
    axis = sp.slice_dim if sp.HasField("slice_dim") else sp.axis
    return channel_axis_map(axis, layer, shapes, "slice_param.axis")


def argmax(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
           ctx: Context) -> List[np.ndarray]:
    """Indices of the ``top_k`` largest values, largest first; among equal values
    the higher index first (Caffe sorts (value, index) pairs descending).

    With ``axis``: along that axis, which becomes ``top_k`` long; the values
    instead of indices with ``out_max_val``.  Without: over everything after
    axis 0, output (N, 1, top_k) -- or (N, 2, top_k), indices then values, with
    ``out_max_val`` -- padded to at least 3 axes.
    """
    p = layer.argmax_param
    x = bottoms[0]
    k = int(p.top_k)
    if p.HasField("axis"):
        axis = p.axis + x.ndim if p.axis < 0 else p.axis
        if not 0 <= axis < x.ndim:
            raise NetdslError("axis %d is out of range" % p.axis, field="axis")
        dim = x.shape[axis]
        moved = np.moveaxis(x, axis, -1).reshape(-1, dim)
    else:
        axis = None
        dim = int(np.prod(x.shape[1:], dtype=np.int64))
        moved = x.reshape(x.shape[0], dim)
    if not 1 <= k <= dim:
        raise NetdslError("top_k %d must be between 1 and the %d values compared" % (k, dim),
                          field="top_k")
    # descending by value, then by index: sort the reversed row stably
    rev = moved[:, ::-1]
    order = np.argsort(-rev, axis=1, kind="stable")[:, :k]
    idx = (dim - 1 - order)
    vals = np.take_along_axis(moved, idx, axis=1)
    if axis is not None:
        picked = vals if p.out_max_val else idx.astype(np.float32)
        shape = list(np.moveaxis(x, axis, -1).shape[:-1]) + [k]
        return [np.moveaxis(picked.reshape(shape).astype(np.float32), -1, axis)]
    n = x.shape[0]
    if p.out_max_val:
        out = np.stack([idx.astype(np.float32), vals.astype(np.float32)], axis=1)
    else:
        out = idx.astype(np.float32)[:, None, :]
    shape = [n, out.shape[1], k] + [1] * max(0, x.ndim - 3)
    return [out.reshape(shape)]


def eltwise(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
            ctx: Context) -> List[np.ndarray]:
    """PROD, SUM (``sum coeff_i x_i``, coefficients default 1) or MAX, of equal shapes."""
    p = layer.eltwise_param
    for i, b in enumerate(bottoms[1:], 1):
        if b.shape != bottoms[0].shape:
            raise NetdslError("bottom %d has shape %s, bottom 0 %s; Eltwise needs equal shapes"
                              % (i, b.shape, bottoms[0].shape))
    coeff = list(p.coeff)
    if coeff and len(coeff) != len(bottoms):
        raise NetdslError("%d coefficients for %d bottoms" % (len(coeff), len(bottoms)),
                          field="coeff")
    if p.operation == 0:
        y = bottoms[0]
        for b in bottoms[1:]:
            y = y * b
        return [np.array(y, dtype=np.float32)]
    if p.operation == 1:
        coeff = coeff or [1.0] * len(bottoms)
        y = np.zeros_like(bottoms[0])   # eltwise_layer.cpp: caffe_set(0), then axpy each
        for c, b in zip(coeff, bottoms):
            y += b if c == 1 else np.float32(c) * b
        return [y]
    if p.operation == 2:
        y = bottoms[0]
        for b in bottoms[1:]:
            y = np.maximum(y, b)
        return [np.array(y, dtype=np.float32)]
    raise NetdslError("unknown Eltwise operation %d" % p.operation, field="operation")


def _axis(axis: int, ndim: int, field: str = "axis") -> int:
    a = axis + ndim if axis < 0 else axis
    if not 0 <= a < ndim:
        raise NetdslError("axis %d is out of range for a %d-D blob" % (axis, ndim), field=field)
    return a


def split(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
          ctx: Context) -> List[np.ndarray]:
    return [bottoms[0]] * ctx.ntop


def silence(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
            ctx: Context) -> List[np.ndarray]:
    return []


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


def flatten(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
            ctx: Context) -> List[np.ndarray]:
    """Axes ``axis`` .. ``end_axis`` merged into one."""
    p = layer.flatten_param
    x = bottoms[0]
    a = _axis(p.axis, x.ndim)
    e = _axis(p.end_axis, x.ndim, "end_axis")
    shape = x.shape[:a] + (int(np.prod(x.shape[a:e + 1], dtype=np.int64)),) + x.shape[e + 1:]
    return [x.reshape(shape)]


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


def tile(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
         ctx: Context) -> List[np.ndarray]:
    """The blob repeated ``tiles`` times along ``axis`` (whole blocks)."""
    p = layer.tile_param
    x = bottoms[0]
    axis = _axis(p.axis, x.ndim)
    reps = [1] * x.ndim
    reps[axis] = int(p.tiles)
    return [np.tile(x, reps)]


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


def _eltwise_cost(ls) -> Ops:
    # eltwise_layer.cpp: k bottoms combined pairwise, k - 1 operations per element
    return Ops(elementwise=count(ls.top_shapes[0]) * (len(ls.bottom_shapes) - 1))


# -- declarations ----------------------------------------------------------------------

# -- ONNX export -------------------------------------------------------------------------

def _concat_onnx(layer: Message, ctx) -> List[str]:
    p = layer.concat_param
    axis = p.concat_dim if p.HasField("concat_dim") else canonical_axis(
        p.axis, ctx.in_shapes[0], "concat_param.axis")
    return [ctx.node("Concat", ctx.inputs, out=ctx.top(0), axis=int(axis))]


def _slice_onnx(layer: Message, ctx) -> List[str]:
    """One ONNX Slice per top, at the bounds Caffe's shape rule gives."""
    p = layer.slice_param
    shape = ctx.in_shapes[0]
    axis = p.slice_dim if p.HasField("slice_dim") else canonical_axis(
        p.axis, shape, "slice_param.axis")
    outs, start = [], 0
    for i, top in enumerate(ctx.out_shapes):
        outs.append(ctx.slice(ctx.inputs[0], [start], [start + top[axis]], [axis],
                              out=ctx.top(i)))
        start += top[axis]
    return outs


def _split_onnx(layer: Message, ctx) -> List[str]:
    """Every top is the bottom: the layer is removed."""
    return [ctx.inputs[0]] * len(layer.top)


def _eltwise_onnx(layer: Message, ctx) -> List[str]:
    """eltwise_layer.cpp: PROD (Mul chain), SUM (``sum coeff_i x_i``, each product
    only where the coefficient is not 1), MAX (ONNX Max)."""
    p = layer.eltwise_param
    xs = list(ctx.inputs)
    if p.operation == 2:
        return [ctx.node("Max", xs, out=ctx.top(0))]
    if p.operation == 1 and p.coeff:
        xs = [x if c == 1 else ctx.node("Mul", [x, ctx.scalar(float(np.float32(c)), "coeff")])
              for c, x in zip(p.coeff, xs)]
    op = "Mul" if p.operation == 0 else "Add"
    y = xs[0]
    for i, x in enumerate(xs[1:], 2):
        y = ctx.node(op, [y, x], out=ctx.top(0) if i == len(xs) else None)
    return [y]


def _crop_onnx(layer: Message, ctx) -> List[str]:
    """crop_layer.cpp as a Slice: the axes from ``axis`` start at their offset
    (one for all, or one each; default 0) and take bottom 1's size."""
    p = layer.crop_param
    a, b = ctx.in_shapes
    axis = canonical_axis(p.axis, a, "crop_param.axis")
    offs = [int(o) for o in p.offset]
    axes = list(range(axis, len(a)))
    starts = [(offs[0] if len(offs) == 1 else offs[d - axis]) if offs else 0 for d in axes]
    return [ctx.slice(ctx.inputs[0], starts, [o + b[d] for o, d in zip(starts, axes)], axes,
                      out=ctx.top(0))]


def _reshape_onnx(layer: Message, ctx) -> List[str]:
    """Flatten and Reshape (0 copies an axis, -1 is inferred) to the shape Caffe's
    rule computed; with a dynamic batch the batch axis stays 0 (copied)."""
    return [ctx.reshape(ctx.inputs[0], ctx.out_shapes[0], out=ctx.top(0))]


def _tile_onnx(layer: Message, ctx) -> List[str]:
    shape = ctx.in_shapes[0]
    axis = canonical_axis(layer.tile_param.axis, shape, "tile_param.axis")
    reps = [1] * len(shape)
    reps[axis] = int(layer.tile_param.tiles)
    return [ctx.node("Tile", [ctx.inputs[0], ctx.ints(reps, "repeats")], out=ctx.top(0))]


def _reduction_onnx(layer: Message, ctx) -> List[str]:
    """reduction_layer.cpp: SUM, ASUM, SUMSQ or MEAN over the axes from ``axis`` on,
    times ``coeff``."""
    p = layer.reduction_param
    shape = ctx.in_shapes[0]
    axis = canonical_axis(p.axis, shape, "reduction_param.axis")
    op = {1: "ReduceSum", 2: "ReduceL1", 3: "ReduceSumSquare", 4: "ReduceMean"}.get(p.operation)
    if op is None:
        raise ctx.refuse("unknown reduction %d" % p.operation)
    coeff = float(np.float32(p.coeff))
    y = ctx.reduce(op, ctx.inputs[0], list(range(axis, len(shape))), keepdims=0,
                   out=ctx.top(0) if coeff == 1 else None)
    return [y if coeff == 1 else ctx.node("Mul", [y, ctx.scalar(coeff, "coeff")],
                                          out=ctx.top(0))]


def _argmax_onnx(layer: Message, ctx) -> List[str]:
    """argmax_layer.cpp as TopK (largest, sorted).  With ``axis``: along it, indices
    (as floats) or the values with ``out_max_val``.  Without: over everything after
    axis 0, (N, 1, k), or (N, 2, k) indices then values.  Equal values: Caffe puts
    the higher index first, TopK the lower."""
    p = layer.argmax_param
    shape = ctx.in_shapes[0]
    k = ctx.ints([int(p.top_k)], "k")
    if p.HasField("axis"):
        axis = canonical_axis(p.axis, shape, "argmax_param.axis")
        vals, idx = ctx.node("TopK", [ctx.inputs[0], k], n_out=2, axis=axis)
        if p.out_max_val:
            return [ctx.node("Identity", [vals], out=ctx.top(0))]
        return [ctx.node("Cast", [idx], out=ctx.top(0), to=1)]
    flat = ctx.node("Flatten", ctx.inputs, axis=1)
    vals, idx = ctx.node("TopK", [flat, k], n_out=2, axis=1)
    parts = [ctx.unsqueeze(ctx.node("Cast", [idx], to=1), [1])]
    if p.out_max_val:
        parts.append(ctx.unsqueeze(vals, [1]))
    y = parts[0] if len(parts) == 1 else ctx.node("Concat", parts, axis=1)
    return [ctx.reshape(y, ctx.out_shapes[0], out=ctx.top(0))]


def _concat_torch(layer: Message, ctx) -> str:
    p = layer.concat_param
    axis = p.concat_dim if p.HasField("concat_dim") else canonical_axis(
        p.axis, ctx.in_shapes[0], "concat_param.axis")
    return "torch.cat([%s], %d)" % (", ".join(ctx.x), axis)


def _slice_torch(layer: Message, ctx) -> str:
    """torch.split at the bounds Caffe's shape rule gives (slice_layer.cpp)."""
    p = layer.slice_param
    axis = p.slice_dim if p.HasField("slice_dim") else canonical_axis(
        p.axis, ctx.in_shapes[0], "slice_param.axis")
    sizes = [int(top[axis]) for top in ctx.out_shapes]
    y = "torch.split(%s, %s, %d)" % (ctx.x[0], sizes, axis)
    return y if len(sizes) > 1 else y + "[0]"


def _split_torch(layer: Message, ctx) -> List[str]:
    """Every top is the bottom."""
    return [ctx.x[0]] * len(layer.top)


def _eltwise_torch(layer: Message, ctx) -> str:
    """eltwise_layer.cpp: PROD, SUM (``sum coeff_i x_i``), MAX."""
    p = layer.eltwise_param
    xs = list(ctx.x)
    if p.operation == 2:
        y = xs[0]
        for x in xs[1:]:
            y = "torch.maximum(%s, %s)" % (y, x)
        return y
    if p.operation == 0:
        return " * ".join(xs)
    coeffs = [float(np.float32(c)) for c in p.coeff] or [1.0] * len(xs)
    terms = []
    for i, (c, x) in enumerate(zip(coeffs, xs)):
        sign = "-" if c < 0 else "+"
        mag = abs(c)
        term = x if mag == 1 else "%s * %s" % (f32_code(mag), x)
        terms.append(("-" + term if sign == "-" else term) if i == 0 else
                     "%s %s" % (sign, term))
    return " ".join(terms)


def _crop_torch(layer: Message, ctx) -> str:
    """crop_layer.cpp: the axes from ``axis`` start at their offset (one for all,
    or one each; default 0) and take bottom 1's size (the helper)."""
    p = layer.crop_param
    a = ctx.in_shapes[0]
    axis = canonical_axis(p.axis, a, "crop_param.axis")
    offs = [int(o) for o in p.offset]
    starts = [(offs[0] if len(offs) == 1 else offs[d - axis]) if offs else 0
              for d in range(axis, len(a))]
    return "%s(%s, %s, %d, %s)" % (ctx.helper("caffe_crop"), ctx.x[0], ctx.x[1], axis,
                                   ctx.lit(tuple(starts)))


def _flatten_torch(layer: Message, ctx) -> str:
    p = layer.flatten_param
    shape = ctx.in_shapes[0]
    axis = canonical_axis(p.axis, shape, "flatten_param.axis")
    end = canonical_axis(p.end_axis, shape, "flatten_param.end_axis")
    return "torch.flatten(%s, %d, %d)" % (ctx.x[0], axis, end)


def _reshape_torch(layer: Message, ctx) -> str:
    """reshape_layer.cpp (the helper: 0 copies an axis, -1 is inferred)."""
    p = layer.reshape_param
    shape = ctx.in_shapes[0]
    axis = p.axis if p.axis >= 0 else len(shape) + 1 + p.axis
    return "%s(%s, %s, %d, %d)" % (ctx.helper("caffe_reshape"), ctx.x[0],
                                   ctx.lit(tuple(int(d) for d in p.shape.dim)), axis,
                                   p.num_axes)


def _tile_torch(layer: Message, ctx) -> str:
    shape = ctx.in_shapes[0]
    axis = canonical_axis(layer.tile_param.axis, shape, "tile_param.axis")
    reps = [1] * len(shape)
    reps[axis] = int(layer.tile_param.tiles)
    return "%s.repeat(%s)" % (ctx.x[0], ctx.lit(tuple(reps)))


def _reduction_torch(layer: Message, ctx) -> str:
    """reduction_layer.cpp: SUM, ASUM, SUMSQ or MEAN over the axes from ``axis`` on,
    times ``coeff``."""
    p = layer.reduction_param
    shape = ctx.in_shapes[0]
    axis = canonical_axis(p.axis, shape, "reduction_param.axis")
    x = "torch.flatten(%s, %d)" % (ctx.x[0], axis)
    form = {1: "%s.sum(-1)", 2: "%s.abs().sum(-1)", 3: "(%s ** 2).sum(-1)",
            4: "%s.mean(-1)"}.get(p.operation)
    if form is None:
        raise ctx.refuse("unknown reduction %d" % p.operation)
    y = form % x
    coeff = float(np.float32(p.coeff))
    return y if coeff == 1 else "%s * %s" % (f32_code(coeff), y)


def _argmax_torch(layer: Message, ctx) -> str:
    """argmax_layer.cpp (the helper: the larger index first among equal values)."""
    p = layer.argmax_param
    axis = canonical_axis(p.axis, ctx.in_shapes[0], "argmax_param.axis") \
        if p.HasField("axis") else None
    y = "%s(%s, %d, %r, %s)" % (ctx.helper("caffe_argmax"), ctx.x[0], p.top_k,
                                bool(p.out_max_val), axis)
    if axis is None:
        y += ".reshape(%s)" % ctx.lit((-1,) + tuple(int(d) for d in ctx.out_shapes[0][1:]))
    return y



declare("ArgMax", family="structure", bottoms=1, tops=1, shape=_argmax, forward=argmax,
        onnx=_argmax_onnx, torch=_argmax_torch)
declare("BatchReindex", family="structure", bottoms=2, tops=1, shape=_batch_reindex)
declare("Concat", family="structure", bottoms=(1, None), tops=1, shape=_concat,
        coord_map=_concat_map, forward=concat, onnx=_concat_onnx,
        torch=_concat_torch)
declare("Crop", family="structure", bottoms=2, tops=1, shape=_crop, coord_map=_crop_map,
        forward=crop, map_bottoms=1, onnx=_crop_onnx, torch=_crop_torch)
declare("Eltwise", family="structure", bottoms=(2, None), tops=1, shape=_eltwise,
        coord_map=identity_map, forward=eltwise, cost=_eltwise_cost, onnx=_eltwise_onnx,
        torch=_eltwise_torch)
declare("Filter", family="structure", bottoms=(2, None), tops=(1, None), shape=_filter)
declare("Flatten", family="structure", bottoms=1, tops=1, in_place=False, shape=_flatten,
        forward=flatten, onnx=_reshape_onnx, torch=_flatten_torch)
declare("Reduction", family="structure", bottoms=1, tops=1, shape=_reduction, forward=reduction,
        onnx=_reduction_onnx, torch=_reduction_torch)
declare("Reshape", family="structure", bottoms=1, tops=1, in_place=False, shape=_reshape,
        forward=reshape, onnx=_reshape_onnx, torch=_reshape_torch)
declare("Silence", family="structure", bottoms=(1, None), tops=0, shape=_silence, forward=silence)
declare("Slice", family="structure", bottoms=1, tops=(1, None), shape=_slice, coord_map=_slice_map,
        forward=slice_layer, onnx=_slice_onnx, torch=_slice_torch)
declare("Split", family="structure", bottoms=1, tops=(1, None), in_place=False, shape=_split,
        coord_map=identity_map, forward=split, onnx=_split_onnx, torch=_split_torch)
declare("Tile", family="structure", bottoms=1, tops=1, shape=_tile, forward=tile,
        onnx=_tile_onnx, torch=_tile_torch)
