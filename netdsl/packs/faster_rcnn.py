"""Faster R-CNN's ``ROIPooling`` (rbgirshick/caffe-fast-rcnn, branch faster-rcnn)
and the shape of its Python ``Proposal`` layer (py-faster-rcnn
``lib/rpn/proposal_layer.py``).

Rules from ``src/caffe/layers/roi_pooling_layer.cpp`` (commit 4115385d; see
docs/forks.md): the top is (number of ROIs, C, pooled_h, pooled_w); each ROI
``[batch index, x1, y1, x2, y2]`` is scaled by spatial_scale and rounded (half
away from zero), at least 1 x 1, split into pooled_h x pooled_w bins of
floor/ceil bounds, clipped to the map; each bin's maximum, 0 for an empty bin.
"""
from __future__ import annotations

import math
from typing import Any, List, Tuple

import numpy as np

from ..errors import NetdslError
from ..layers.blob import f32_code
from ..layers.registry import PACKS, declare
from . import python_layers
from ._util import four_axes, param

FORK = "Faster R-CNN (caffe-fast-rcnn)"
Shape = Tuple[int, ...]
_F = np.float32


def _setup(layer: Any) -> Tuple[int, int, float]:
    p = param(layer, "roi_pooling_param", FORK)
    if p.pooled_h <= 0 or p.pooled_w <= 0:
        raise NetdslError("pooled_h and pooled_w must be > 0", field="roi_pooling_param.pooled_h")
    return int(p.pooled_h), int(p.pooled_w), float(_F(p.spatial_scale))


def roi_pooling_shape(layer: Any, bottoms: List[Shape], ntop: int) -> List[Shape]:
    ph, pw, _ = _setup(layer)
    four_axes(bottoms[0], "ROIPooling's feature map")
    return [(bottoms[1][0], bottoms[0][1], ph, pw)]


def _round(v: float) -> int:
    """C's round(): halves away from zero."""
    return int(math.floor(abs(v) + 0.5)) * (1 if v >= 0 else -1)


def roi_pooling_forward(layer: Any, bottoms: List[np.ndarray], blobs: Any, ctx: Any):
    ph_n, pw_n, scale = _setup(layer)
    x, rois = bottoms[0], bottoms[1].reshape(bottoms[1].shape[0], -1)
    n, c, h, w = x.shape
    out = np.zeros((rois.shape[0], c, ph_n, pw_n), dtype=_F)
    for r, roi in enumerate(rois):
        b = int(roi[0])
        if not 0 <= b < n:
            raise NetdslError("ROI %d names image %d of a batch of %d" % (r, b, n))
        x1, y1, x2, y2 = (_round(float(_F(v) * _F(scale))) for v in roi[1:5])
        rh, rw = max(y2 - y1 + 1, 1), max(x2 - x1 + 1, 1)
        bh, bw = _F(rh) / _F(ph_n), _F(rw) / _F(pw_n)
        for i in range(ph_n):
            hs = min(max(int(math.floor(_F(i) * bh)) + y1, 0), h)
            he = min(max(int(math.ceil(_F(i + 1) * bh)) + y1, 0), h)
            for j in range(pw_n):
                ws = min(max(int(math.floor(_F(j) * bw)) + x1, 0), w)
                we = min(max(int(math.ceil(_F(j + 1) * bw)) + x1, 0), w)
                if he > hs and we > ws:
                    out[r, :, i, j] = x[b, :, hs:he, ws:we].max(axis=(1, 2))
    return [out]


def roi_pooling_onnx(layer: Any, ctx: Any):
    """ONNX MaxRoiPool follows roi_pooling_layer.cpp: ROI corners scaled and rounded
    (halves away from zero), size at least 1, bins from floor(i * size / pooled) to
    ceil((i + 1) * size / pooled) clipped to the map, an empty bin 0."""
    ph, pw, scale = _setup(layer)
    rois = ctx.inputs[1]
    if len(ctx.in_shapes[1]) != 2:
        rois = ctx.reshape(rois, (ctx.in_shapes[1][0], 5), in_shape=ctx.in_shapes[1])
    return [ctx.node("MaxRoiPool", [ctx.inputs[0], rois], out=ctx.top(0),
                     pooled_shape=[ph, pw], spatial_scale=scale)]


