"""netdsl plugin: the layer types of the example fork schemas in specs/forks.

::

    netdsl shapes net.prototxt --proto specs/forks/segnet-deeplab.proto \\
        --plugin specs/forks/segmentation_layers.py

Registers shape, coordinate-map and numpy forward rules for

* ``Upsample`` (SegNet, segnet-deeplab.proto): bottoms (values, mask), the mask
  being the second top of a MAX ``Pooling``; each value goes to the index its
  mask names, zeros elsewhere.  With one bottom (an extension for forks whose
  Upsample has no mask) every value is repeated over a scale_h x scale_w block.
* ``Interp`` (DeepLab, segnet-deeplab.proto): bilinear resizing with aligned
  corners after cropping by ``-pad_beg``/``-pad_end``.
* ``PoolingSwitches`` and ``Unpooling`` (deconvnet.proto): max pooling that also
  outputs its switches, and its inverse.

The rules follow the forks' C++ (SegNet's upsample_layer.cpp, DeepLab's
interp_layer.cpp and util/interp.cpp); each function names the check or formula
it mirrors.  Nothing here is part of netdsl: it only calls
:func:`netdsl.plugins.register_layer`.
"""
from __future__ import annotations

from fractions import Fraction
from typing import List, Sequence, Tuple

import numpy as np

from netdsl.coord_map import UndefinedMapException
from netdsl.errors import NetdslError
from netdsl.plugins import register_layer
from netdsl.layers import lookup

Shape = Tuple[int, ...]


def _param(layer, name: str, schema: str):
    """The layer's ``name`` message, or an error saying which schema has it."""
    if name not in layer.DESCRIPTOR.fields_by_name:
        raise NetdslError("a %s layer reads `%s`, which the schema in use does not have"
                          % (layer.type, name), field=name,
                          hint="load the fork's schema: --proto specs/forks/%s" % schema)
    return getattr(layer, name)


def _four_axes(shape: Sequence[int], what: str) -> None:
    if len(shape) != 4:
        raise NetdslError("%s must have 4 axes, corresponding to (num, channels, height, "
                          "width); got %s" % (what, tuple(shape)))


