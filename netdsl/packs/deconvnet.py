"""DeconvNet's layer types (HyeonwooNoh/caffe, a V1-format fork): ``UNPOOLING``
(current name ``Unpooling``), ``BN`` (netdsl.packs.bn, SegNet's rule), V1
``POOLING`` with a second top holding the max switches (BVLC's Pooling mask),
``CROP`` (the coordinate-map crop: BVLC's ``Crop`` with the offsets computed at
upgrade), and the data layers ``IMAGE_SEG_DATA`` (``ImageSegData``, the DeepLab
pack's rule) and ``WINDOW_SEG_DATA`` (``WindowSegData``: tops given as inputs).

Rules from ``src/caffe/layers/unpooling_layer.cpp``, ``crop_layer.cpp`` and
``image_seg_data_layer.cpp`` (commit d9e8494a; see docs/forks.md).  The V1
type names the fork adds are upgraded by :data:`V1_TYPES`.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Tuple

import numpy as np

from ..errors import NetdslError
from ..layers.registry import PACKS, declare
from . import bn  # noqa: F401  (the BN type)
from . import deeplab  # noqa: F401  (ImageSegData, the same rule in this fork)
from ._util import axes_map, exact, four_axes, param, scatter, scatter_onnx

FORK = "DeconvNet"
Shape = Tuple[int, ...]

#: the fork's V1 LayerType names -> current type strings
V1_TYPES = {"UNPOOLING": "Unpooling", "BN": "BN", "CROP": "Crop",
            "IMAGE_SEG_DATA": "ImageSegData", "WINDOW_SEG_DATA": "WindowSegData",
            "ELTWISE_ACCURACY": "EltwiseAccuracy"}


def eltwise_accuracy_shape(layer: Any, bottoms: List[Shape], ntop: int) -> List[Shape]:
    """eltwise_accuracy_layer.cpp Reshape: predictions and labels share num, height
    and width, the labels have one channel; the top is (1, 1, 1, 1)."""
    from ..layers.blob import legacy_dim
    a, b = bottoms[0], bottoms[1]
    if legacy_dim(a, 0) != legacy_dim(b, 0) or legacy_dim(b, 1) != 1 or \
            legacy_dim(a, 2) != legacy_dim(b, 2) or legacy_dim(a, 3) != legacy_dim(b, 3):
        raise NetdslError("EltwiseAccuracy needs predictions (N, C, H, W) and labels "
                          "(N, 1, H, W); got %s and %s" % (a, b))
    return [(1, 1, 1, 1)]


declare("EltwiseAccuracy", family="deconvnet", registry=PACKS, bottoms=2, tops=1,
        labels=True, shape=eltwise_accuracy_shape, source="netdsl.packs.deconvnet")


def crop_offsets(net: Any, v1_types: Dict[str, Any], offsets_at: Callable) -> None:
    """The fork's V1 ``CROP`` (``crop_layer.cpp``) crops bottom 0 to bottom 1's
    height and width at offsets it computes when the net is set up: from the
    blob where the two bottoms' paths meet, the coordinate map to bottom 1
    composed with the inverse of the map to bottom 0 must have scale 1 and an
    integer, non-positive shift, whose negation is the offset.  BVLC's ``Crop``
    takes the offsets as parameters, so each upgraded one (a ``Crop`` without
    ``crop_param``: BVLC's V1 has no CROP) gets ``crop_param { axis: 2 offset }``
    from the same coordinate maps (netdsl.coord_map), in net order, as a later
    crop's maps run through the earlier ones.  ``offsets_at(net, index)`` is the
    walker's :func:`netdsl.coord_walk.crop_offsets_at` (an engine the packs do not
    import: the upgrade passes it)."""
    if "CROP" not in v1_types.values():
        return
    for i, lp in enumerate(net.layer):
        if lp.type != "Crop" or lp.HasField("crop_param") or len(lp.bottom) != 2:
            continue
        try:
            axis, offsets = offsets_at(net, i)
        except NetdslError as exc:
            raise NetdslError("V1 CROP: no crop offsets follow from the coordinate maps of "
                              "its bottoms (%s)" % exc.message, layer=lp.name) from None
        offsets = list(offsets)
        if axis < 2:   # the fork crops height and width only
            offsets = offsets[2 - axis:]
        lp.crop_param.axis = 2
        lp.crop_param.offset.extend(offsets)


AFTER_V1_UPGRADE = crop_offsets


def unpool_setup(layer: Any):
    """UnpoolingLayer::LayerSetUp: (kernel, stride, pad, (out_h, out_w) or None)."""
    p = param(layer, "unpooling_param", FORK)
    has = p.HasField
    if has("kernel_size") == (has("kernel_h") and has("kernel_w")) or \
            (not has("kernel_size") and not (has("kernel_h") and has("kernel_w"))):
        raise NetdslError("Filter size is kernel_size OR kernel_h and kernel_w; not both",
                          field="unpooling_param.kernel_size")
    k = (p.kernel_size,) * 2 if has("kernel_size") else (p.kernel_h, p.kernel_w)
    if min(k) <= 0:
        raise NetdslError("Filter dimensions cannot be zero.", field="unpooling_param.kernel_size")
    pad = (p.pad_h, p.pad_w) if has("pad_h") else (p.pad,) * 2
    if pad != (0, 0):
        raise NetdslError("currently, only zero padding is allowed (unpooling_layer.cpp "
                          "CHECK_EQ(pad_h_, 0))", field="unpooling_param.pad")
    s = (p.stride_h, p.stride_w) if has("stride_h") else (p.stride,) * 2
    if has("unpool_size"):
        size = (p.unpool_size,) * 2
    elif has("unpool_h") and has("unpool_w"):
        size = (p.unpool_h, p.unpool_w)
    else:
        size = None
    return k, s, pad, size


def unpooling_shape(layer: Any, bottoms: List[Shape], ntop: int) -> List[Shape]:
    """Reshape: the given size, else max((H - 1) * s + k - 2p, H * s - p + 1)."""
    x = bottoms[0]
    four_axes(x, "Unpooling's input")
    k, s, pad, size = unpool_setup(layer)
    if size is None:
        size = tuple(max((x[2 + i] - 1) * s[i] + k[i] - 2 * pad[i], x[2 + i] * s[i] - pad[i] + 1)
                     for i in range(2))
    return [(x[0], x[1], int(size[0]), int(size[1]))]


def unpooling_map(layer: Any, shapes: Any = None):
    # the inverse of the pooling it undoes: scale s, shift (k - 1) / 2 - p
    from fractions import Fraction
    k, s, pad, _ = unpool_setup(layer)
    return axes_map(s, [exact(Fraction(k[i] - 1, 2) - pad[i]) for i in range(2)])


def unpooling_forward(layer: Any, bottoms: List[np.ndarray], blobs: Any, ctx: Any):
    """MAX: each value to the position its mask names (or, without a mask, to
    (ph * s, pw * s) clamped into the output), zeros elsewhere."""
    p = layer.unpooling_param
    if p.unpool != 0:
        raise NetdslError("only MAX unpooling has a numpy forward here",
                          field="unpooling_param.unpool")
    x = bottoms[0]
    _, _, oh, ow = unpooling_shape(layer, [tuple(x.shape)], 1)[0]
    if len(bottoms) > 1:
        return [scatter(x, bottoms[1], oh, ow, "unpooling")]
    _, s, pad, _ = unpool_setup(layer)
    n, c, h, w = x.shape
    uh = np.clip(np.arange(h) * s[0] - pad[0], 0, oh - 1)
    uw = np.clip(np.arange(w) * s[1] - pad[1], 0, ow - 1)
    idx = np.broadcast_to((uh[:, None] * ow + uw[None, :]).astype(np.float32), x.shape)
    return [scatter(x, idx, oh, ow, "unpooling")]


def unpooling_onnx(layer: Any, ctx: Any):
    """MAX unpooling: each value to its mask's position, or without a mask to
    (ph * s, pw * s) clamped into the output (the constant positions), zeros elsewhere."""
    if layer.unpooling_param.unpool != 0:
        raise ctx.refuse("only MAX unpooling is exported")
    _, _, oh, ow = ctx.out_shapes[0]
    if len(ctx.inputs) > 1:
        return [scatter_onnx(ctx, ctx.inputs[0], ctx.inputs[1], ctx.in_shapes[0], oh, ow)]
    _, s, pad, _ = unpool_setup(layer)
    shape = ctx.in_shapes[0]
    h, w = shape[2:]
    uh = np.clip(np.arange(h) * s[0] - pad[0], 0, oh - 1)
    uw = np.clip(np.arange(w) * s[1] - pad[1], 0, ow - 1)
    plane = (uh[:, None] * ow + uw[None, :]).astype(np.float32).reshape(1, 1, h, w)
    # one plane of positions, expanded to the bottom's shape (read at run time under a
    # dynamic batch)
    idx = ctx.node("Expand", [ctx.const(plane, "positions"),
                              ctx.shape_of(ctx.inputs[0], shape, 4, [])])
    return [scatter_onnx(ctx, ctx.inputs[0], idx, shape, oh, ow)]



def unpooling_torch(layer: Any, ctx: Any) -> str:
    """MAX unpooling (the helper): each value to its mask's position, or without a
    mask to (ph * s, pw * s) clamped into the output (constant positions, a buffer)."""
    if layer.unpooling_param.unpool != 0:
        raise ctx.refuse("only MAX unpooling is exported")
    _, _, oh, ow = ctx.out_shapes[0]
    fn = ctx.helper("caffe_scatter")
    if len(ctx.x) > 1:
        return "%s(%s, %s, %d, %d)" % (fn, ctx.x[0], ctx.x[1], oh, ow)
    _, s, pad, _ = unpool_setup(layer)
    h, w = ctx.in_shapes[0][2:]
    uh = np.clip(np.arange(h) * s[0] - pad[0], 0, oh - 1)
    uw = np.clip(np.arange(w) * s[1] - pad[1], 0, ow - 1)
    plane = (uh[:, None] * ow + uw[None, :]).astype(np.float32).reshape(1, 1, h, w)
    return "%s(%s, %s.value.expand_as(%s), %d, %d)" % (
        fn, ctx.x[0], ctx.constant_module(plane), ctx.x[0], oh, ow)


declare("Unpooling", family="deconvnet", registry=PACKS, bottoms=(1, 2), tops=1,
        reads=("unpooling_param",), shape=unpooling_shape, coord_map=unpooling_map,
        forward=unpooling_forward, onnx=unpooling_onnx, torch=unpooling_torch,
        source="netdsl.packs.deconvnet")
