"""Shape ops: view/reshape/flatten/squeeze/unsqueeze (Reshape), expand
(exact copies), cat/stack (Concat), split/chunk/slice/narrow/select/unbind
(Slice), constant indexing and strided slices (Slice + Concat of the runs), permute/transpose of the axes between a fixed leading
axis and a fixed tail (a 1x1 Convolution whose kernel is the permutation
matrix: each output is one input times 1 plus zeros -- channel shuffle),
pixel_shuffle / pixel_unshuffle (a Deconvolution / Convolution with a 0/1
kernel that moves each value to its place)."""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from netdsl.convert.graph import Blob, Context, Op
from netdsl.convert.families.common import axis, broadcast_to, concat, nchw, reshape, slice_axis
from netdsl.convert.refusal import no_stock_form
from netdsl.convert.table import register_converter

#: largest permuted block (values along the permuted axes) turned into a matrix
MAX_PERMUTE = 4096


def _x(op: Op) -> Blob:
    x = op["input"]
    if not isinstance(x, Blob):
        raise op.error("the input must be computed from the net's inputs")
    return x


@register_converter("aten.view", "aten.reshape", "aten._unsafe_view", "aten.flatten",
                    "aten.squeeze", "aten.unsqueeze", "aten.view_as", "aten.reshape_as",
                    "aten.unflatten")
def view(cx: Context, op: Op) -> Blob:
    return reshape(cx, _x(op), op.out_shape)


@register_converter("aten.expand", "aten.expand_as", "aten.broadcast_to")
def expand(cx: Context, op: Op) -> Blob:
    return broadcast_to(cx, _x(op), op.out_shape)


@register_converter("aten.repeat", "aten.tile")
def repeat(cx: Context, op: Op) -> Blob:
    """``x.repeat(r...)`` / ``tile``: along each axis with r > 1, Concat of r
    copies (copies, exact); leading new axes are added by a Reshape first."""
    x = _x(op)
    reps = [int(r) for r in (op.get("repeats") or op.get("dims"))]
    if len(reps) < x.ndim:
        reps = [1] * (x.ndim - len(reps)) + reps
    if len(reps) > x.ndim:
        x = reshape(cx, x, (1,) * (len(reps) - x.ndim) + x.shape)
    for ax, r in enumerate(reps):
        if r > 1:
            x = concat(cx, [x] * r, ax)
    return reshape(cx, x, op.out_shape)


def _blobs(op: Op, items: Sequence) -> List[Blob]:
    for t in items:
        if not isinstance(t, Blob):
            raise op.error("every tensor to join must be computed from the net's inputs "
                           "(a constant tensor has no Caffe blob)")
    return list(items)


def _constant_blob(cx: Context, op: Op, like: Blob, ax: int, value: np.ndarray, k: int
                   ) -> Blob:
    """A constant tensor joined to computed ones (CoordConv's coordinates, a class
    token) as a blob: one position of ``like`` along ``ax`` times 0 (Power), then
    a Scale whose bias is the constant, broadcast over the batch.  Exact for
    finite inputs."""
    from netdsl.convert.families.arithmetic import _scale_const
    value = np.asarray(value, np.float32)
    if value.ndim != like.ndim:
        raise op.error("a constant to join must have the computed tensors' rank")
    shape = list(like.shape)
    shape[ax] = value.shape[ax]
    if any(v not in (1, s) for v, s in zip(value.shape, shape)):
        raise op.error("a constant of shape %s does not join tensors of shape %s"
                       % (value.shape, like.shape))
    one = slice_axis(cx, like, ax, [(0, 1)])[0]
    zero = Blob(cx.L.Power(one.top, scale=0.0), one.shape)
    sub = Op(op.key, {}, tuple(shape), "%s/const%d" % (op.name, k), op.module, op.source)
    return _scale_const(cx, sub, zero, None, value)


@register_converter("aten.cat", "aten.concat", "aten.concatenate")
def cat(cx: Context, op: Op) -> Blob:
    tensors = list(op["tensors"])
    ax = axis(int(op.get("dim", 0)), len(op.out_shape))
    like = next((t for t in tensors if isinstance(t, Blob)), None)
    if like is not None:
        tensors = [t if isinstance(t, Blob) else _constant_blob(cx, op, like, ax, t, k)
                   for k, t in enumerate(tensors)]
    parts = [t for t in _blobs(op, tensors) if 0 not in t.shape]
    return concat(cx, parts, ax)