def _tdiv(a: int, b: int) -> int:
    """C++ integer division: truncates toward zero."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _exact(x: Fraction):
    return int(x) if x.denominator == 1 else x


def _axes_map(scale: Sequence, shift: Sequence):
    """A map on axis 1 with per-axis values, one value when both axes agree."""
    scale, shift = tuple(scale), tuple(shift)
    if len(set(scale)) == 1 and len(set(shift)) == 1:
        scale, shift = scale[:1], shift[:1]
    return 1, scale, shift


# -- switches: scattering values back to their argmax positions -----------------------------

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


# -- Upsample (SegNet) -----------------------------------------------------------------------

def upsample_geometry(layer, bottom: Sequence[int]) -> Tuple[int, int, int, int]:
    """(out_h, out_w, scale_h, scale_w) as SegNet's UpsampleLayer sets them up.

    LayerSetUp: upsample_h and upsample_w together, else scale_h and scale_w
    together (without scale), else scale; each > 1; pad_out_h needs scale_h 2.
    Reshape: out = H * scale_h - pad_out_h (and likewise for width) unless given.
    The scales are kept when upsample_h/w give the size (for the coordinate map).
    """
    p = _param(layer, "upsample_param", "segnet-deeplab.proto")
    has = p.HasField
    if not ((has("upsample_h") and has("upsample_w"))
            or (not has("scale") and has("scale_h") and has("scale_w"))
            or (not has("scale_h") and not has("scale_w"))):
        raise NetdslError("upsample_h & upsample_w are required, else (DEPRECATED) scale OR "
                          "scale_h & scale_w are required (SegNet's upsample_layer.cpp)",
                          field="upsample_param")
    if has("scale_h"):
        sh, sw = int(p.scale_h), int(p.scale_w)
    else:
        sh = sw = int(p.scale)
    if has("upsample_h") and has("upsample_w"):
        oh, ow = int(p.upsample_h), int(p.upsample_w)
        for name, v in (("upsample_h", oh), ("upsample_w", ow)):
            if v <= 1:
                raise NetdslError("%s must be > 1 (CHECK_GT(%s_, 1)); got %d" % (name, name, v),
                                  field="upsample_param." + name)
        return oh, ow, sh, sw
    for name, v in (("scale_h" if has("scale_h") else "scale", sh),
                    ("scale_w" if has("scale_w") else "scale", sw)):
        if v <= 1:
            raise NetdslError("%s must be > 1 (SegNet: CHECK_GT(scale_h_, 1)); got %d"
                              % (name, v), field="upsample_param." + name)
    if p.pad_out_h and sh != 2:
        raise NetdslError("Output height padding compensation requires scale_h == 2, otherwise "
                          "the output size is ill-defined", field="upsample_param.pad_out_h")
    if p.pad_out_w and sw != 2:
        raise NetdslError("Output width padding compensation requires scale_w == 2, otherwise "
                          "the output size is ill-defined", field="upsample_param.pad_out_w")
    _four_axes(bottom, "Upsample's input")
    return bottom[2] * sh - int(p.pad_out_h), bottom[3] * sw - int(p.pad_out_w), sh, sw


def upsample_shape(layer, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # upsample_layer.cpp Reshape: both bottoms (N, C, H, W) and equal
    x = bottoms[0]
    _four_axes(x, "Input")
    if len(bottoms) > 1:
        _four_axes(bottoms[1], "Input mask")
        if tuple(bottoms[1]) != tuple(x):
            raise NetdslError("the mask %s must have the input's shape %s (SegNet CHECK_EQs "
                              "num, channels, height and width)" % (tuple(bottoms[1]), tuple(x)),
                              field="bottom")
    oh, ow, sh, sw = upsample_geometry(layer, x)
    if len(bottoms) == 1 and (oh > x[2] * sh or ow > x[3] * sw):
        raise NetdslError("without a mask the output %dx%d must fit in the %dx%d blocks of the "
                          "input %dx%d" % (oh, ow, sh, sw, x[2], x[3]), field="upsample_param")
    return [(x[0], x[1], oh, ow)]


def upsample_map(layer, shapes=None):
    # the inverse of the kernel = stride = scale pooling that made the mask:
    # output = scale * input + (scale - 1) / 2 on each axis
    p = _param(layer, "upsample_param", "segnet-deeplab.proto")
    sh, sw = (p.scale_h, p.scale_w) if p.HasField("scale_h") else (p.scale, p.scale)
    if sh < 1 or sw < 1:
        raise UndefinedMapException("Upsample with scale 0 has no coordinate map")
    return _axes_map((int(sh), int(sw)), (_exact(Fraction(sh - 1, 2)), _exact(Fraction(sw - 1, 2))))


def upsample_forward(layer, bottoms, blobs, ctx):
    x = bottoms[0]
    oh, ow, sh, sw = upsample_geometry(layer, x.shape)
    if len(bottoms) > 1:
        return [scatter(x, bottoms[1], oh, ow, "upsample top")]
    up = np.repeat(np.repeat(x, sh, axis=2), sw, axis=3)
    return [np.ascontiguousarray(up[:, :, :oh, :ow])]


# -- Interp (DeepLab) ------------------------------------------------------------------------

def interp_geometry(layer, bottom: Sequence[int]) -> Tuple[int, int, int, int, int]:
    """(h_in_eff, w_in_eff, out_h, out_w, pad_beg) by DeepLab's InterpLayer::Reshape."""
    p = _param(layer, "interp_param", "segnet-deeplab.proto")
    # LayerSetUp: CHECK_LE(pad_beg_, 0), CHECK_LE(pad_end_, 0)
    for name in ("pad_beg", "pad_end"):
        if getattr(p, name) > 0:
            raise NetdslError("%s is %d: Only supports non-pos padding (cropping) for now "
                              "(DeepLab's interp_layer.cpp)" % (name, getattr(p, name)),
                              field="interp_param." + name)
    _four_axes(bottom, "Interp's input")
    h_eff = bottom[2] + p.pad_beg + p.pad_end
    w_eff = bottom[3] + p.pad_beg + p.pad_end
    has = p.HasField

    def factor(name: str) -> int:
        v = getattr(p, name)
        if v < 1:
            raise NetdslError("%s is %d; %s must be positive (CHECK_GE(%s, 1))"
                              % (name, v, name.replace("_", " ").capitalize(), name),
                              field="interp_param." + name)
        return v

    if has("shrink_factor") and not has("zoom_factor"):
        s = factor("shrink_factor")
        oh, ow = _tdiv(h_eff - 1, s) + 1, _tdiv(w_eff - 1, s) + 1
    elif has("zoom_factor") and not has("shrink_factor"):
        z = factor("zoom_factor")
        oh, ow = h_eff + (h_eff - 1) * (z - 1), w_eff + (w_eff - 1) * (z - 1)
    elif has("height") and has("width"):
        oh, ow = p.height, p.width
    elif has("shrink_factor") and has("zoom_factor"):
        s, z = factor("shrink_factor"), factor("zoom_factor")
        oh, ow = _tdiv(h_eff - 1, s) + 1, _tdiv(w_eff - 1, s) + 1
        oh, ow = oh + (oh - 1) * (z - 1), ow + (ow - 1) * (z - 1)
    else:
        raise NetdslError("Interp needs shrink_factor, zoom_factor, or height and width "
                          "(DeepLab's Reshape stops with LOG(FATAL) otherwise)",
                          field="interp_param")
    for what, v in (("input height after padding", h_eff), ("input width after padding", w_eff),
                    ("output height", oh), ("output width", ow)):
        if v <= 0:
            raise NetdslError("%s is %d; it should be positive (CHECK_GT in interp_layer.cpp)"
                              % (what, v), field="interp_param")
    return h_eff, w_eff, oh, ow, p.pad_beg