def roi_pooling_torch(layer: Any, ctx: Any) -> str:
    """roi_pooling_layer.cpp (the helper: its rounding, bins and clipping)."""
    ph, pw, scale = _setup(layer)
    return "%s(%s, %s, %d, %d, %s)" % (ctx.helper("caffe_roi_pool"), ctx.x[0], ctx.x[1], ph, pw,
                                       f32_code(scale))


# -- the Python Proposal layer ------------------------------------------------------

#: py-faster-rcnn lib/fast_rcnn/config.py: __C.TEST.RPN_POST_NMS_TOP_N = 300;
#: deploy nets run the TEST configuration
POST_NMS_TOP_N = 300
#: __C.TRAIN.RPN_POST_NMS_TOP_N (proposal_layer.py picks cfg[str(self.phase)])
POST_NMS_TOP_N_TRAIN = 2000


def _post_nms_top_n(layer: Any) -> int:
    # some ports pass it in param_str ('post_nms_topN: 300'); py-faster-rcnn's cfg otherwise,
    # by the layer's phase (set by Caffe's Net from the net's state; TEST when unset)
    import re
    m = re.search(r"post_nms_top_?n['\"]?\s*:\s*(\d+)", layer.python_param.param_str, re.I)
    if m:
        return int(m.group(1))
    train = layer.HasField("phase") and layer.phase == 0
    return POST_NMS_TOP_N_TRAIN if train else POST_NMS_TOP_N


def proposal_shape(layer: Any, bottoms: List[Shape], ntop: int) -> List[Shape]:
    """ProposalLayer: (rows, 5) ROIs ``[batch index, x1, y1, x2, y2]`` (and (rows, 1)
    scores), rows at most post_nms_topN (forward reshapes to the proposals kept);
    the bound is what the following ROIPooling is shaped for."""
    n = _post_nms_top_n(layer)
    return [(n, 5), (n, 1)][:ntop]


declare("ROIPooling", family="faster_rcnn", registry=PACKS, bottoms=2, tops=1,
        reads=("roi_pooling_param",), shape=roi_pooling_shape, forward=roi_pooling_forward,
        onnx=roi_pooling_onnx, torch=roi_pooling_torch, source="netdsl.packs.faster_rcnn")

python_layers.register("ProposalLayer", proposal_shape)


def smooth_l1_loss_shape(layer: Any, bottoms: List[Shape], ntop: int) -> List[Shape]:
    """smooth_L1_loss_layer.cpp Reshape (training nets): LossLayer's check (the same
    first axis), then channels, height and width of every bottom (the inside and
    outside weights, when given, are bottoms 2 and 3) equal to bottom 0's; the
    top is the scalar loss."""
    from ..layers.blob import legacy_dim
    a = bottoms[0]
    if not a or not bottoms[1] or a[0] != bottoms[1][0]:
        raise NetdslError("The data and label should have the same first dimension: %s vs %s"
                          % (a, bottoms[1]))
    if len(bottoms) == 3:
        raise NetdslError("If weights are used, must specify both inside and outside weights")
    for i, b in enumerate(bottoms[1:], 1):
        if [legacy_dim(b, k) for k in (1, 2, 3)] != [legacy_dim(a, k) for k in (1, 2, 3)]:
            raise NetdslError("bottom %d %s must match bottom 0 %s in channels, height and "
                              "width" % (i, b, a))
    return [()]


declare("SmoothL1Loss", family="faster_rcnn", registry=PACKS, bottoms=(2, 4), tops=1,
        loss=True, labels=True, reads=("loss_param",), shape=smooth_l1_loss_shape,
        source="netdsl.packs.faster_rcnn")

from . import dropout  # noqa: E402,F401  (Dropout's scale_train)