@register_converter("aten.stack")
def stack(cx: Context, op: Op) -> Blob:
    parts = _blobs(op, op["tensors"])
    ax = axis(int(op.get("dim", 0)), len(op.out_shape))
    views = [reshape(cx, p, p.shape[:ax] + (1,) + p.shape[ax:]) for p in parts]
    return concat(cx, views, ax)


def _split(cx: Context, op: Op, x: Blob, ax: int, sizes: Sequence[int]) -> List[Blob]:
    bounds, start = [], 0
    for s in sizes:
        bounds.append((start, start + int(s)))
        start += int(s)
    return slice_axis(cx, x, ax, bounds)


@register_converter("aten.split", "aten.split_with_sizes")
def split(cx: Context, op: Op) -> List[Blob]:
    x = _x(op)
    ax = axis(int(op.get("dim", 0)), x.ndim)
    sizes = op.args.get("split_sizes")
    if sizes is None:
        step = int(op["split_size"])
        sizes = [min(step, x.shape[ax] - i) for i in range(0, x.shape[ax], step)]
    return _split(cx, op, x, ax, sizes)


@register_converter("aten.chunk")
def chunk(cx: Context, op: Op) -> List[Blob]:
    x = _x(op)
    ax = axis(int(op.get("dim", 0)), x.ndim)
    return _split(cx, op, x, ax, [s[ax] for s in op.out_shape])


@register_converter("aten.unbind")
def unbind(cx: Context, op: Op) -> List[Blob]:
    x = _x(op)
    ax = axis(int(op.get("dim", 0)), x.ndim)
    parts = _split(cx, op, x, ax, [1] * x.shape[ax])
    return [reshape(cx, p, s) for p, s in zip(parts, op.out_shape)]


def _narrow(cx: Context, op: Op, x: Blob, ax: int, start: int, end: int) -> Blob:
    return slice_axis(cx, x, ax, [(start, end)])[0]


@register_converter("aten.slice")
def slice_(cx: Context, op: Op) -> Blob:
    x = _x(op)
    ax = axis(int(op.get("dim", 0)), x.ndim)
    step = int(op.get("step", 1))
    size = x.shape[ax]
    start = op.get("start", 0)
    end = op.get("end", size)
    start = max(0, min(size, start + size if start < 0 else start))
    end = max(start, min(size, end + size if end < 0 else end))
    if end == start:
        raise op.error("an empty slice has no Caffe blob")
    if step != 1:  # every step-th position: copies of single positions
        idx = np.arange(start, end, step)
        return gather_points(cx, op, x, [ax], idx[:, None], idx.shape)
    return _narrow(cx, op, x, ax, start, end)


@register_converter("aten.narrow")
def narrow(cx: Context, op: Op) -> Blob:
    x = _x(op)
    ax = axis(int(op["dim"]), x.ndim)
    start = int(op["start"])
    start = start + x.shape[ax] if start < 0 else start
    return _narrow(cx, op, x, ax, start, start + int(op["length"]))


@register_converter("aten.select")
def select(cx: Context, op: Op) -> Blob:
    x = _x(op)
    ax = axis(int(op["dim"]), x.ndim)
    i = int(op["index"])
    i = i + x.shape[ax] if i < 0 else i
    return reshape(cx, _narrow(cx, op, x, ax, i, i + 1), op.out_shape)


