"""DeepLab v2's and PSPNet's layer types: ``Interp`` (bilinear resizing with
aligned corners), PSPNet's ``BN`` (netdsl.packs.bn), and the test nets'
``ImageSegData`` (its tops' shapes) and ``MatWrite`` (a file writer: no tops).

Rules from DeepLab v2's ``src/caffe/layers/interp_layer.cpp``,
``src/caffe/util/interp.cpp`` (the same files in hszhao/PSPNet 798bdc90),
``image_seg_data_layer.cpp`` and ``mat_write_layer.cpp`` (DeepLab v2 as
imported in xmyqsh/deeplab-v2 071ef5a5); see docs/forks.md.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Any, List, Sequence, Tuple

import numpy as np

from ..maps import UndefinedMapException
from ..errors import NetdslError
from ..layers.registry import PACKS, declare
from . import bn  # noqa: F401  (the BN type)
from ._util import axes_map, exact, four_axes, param, tdiv

FORK = "DeepLab v2 or PSPNet"
Shape = Tuple[int, ...]


def interp_geometry(layer, bottom: Sequence[int]) -> Tuple[int, int, int, int, int]:
    """(h_in_eff, w_in_eff, out_h, out_w, pad_beg) by DeepLab's InterpLayer::Reshape."""
    p = param(layer, "interp_param", FORK)
    # LayerSetUp: CHECK_LE(pad_beg_, 0), CHECK_LE(pad_end_, 0)
    for name in ("pad_beg", "pad_end"):
        if getattr(p, name) > 0:
            raise NetdslError("%s is %d: Only supports non-pos padding (cropping) for now "
                              "(DeepLab's interp_layer.cpp)" % (name, getattr(p, name)),
                              field="interp_param." + name)
    four_axes(bottom, "Interp's input")
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
        oh, ow = tdiv(h_eff - 1, s) + 1, tdiv(w_eff - 1, s) + 1
    elif has("zoom_factor") and not has("shrink_factor"):
        z = factor("zoom_factor")
        oh, ow = h_eff + (h_eff - 1) * (z - 1), w_eff + (w_eff - 1) * (z - 1)
    elif has("height") and has("width"):
        oh, ow = p.height, p.width
    elif has("shrink_factor") and has("zoom_factor"):
        s, z = factor("shrink_factor"), factor("zoom_factor")
        oh, ow = tdiv(h_eff - 1, s) + 1, tdiv(w_eff - 1, s) + 1
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
    p = param(layer, "interp_param", FORK)
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
            scale.append(exact(r))
            shift.append(exact(beg * r))
    return axes_map(scale, shift)


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



def interp_onnx(layer, ctx):
    """interp_layer.cpp: the input cut by the (non-positive) pads, then resized with
    the corners aligned (util/interp.cpp: input y = out_y * (in - 1) / (out - 1)):
    ONNX Resize linear, align_corners; a same-size resize is the copy Caffe makes.
    Resize takes ``sizes`` for every axis before opset 18, for axes 2 and 3 from 18."""
    x = ctx.inputs[0]
    n, c, h, w = ctx.in_shapes[0]
    h_eff, w_eff, oh, ow, beg = interp_geometry(layer, ctx.in_shapes[0])
    if (h_eff, w_eff) != (h, w) or beg:
        x = ctx.slice(x, [-beg, -beg], [-beg + h_eff, -beg + w_eff], [2, 3],
                      out=ctx.top(0) if (oh, ow) == (h_eff, w_eff) else None)
    if (oh, ow) == (h_eff, w_eff):
        return [x if x != ctx.inputs[0] else ctx.node("Identity", [x], out=ctx.top(0))]
    if ctx.opset >= 18:
        sizes, extra = ctx.ints([oh, ow], "sizes"), dict(axes=[2, 3])
    else:
        sizes, extra = ctx.shape_of(x, (n, c), 2, [oh, ow]), {}
    return [ctx.node("Resize", [x, "", "", sizes], out=ctx.top(0), mode="linear",
                     coordinate_transformation_mode="align_corners", **extra)]



def interp_torch(layer, ctx) -> str:
    """interp_layer.cpp: the input cut by the (non-positive) pads, then resized with
    the corners aligned (util/interp.cpp: input y = out_y * (in - 1) / (out - 1)),
    which is F.interpolate's bilinear with align_corners=True."""
    x = ctx.x[0]
    n, c, h, w = ctx.in_shapes[0]
    h_eff, w_eff, oh, ow, beg = interp_geometry(layer, ctx.in_shapes[0])
    if (h_eff, w_eff) != (h, w) or beg:
        x = "%s[:, :, %d:%d, %d:%d]" % (x, -beg, -beg + h_eff, -beg, -beg + w_eff)
    if (oh, ow) == (h_eff, w_eff):
        return x
    return "F.interpolate(%s, size=(%d, %d), mode=\"bilinear\", align_corners=True)" % (
        x, oh, ow)



declare("Interp", family="deeplab", registry=PACKS, bottoms=1, tops=1,
        reads=("interp_param",), shape=interp_shape, coord_map=interp_map,
        forward=interp_forward, onnx=interp_onnx, torch=interp_torch,
        source="netdsl.packs.deeplab")


# -- ImageSegData, MatWrite (DeepLab v2 test nets) ---------------------------------

def image_seg_data_shape(layer: Any, bottoms: List[Shape], ntop: int) -> List[Shape]:
    """image_seg_data_layer.cpp DataLayerSetUp: with transform_param's crop_size
    (or crop_height and crop_width) the tops are (batch, C, h, w) images,
    (batch, 1, h, w) labels and (batch, 1, 1, 2) image sizes, C being 3 for
    is_color (OpenCV reads a colour image) else 1; without a crop the size is
    the first image's, so the tops must be given as inputs."""
    p = param(layer, "image_data_param", FORK)
    t = layer.transform_param
    h = w = 0
    if t.HasField("crop_size"):
        h = w = int(t.crop_size)
    fields = t.DESCRIPTOR.fields_by_name
    if "crop_height" in fields and t.HasField("crop_height") and t.HasField("crop_width"):
        h, w = int(t.crop_height), int(t.crop_width)
    if not (h and w):
        raise NetdslError("ImageSegData takes its size from the first image of its list "
                          "unless transform_param has crop_size (or crop_height and "
                          "crop_width); give the tops' shapes as inputs",
                          field="transform_param.crop_size")
    n = int(p.batch_size)
    c = 3 if p.is_color else 1
    return [(n, c, h, w), (n, 1, h, w), (n, 1, 1, 2)][:ntop]


def _no_tops(layer: Any, bottoms: List[Shape], ntop: int) -> List[Shape]:
    return []


def mat_write_forward(layer: Any, bottoms: List[np.ndarray], blobs: Any, ctx: Any
                      ) -> List[np.ndarray]:
    """mat_write_layer.cpp writes bottom i to ``prefix + <source line or
    "iter_" + iter> + "_blob_" + i + ".mat"`` every ``period`` iterations; it has
    no tops, and netdsl's forward computes blobs only, so it writes nothing."""
    return []


declare("ImageSegData", family="deeplab", registry=PACKS, bottoms=0, tops=(1, 3),
        reads=("image_data_param",), shape=image_seg_data_shape, source="netdsl.packs.deeplab")
declare("MatWrite", family="deeplab", registry=PACKS, bottoms=(1, None), tops=0,
        reads=("mat_write_param",), shape=_no_tops, forward=mat_write_forward,
        source="netdsl.packs.deeplab")

