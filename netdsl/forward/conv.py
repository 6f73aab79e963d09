"""Convolution, Deconvolution, Pooling and InnerProduct (BVLC's conv_layer,
deconv_layer, base_conv_layer, pooling_layer and inner_product_layer).

Convolution is im2col -- a strided view of the padded input, copied in blocks
of output rows -- times the weight matrix; Deconvolution is the weight matrix's
transpose times the input, then col2im as one strided add per kernel tap.
Pooling takes one strided slice per kernel tap.  No loop runs per pixel.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np
from google.protobuf.message import Message
from numpy.lib.stride_tricks import as_strided

from ..errors import NetdslError
from .core import Context, blob_as, register

_COL_BYTES = 64 << 20  # im2col block budget


def _pair(p: Message, name: str, default: int, field_h: str, field_w: str
          ) -> Tuple[int, int]:
    """(h, w) of a ConvolutionParameter field: ``*_h``/``*_w`` when set, else the
    repeated field (one value for both axes, or one per axis), else ``default``."""
    if p.HasField(field_h) or p.HasField(field_w):
        if len(getattr(p, name)):
            raise NetdslError("give either `%s` or `%s`/`%s`, not both" % (name, field_h, field_w),
                              field=name)
        if not (p.HasField(field_h) and p.HasField(field_w)):
            raise NetdslError("`%s` and `%s` go together" % (field_h, field_w), field=field_h)
        return int(getattr(p, field_h)), int(getattr(p, field_w))
    values = list(getattr(p, name))
    if not values:
        return default, default
    if len(values) == 1:
        return int(values[0]), int(values[0])
    if len(values) == 2:
        return int(values[0]), int(values[1])
    raise NetdslError("`%s` has %d values; a 2-D convolution takes 1 or 2" % (name, len(values)),
                      field=name)


def conv_geometry(p: Message) -> Tuple[Tuple[int, int], Tuple[int, int], Tuple[int, int],
                                       Tuple[int, int]]:
    """(kernel, stride, pad, dilation) as (h, w) pairs, by Caffe's BaseConvolutionLayer rules."""
    kernel = _pair(p, "kernel_size", 0, "kernel_h", "kernel_w")
    if min(kernel) <= 0:
        raise NetdslError("kernel size must be given and > 0, got %s" % (kernel,),
                          field="kernel_size")
    stride = _pair(p, "stride", 1, "stride_h", "stride_w")
    if min(stride) <= 0:
        raise NetdslError("stride must be > 0, got %s" % (stride,), field="stride")
    pad = _pair(p, "pad", 0, "pad_h", "pad_w")
    dil = list(p.dilation)
    if len(dil) > 2:
        raise NetdslError("`dilation` has %d values; a 2-D convolution takes 1 or 2" % len(dil),
                          field="dilation")
    dilation = (dil[0], dil[-1]) if dil else (1, 1)
    return kernel, stride, pad, (int(dilation[0]), int(dilation[1]))


def _check_4d(x: np.ndarray, what: str) -> None:
    if x.ndim != 4:
        raise NetdslError("%s needs a 4-D (N, C, H, W) input here, got shape %s"
                          % (what, x.shape))


def _conv_blobs(layer: Message, blobs: List[np.ndarray], shape: Sequence[int], nout: int
                ) -> Tuple[np.ndarray, np.ndarray]:
    p = layer.convolution_param
    need = 2 if p.bias_term else 1
    if len(blobs) < need:
        raise NetdslError("%s needs %d blob(s) (weights%s), the weights have %d"
                          % (layer.type, need, ", bias" if p.bias_term else "", len(blobs)))
    w = blob_as(blobs[0], shape, layer, 0, "weight blob")
    b = blob_as(blobs[1], (nout,), layer, 1, "bias blob") if p.bias_term else None
    return w, b