def gather_points(cx: Context, op: Op, x: Blob, axes: Sequence[int], points: np.ndarray,
                  index_shape: Sequence[int]) -> Blob:
    """``x`` indexed on the consecutive axes ``axes`` (not the batch axis) by the
    constant integer tuples ``points`` (K x len(axes)): shape
    ``x.shape[:a] + index_shape + x.shape[b:]``.  The indexed axes are viewed
    as one (Reshape), cut where a run of consecutive positions starts or ends
    (Slice) and the runs joined in index order (Concat): copies, exact."""
    axes = [axis(int(a), x.ndim) for a in axes]
    a0, k = axes[0], len(axes)
    if axes != list(range(a0, a0 + k)) or a0 == 0:
        raise op.error("indexing axes %s: only consecutive axes after the batch axis have "
                       "an exact Caffe mapping" % (axes,))
    dims = x.shape[a0:a0 + k]
    points = np.asarray(points, np.int64).reshape(-1, k)
    points = np.where(points < 0, points + np.asarray(dims, np.int64), points)
    if ((points < 0) | (points >= np.asarray(dims, np.int64))).any():
        raise op.error("an index is out of range for the indexed axes %s" % (dims,))
    size = int(np.prod(dims))
    flat = [int(i) for i in np.ravel_multi_index(points.T, dims)] if k else []
    if not flat:
        raise op.error("an empty index has no Caffe blob")
    pre, post = x.shape[:a0], x.shape[a0 + k:]
    v = reshape(cx, x, pre + (size,) + post)
    runs: List[List[int]] = [[flat[0], flat[0] + 1]]
    for i in flat[1:]:
        if i == runs[-1][1]:
            runs[-1][1] += 1
        else:
            runs.append([i, i + 1])
    cuts = sorted({p for run in runs for p in run} | {0, size})
    pieces = slice_axis(cx, v, a0, list(zip(cuts[:-1], cuts[1:])))
    start = {c: i for i, c in enumerate(cuts[:-1])}
    parts: List[Blob] = []
    for a, b in runs:
        i = start[a]
        while cuts[i] < b:
            parts.append(pieces[i])
            i += 1
    return reshape(cx, concat(cx, parts, a0), pre + tuple(int(d) for d in index_shape) + post)


@register_converter("aten.index_select")
def index_select(cx: Context, op: Op) -> Blob:
    x = _x(op)
    idx = op["index"]
    if isinstance(idx, Blob):
        raise op.error("the index must be a constant, not computed from the net's inputs")
    idx = np.asarray(idx).reshape(-1)
    return gather_points(cx, op, x, [int(op["dim"])], idx[:, None], idx.shape)


@register_converter("aten.flip")
def flip(cx: Context, op: Op) -> Blob:
    """``x.flip(dims)``: each axis's positions in reverse order (copies: Slice +
    Concat, one piece per position)."""
    x = _x(op)
    for d in op["dims"]:
        ax = axis(int(d), x.ndim)
        idx = np.arange(x.shape[ax] - 1, -1, -1)
        x = gather_points(cx, op, x, [ax], idx[:, None], idx.shape)
    return reshape(cx, x, op.out_shape)


@register_converter("aten.index")
def index(cx: Context, op: Op) -> Blob:
    """``x[..., i, j, ...]`` with constant index tensors on adjacent axes
    (PyTorch puts the broadcast index shape in their place)."""
    x = _x(op)
    given: List = []
    d = 0
    for t in op["indices"]:
        if isinstance(t, Blob):
            raise op.error("indices must be constants, not computed from the net's inputs")
        if t is not None and np.asarray(t).dtype == np.bool_:  # a mask: its nonzero positions
            t = np.asarray(t)
            given += [(d + i, nz) for i, nz in enumerate(np.nonzero(t))]
            d += t.ndim
            continue
        if t is not None:
            given.append((d, t))
        d += 1
    if not given:
        raise op.error("indexing with no index tensor")
    axes = [d for d, _ in given]
    if axes != list(range(axes[0], axes[0] + len(axes))):
        raise op.error("index tensors on axes %s that are not adjacent move the indexed "
                       "axes first; Caffe cannot express it exactly" % (axes,))
    arrays = np.broadcast_arrays(*[np.asarray(t).astype(np.int64) for _, t in given])
    points = np.stack([a.reshape(-1) for a in arrays], axis=1)
    return gather_points(cx, op, x, axes, points, arrays[0].shape)


