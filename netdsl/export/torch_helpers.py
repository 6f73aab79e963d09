"""The helpers a generated ``model.py`` carries where PyTorch differs from Caffe.

netdsl does not import this module: :mod:`netdsl.export.torch_code` copies the
source of the helpers a net needs (and of the helpers those call) into the
generated file, which imports only torch and math.  Each docstring says what
Caffe does and cites its source file.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class CaffeBlobs(nn.Module):
    """A Caffe layer's learnable blobs, as parameters ``blob0``, ``blob1``, ... in
    Caffe's shapes (for layers PyTorch has no module of: Scale, Bias, Embed...)."""

    def __init__(self, *shapes):
        super().__init__()
        for i, shape in enumerate(shapes):
            self.register_parameter("blob%d" % i, nn.Parameter(torch.zeros(shape)))


def caffe_pooled_size(size, kernel, stride, pad, any_pad):
    """pooling_layer.cpp Reshape: ceil((size + 2 pad - kernel) / stride) + 1 windows;
    when the layer has any padding (pad_h or pad_w), one less if the last window
    would start in the padding ((out - 1) * stride >= size + pad)."""
    out = -(-(size + 2 * pad - kernel) // stride) + 1
    if any_pad and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _caffe_pool_padding(x, kernel, stride, pad, value):
    """x padded by ``pad`` before and as much after as Caffe's last window needs;
    returns it with Caffe's output size (oh, ow)."""
    h, w = x.shape[-2], x.shape[-1]
    any_pad = pad[0] > 0 or pad[1] > 0
    oh = caffe_pooled_size(h, kernel[0], stride[0], pad[0], any_pad)
    ow = caffe_pooled_size(w, kernel[1], stride[1], pad[1], any_pad)
    eh = max(0, (oh - 1) * stride[0] + kernel[0] - pad[0] - h)
    ew = max(0, (ow - 1) * stride[1] + kernel[1] - pad[1] - w)
    return F.pad(x, (pad[1], ew, pad[0], eh), value=value), oh, ow


def caffe_max_pool2d(x, kernel, stride, pad, mask=False):
    """Caffe's MAX pooling (pooling_layer.cpp): Caffe's window count (the ceil rule
    and its clip), each window the maximum of its cells inside the input, the
    first maximum in scan order winning; with ``mask`` also the index h * W + w
    of that cell in its channel (as floats), which Caffe's second top holds.  A
    window with no cell in the input (a stride past the kernel) is -FLT_MAX."""
    xp, oh, ow = _caffe_pool_padding(x, kernel, stride, pad, torch.finfo(x.dtype).min)
    if not mask:
        return F.max_pool2d(xp, kernel, stride)[:, :, :oh, :ow]
    y, idx = F.max_pool2d(xp, kernel, stride, return_indices=True)
    wp = xp.shape[-1]
    idx = (idx // wp - pad[0]) * x.shape[-1] + (idx % wp - pad[1])
    return y[:, :, :oh, :ow], idx[:, :, :oh, :ow].to(x.dtype)


def caffe_avg_pool2d(x, kernel, stride, pad):
    """Caffe's AVE pooling (pooling_layer.cpp): Caffe's window count; each window
    sums its cells inside the input and divides by its size clipped to the
    padded input (hend = min(hstart + kernel, size + pad)), padding counted."""
    xp, oh, ow = _caffe_pool_padding(x, kernel, stride, pad, 0.0)
    total = F.avg_pool2d(xp, kernel, stride, divisor_override=1)[:, :, :oh, :ow]
    counts = []
    for n, size, k, s, p in ((oh, x.shape[-2], kernel[0], stride[0], pad[0]),
                             (ow, x.shape[-1], kernel[1], stride[1], pad[1])):
        start = torch.arange(n, device=x.device) * s - p
        counts.append((torch.clamp(start + k, max=size + p) - start).to(x.dtype))
    return total / (counts[0][:, None] * counts[1][None, :])


def caffe_lrn_within(x, size, alpha, beta):
    """lrn_layer.cpp WITHIN_CHANNEL: x * (1 + alpha * m) ** -beta, m the mean of
    x * x over a size x size window of the channel (Caffe's AVE pooling, pad
    (size - 1) / 2, stride 1, so padding counts); Caffe's ``k`` is not used."""
    p = (size - 1) // 2
    m = caffe_avg_pool2d(x * x, (size, size), (1, 1), (p, p))
    return x * (1.0 + alpha * m) ** -beta


def caffe_broadcast(operand, x, axis):
    """``operand`` shaped to broadcast against ``x`` from ``axis`` (scale_layer.cpp,
    bias_layer.cpp: its axes are x's axes axis .. axis + operand.dim())."""
    shape = (1,) * axis + tuple(operand.shape) + (1,) * (x.dim() - axis - operand.dim())
    return operand.reshape(shape)


def caffe_crop(x, like, axis, offsets):
    """crop_layer.cpp: the axes from ``axis`` on take ``like``'s sizes, starting at
    ``offsets`` (one per cropped axis); the axes before ``axis`` are kept."""
    index = [slice(None)] * axis
    for i, off in enumerate(offsets):
        index.append(slice(off, off + like.shape[axis + i]))
    return x[tuple(index)]


def caffe_reshape(x, dims, axis, num_axes):
    """reshape_layer.cpp: axes ``axis`` .. ``axis + num_axes`` (-1: to the end) of x
    become ``dims``, where 0 copies x's axis at that place and -1 takes what
    the element count leaves."""
    end = x.dim() if num_axes == -1 else axis + num_axes
    new = [x.shape[axis + i] if d == 0 else d for i, d in enumerate(dims)]
    return x.reshape(tuple(x.shape[:axis]) + tuple(new) + tuple(x.shape[end:]))


def caffe_argmax(x, top_k, out_max_val, axis):
    """argmax_layer.cpp: the ``top_k`` largest values' indices (as floats), the
    larger index first among equal values (std::partial_sort of (value, index)
    pairs with std::greater).  With ``axis`` None each image is flattened and
    the top is (N, 1 or 2, top_k): indices, then values with ``out_max_val``;
    along ``axis``, the values replace the indices with ``out_max_val``."""
    flat = x.reshape(x.shape[0], -1) if axis is None else x.movedim(axis, -1)
    n = flat.shape[-1]
    vals, idx = torch.sort(flat.flip(-1), dim=-1, descending=True, stable=True)
    idx = (n - 1 - idx)[..., :top_k]
    vals = vals[..., :top_k]
    if axis is None:
        parts = [idx.to(x.dtype)] + ([vals] if out_max_val else [])
        return torch.stack(parts, 1)
    return (vals if out_max_val else idx.to(x.dtype)).movedim(-1, axis)


def caffe_mvn(x, normalize_variance, across_channels, eps):
    """mvn_layer.cpp: x minus its mean over each image (``across_channels``) or
    each channel; with ``normalize_variance`` divided by sqrt(variance) + eps."""
    dims = tuple(range(1 if across_channels else 2, x.dim()))
    y = x - x.mean(dims, keepdim=True)
    if normalize_variance:
        y = y / ((y * y).mean(dims, keepdim=True).sqrt() + eps)
    return y


class CaffeConstant(nn.Module):
    """A value Caffe computes from blob shapes only (SSD's PriorBox boxes), kept as
    the buffer ``value``."""

    def __init__(self, shape):
        super().__init__()
        self.register_buffer("value", torch.zeros(shape))


def caffe_scatter(x, positions, out_h, out_w):
    """Max unpooling (SegNet's Upsample, DeconvNet's Unpooling): each value of each
    (n, c) plane written into a zero out_h x out_w plane at the flat position
    ``positions`` holds (floats, truncated as static_cast<int>), the later of
    equal positions winning."""
    n, c = x.shape[0], x.shape[1]
    idx = positions.reshape(n, c, -1).to(torch.int64)
    out = x.new_zeros((n, c, out_h * out_w))
    return out.scatter(2, idx, x.reshape(n, c, -1)).reshape(n, c, out_h, out_w)


def caffe_normalize(x, scale, across_spatial, eps):
    """SSD's normalize_layer.cpp: x over sqrt(sum of x^2 + eps), the sum over C x H
    x W of each image (``across_spatial``) or over the channels at each pixel,
    times ``scale`` (one per channel, or one shared)."""
    dims = tuple(range(1, x.dim())) if across_spatial else (1,)
    y = x / ((x * x).sum(dims, keepdim=True) + eps).sqrt()
    shape = (1, -1) + (1,) * (x.dim() - 2) if scale.numel() > 1 else (1,) * x.dim()
    return y * scale.reshape(shape)


def caffe_bn_batch(x):
    """SegNet's bn_layer.cpp in LEARN mode: x normalised by the batch's statistics
    over every axis but 1, the variance E(x^2) - E(x)^2 plus 1e-9, square-rooted
    (the sums kept in double, as netdsl's reference does)."""
    dims = (0,) + tuple(range(2, x.dim()))
    mean = x.double().mean(dims, keepdim=True).to(x.dtype)
    var = (x * x).double().mean(dims, keepdim=True).to(x.dtype) - mean * mean
    return (x - mean) / (var + 1e-9).sqrt()


def caffe_roi_pool(x, rois, pooled_h, pooled_w, scale):
    """Fast R-CNN's roi_pooling_layer.cpp: each ROI [image, x1, y1, x2, y2] scaled
    by ``scale`` and rounded (halves away from zero), its size at least 1; bin
    (i, j) spans floor(i * size / pooled) to ceil((i + 1) * size / pooled) (float
    arithmetic) from the corner, clipped to the map; a bin's maximum, 0 when empty."""
    rois = rois.reshape(rois.shape[0], -1)
    h, w = x.shape[2], x.shape[3]
    out = x.new_zeros((rois.shape[0], x.shape[1], pooled_h, pooled_w))
    f32 = torch.float32
    for r in range(rois.shape[0]):
        v = rois[r, 1:5].to(f32) * torch.tensor(scale, dtype=f32)
        x1, y1, x2, y2 = (int(t) for t in torch.sign(v) * torch.floor(v.abs() + 0.5))
        bh = torch.tensor(max(y2 - y1 + 1, 1), dtype=f32) / pooled_h
        bw = torch.tensor(max(x2 - x1 + 1, 1), dtype=f32) / pooled_w
        for i in range(pooled_h):
            hs = min(max(int(torch.floor(i * bh)) + y1, 0), h)
            he = min(max(int(torch.ceil((i + 1) * bh)) + y1, 0), h)
            for j in range(pooled_w):
                ws = min(max(int(torch.floor(j * bw)) + x1, 0), w)
                we = min(max(int(torch.ceil((j + 1) * bw)) + x1, 0), w)
                if he > hs and we > ws:
                    out[r, :, i, j] = x[int(rois[r, 0]), :, hs:he, ws:we].amax((1, 2))
    return out


def caffe_pooling_switches(x, kernel, stride, pad, mask_top):
    """piergiaj/caffe-deconvnet's pooling_switches_layer.cpp, MAX: the pooled values
    (Caffe's window count, the first maximum winning) stacked along axis 0 over
    their switches h * W + w (as floats); with ``mask_top`` also the switches in
    both halves."""
    values, switches = caffe_max_pool2d(x, kernel, stride, pad, mask=True)
    top = torch.cat([values, switches], 0)
    return (top, torch.cat([switches, switches], 0)) if mask_top else top


def caffe_inv_pooling(x, out_h, out_w):
    """piergiaj/caffe-deconvnet's inv_pooling_layer.cpp, MAX: x is [switches;
    values] along axis 0; each value goes to its switch in a zero plane."""
    half = x.shape[0] // 2
    return caffe_scatter(x[half:2 * half], x[:half], out_h, out_w)