def conv2d(x: np.ndarray, w: np.ndarray, b: "np.ndarray | None", stride: Tuple[int, int],
           pad: Tuple[int, int], dilation: Tuple[int, int], group: int) -> np.ndarray:
    """Caffe's Convolution: out size ``(H + 2p - (d(k-1)+1)) / s + 1`` (floor)."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, pad, dilation
    ho = (h + 2 * ph - (dh * (kh - 1) + 1)) // sh + 1
    wo = (wd + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1
    if ho <= 0 or wo <= 0:
        raise NetdslError("convolution output would be %d x %d (input %d x %d, kernel %d x %d, "
                          "pad %d/%d, dilation %d/%d)" % (ho, wo, h, wd, kh, kw, ph, pw, dh, dw))
    if c != cg * group:
        raise NetdslError("input has %d channels but the weights expect %d x group %d"
                          % (c, cg, group))
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if ph or pw else x
    xp = np.ascontiguousarray(xp, dtype=np.float32)
    s0, s1, s2, s3 = xp.strides
    view = as_strided(xp, (n, c, kh, kw, ho, wo),
                      (s0, s1, s2 * dh, s3 * dw, s2 * sh, s3 * sw), writeable=False)
    og = o // group
    out = np.empty((n, o, ho, wo), dtype=np.float32)
    kdim = cg * kh * kw
    rows = max(1, min(ho, _COL_BYTES // max(1, 4 * n * kdim * wo)))
    for g in range(group):
        wg = w[g * og:(g + 1) * og].reshape(og, kdim)
        for r0 in range(0, ho, rows):
            r1 = min(ho, r0 + rows)
            cols = view[:, g * cg:(g + 1) * cg, :, :, r0:r1, :].reshape(n, kdim, (r1 - r0) * wo)
            out[:, g * og:(g + 1) * og, r0:r1, :] = np.matmul(wg, cols).reshape(
                n, og, r1 - r0, wo)
    if b is not None:
        out += b.reshape(1, o, 1, 1)
    return out


def deconv2d(x: np.ndarray, w: np.ndarray, b: "np.ndarray | None", stride: Tuple[int, int],
             pad: Tuple[int, int], dilation: Tuple[int, int], group: int) -> np.ndarray:
    """Caffe's Deconvolution: out size ``s(H - 1) + d(k-1) + 1 - 2p``; weights
    (C_in, C_out / group, kh, kw)."""
    n, c, h, wd = x.shape
    ci, og, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, pad, dilation
    fh = sh * (h - 1) + dh * (kh - 1) + 1
    fw = sw * (wd - 1) + dw * (kw - 1) + 1
    ho, wo = fh - 2 * ph, fw - 2 * pw
    if ho <= 0 or wo <= 0:
        raise NetdslError("deconvolution output would be %d x %d (input %d x %d, kernel %d x %d, "
                          "pad %d/%d)" % (ho, wo, h, wd, kh, kw, ph, pw))
    if c != ci:
        raise NetdslError("input has %d channels but the weights expect %d" % (c, ci))
    cg = c // group
    full = np.zeros((n, og * group, fh, fw), dtype=np.float32)
    for g in range(group):
        wg = w[g * cg:(g + 1) * cg].reshape(cg, og * kh * kw).T
        xg = x[:, g * cg:(g + 1) * cg].reshape(n, cg, h * wd)
        cols = np.matmul(wg, xg).reshape(n, og, kh, kw, h, wd)
        dst = full[:, g * og:(g + 1) * og]
        for i in range(kh):
            for j in range(kw):
                dst[:, :, i * dh:i * dh + sh * (h - 1) + 1:sh,
                    j * dw:j * dw + sw * (wd - 1) + 1:sw] += cols[:, :, i, j]
    out = full[:, :, ph:ph + ho, pw:pw + wo]
    if b is not None:
        out = out + b.reshape(1, -1, 1, 1)
    return np.ascontiguousarray(out)


def _conv_setup(layer: Message, x: np.ndarray):
    p = layer.convolution_param
    _check_4d(x, layer.type)
    if p.axis != 1:
        raise NetdslError("only axis 1 (channels) is supported, got %d" % p.axis, field="axis")
    kernel, stride, pad, dilation = conv_geometry(p)
    group = int(p.group)
    nout = int(p.num_output)
    if nout <= 0:
        raise NetdslError("num_output must be > 0", field="num_output")
    if group <= 0 or x.shape[1] % group or nout % group:
        raise NetdslError("group %d must divide the %d input channels and num_output %d"
                          % (group, x.shape[1], nout), field="group")
    return p, kernel, stride, pad, dilation, group, nout


@register("Convolution")
def convolution(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
                ctx: Context) -> List[np.ndarray]:
    """Each bottom convolved with the same weights (Caffe allows several bottom/top pairs)."""
    outs = []
    for x in bottoms:
        p, kernel, stride, pad, dil, group, nout = _conv_setup(layer, x)
        w, b = _conv_blobs(layer, blobs, (nout, x.shape[1] // group) + kernel, nout)
        outs.append(conv2d(x, w, b, stride, pad, dil, group))
    return outs


@register("Deconvolution")
def deconvolution(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
                  ctx: Context) -> List[np.ndarray]:
    outs = []
    for x in bottoms:
        p, kernel, stride, pad, dil, group, nout = _conv_setup(layer, x)
        w, b = _conv_blobs(layer, blobs, (x.shape[1], nout // group) + kernel, nout)
        outs.append(deconv2d(x, w, b, stride, pad, dil, group))
    return outs


# -- pooling --------------------------------------------------------------------

def pool_geometry(p: Message, h: int, w: int):
    """(kernel, stride, pad, out) as (h, w) pairs by PoolingLayer::Reshape: with CEIL
    rounding ``out = ceil((H + 2p - k) / s) + 1``, then with padding the last
    window is dropped when it would start in the padding (``(out-1) s >= H + p``)."""
    if p.global_pooling:
        if p.HasField("kernel_size") or p.HasField("kernel_h") or p.HasField("kernel_w"):
            raise NetdslError("with global_pooling the kernel size cannot be given",
                              field="kernel_size")
        kernel = (h, w)
    elif p.HasField("kernel_h") or p.HasField("kernel_w"):
        kernel = (int(p.kernel_h), int(p.kernel_w))
    else:
        kernel = (int(p.kernel_size), int(p.kernel_size))
    if min(kernel) <= 0:
        raise NetdslError("kernel size must be > 0", field="kernel_size")
    if p.HasField("pad_h") or p.HasField("pad_w"):
        pad = (int(p.pad_h), int(p.pad_w))
    else:
        pad = (int(p.pad), int(p.pad))
    if p.HasField("stride_h") or p.HasField("stride_w"):
        stride = (int(p.stride_h), int(p.stride_w))
    else:
        stride = (int(p.stride), int(p.stride))
    if p.global_pooling and (pad != (0, 0) or stride != (1, 1)):
        raise NetdslError("with global_pooling only pad 0 and stride 1 are allowed",
                          field="global_pooling")
    if pad[0] >= kernel[0] or pad[1] >= kernel[1]:
        raise NetdslError("pad %s must be smaller than the kernel %s" % (pad, kernel), field="pad")
    floor = getattr(p, "round_mode", 0) == 1
    out = []
    for size, k, s, pd in zip((h, w), kernel, stride, pad):
        span = size + 2 * pd - k
        o = (span // s if floor else -(-span // s)) + 1
        if pd and (o - 1) * s >= size + pd:
            o -= 1
        if o <= 0:
            raise NetdslError("pooling output would be empty (input %d, kernel %d)" % (size, k))
        out.append(o)
    return kernel, stride, pad, (out[0], out[1])


def _pool_windows(size: int, k: int, s: int, pd: int, o: int):
    start = np.arange(o) * s - pd
    return start, np.minimum(start + k, size + pd)


@register("Pooling")
def pooling(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
            ctx: Context) -> List[np.ndarray]:
    """MAX: the window clipped to the image; AVE: the sum over the window clipped to
    the image, divided by the window area clipped to ``H + pad`` (so padding
    counts, except past the bottom/right padding)."""
    p = layer.pooling_param
    x = bottoms[0]
    _check_4d(x, "Pooling")
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (ho, wo) = pool_geometry(p, h, w)
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
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph + eh), (pw, pw + ew)), constant_values=fillv)
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
    return [acc / area]


# -- inner product ---------------------------------------------------------------

@register("InnerProduct")
def inner_product(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
                  ctx: Context) -> List[np.ndarray]:
    """``y = x W^T + b`` on ``x`` flattened from ``axis`` on; W is (N, K), or (K, N)
    with ``transpose``."""
    p = layer.inner_product_param
    x = bottoms[0]
    axis = p.axis + x.ndim if p.axis < 0 else p.axis
    if not 0 <= axis < max(1, x.ndim):
        raise NetdslError("axis %d is out of range for a %d-D input" % (p.axis, x.ndim),
                          field="axis")
    m = int(np.prod(x.shape[:axis], dtype=np.int64))
    k = int(np.prod(x.shape[axis:], dtype=np.int64))
    nout = int(p.num_output)
    need = 2 if p.bias_term else 1
    if len(blobs) < need:
        raise NetdslError("InnerProduct needs %d blob(s), the weights have %d" % (need, len(blobs)))
    if p.transpose:
        wt = blob_as(blobs[0], (k, nout), layer, 0, "weight blob")
    else:
        wt = blob_as(blobs[0], (nout, k), layer, 0, "weight blob").T
    y = x.reshape(m, k) @ wt
    if p.bias_term:
        y = y + blob_as(blobs[1], (nout,), layer, 1, "bias blob")
    return [y.reshape(x.shape[:axis] + (nout,))]