def interp_shape(layer, bottoms: List[Shape], ntop: int) -> List[Shape]:
    x = bottoms[0]
    _, _, oh, ow, _ = interp_geometry(layer, x)
    return [(x[0], x[1], oh, ow)]


def interp_map(layer, shapes=None):
    # util/interp.cpp maps output pixel y to input y * (in_eff - 1) / (out - 1)
    # - pad_beg; inverted: output = input * (out - 1) / (in_eff - 1) + pad_beg * (same)
    p = _param(layer, "interp_param", "segnet-deeplab.proto")
    if not shapes:
        if p.HasField("zoom_factor") and not p.HasField("shrink_factor") and p.zoom_factor >= 1:
            z = p.zoom_factor       # (out - 1) / (in_eff - 1) is exactly the zoom
            return 1, (z,), (p.pad_beg * z,)
        raise UndefinedMapException("Interp's map depends on its input size")
    h_eff, w_eff, oh, ow, beg = interp_geometry(layer, shapes[0])
    scale, shift = [], []
    for n_in, n_out in ((h_eff, oh), (w_eff, ow)):
        if n_in == n_out:
            scale.append(1)
            shift.append(beg)
        elif n_in == 1 or n_out == 1:
            raise UndefinedMapException("Interp to or from a single row or column has no map")
        else:
            r = Fraction(n_out - 1, n_in - 1)
            scale.append(_exact(r))
            shift.append(_exact(beg * r))
    return _axes_map(scale, shift)


def interp2(x: np.ndarray, y0: int, x0: int, h1: int, w1: int, h2: int, w2: int) -> np.ndarray:
    """DeepLab's caffe_cpu_interp2 (not packed), float32: the window of ``x`` at
    (y0, x0) of size h1 x w1 resized to h2 x w2 with the corners aligned."""
    src = x[:, :, y0:y0 + h1, x0:x0 + w1]
    if h1 == h2 and w1 == w2:      # the special case: a copy
        return np.array(src, dtype=np.float32)
    f32 = np.float32

    def axis(n1: int, n2: int):
        ratio = f32(n1 - 1) / f32(n2 - 1) if n2 > 1 else f32(0)
        r = ratio * np.arange(n2, dtype=np.float32)          # h1r = rheight * h2
        i0 = r.astype(np.int64)                              # const int h1 = h1r
        step = (i0 < n1 - 1).astype(np.int64)                # h1p
        lam1 = (r - i0.astype(np.float32)).astype(np.float32)
        lam0 = (f32(1) - lam1).astype(np.float32)
        return i0, i0 + step, lam0, lam1

    hi0, hi1, h0l, h1l = axis(h1, h2)
    wi0, wi1, w0l, w1l = axis(w1, w2)
    h0l, h1l = h0l[:, None], h1l[:, None]
    a = src[:, :, hi0][:, :, :, wi0]
    b = src[:, :, hi0][:, :, :, wi1]
    c = src[:, :, hi1][:, :, :, wi0]
    d = src[:, :, hi1][:, :, :, wi1]
    # h0lambda * (w0lambda * p00 + w1lambda * p01) + h1lambda * (w0lambda * p10 + w1lambda * p11)
    return (h0l * (w0l * a + w1l * b) + h1l * (w0l * c + w1l * d)).astype(np.float32)


def interp_forward(layer, bottoms, blobs, ctx):
    x = bottoms[0]
    h_eff, w_eff, oh, ow, beg = interp_geometry(layer, x.shape)
    return [interp2(x, -beg, -beg, h_eff, w_eff, oh, ow)]