def _swap_groups(cx: Context, op: Op, x: Blob, perm: Sequence[int], p: int, q: int
                 ) -> Optional[Blob]:
    """A permutation that swaps two adjacent groups of axes, (lead, A, B, tail) ->
    (lead, B, A, tail) (NCHW <-> NHWC is one): the smaller group cut into single
    positions (Slice), each turned (Reshape) and joined along the other side
    (Concat) -- min(A, B) copies.  None for any other permutation."""
    for m in range(p + 1, q):
        if list(perm[p:q]) == list(range(m, q)) + list(range(p, m)):
            break
    else:
        return None
    lead = int(np.prod(x.shape[:p]))
    a, b = int(np.prod(x.shape[p:m])), int(np.prod(x.shape[m:q]))
    tail = int(np.prod(x.shape[q:]))
    if min(a, b) > MAX_PERMUTE:
        return None
    v = reshape(cx, x, (lead, a, b, tail))
    if a <= b:
        pieces = slice_axis(cx, v, 1, [(i, i + 1) for i in range(a)])
        turned = [reshape(cx, t, (lead, b, 1, tail)) for t in pieces]
        y = concat(cx, turned, 2)
    else:
        pieces = slice_axis(cx, v, 2, [(i, i + 1) for i in range(b)])
        turned = [reshape(cx, t, (lead, 1, a, tail)) for t in pieces]
        y = concat(cx, turned, 1)
    return reshape(cx, y, op.out_shape)


def permute_blob(cx: Context, op: Op, x: Blob, perm: Sequence[int]) -> Blob:
    """``x.permute(perm)`` when axis 0 and a tail of axes stay in place: the
    moved block (the axes between) is a channel permutation, done by a 1x1
    Convolution with the 0/1 permutation matrix on the (lead, block, tail, 1)
    view."""
    n = x.ndim
    perm = [axis(int(p), n) for p in perm]
    if perm == list(range(n)):
        return x
    p = 0
    while p < n and perm[p] == p:
        p += 1
    q = n
    while q > p and perm[q - 1] == q - 1:
        q -= 1
    if p == 0:
        lead_moves = [d for d in range(n) if perm[d] != d and x.shape[d] != 1]
        raise op.error("this permutation moves the batch axis; Caffe's stock layers "
                       "cannot express it exactly" if lead_moves else
                       "this permutation moves the first axis")
    block = x.shape[p:q]
    mid = int(np.prod(block))
    if mid > MAX_PERMUTE:
        swapped = _swap_groups(cx, op, x, perm, p, q)
        if swapped is not None:
            return swapped
        raise op.error("a permutation of %d values per position is too large for a "
                       "permutation matrix (limit %d), and it is not a swap of two groups "
                       "of axes" % (mid, MAX_PERMUTE))
    lead = int(np.prod(x.shape[:p]))
    tail = int(np.prod(x.shape[q:]))
    src = np.arange(mid).reshape(block).transpose([perm[k] - p for k in range(p, q)]).reshape(-1)
    w = np.zeros((mid, mid, 1, 1), np.float32)
    w[np.arange(mid), src, 0, 0] = 1.0
    v = reshape(cx, x, (lead, mid, tail, 1))
    name = op.name
    top = cx.L.Convolution(v.top, name=name, convolution_param={
        "num_output": mid, "kernel_size": 1, "bias_term": False})
    cx.weights[name] = [w]
    return reshape(cx, Blob(top, (lead, mid, tail, 1)), op.out_shape)


@register_converter("aten.permute")
def permute(cx: Context, op: Op) -> Blob:
    return permute_blob(cx, op, _x(op), op["dims"])


@register_converter("aten.transpose", "aten.swapaxes", "aten.swapdims")
def transpose(cx: Context, op: Op) -> Blob:
    x = _x(op)
    a = axis(int(op.args.get("dim0", op.args.get("axis0"))), x.ndim)
    b = axis(int(op.args.get("dim1", op.args.get("axis1"))), x.ndim)
    perm = list(range(x.ndim))
    perm[a], perm[b] = perm[b], perm[a]
    return permute_blob(cx, op, x, perm)


