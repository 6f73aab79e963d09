"""Pooling and SPP (BVLC pooling_layer.cpp, spp_layer.cpp).

:func:`pool_geometry` parses a PoolingParameter once per layer into a
:class:`PoolGeometry` (with the pooled size when the input shape is known);
the shape, coordinate-map and forward rules all read it.
"""
from __future__ import annotations

import math
from typing import List, NamedTuple, Optional, Tuple

from google.protobuf.message import Message

from ..maps import Map, UndefinedMapException, down_map
from ..errors import NetdslError
from .blob import Shape, count, enum_name, err, f32, need_rank
from .registry import Ops, declare
from .runtime import Context, np

_F = "pooling_param."


def pool_out(size: int, kernel: int, stride: int, pad: int, ceil_mode: bool = True) -> int:
    """pooling_layer.cpp: ceil (or floor) of float(in + 2p - k) / s, plus 1.

    The quotient is computed in single precision as Caffe does.  The rule
    that drops a last window starting in the padding is applied by
    :func:`pool_dims`, since Caffe applies it to both axes when either pads.
    """
    q = f32(float(f32(float(size + 2 * pad - kernel))) / float(f32(float(stride))))
    return int(math.ceil(q) if ceil_mode else math.floor(q)) + 1



def pool_dims(h: int, w: int, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int,
              ceil_mode: bool = True) -> Tuple[int, int]:
    """Pooled (height, width) with Caffe's clip: when there is padding, a last window
    starting at or beyond ``in + pad`` is dropped."""
    oh = pool_out(h, kh, sh, ph, ceil_mode)
    ow = pool_out(w, kw, sw, pw, ceil_mode)
    if ph or pw:
        if (oh - 1) * sh >= h + ph:
            oh -= 1
        if (ow - 1) * sw >= w + pw:
            ow -= 1
        for name, o, s, size, p in (("height", oh, sh, h, ph), ("width", ow, sw, w, pw)):
            if not (o - 1) * s < size + p:
                raise err("pooled %s %d: the last window still starts in the padding "
                          "((out - 1)*stride = %d >= in + pad = %d; Caffe CHECKs "
                          "(out - 1)*stride < in + pad)" % (name, o, (o - 1) * s, size + p),
                          "pooling_param.pad")
    return oh, ow



class PoolGeometry(NamedTuple):
    """A pooling window as (h, w) pairs; ``out`` is the pooled (height, width)
    when the input shape is known (None without one)."""
    kernel: Tuple[int, int]
    stride: Tuple[int, int]
    pad: Tuple[int, int]
    global_pooling: bool
    ceil_mode: bool
    out: Optional[Tuple[int, int]] = None


