"""Normalising and selecting layers: BatchNorm, MVN, LRN, Softmax, ArgMax."""
from __future__ import annotations

from typing import List

import numpy as np
from google.protobuf.message import Message

from ..errors import NetdslError
from .core import TEST, Context, blob_as, register

_F = np.float32


@register("BatchNorm")
def batch_norm(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
               ctx: Context) -> List[np.ndarray]:
    """``(x - mean) / sqrt(var + eps)`` per channel (axis 1).

    With ``use_global_stats`` (default: the TEST phase) mean and variance are
    blobs 0 and 1 times ``1 / blob2`` (0 when blob 2 is 0: the moving-average
    factor); otherwise they are the batch's, over N and the spatial axes.
    """
    p = layer.batch_norm_param
    x = bottoms[0]
    channels = 1 if x.ndim == 1 else x.shape[1]
    use_global = p.use_global_stats if p.HasField("use_global_stats") else ctx.phase == TEST
    axes = tuple(i for i in range(x.ndim) if i != 1)
    shape = [1] * x.ndim
    if x.ndim > 1:
        shape[1] = channels
    eps = _F(p.eps)
    if use_global:
        if len(blobs) < 3:
            raise NetdslError("BatchNorm needs 3 blobs (mean, variance, moving-average factor), "
                              "the weights have %d" % len(blobs))
        factor = blob_as(blobs[2], (1,), layer, 2, "blob")[0]
        sf = _F(0) if factor == 0 else _F(1) / factor
        mean = sf * blob_as(blobs[0], (channels,), layer, 0, "mean blob")
        var = sf * blob_as(blobs[1], (channels,), layer, 1, "variance blob")
        xc = x - mean.reshape(shape)
    else:
        mean = x.mean(axis=axes, dtype=np.float32)
        xc = x - mean.reshape(shape)
        var = (xc * xc).mean(axis=axes, dtype=np.float32)
    return [xc / np.sqrt(var + eps).reshape(shape)]


@register("MVN")
def mvn(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
        ctx: Context) -> List[np.ndarray]:
    """``x - mean`` over each (n, c) (or each n with ``across_channels``), divided
    by ``sqrt(var) + eps`` with ``normalize_variance`` (note: eps added to the
    standard deviation, not the variance)."""
    p = layer.mvn_param
    x = bottoms[0]
    rows = x.shape[0] if p.across_channels else x.shape[0] * (x.shape[1] if x.ndim > 1 else 1)
    flat = x.reshape(rows, -1)
    xc = flat - flat.mean(axis=1, dtype=np.float32, keepdims=True)
    if p.normalize_variance:
        var = (xc * xc).mean(axis=1, dtype=np.float32, keepdims=True)
        xc = xc / (np.sqrt(var) + _F(p.eps))
    return [xc.reshape(x.shape)]


@register("LRN")
def lrn(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
        ctx: Context) -> List[np.ndarray]:
    """ACROSS_CHANNELS: ``x (k + alpha/n sum x^2)^-beta`` over ``n`` neighbouring
    channels (zero-padded).  WITHIN_CHANNEL: ``x (1 + alpha avg x^2)^-beta``, the
    average over an n x n window by AVE pooling with pad (n-1)/2 (k unused)."""
    p = layer.lrn_param
    x = bottoms[0]
    if x.ndim != 4:
        raise NetdslError("LRN needs a 4-D input, got shape %s" % (x.shape,))
    size = int(p.local_size)
    if size % 2 != 1:
        raise NetdslError("local_size must be odd, got %d" % size, field="local_size")
    pre = (size - 1) // 2
    alpha, beta = _F(p.alpha), _F(p.beta)
    sq = x * x
    n, c, h, w = x.shape
    if p.norm_region == 0:
        padded = np.zeros((n, c + size - 1, h, w), dtype=np.float32)
        padded[:, pre:pre + c] = sq
        acc = np.zeros_like(x)
        for i in range(size):
            acc += padded[:, i:i + c]
        scale = _F(p.k) + (alpha / _F(size)) * acc
        return [x * np.power(scale, -beta)]
    if p.norm_region != 1:
        raise NetdslError("unknown norm_region %d" % p.norm_region, field="norm_region")
    padded = np.zeros((n, c, h + 2 * pre, w + 2 * pre), dtype=np.float32)
    padded[:, :, pre:pre + h, pre:pre + w] = sq
    acc = np.zeros_like(x)
    for i in range(size):
        for j in range(size):
            acc += padded[:, :, i:i + h, j:j + w]
    avg = acc / _F(size * size)
    return [x * np.power(_F(1) + alpha * avg, -beta)]


@register("Softmax")
def softmax(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
            ctx: Context) -> List[np.ndarray]:
    """``exp(x - max) / sum exp(x - max)`` along ``axis``."""
    x = bottoms[0]
    axis = layer.softmax_param.axis
    axis = axis + x.ndim if axis < 0 else axis
    if not 0 <= axis < x.ndim:
        raise NetdslError("axis %d is out of range for a %d-D input"
                          % (layer.softmax_param.axis, x.ndim), field="axis")
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return [e / e.sum(axis=axis, keepdims=True, dtype=np.float32)]


@register("ArgMax")
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