# -- PoolingSwitches and Unpooling (DeconvNet-style) ------------------------------------------

def _max_pool(layer) -> None:
    pool = layer.pooling_param.pool
    if pool != layer.pooling_param.MAX:
        raise NetdslError("PoolingSwitches records the switches of MAX pooling only",
                          field="pooling_param.pool")


def pooling_switches_shape(layer, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # BVLC's Pooling rule (pooling_layer.cpp Reshape) for both tops
    _max_pool(layer)
    return lookup("Pooling").top_shapes(layer, bottoms, ntop)


def pooling_switches_forward(layer, bottoms, blobs, ctx):
    _max_pool(layer)
    return lookup("Pooling").run(layer, bottoms, blobs, ctx)


def unpooling_geometry(layer) -> Tuple[Tuple[int, int], Tuple[int, int], Tuple[int, int]]:
    """((kh, kw), (sh, sw), (ph, pw)) of unpooling_param, checked."""
    p = _param(layer, "unpooling_param", "deconvnet.proto")
    if p.HasField("kernel_h") or p.HasField("kernel_w"):
        if not (p.HasField("kernel_h") and p.HasField("kernel_w")):
            raise NetdslError("kernel_h and kernel_w must be given together",
                              field="unpooling_param.kernel_h")
        k = (p.kernel_h, p.kernel_w)
    else:
        k = (p.kernel_size, p.kernel_size)
    s = (p.stride_h, p.stride_w) if p.HasField("stride_h") else (p.stride, p.stride)
    pad = (p.pad_h, p.pad_w) if p.HasField("pad_h") else (p.pad, p.pad)
    if min(k) <= 0:
        raise NetdslError("Unpooling needs the pooling's kernel_size (or kernel_h and kernel_w)",
                          field="unpooling_param.kernel_size")
    if min(s) <= 0:
        raise NetdslError("stride must be positive", field="unpooling_param.stride")
    if pad[0] >= k[0] or pad[1] >= k[1]:
        raise NetdslError("pad %s must be smaller than the kernel %s" % (pad, k),
                          field="unpooling_param.pad")
    return k, s, pad


def unpooling_size(layer, bottom: Sequence[int]) -> Tuple[int, int]:
    """out = (in - 1) * stride - 2 * pad + kernel per axis, unless out_h/out_w are set."""
    p = _param(layer, "unpooling_param", "deconvnet.proto")
    k, s, pad = unpooling_geometry(layer)
    out = [(bottom[2 + i] - 1) * s[i] - 2 * pad[i] + k[i] for i in range(2)]
    if p.HasField("out_h") or p.HasField("out_w"):
        if not (p.HasField("out_h") and p.HasField("out_w")):
            raise NetdslError("out_h and out_w must be given together",
                              field="unpooling_param.out_h")
        out = [p.out_h, p.out_w]
    return out[0], out[1]


def unpooling_shape(layer, bottoms: List[Shape], ntop: int) -> List[Shape]:
    x, sw = bottoms
    _four_axes(x, "Unpooling's values")
    if tuple(sw) != tuple(x):
        raise NetdslError("the switches %s must have the values' shape %s"
                          % (tuple(sw), tuple(x)), field="bottom")
    oh, ow = unpooling_size(layer, x)
    return [(x[0], x[1], oh, ow)]


def unpooling_map(layer, shapes=None):
    # the inverse of the pooling map (scale 1/s, shift (p - (k-1)/2)/s):
    # scale s, shift (k - 1)/2 - p, as for a Deconvolution of that geometry
    k, s, pad = unpooling_geometry(layer)
    return _axes_map(s, [_exact(Fraction(k[i] - 1, 2) - pad[i]) for i in range(2)])


def unpooling_forward(layer, bottoms, blobs, ctx):
    x, switches = bottoms
    oh, ow = unpooling_size(layer, x.shape)
    return [scatter(x, switches, oh, ow, "unpooling")]


register_layer("Upsample", bottoms=(1, 2), tops=1, shape=upsample_shape,
               coord_map=upsample_map, forward=upsample_forward)
register_layer("Interp", bottoms=1, tops=1, shape=interp_shape, coord_map=interp_map,
               forward=interp_forward)
register_layer("PoolingSwitches", bottoms=1, tops=2, shape=pooling_switches_shape,
               coord_map=lambda layer, shapes=None: lookup("Pooling").map(layer, shapes),
               forward=pooling_switches_forward)
register_layer("Unpooling", bottoms=2, tops=1, shape=unpooling_shape, coord_map=unpooling_map,
               forward=unpooling_forward)