def pool_geometry(layer: Message, shape: Optional[Shape] = None) -> PoolGeometry:
    """PoolingLayer::LayerSetUp and Reshape on an input of ``shape``.

    kernel_size OR kernel_h and kernel_w (none with global_pooling, whose kernel
    is the input's height and width); pad OR pad_h and pad_w; stride OR
    stride_h and stride_w; padding only for MAX and AVE and smaller than the
    kernel.  ``round_mode`` (when the schema has it) is CEIL unless FLOOR.
    Without ``shape`` a global pooling's kernel is unknown (0, 0).
    """
    pp = layer.pooling_param
    if pp.global_pooling:
        if pp.HasField("kernel_size") or pp.HasField("kernel_h") or pp.HasField("kernel_w"):
            raise err("With Global_pooling: true Filter size cannot specified", _F + "kernel_size")
    elif pp.HasField("kernel_size") == (pp.HasField("kernel_h") and pp.HasField("kernel_w")):
        if pp.HasField("kernel_size"):
            raise err("Filter size is kernel_size OR kernel_h and kernel_w; not both",
                      _F + "kernel_size")
        raise err("For non-square filters both kernel_h and kernel_w are required "
                  "(or give kernel_size)", _F + "kernel_size")
    if not ((not pp.HasField("pad") and pp.HasField("pad_h") and pp.HasField("pad_w"))
            or (not pp.HasField("pad_h") and not pp.HasField("pad_w"))):
        raise err("pad is pad OR pad_h and pad_w are required", _F + "pad")
    if not ((not pp.HasField("stride") and pp.HasField("stride_h") and pp.HasField("stride_w"))
            or (not pp.HasField("stride_h") and not pp.HasField("stride_w"))):
        raise err("Stride is stride OR stride_h and stride_w are required", _F + "stride")
    if pp.global_pooling:
        if shape is not None:
            need_rank(shape, 4, "Pooling (num, channels, height, width)")
        kh, kw = (shape[2], shape[3]) if shape is not None else (0, 0)
    elif pp.HasField("kernel_size"):
        kh = kw = pp.kernel_size
    else:
        kh, kw = pp.kernel_h, pp.kernel_w
    if (kh <= 0 or kw <= 0) and not (shape is None and pp.global_pooling):
        raise err("Filter dimensions cannot be zero (kernel %d x %d)" % (kh, kw),
                  _F + "kernel_size")
    ph, pw = (pp.pad_h, pp.pad_w) if pp.HasField("pad_h") else (pp.pad, pp.pad)
    sh, sw = (pp.stride_h, pp.stride_w) if pp.HasField("stride_h") else (pp.stride, pp.stride)
    if sh <= 0 or sw <= 0:
        raise err("stride must be positive (got %d x %d)" % (sh, sw), _F + "stride")
    if pp.global_pooling and not (ph == 0 and pw == 0 and sh == 1 and sw == 1):
        raise err("With Global_pooling: true; only pad = 0 and stride = 1", _F + "global_pooling")
    if shape is not None or not pp.global_pooling:
        _pool_pad_checks(pp.pool, pp.DESCRIPTOR, kh, kw, ph, pw)
    ceil_mode = enum_name(pp, "round_mode") != "FLOOR"   # an older schema: CEIL
    out = None
    if shape is not None:
        need_rank(shape, 4, "Pooling (num, channels, height, width)")
        out = pool_dims(shape[2], shape[3], kh, kw, sh, sw, ph, pw, ceil_mode)
    return PoolGeometry((kh, kw), (sh, sw), (ph, pw), bool(pp.global_pooling), ceil_mode, out)


def _pool_pad_checks(method: int, desc, kh: int, kw: int, ph: int, pw: int) -> None:
    if ph or pw:
        ev = desc.fields_by_name["pool"].enum_type.values_by_number.get(method)
        mname = ev.name if ev is not None else str(method)
        if mname not in ("MAX", "AVE"):
            raise err("Padding implemented only for average and max pooling (pool is %s)"
                      % mname, "pooling_param.pad")
        if not (ph < kh and pw < kw):
            raise err("pad must be smaller than the kernel (pad %d x %d, kernel %d x %d; Caffe "
                      "CHECK_LT(pad, kernel))" % (ph, pw, kh, kw), "pooling_param.pad")



def _pool_max_tops(layer: Message) -> Tuple[int, int]:
    # pooling_layer.hpp: MAX pooling may output its argmax mask as a second top
    return (1, 2 if enum_name(layer.pooling_param, "pool") == "MAX" else 1)



def _pooling(layer: Message, bottoms: List[Shape], ntop: int, g: PoolGeometry) -> List[Shape]:
    # pooling_layer.cpp Reshape: (num, channels, pooled_height, pooled_width)
    shape = bottoms[0]
    return [(shape[0], shape[1]) + g.out] * ntop


def _empty_hint(layer: Message, bottoms: List[Shape], axis: int, g: PoolGeometry) -> str:
    if not bottoms or axis not in (2, 3):
        return ""
    i = axis - 2
    return (": ceil((in + 2*pad - kernel) / stride) + 1 = ceil((%d + 2*%d - %d) / %d) + 1 "
            "(pooling_layer.cpp)" % (bottoms[0][axis], g.pad[i], g.kernel[i], g.stride[i]))


def _pool_map(layer: Message, shapes, g: PoolGeometry) -> Map:
    # y = x / s + (p - (k - 1) / 2) / s on both spatial axes
    if g.global_pooling:
        raise UndefinedMapException("global pooling has no coordinate map",
                                    layer=layer.name or None)
    kernel, stride, pad = g.kernel, g.stride, g.pad
    if kernel[0] == kernel[1] and stride[0] == stride[1] and pad[0] == pad[1]:
        kernel, stride, pad = kernel[:1], stride[:1], pad[:1]
    return down_map(1, stride, kernel, pad)


