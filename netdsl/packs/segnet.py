"""SegNet's and ENet's layer types (alexgkendall/caffe-segnet, TimoSaemann/caffe-enet):
``Upsample`` (max-unpooling by the pooling mask), ``BN`` (netdsl.packs.bn), the
``DenseImageData`` data layer's tops, and ENet's Python ``SpatialDropoutLayer``
(caffe-enet ``python/spatial_dropout.py``).

Rules from ``src/caffe/layers/upsample_layer.cpp`` (caffe-segnet 344c113b,
caffe-enet 22d356c9: the same rule) and ``dense_image_data_layer.cpp``; see
docs/forks.md.  Bayesian SegNet's Dropout is netdsl.packs.dropout.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Any, List, Sequence, Tuple

import numpy as np

from ..maps import UndefinedMapException
from ..errors import NetdslError
from ..layers.blob import f32_code
from ..layers.registry import PACKS, declare
from . import bn  # noqa: F401  (the BN type)
from . import python_layers
from ._util import axes_map, exact, four_axes, param, scatter, scatter_onnx

FORK = "SegNet or ENet"
Shape = Tuple[int, ...]


def upsample_geometry(layer, bottom: Sequence[int]) -> Tuple[int, int, int, int]:
    """(out_h, out_w, scale_h, scale_w) as SegNet's UpsampleLayer sets them up.

    LayerSetUp: upsample_h and upsample_w together, else scale_h and scale_w
    together (without scale), else scale; each > 1; pad_out_h needs scale_h 2.
    Reshape: out = H * scale_h - pad_out_h (and likewise for width) unless given.
    The scales are kept when upsample_h/w give the size (for the coordinate map).
    """
    p = param(layer, "upsample_param", FORK)
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
    four_axes(bottom, "Upsample's input")
    return bottom[2] * sh - int(p.pad_out_h), bottom[3] * sw - int(p.pad_out_w), sh, sw


def upsample_shape(layer, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # upsample_layer.cpp Reshape: both bottoms (N, C, H, W) and equal
    x = bottoms[0]
    four_axes(x, "Input")
    if len(bottoms) > 1:
        four_axes(bottoms[1], "Input mask")
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
    p = param(layer, "upsample_param", FORK)
    sh, sw = (p.scale_h, p.scale_w) if p.HasField("scale_h") else (p.scale, p.scale)
    if sh < 1 or sw < 1:
        raise UndefinedMapException("Upsample with scale 0 has no coordinate map")
    return axes_map((int(sh), int(sw)), (exact(Fraction(sh - 1, 2)), exact(Fraction(sw - 1, 2))))


def upsample_forward(layer, bottoms, blobs, ctx):
    x = bottoms[0]
    oh, ow, sh, sw = upsample_geometry(layer, x.shape)
    if len(bottoms) > 1:
        return [scatter(x, bottoms[1], oh, ow, "upsample top")]
    up = np.repeat(np.repeat(x, sh, axis=2), sw, axis=3)
    return [np.ascontiguousarray(up[:, :, :oh, :ow])]



def upsample_onnx(layer, ctx):
    """With the mask: each value to the position its mask names (ScatterElements);
    without: each value repeated scale_h x scale_w (Resize nearest, asymmetric,
    floor: input index floor(out / scale)), cut to the output size."""
    x = ctx.inputs[0]
    oh, ow, sh, sw = upsample_geometry(layer, ctx.in_shapes[0])
    if len(ctx.inputs) > 1:
        return [scatter_onnx(ctx, x, ctx.inputs[1], ctx.in_shapes[0], oh, ow)]
    n, c, h, w = ctx.in_shapes[0]
    full = (oh, ow) == (h * sh, w * sw)
    y = ctx.node("Resize", [x, "", ctx.const(np.array([1, 1, sh, sw], np.float32), "scales")],
                 out=ctx.top(0) if full else None, mode="nearest",
                 coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    return [y if full else ctx.slice(y, [0, 0], [oh, ow], [2, 3], out=ctx.top(0))]



def upsample_torch(layer, ctx) -> str:
    """With the mask: each value to the position its mask names (the helper);
    without: each value repeated scale_h x scale_w, cut to the output size."""
    x = ctx.x[0]
    oh, ow, sh, sw = upsample_geometry(layer, ctx.in_shapes[0])
    if len(ctx.x) > 1:
        return "%s(%s, %s, %d, %d)" % (ctx.helper("caffe_scatter"), x, ctx.x[1], oh, ow)
    n, c, h, w = ctx.in_shapes[0]
    y = "%s.repeat_interleave(%d, 2).repeat_interleave(%d, 3)" % (x, sh, sw)
    return y if (oh, ow) == (h * sh, w * sw) else "%s[:, :, :%d, :%d]" % (y, oh, ow)



# -- DenseImageData ------------------------------------------------------------

def dense_image_data_shape(layer: Any, bottoms: List[Shape], ntop: int) -> List[Shape]:
    """dense_image_data_layer.cpp DataLayerSetUp (caffe-segnet, caffe-enet): with
    transform_param's crop_size, (batch, C, crop, crop) images and (batch, 1, crop,
    crop) labels; else with crop_height x crop_width the same at that size; else
    the image size (new_height x new_width when given), the labels that size
    divided by label_divide_factor (caffe-enet; integer division).  C is 3 for
    is_color, else 1.  Without a size the first image's is used, so the tops must
    be given as inputs."""
    p = param(layer, "dense_image_data_param", FORK)
    fields = p.DESCRIPTOR.fields_by_name
    n = int(p.batch_size)
    c = 3 if p.is_color else 1
    crop = int(layer.transform_param.crop_size)
    if crop > 0:
        return [(n, c, crop, crop), (n, 1, crop, crop)][:ntop]
    if p.crop_height and p.crop_width:
        h, w = int(p.crop_height), int(p.crop_width)
        return [(n, c, h, w), (n, 1, h, w)][:ntop]
    h, w = int(p.new_height), int(p.new_width)
    if not (h and w):
        raise NetdslError("DenseImageData takes its size from the first image of its list; give "
                          "new_height and new_width (or crop_height and crop_width, or "
                          "transform_param's crop_size), or give the tops' shapes as inputs",
                          field="dense_image_data_param")
    f = int(p.label_divide_factor) if "label_divide_factor" in fields else 1
    return [(n, c, h, w), (n, 1, h // f, w // f)][:ntop]


declare("Upsample", family="segnet", registry=PACKS, bottoms=(1, 2), tops=1,
        reads=("upsample_param",), shape=upsample_shape, coord_map=upsample_map,
        forward=upsample_forward, onnx=upsample_onnx, torch=upsample_torch,
        source="netdsl.packs.segnet")
declare("DenseImageData", family="segnet", registry=PACKS, bottoms=0, tops=(1, 2),
        reads=("dense_image_data_param",), shape=dense_image_data_shape,
        source="netdsl.packs.segnet")

from . import dropout  # noqa: E402,F401  (Dropout's sample_weights_test)


# -- ENet's Python SpatialDropoutLayer ---------------------------------------------------

def _spatial_dropout_args(layer: Any) -> Tuple[str, float]:
    """(phase, p) from param_str, a Python dict literal such as
    ``{'phase': 'TEST', 'p': '0.01'}`` (the layer reads its phase from there, not
    from the net)."""
    import ast
    try:
        args = ast.literal_eval(layer.python_param.param_str)
        phase, p = str(args["phase"]), float(args["p"])
    except (ValueError, SyntaxError, KeyError, TypeError):
        raise NetdslError("SpatialDropoutLayer's param_str must be a dict with 'phase' and "
                          "'p', such as {'phase': 'TEST', 'p': '0.01'}; got %r"
                          % layer.python_param.param_str, layer=layer.name,
                          field="python_param.param_str") from None
    if not 0 < p < 1:
        raise NetdslError("p need to be between 0 and 1 (caffe-enet spatial_dropout.py)",
                          layer=layer.name, field="python_param.param_str")
    return phase, p


def spatial_dropout_shape(layer: Any, bottoms: List[Shape], ntop: int) -> List[Shape]:
    _spatial_dropout_args(layer)
    return [tuple(bottoms[0])]


def spatial_dropout_forward(layer: Any, bottoms: List[np.ndarray], blobs: Any, ctx: Any
                            ) -> List[np.ndarray]:
    """caffe-enet python/spatial_dropout.py: scale = 1 / (1 - p); phase 'TRAIN' keeps
    each (item, channel) map with probability 1 - p, times scale; any other phase
    multiplies everything by scale (float32 data times a Python float)."""
    phase, p = _spatial_dropout_args(layer)
    x = bottoms[0]
    scale = np.float32(1.0 / (1.0 - p))
    if phase == "TRAIN":
        keep = ctx.rng.random(x.shape[:2]) >= p
        return [x * keep.reshape(x.shape[:2] + (1,) * (x.ndim - 2)) * scale]
    return [x * scale]


def spatial_dropout_onnx(layer: Any, ctx: Any) -> List[str]:
    """The TEST forward: Mul by the float32 scale 1 / (1 - p) (a 'TRAIN' phase draws
    a random mask: refused)."""
    phase, p = _spatial_dropout_args(layer)
    if phase == "TRAIN":
        raise ctx.refuse("its param_str phase 'TRAIN' drops random channels")
    return [ctx.node("Mul", [ctx.inputs[0], ctx.scalar(np.float32(1.0 / (1.0 - p)), "scale")],
                     out=ctx.top(0))]


def spatial_dropout_torch(layer: Any, ctx: Any) -> str:
    """The TEST forward: times the float32 scale 1 / (1 - p) (a 'TRAIN' phase draws
    a random mask: refused)."""
    phase, p = _spatial_dropout_args(layer)
    if phase == "TRAIN":
        raise ctx.refuse("its param_str phase 'TRAIN' drops random channels")
    return "%s * %s" % (ctx.x[0], f32_code(float(np.float32(1.0 / (1.0 - p)))))


python_layers.register("SpatialDropoutLayer", spatial_dropout_shape, spatial_dropout_forward,
                       spatial_dropout_onnx, spatial_dropout_torch)