@register_converter("aten.pixel_shuffle")
def pixel_shuffle(cx: Context, op: Op) -> Blob:
    """``out[c, h r + i, w r + j] = in[c r^2 + i r + j, h, w]``: a Deconvolution
    with kernel r, stride r, one group per output channel and a kernel that is 1
    at tap (i, j) for input channel ``c r^2 + i r + j``.  With the optional
    argument ``mode='DCR'`` (ONNX DepthToSpace's default) the input channel is
    ``(i r + j) C + c``: an ungrouped Deconvolution with a one-hot kernel."""
    x = _x(op)
    nchw(x.shape, op)
    r = int(op["upscale_factor"])
    c = x.shape[1] // (r * r)
    if op.get("mode", "CRD") == "DCR":
        w = np.zeros((x.shape[1], c, r, r), np.float32)
        for k in range(x.shape[1]):
            w[k, k % c, (k // c) // r, (k // c) % r] = 1.0
        top = cx.L.Deconvolution(x.top, name=op.name, convolution_param={
            "num_output": c, "kernel_size": r, "stride": r, "bias_term": False})
        cx.weights[op.name] = [w]
        return Blob(top, op.out_shape)
    w = np.zeros((x.shape[1], 1, r, r), np.float32)
    for k in range(x.shape[1]):
        w[k, 0, (k % (r * r)) // r, k % r] = 1.0
    top = cx.L.Deconvolution(x.top, name=op.name, convolution_param={
        "num_output": c, "group": c, "kernel_size": r, "stride": r, "bias_term": False})
    cx.weights[op.name] = [w]
    return Blob(top, op.out_shape)


@register_converter("aten.pixel_unshuffle")
def pixel_unshuffle(cx: Context, op: Op) -> Blob:
    """``out[c r^2 + i r + j, h, w] = in[c, h r + i, w r + j]``: a grouped
    Convolution with kernel r, stride r and a one-hot kernel per output.  With
    ``mode='DCR'`` (ONNX SpaceToDepth's order) the output channel is
    ``(i r + j) C + c``: an ungrouped Convolution with a one-hot kernel."""
    x = _x(op)
    nchw(x.shape, op)
    r = int(op["downscale_factor"])
    c = x.shape[1]
    if op.get("mode", "CRD") == "DCR":
        w = np.zeros((c * r * r, c, r, r), np.float32)
        for k in range(c * r * r):
            w[k, k % c, (k // c) // r, (k // c) % r] = 1.0
        top = cx.L.Convolution(x.top, name=op.name, convolution_param={
            "num_output": c * r * r, "kernel_size": r, "stride": r, "bias_term": False})
        cx.weights[op.name] = [w]
        return Blob(top, op.out_shape)
    w = np.zeros((c * r * r, 1, r, r), np.float32)
    for k in range(c * r * r):
        w[k, 0, (k % (r * r)) // r, k % r] = 1.0
    top = cx.L.Convolution(x.top, name=op.name, convolution_param={
        "num_output": c * r * r, "group": c, "kernel_size": r, "stride": r, "bias_term": False})
    cx.weights[op.name] = [w]
    return Blob(top, op.out_shape)


# -- writing into slices ------------------------------------------------------------------

def place(cx: Context, op: Op, base: Blob, ax: int, positions: Sequence[int],
          value: Blob) -> Blob:
    """``base`` with the positions ``positions`` (ascending) of axis ``ax``
    replaced by the rows of ``value`` (``base``'s shape with ``len(positions)``
    on ``ax``): the untouched runs of ``base`` and the runs of ``value`` cut by
    Slice and joined in order by Concat, copies, exact."""
    size = base.shape[ax]
    positions = [int(p) for p in positions]
    if tuple(value.shape[:ax] + value.shape[ax + 1:]) != base.shape[:ax] + base.shape[ax + 1:] \
            or value.shape[ax] != len(positions):
        raise op.error("internal: %s does not fit positions %s of %s"
                       % (value.shape, positions, base.shape))
    runs: List[List[int]] = []                  # [first position, end, first value row]
    for k, p in enumerate(positions):
        if runs and p == runs[-1][1]:
            runs[-1][1] += 1
        else:
            runs.append([p, p + 1, k])
    keep = []
    at = 0
    for a, b, _ in runs:
        if a > at:
            keep.append((at, a))
        at = b
    if at < size:
        keep.append((at, size))
    kept = iter(slice_axis(cx, base, ax, keep) if keep else [])
    news = iter(slice_axis(cx, value, ax, [(k, k + b - a) for a, b, k in runs]))
    parts: List[Blob] = []
    at = 0
    for a, b, _ in runs:
        if a > at:
            parts.append(next(kept))
        parts.append(next(news))
        at = b
    if at < size:
        parts.append(next(kept))
    return concat(cx, parts, ax)


def scatter(cx: Context, op: Op, base: Blob, steps: Sequence[Tuple[str, int, Any]],
            value: Blob) -> Blob:
    """``base`` with ``value`` written into the view that ``steps`` takes of it:
    each step ``("slice", axis, positions)`` or ``("select", axis, index)``
    (select drops the axis), applied in order."""
    kind, ax, where = steps[0]
    positions = [int(where)] if kind == "select" else [int(p) for p in where]
    if len(steps) > 1:
        inner = gather_axis(cx, op, base, ax, positions)
        if kind == "select":
            inner = reshape(cx, inner, inner.shape[:ax] + inner.shape[ax + 1:])
        value = scatter(cx, op, inner, steps[1:], value)
    if kind == "select":
        value = reshape(cx, value, value.shape[:ax] + (1,) + value.shape[ax:])
    return place(cx, op, base, ax, positions, value)


def gather_axis(cx: Context, op: Op, x: Blob, ax: int, positions: Sequence[int]) -> Blob:
    """The ascending ``positions`` of axis ``ax`` of ``x`` (Slice, Concat)."""
    positions = [int(p) for p in positions]
    if positions == list(range(positions[0], positions[0] + len(positions))):
        return _narrow(cx, op, x, ax, positions[0], positions[0] + len(positions))
    return concat(cx, slice_axis(cx, x, ax, [(p, p + 1) for p in positions]), ax)


def value_like(cx: Context, op: Op, like: Blob, value: Any) -> Blob:
    """``value`` (a blob broadcast to ``like``'s shape, a number or a constant
    tensor) as a blob of ``like``'s shape; constants are ``like * 0`` plus the
    constant (Power, or a Scale whose bias is the constant), exact for finite
    ``like``."""
    from netdsl.convert.families.arithmetic import _scale_const
    if isinstance(value, Blob):
        return broadcast_to(cx, value, like.shape)
    arr = np.asarray(value, np.float32)
    if arr.size == 1:
        return Blob(cx.L.Power(like.top, scale=0.0, shift=float(arr.reshape(-1)[0])),
                    like.shape)
    zero = Blob(cx.L.Power(like.top, scale=0.0), like.shape)
    sub = Op(op.key, {}, like.shape, "%s/const" % op.name, op.module, op.source)
    return _scale_const(cx, sub, zero, None, arr)


def constant_blob(cx: Context, op: Op, like: Blob, value: Any) -> Blob:
    """A constant tensor of any shape as a blob: the first value of ``like`` times 0
    (Power), copied out (a Deconvolution of ones), plus the constant (a Scale whose
    bias it is), reshaped; exact for finite inputs."""
    from netdsl.convert.families.arithmetic import _scale_const
    value = np.asarray(value, np.float32)
    row = reshape(cx, like, (1, int(np.prod(like.shape))))
    one = slice_axis(cx, row, 1, [(0, 1)])[0] if row.shape[1] > 1 else row
    zero = Blob(cx.L.Power(reshape(cx, one, (1, 1, 1, 1)).top, scale=0.0), (1, 1, 1, 1))
    wide = broadcast_to(cx, zero, (1, 1, 1, value.size))
    sub = Op(op.key, {}, wide.shape, "%s/const" % op.name, op.module, op.source)
    return reshape(cx, _scale_const(cx, sub, wide, None, value.reshape(wide.shape)),
                   value.shape)


def slice_positions(size: int, start: Any, end: Any, step: Any) -> List[int]:
    """The positions ``x[start:end:step]`` takes on an axis of ``size`` (PyTorch's
    clamping of out-of-range and negative bounds)."""
    start = 0 if start is None else int(start)
    end = size if end is None else int(end)
    start = max(0, min(size, start + size if start < 0 else start))
    end = max(start, min(size, end + size if end < 0 else end))
    return list(range(start, end, int(step or 1)))


@register_converter("aten.slice_scatter")
def slice_scatter(cx: Context, op: Op) -> Blob:
    """``torch.slice_scatter`` (what functionalisation makes of ``y[..., a:b] = v``):
    :func:`place`."""
    x = _x(op)
    ax = axis(int(op.get("dim", 0)), x.ndim)
    pos = slice_positions(x.shape[ax], op.get("start"), op.get("end"), op.get("step", 1))
    if not pos:
        return x
    return place(cx, op, x, ax, pos, value_like(cx, op, gather_axis(cx, op, x, ax, pos),
                                                 op["src"]))


@register_converter("aten.select_scatter")
def select_scatter(cx: Context, op: Op) -> Blob:
    """``torch.select_scatter`` (``y[:, 0] = v`` after functionalisation):
    :func:`place` at one position."""
    x = _x(op)
    ax = axis(int(op["dim"]), x.ndim)
    i = int(op["index"])
    i = i + x.shape[ax] if i < 0 else i
    src = op["src"]
    if isinstance(src, Blob):
        src = reshape(cx, src, x.shape[:ax] + (1,) + x.shape[ax + 1:]) \
            if src.ndim == x.ndim - 1 else src
    return place(cx, op, x, ax, [i], value_like(cx, op, _narrow(cx, op, x, ax, i, i + 1), src))


@register_converter("aten.copy")
def copy(cx: Context, op: Op) -> Blob:
    """``dst.copy_(src)`` (``y[..., a:b] = v`` in an exported graph): ``src``
    broadcast to ``dst``'s shape; the write into ``dst``'s base is the graph
    walk's (netdsl.torch.convert)."""
    dst, src = op["input"], op["src"]
    if not isinstance(dst, Blob):     # a constant canvas written with computed values
        if not isinstance(src, Blob):
            raise op.error("copies a constant into a constant")
        return broadcast_to(cx, src, np.shape(dst))
    return value_like(cx, op, dst, src)


@register_converter("aten.fill")
def fill(cx: Context, op: Op) -> Blob:
    """``dst.fill_(v)`` / ``y[a:b] = 0``: a blob of ``dst``'s shape holding ``v``."""
    return value_like(cx, op, _x(op), op["value"])


@register_converter("aten.index_put")
def index_put(cx: Context, op: Op) -> Blob:
    """``y[..., I] = v`` with one constant index tensor (integers or a mask, 1-D)
    on one axis and ``accumulate=False``: the indexed positions replaced as by
    :func:`place` (the value's rows reordered to ascending positions; for a
    repeated index the last write wins, as on the CPU)."""
    x = _x(op)
    idx = list(op["indices"] or [])
    given = [(k, i) for k, i in enumerate(idx) if i is not None]
    if any(isinstance(i, Blob) for _, i in given):
        raise no_stock_form(op, "an assignment at positions computed from the input "
                                "(data-dependent)")
    if op.get("accumulate", False) or len(given) != 1:
        raise op.error("only an assignment through one constant index tensor on one axis "
                       "has a Caffe form here (not written yet for other forms)")
    ax, index = given[0]
    index = np.asarray(index)
    if index.dtype == bool:
        index = np.nonzero(index.reshape(-1))[0]
    if index.ndim != 1:
        raise op.error("only a 1-D index tensor has a Caffe form here")
    index = np.where(index < 0, index + x.shape[ax], index).astype(np.int64)
    last = {int(p): k for k, p in enumerate(index)}     # the last write wins
    pos = sorted(last)
    rows = [last[p] for p in pos]
    shape = list(x.shape)
    shape[ax] = len(index)
    values = op["values"]
    if isinstance(values, Blob):
        value = broadcast_to(cx, values, shape)
        if rows != list(range(len(index))):
            value = concat(cx, [_narrow(cx, op, value, ax, r, r + 1) for r in rows], ax)
    else:
        arr = np.take(np.broadcast_to(np.asarray(values, np.float32), shape), rows, axis=ax)
        value = value_like(cx, op, gather_axis(cx, op, x, ax, pos), arr)
    return place(cx, op, x, ax, pos, value)