def _spp(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # spp_layer.cpp: per level l, 2^l bins a side, kernel = ceil(in / bins),
    # pad = (kernel*bins - in + 1) / 2, stride = kernel; levels flattened and concatenated
    shape = bottoms[0]
    need_rank(shape, 4, "SPP (num, channels, height, width)")
    n, c, h, w = shape
    if h <= 0 or w <= 0:
        raise err("Input dimensions cannot be zero (%d x %d)" % (h, w))
    sp = layer.spp_param
    levels = sp.pyramid_height
    if levels < 1:
        raise err("pyramid_height must be at least 1", "spp_param.pyramid_height")
    pool_desc = layer.pooling_param.DESCRIPTOR
    method_ev = pool_desc.fields_by_name["pool"].enum_type.values_by_name.get(
        enum_name(sp, "pool"))
    method = method_ev.number if method_ev is not None else -1
    total = 0
    for g in _spp_levels(h, w, levels, method, pool_desc):
        if levels == 1:
            return [(n, c) + g.out]
        total += c * g.out[0] * g.out[1]
    return [(n, total)]


def _spp_levels(h: int, w: int, levels: int, method: int, pool_desc) -> List[PoolGeometry]:
    """spp_layer.cpp GetPoolingParam: level l has 2^l bins a side, kernel
    ceil(in / bins), pad (kernel*bins - in + 1) / 2 (integer), stride = kernel;
    the pooled size follows pooling_layer.cpp (ceil mode, the padding clip)."""
    out = []
    for lvl in range(levels):
        bins = 2 ** lvl
        kh, kw = -(-h // bins), -(-w // bins)
        ph, pw = (kh * bins - h + 1) // 2, (kw * bins - w + 1) // 2
        try:
            _pool_pad_checks(method, pool_desc, kh, kw, ph, pw)
            dims = pool_dims(h, w, kh, kw, kh, kw, ph, pw)
        except NetdslError as exc:
            raise err("pyramid level %d (%d x %d bins over %d x %d): %s"
                      % (lvl, bins, bins, h, w, exc.message), "spp_param.pyramid_height")
        out.append(PoolGeometry((kh, kw), (kh, kw), (ph, pw), False, True, dims))
    return out


def _spp_forward(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
                 ctx: Context) -> List[np.ndarray]:
    """spp_layer.cpp Forward_cpu: each level is a Pooling layer (the level's
    kernel, stride and pad; the SPP's method) on the whole bottom; with
    pyramid_height 1 that pooling's 4-D top is the top, otherwise each level is
    flattened to (num, C*PH*PW) and the levels are concatenated along axis 1."""
    x = bottoms[0]
    n, c, h, w = x.shape
    sp = layer.spp_param
    pool_layer = type(layer)()            # the LayerParameter GetPoolingParam builds
    pool_layer.name, pool_layer.type = layer.name, "Pooling"
    method = pool_layer.pooling_param.DESCRIPTOR.fields_by_name["pool"].enum_type \
        .values_by_name.get(enum_name(sp, "pool"))
    pool_layer.pooling_param.pool = method.number if method is not None else -1
    levels = _spp_levels(h, w, sp.pyramid_height, pool_layer.pooling_param.pool,
                         pool_layer.pooling_param.DESCRIPTOR)
    one = Context(phase=ctx.phase, ntop=1, rng=ctx.rng, inputs=ctx.inputs)
    pooled = [_forward(pool_layer, [x], [], one, g)[0] for g in levels]
    if len(pooled) == 1:
        return pooled
    return [np.concatenate([p.reshape(n, -1) for p in pooled], axis=1)]



def _pool_windows(size: int, k: int, s: int, pd: int, o: int):
    start = np.arange(o) * s - pd
    return start, np.minimum(start + k, size + pd)



def _forward(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
             ctx: Context, g: PoolGeometry) -> List[np.ndarray]:
    """MAX: the window clipped to the image; AVE: the sum over the window clipped to
    the image, divided by the window area clipped to ``H + pad`` (so padding
    counts, except past the bottom/right padding)."""
    p = layer.pooling_param
    x = bottoms[0]
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (ho, wo) = g.kernel, g.stride, g.pad, g.out
    method = p.pool
    if method == 2:
        raise NetdslError("STOCHASTIC pooling has no CPU forward in Caffe", field="pool")
    if p.global_pooling and method == 1:
        return [x.sum(axis=(2, 3), keepdims=True, dtype=np.float32) / np.float32(h * w)]
    if p.global_pooling and method == 0 and ctx.ntop == 1:
        return [x.max(axis=(2, 3), keepdims=True)]
    # pad so that every window lies inside the buffer
    eh = max(0, (ho - 1) * sh + kh - (h + 2 * ph))
    ew = max(0, (wo - 1) * sw + kw - (w + 2 * pw))
    fillv = -np.inf if method == 0 else 0.0
    if ph or pw or eh or ew:
        xp = np.pad(x, ((0, 0), (0, 0), (ph, ph + eh), (pw, pw + ew)), constant_values=fillv)
    else:
        xp = x   # every window inside the image: no padded copy
    if method == 0:
        out = np.full((n, c, ho, wo), -np.finfo(np.float32).max, dtype=np.float32)
        want_mask = ctx.ntop > 1
        mask = np.full(out.shape, -1.0, dtype=np.float32) if want_mask else None
        hs, _ = _pool_windows(h, kh, sh, ph, ho)
        ws, _ = _pool_windows(w, kw, sw, pw, wo)
        for i in range(kh):
            for j in range(kw):
                v = xp[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
                if want_mask:
                    upd = v > out
                    idx = ((hs + i)[:, None] * w + (ws + j)[None, :]).astype(np.float32)
                    mask = np.where(upd, idx, mask)
                    out = np.where(upd, v, out)
                else:
                    np.maximum(out, v, out=out)
        return [out, mask] if want_mask else [out]
    if method != 1:
        raise NetdslError("unknown pooling method %d" % method, field="pool")
    acc = np.zeros((n, c, ho, wo), dtype=np.float32)
    for i in range(kh):
        for j in range(kw):
            acc += xp[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
    hs, he = _pool_windows(h, kh, sh, ph, ho)
    ws, we = _pool_windows(w, kw, sw, pw, wo)
    area = ((he - hs)[:, None] * (we - ws)[None, :]).astype(np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):   # an empty window: 0/0, as Caffe's
        return [acc / area]


def _pool_cost(ls) -> Ops:
    # pooling_layer.cpp: every output visits its kernel_h x kernel_w window (global
    # pooling: the whole input)
    g = pool_geometry(ls.layer, ls.bottom_shapes[0])
    if g.global_pooling:
        return Ops(pooling=count(ls.bottom_shapes[0]))
    return Ops(pooling=count(ls.top_shapes[0]) * g.kernel[0] * g.kernel[1])


# -- ONNX export -------------------------------------------------------------------------

def pool_onnx(ctx, x: str, method: int, hw: Tuple[int, int], kernel: Tuple[int, int],
              stride: Tuple[int, int], pad: Tuple[int, int], out_hw: Tuple[int, int],
              outs: Optional[List[str]] = None, mask: bool = False) -> List[str]:
    """One Caffe pooling window as ONNX MaxPool / AveragePool (pooling_layer.cpp).

    Caffe's pooled size (ceil rule, then its clip of a last window starting in the
    padding) becomes explicit pads: ``pad`` before, ``(out-1)*s + k - in - pad`` (at
    least 0) after, with floor rounding, so ONNX makes exactly ``out`` windows.
    MAX clips each window to the image, as -inf padding does.  AVE divides by the
    window clipped to ``in + pad`` (padding counts, cells past it do not):
    AveragePool with count_include_pad divides by the whole kernel inside the padded
    input, so its result is multiplied by ``kh*kw / area`` where the two differ;
    asymmetric pads are an explicit zero Pad before it (runtimes differ in counting
    padding past the symmetric part).
    The mask top (MAX, two tops) is Caffe's index ``h * W + w`` in its plane: ONNX's
    Indices are flat over N, C, H, W, so they are taken modulo H*W.
    """
    outs = outs or [None, None]
    ends = [max((o - 1) * s + k - n - p, 0) for n, k, s, p, o in
            zip(hw, kernel, stride, pad, out_hw)]
    attrs = dict(kernel_shape=list(kernel), strides=list(stride), pads=list(pad) + ends)
    if method == 0:
        if not mask:
            return [ctx.node("MaxPool", [x], out=outs[0], **attrs)]
        y, idx = ctx.node("MaxPool", [x], n_out=2, **attrs)
        y = ctx.node("Identity", [y], out=outs[0])
        plane = ctx.const(np.int64(hw[0] * hw[1]), "plane", np.int64)
        m = ctx.node("Mod", [idx, plane])
        return [y, ctx.node("Cast", [m], out=outs[1], to=1)]
    if method != 1:
        raise ctx.refuse("only MAX and AVE pooling have a TEST-phase forward to export")
    area = np.ones(out_hw, dtype=np.float64)
    for axis, (n, k, s, p, o) in enumerate(zip(hw, kernel, stride, pad, out_hw)):
        start = np.arange(o) * s - p
        size = np.minimum(start + k, n + p) - start
        area = area * (size[:, None] if axis == 0 else size[None, :])
    factor = (kernel[0] * kernel[1]) / area
    exact = bool(np.all(factor == 1))
    if list(pad) != ends and any(pad + tuple(ends)):
        # asymmetric: zero-pad explicitly, so that no runtime's own rule for counting
        # padding matters, then pool with the whole kernel as the divisor
        x = ctx.node("Pad", [x, ctx.ints([0, 0, pad[0], pad[1], 0, 0, ends[0], ends[1]],
                                         "pads")])
        attrs["pads"] = [0, 0, 0, 0]
    y = ctx.node("AveragePool", [x], out=outs[0] if exact else None, count_include_pad=1,
                 **attrs)
    if exact:
        return [y]
    return [ctx.node("Mul", [y, ctx.const(factor.astype(np.float32), "divisor")], out=outs[0])]


def _pool_onnx(layer: Message, ctx, g: PoolGeometry) -> List[str]:
    method = layer.pooling_param.pool
    ntop = len(layer.top)
    if g.global_pooling and ntop == 1 and method in (0, 1):
        return [ctx.node("GlobalMaxPool" if method == 0 else "GlobalAveragePool",
                         ctx.inputs, out=ctx.top(0))]
    shape = ctx.in_shapes[0]
    return pool_onnx(ctx, ctx.inputs[0], method, (shape[2], shape[3]), g.kernel, g.stride,
                     g.pad, g.out, [ctx.top(i) for i in range(ntop)], mask=ntop > 1)


def _torch_pools_alike(g: PoolGeometry) -> bool:
    """Whether PyTorch's ceil_mode pooling makes Caffe's windows on every input size:
    its clip rule is Caffe's when the layer pads (pooling_layer.cpp clips only
    then; PyTorch always, which only matters for a stride over the kernel), and
    it takes pads up to half the kernel."""
    padded = any(g.pad)
    return all(p <= k // 2 and (padded or s <= k)
               for k, s, p in zip(g.kernel, g.stride, g.pad))


def _pool_torch(layer: Message, ctx, g: PoolGeometry):
    """MAX and AVE pooling: global pooling as a max or mean over H and W;
    F.max_pool2d / F.avg_pool2d with ceil_mode where PyTorch's windows are
    Caffe's, else the helpers that pad as Caffe's last window needs; the mask
    top (MAX) as Caffe's index h * W + w.  Caffe's AVE divisor counts padding up
    to size + pad, as PyTorch's count_include_pad does."""
    method = layer.pooling_param.pool
    x = ctx.x[0]
    if method not in (0, 1):
        raise ctx.refuse("only MAX and AVE pooling are exported (STOCHASTIC is not)")
    mask = len(layer.top) > 1
    if g.global_pooling and not mask:
        return "%s.%s((2, 3), keepdim=True)" % (x, "amax" if method == 0 else "mean")
    if len(ctx.in_shapes[0]) != 4:
        raise ctx.refuse("pooling takes a 4-D input")
    one = lambda v: ctx.lit(v[0] if v[0] == v[1] else tuple(v))  # noqa: E731
    if _torch_pools_alike(g) and not mask:
        pad = ", %s" % one(g.pad) if any(g.pad) else ""
        return "F.%s(%s, %s, %s%s, ceil_mode=True)" % (
            "max_pool2d" if method == 0 else "avg_pool2d", x, one(g.kernel), one(g.stride), pad)
    fn = ctx.helper("caffe_max_pool2d" if method == 0 else "caffe_avg_pool2d")
    return "%s(%s, %s, %s, %s%s)" % (fn, x, ctx.lit(tuple(g.kernel)), ctx.lit(tuple(g.stride)),
                                     ctx.lit(tuple(g.pad)), ", mask=True" if mask else "")




def _spp_onnx(layer: Message, ctx) -> List[str]:
    """spp_layer.cpp: per level 2^l bins a side, kernel ceil(in / bins), stride the
    kernel, pad (kernel*bins - in + 1) / 2; each level flattened, then concatenated."""
    n, c, h, w = ctx.in_shapes[0]
    sp = layer.spp_param
    method = layer.pooling_param.DESCRIPTOR.fields_by_name["pool"].enum_type.values_by_name[
        enum_name(sp, "pool")].number
    levels = []
    for lvl in range(sp.pyramid_height):
        bins = 2 ** lvl
        kh, kw = -(-h // bins), -(-w // bins)
        ph, pw = (kh * bins - h + 1) // 2, (kw * bins - w + 1) // 2
        out = pool_dims(h, w, kh, kw, kh, kw, ph, pw)
        single = sp.pyramid_height == 1
        y = pool_onnx(ctx, ctx.inputs[0], method, (h, w), (kh, kw), (kh, kw), (ph, pw), out,
                      [ctx.top(0) if single else None])[0]
        if single:
            return [y]
        levels.append(ctx.reshape(y, (n, c * out[0] * out[1])))
    return [ctx.node("Concat", levels, out=ctx.top(0), axis=1)]


def _spp_torch(layer: Message, ctx) -> str:
    """spp_layer.cpp: per level 2^l bins a side, kernel ceil(in / bins), stride the
    kernel, pad (kernel*bins - in + 1) / 2, pooled as Caffe pools (the helpers);
    each level flattened, then concatenated (one level: its pooling alone)."""
    n, c, h, w = ctx.in_shapes[0]
    sp = layer.spp_param
    method = layer.pooling_param.DESCRIPTOR.fields_by_name["pool"].enum_type.values_by_name[
        enum_name(sp, "pool")].number
    if method not in (0, 1):
        raise ctx.refuse("only MAX and AVE pyramids are exported")
    fn = ctx.helper("caffe_max_pool2d" if method == 0 else "caffe_avg_pool2d")
    levels = []
    for lvl in range(sp.pyramid_height):
        bins = 2 ** lvl
        kh, kw = -(-h // bins), -(-w // bins)
        ph, pw = (kh * bins - h + 1) // 2, (kw * bins - w + 1) // 2
        levels.append("%s(%s, (%d, %d), (%d, %d), (%d, %d))" % (fn, ctx.x[0], kh, kw, kh, kw,
                                                                 ph, pw))
    if len(levels) == 1:
        return levels[0]
    return "torch.cat([%s], 1)" % ", ".join("torch.flatten(%s, 1)" % y for y in levels)


# -- declarations ----------------------------------------------------------------------

declare("Pooling", family="pool", bottoms=1, tops=_pool_max_tops, geometry=pool_geometry,
        shape=_pooling, coord_map=_pool_map, forward=_forward, cost=_pool_cost,
        empty_hint=_empty_hint, onnx=_pool_onnx, torch=_pool_torch,
        size_field=_F + "kernel_size")
declare("SPP", family="pool", bottoms=1, tops=1, shape=_spp, forward=_spp_forward,
        onnx=_spp_onnx, torch=_spp_torch)
