"""SSD's layer types (weiliu89/caffe, branch ``ssd``): Permute, PriorBox,
Normalize and DetectionOutput, and the training nets' MultiBoxLoss (its shape).

Each rule follows the fork's C++ (``src/caffe/layers/permute_layer.cpp``,
``prior_box_layer.cpp``, ``normalize_layer.cpp``, ``detection_output_layer.cpp``
and ``src/caffe/util/bbox_util.cpp`` at commit 4817bf8b; see docs/forks.md).
SSD nets also use BVLC's Flatten, Reshape, Concat and Softmax, whose rules are
the built-in ones.
"""
from __future__ import annotations

from typing import Any, List, Sequence, Tuple

import numpy as np

from ..maps import IDENTITY
from ..errors import NetdslError
from ..layers.blob import f32_code
from ..layers.registry import PACKS, declare
from ._util import param

FORK = "SSD (weiliu89/caffe, branch ssd)"
Shape = Tuple[int, ...]
_F = np.float32


# -- Permute -----------------------------------------------------------------------

def permute_order(layer: Any, naxes: int) -> List[int]:
    """PermuteLayer::LayerSetUp: each ``order`` below the number of axes and
    given once; the axes not named follow in their own order."""
    p = param(layer, "permute_param", FORK)
    order: List[int] = []
    for o in p.order:
        if o >= naxes:
            raise NetdslError("order %d should be less than the input dimension %d"
                              % (o, naxes), field="permute_param.order")
        if o in order:
            raise NetdslError("there are duplicate orders (%d)" % o, field="permute_param.order")
        order.append(int(o))
    return order + [i for i in range(naxes) if i not in order]


def permute_shape(layer: Any, bottoms: List[Shape], ntop: int) -> List[Shape]:
    x = bottoms[0]
    return [tuple(x[i] for i in permute_order(layer, len(x)))]


def permute_forward(layer: Any, bottoms: List[np.ndarray], blobs: Any, ctx: Any):
    x = bottoms[0]
    return [np.ascontiguousarray(np.transpose(x, permute_order(layer, x.ndim)))]


# -- PriorBox ----------------------------------------------------------------------

class PriorSetup:
    """PriorBoxLayer::LayerSetUp's values."""

    def __init__(self, layer: Any) -> None:
        p = param(layer, "prior_box_param", FORK)
        if not p.min_size:
            raise NetdslError("must provide min_size", field="prior_box_param.min_size")
        self.min_sizes = [float(v) for v in p.min_size]
        if any(v <= 0 for v in self.min_sizes):
            raise NetdslError("min_size must be positive", field="prior_box_param.min_size")
        ars = [1.0]
        for ar in p.aspect_ratio:
            ar = float(_F(ar))
            if any(abs(ar - a) < 1e-6 for a in ars):
                continue
            ars.append(ar)
            if p.flip:
                ars.append(float(_F(1.0 / ar)))    # 1./ar stored in a vector<float>
        self.aspect_ratios = ars
        self.max_sizes = [float(v) for v in p.max_size]
        if self.max_sizes:
            if len(self.max_sizes) != len(self.min_sizes):
                raise NetdslError("give one max_size per min_size (CHECK_EQ)",
                                  field="prior_box_param.max_size")
            if any(a <= b for a, b in zip(self.max_sizes, self.min_sizes)):
                raise NetdslError("max_size must be greater than min_size",
                                  field="prior_box_param.max_size")
        self.num_priors = len(ars) * len(self.min_sizes) + len(self.max_sizes)
        self.clip = bool(p.clip)
        var = [float(v) for v in p.variance]
        if len(var) > 1 and len(var) != 4:
            raise NetdslError("give 1 or 4 variances", field="prior_box_param.variance")
        if any(v <= 0 for v in var):
            raise NetdslError("variance must be positive", field="prior_box_param.variance")
        self.variance = var or [0.1]
        has = p.HasField
        if has("img_h") or has("img_w"):
            if has("img_size"):
                raise NetdslError("Either img_size or img_h/img_w should be specified; not both.",
                                  field="prior_box_param.img_size")
            self.img_h, self.img_w = int(p.img_h), int(p.img_w)
            if self.img_h <= 0 or self.img_w <= 0:
                raise NetdslError("img_h and img_w should be larger than 0",
                                  field="prior_box_param.img_h")
        elif has("img_size"):
            self.img_h = self.img_w = int(p.img_size)
            if self.img_h <= 0:
                raise NetdslError("img_size should be larger than 0",
                                  field="prior_box_param.img_size")
        else:
            self.img_h = self.img_w = 0
        if has("step_h") or has("step_w"):
            if has("step"):
                raise NetdslError("Either step or step_h/step_w should be specified; not both.",
                                  field="prior_box_param.step")
            self.step_h, self.step_w = float(p.step_h), float(p.step_w)
            if self.step_h <= 0 or self.step_w <= 0:
                raise NetdslError("step_h and step_w should be larger than 0",
                                  field="prior_box_param.step_h")
        elif has("step"):
            self.step_h = self.step_w = float(p.step)
            if self.step_h <= 0:
                raise NetdslError("step should be larger than 0", field="prior_box_param.step")
        else:
            self.step_h = self.step_w = 0.0
        self.offset = float(p.offset)


def prior_box_shape(layer: Any, bottoms: List[Shape], ntop: int) -> List[Shape]:
    """(1, 2, H * W * num_priors * 4): coordinates, then variances."""
    s = PriorSetup(layer)
    x = bottoms[0]
    if len(x) < 4 or len(bottoms[1]) < 4:
        raise NetdslError("PriorBox's bottoms are a feature map and the image (4 axes each)")
    n = x[2] * x[3] * s.num_priors * 4
    if n <= 0:
        raise NetdslError("PriorBox on an empty feature map %s" % (tuple(x),))
    return [(1, 2, n)]


def prior_boxes(s: PriorSetup, layer_h: int, layer_w: int, img_h: int, img_w: int
                ) -> np.ndarray:
    """The (H * W * num_priors, 4) prior boxes, float32, as Forward_cpu writes them:
    centres in float, sizes from the integer min_size (``int min_size_``), each
    coordinate computed in double and stored as float."""
    if s.step_w == 0 or s.step_h == 0:
        step_w = _F(_F(img_w) / _F(layer_w))
        step_h = _F(_F(img_h) / _F(layer_h))
    else:
        step_w, step_h = _F(s.step_w), _F(s.step_h)
    sizes = []   # (box_w, box_h) per prior of a cell, float
    for k, mn in enumerate(s.min_sizes):
        mi = int(mn)
        sizes.append((_F(mi), _F(mi)))
        if s.max_sizes:
            side = _F(np.sqrt(float(mi * int(s.max_sizes[k]))))
            sizes.append((side, side))
        for ar in s.aspect_ratios:
            if abs(ar - 1.0) < 1e-6:
                continue
            r = np.sqrt(_F(ar), dtype=_F)
            sizes.append((_F(_F(mi) * r), _F(_F(mi) / r)))
    bw = np.array([w for w, _ in sizes], dtype=np.float64)
    bh = np.array([h for _, h in sizes], dtype=np.float64)
    cx = ((np.arange(layer_w, dtype=_F) + _F(s.offset)) * step_w).astype(np.float64)
    cy = ((np.arange(layer_h, dtype=_F) + _F(s.offset)) * step_h).astype(np.float64)
    cyy, cxx = np.meshgrid(cy, cx, indexing="ij")
    cxx, cyy = cxx[:, :, None], cyy[:, :, None]
    out = np.stack([(cxx - bw / 2.) / img_w, (cyy - bh / 2.) / img_h,
                    (cxx + bw / 2.) / img_w, (cyy + bh / 2.) / img_h], axis=-1)
    out = out.astype(_F).reshape(-1, 4)
    if s.clip:
        out = np.minimum(np.maximum(out, _F(0)), _F(1))
    return out


def prior_box_forward(layer: Any, bottoms: List[np.ndarray], blobs: Any, ctx: Any):
    s = PriorSetup(layer)
    x, img = bottoms
    if s.img_h == 0 or s.img_w == 0:
        img_h, img_w = img.shape[2], img.shape[3]
    else:
        img_h, img_w = s.img_h, s.img_w
    boxes = prior_boxes(s, x.shape[2], x.shape[3], img_h, img_w).reshape(-1)
    var = np.empty_like(boxes)
    if len(s.variance) == 1:
        var[:] = _F(s.variance[0])
    else:
        var.reshape(-1, 4)[:] = np.array(s.variance, dtype=_F)
    return [np.stack([boxes, var])[None]]


# -- Normalize ---------------------------------------------------------------------

def _norm_param(layer: Any):
    return param(layer, "norm_param", FORK)


def normalize_params(layer: Any, bottoms: List[Shape]) -> List[Shape]:
    """One scale (a 0-axis blob) when channel_shared, else one per channel."""
    return [()] if _norm_param(layer).channel_shared else [(bottoms[0][1],)]


def normalize_fillers(layer: Any, shapes: Sequence[Shape]) -> List[Any]:
    p = _norm_param(layer)
    return [p.scale_filler if p.HasField("scale_filler") else {"type": "constant", "value": 1.0}]


def _constant_scale(layer: Any) -> bool:
    p = _norm_param(layer)
    return not p.HasField("scale_filler") or p.scale_filler.type == "constant"


def normalize_forward(layer: Any, bottoms: List[np.ndarray], blobs: Any, ctx: Any):
    """L2 normalisation: over all of C x H x W per image (across_spatial) or over
    the channels at each pixel, sqrt(sum of squares + eps), then the scale."""
    p = _norm_param(layer)
    x = bottoms[0]
    n, c = x.shape[0], x.shape[1]
    eps = _F(p.eps)
    sq = np.square(x, dtype=_F)
    if p.across_spatial:
        s = sq.reshape(n, -1).sum(axis=1, dtype=np.float64).astype(_F)
        norm = np.power(s + eps, _F(0.5), dtype=_F)
        y = x * (_F(1) / norm).astype(_F).reshape((n,) + (1,) * (x.ndim - 1))
    else:
        s = sq.sum(axis=1, dtype=np.float64, keepdims=True).astype(_F)
        norm = np.power(s + eps, _F(0.5), dtype=_F)
        y = x / norm
    scale = np.asarray(blobs[0], dtype=_F).reshape(-1)
    if p.channel_shared:
        if scale.size != 1:
            raise NetdslError("the scale blob should have 1 value (channel_shared); it has %d"
                              % scale.size)
        y = y * scale[0]
    else:
        if scale.size != c:
            raise NetdslError("the scale blob should have %d values (one per channel); it has "
                              "%d" % (c, scale.size))
        y = y * scale.reshape((1, c) + (1,) * (x.ndim - 2))
    return [y.astype(_F)]


# -- DetectionOutput ---------------------------------------------------------------

def _det_param(layer: Any):
    p = param(layer, "detection_output_param", FORK)
    if not p.HasField("num_classes"):
        raise NetdslError("Must specify num_classes", field="detection_output_param.num_classes")
    if p.nms_param.nms_threshold < 0:
        raise NetdslError("nms_threshold must be non negative",
                          field="detection_output_param.nms_param.nms_threshold")
    if not 0 < p.nms_param.eta <= 1:
        raise NetdslError("eta must be in (0, 1]", field="detection_output_param.nms_param.eta")
    return p


def detection_output_shape(layer: Any, bottoms: List[Shape], ntop: int) -> List[Shape]:
    """Reshape's checks (loc and conf channels agree with the priors) and its top
    (1, 1, 1, 7); the forward gives one row per kept detection (data dependent)."""
    p = _det_param(layer)
    loc, conf, prior = bottoms[:3]
    if len(prior) < 3 or prior[2] % 4:
        raise NetdslError("the priors %s should be (1, 2, 4 * num_priors)" % (tuple(prior),))
    npri = prior[2] // 4
    nloc = 1 if p.share_location else p.num_classes
    lc = int(np.prod(loc[1:])) if len(loc) > 1 else 1
    cc = int(np.prod(conf[1:])) if len(conf) > 1 else 1
    if lc != npri * nloc * 4:
        raise NetdslError("Number of priors must match number of location predictions: loc "
                          "gives %d values per image, the priors want %d" % (lc, npri * nloc * 4))
    if cc != npri * p.num_classes:
        raise NetdslError("Number of priors must match number of confidence predictions: conf "
                          "gives %d values per image, the priors want %d"
                          % (cc, npri * p.num_classes))
    return [(1, 1, 1, 7)]


def decode_boxes(loc: np.ndarray, priors: np.ndarray, var: np.ndarray, code_type: int,
                 encoded: bool) -> np.ndarray:
    """bbox_util.cpp DecodeBBox for (P, 4) predictions against (P, 4) priors (float)."""
    loc = loc.astype(_F)
    pxmin, pymin, pxmax, pymax = (priors[:, i] for i in range(4))
    v = np.ones_like(var) if encoded else var
    if code_type == 1:        # CORNER
        out = priors + v * loc
    elif code_type == 2:      # CENTER_SIZE
        pw, ph = pxmax - pxmin, pymax - pymin
        if (pw <= 0).any() or (ph <= 0).any():
            raise NetdslError("a prior box has no width or height (CHECK_GT in DecodeBBox)")
        pcx, pcy = (pxmin + pxmax) / _F(2), (pymin + pymax) / _F(2)
        cx = v[:, 0] * loc[:, 0] * pw + pcx
        cy = v[:, 1] * loc[:, 1] * ph + pcy
        w = np.exp(v[:, 2] * loc[:, 2], dtype=_F) * pw
        h = np.exp(v[:, 3] * loc[:, 3], dtype=_F) * ph
        out = np.stack([cx - w / _F(2), cy - h / _F(2), cx + w / _F(2), cy + h / _F(2)], 1)
    elif code_type == 3:      # CORNER_SIZE
        pw, ph = pxmax - pxmin, pymax - pymin
        sc = np.stack([pw, ph, pw, ph], 1)
        out = priors + v * loc * sc
    else:
        raise NetdslError("unknown code_type %d" % code_type, field="detection_output_param")
    return out.astype(_F)


def _sizes(b: np.ndarray) -> np.ndarray:
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    return np.where((w < 0) | (h < 0), _F(0), w * h).astype(_F)


def nms_fast(boxes: np.ndarray, scores: np.ndarray, score_threshold: float,
             nms_threshold: float, eta: float, top_k: int) -> List[int]:
    """bbox_util.cpp ApplyNMSFast: candidates above the threshold by descending
    score (stable), the first top_k, each kept unless it overlaps a kept one by
    more than the (adaptive) threshold."""
    cand = np.nonzero(scores > _F(score_threshold))[0]
    cand = cand[np.argsort(-scores[cand], kind="stable")]
    if top_k > -1:
        cand = cand[:top_k]
    sizes = _sizes(boxes)
    kept: List[int] = []
    thr = _F(nms_threshold)
    for idx in cand:
        if kept:
            k = np.array(kept)
            b, o = boxes[idx], boxes[k]
            disjoint = (o[:, 0] > b[2]) | (o[:, 2] < b[0]) | (o[:, 1] > b[3]) | (o[:, 3] < b[1])
            iw = np.minimum(b[2], o[:, 2]) - np.maximum(b[0], o[:, 0])
            ih = np.minimum(b[3], o[:, 3]) - np.maximum(b[1], o[:, 1])
            inter = (iw * ih).astype(_F)
            with np.errstate(divide="ignore", invalid="ignore"):
                ov = inter / (sizes[idx] + sizes[k] - inter)
            ov = np.where(disjoint | (iw <= 0) | (ih <= 0), _F(0), ov)
            keep = not (ov > thr).any()
        else:
            keep = True
        if keep:
            kept.append(int(idx))
            if eta < 1 and thr > 0.5:
                thr = _F(thr * _F(eta))
    return kept


def detection_output_forward(layer: Any, bottoms: List[np.ndarray], blobs: Any, ctx: Any):
    """Decode, per-class NMS, keep_top_k; rows [image, label, score, xmin, ymin,
    xmax, ymax] by image, then label, then NMS order; with no detection one row
    per image of -1 holding the image index."""
    p = _det_param(layer)
    loc, conf, prior = bottoms[:3]
    num = loc.shape[0]
    npri = prior.shape[2] // 4
    ncls = p.num_classes
    nloc = 1 if p.share_location else ncls
    loc = loc.reshape(num, npri, nloc, 4)
    conf = conf.reshape(num, npri, ncls)
    priors = prior[0, 0].reshape(npri, 4).astype(_F)
    var = prior[0, 1].reshape(npri, 4).astype(_F)
    thr = float(_F(p.confidence_threshold)) if p.HasField("confidence_threshold") \
        else -float(np.finfo(_F).max)
    top_k = p.nms_param.top_k if p.nms_param.HasField("top_k") else -1
    rows = []
    for i in range(num):
        decoded = {}
        for lc in range(nloc):
            label = -1 if p.share_location else lc
            if label == p.background_label_id and not p.share_location:
                continue        # DecodeBBoxesAll skips the background's own boxes
            decoded[label] = decode_boxes(loc[i, :, lc], priors, var, p.code_type,
                                          p.variance_encoded_in_target)
        indices = {}
        for c in range(ncls):
            if c == p.background_label_id:
                continue
            boxes = decoded[-1 if p.share_location else c]
            indices[c] = nms_fast(boxes, conf[i, :, c], thr, p.nms_param.nms_threshold,
                                  p.nms_param.eta, top_k)
        ndet = sum(len(v) for v in indices.values())
        if p.keep_top_k > -1 and ndet > p.keep_top_k:
            pairs = [(conf[i, idx, c], c, idx) for c in sorted(indices) for idx in indices[c]]
            order = sorted(range(len(pairs)), key=lambda j: -pairs[j][0])[:p.keep_top_k]
            indices = {}
            for j in order:
                indices.setdefault(pairs[j][1], []).append(pairs[j][2])
        for c in sorted(indices):
            boxes = decoded[-1 if p.share_location else c]
            for idx in indices[c]:
                rows.append([i, c, conf[i, idx, c]] + list(boxes[idx]))
    if not rows:
        out = np.full((1, 1, num, 7), -1, dtype=_F)
        out[0, 0, :, 0] = np.arange(num)
        return [out]
    return [np.array(rows, dtype=_F).reshape(1, 1, len(rows), 7)]


def permute_onnx(layer: Any, ctx: Any):
    return [ctx.node("Transpose", ctx.inputs, out=ctx.top(0),
                     perm=permute_order(layer, len(ctx.in_shapes[0])))]


def prior_box_onnx(layer: Any, ctx: Any):
    """The priors depend on the two bottoms' shapes only: folded to a constant, the
    values of the rule above."""
    fake = [np.broadcast_to(_F(0), s) for s in ctx.in_shapes]
    return [ctx.const(prior_box_forward(layer, fake, [], None)[0], "priors")]


def normalize_onnx(layer: Any, ctx: Any):
    """normalize_layer.cpp: ``x / sqrt(sum x^2 + eps)`` over C x H x W per image
    (across_spatial) or over the channels at each pixel, then the scale."""
    p = _norm_param(layer)
    x = ctx.inputs[0]
    shape = ctx.in_shapes[0]
    nd, c = len(shape), shape[1]
    eps = ctx.scalar(float(_F(p.eps)), "eps")
    axes = list(range(1, nd)) if p.across_spatial else [1]
    norm = ctx.node("Sqrt", [ctx.node("Add", [ctx.reduce("ReduceSumSquare", x, axes), eps])])
    if p.across_spatial:
        y = ctx.node("Mul", [x, ctx.node("Reciprocal", [norm])])
    else:
        y = ctx.node("Div", [x, norm])
    scale = ctx.weight(0, (1,) if p.channel_shared else (c,) + (1,) * (nd - 2))
    return [ctx.node("Mul", [y, scale], out=ctx.top(0))]



def permute_torch(layer: Any, ctx: Any) -> str:
    return "%s.permute(%s)" % (ctx.x[0], ", ".join(map(str, permute_order(
        layer, len(ctx.in_shapes[0])))))


def prior_box_torch(layer: Any, ctx: Any) -> str:
    """The priors depend on the two bottoms' shapes only: a constant (a buffer)."""
    fake = [np.broadcast_to(_F(0), s) for s in ctx.in_shapes]
    return "%s.value" % ctx.constant_module(prior_box_forward(layer, fake, [], None)[0])


def normalize_torch(layer: Any, ctx: Any) -> str:
    """normalize_layer.cpp (the helper), the scale a parameter."""
    p = _norm_param(layer)
    c = ctx.in_shapes[0][1]
    mod = ctx.blobs_module([ctx.blob(0, (1,) if p.channel_shared else (c,))])
    return "%s(%s, %s.blob0, %r, %s)" % (ctx.helper("caffe_normalize"), ctx.x[0], mod,
                                         bool(p.across_spatial), f32_code(p.eps))



declare("Permute", family="ssd", registry=PACKS, bottoms=1, tops=1, reads=("permute_param",),
        shape=permute_shape, forward=permute_forward, onnx=permute_onnx, torch=permute_torch,
        source="netdsl.packs.ssd")
declare("PriorBox", family="ssd", registry=PACKS, bottoms=2, tops=1,
        reads=("prior_box_param",), shape=prior_box_shape, forward=prior_box_forward,
        onnx=prior_box_onnx, torch=prior_box_torch, source="netdsl.packs.ssd")
declare("Normalize", family="ssd", registry=PACKS, bottoms=1, tops=1, reads=("norm_param",),
        shape=lambda layer, bottoms, ntop: [tuple(bottoms[0])], params=normalize_params,
        fillers=normalize_fillers, forward=normalize_forward, needs_weights=True,
        fixed_blobs=_constant_scale, coord_map=lambda layer, shapes=None: IDENTITY,
        onnx=normalize_onnx, torch=normalize_torch, source="netdsl.packs.ssd")
declare("DetectionOutput", family="ssd", registry=PACKS, bottoms=3, tops=1,
        reads=("detection_output_param",), shape=detection_output_shape,
        forward=detection_output_forward, source="netdsl.packs.ssd",
        extra={"data_dependent_axes": (2,)})


# -- MultiBoxLoss (training nets: shape only) --------------------------------------------

def multibox_loss_shape(layer: Any, bottoms: List[Shape], ntop: int) -> List[Shape]:
    """multibox_loss_layer.cpp Reshape: LossLayer's check (loc and conf share the
    first axis), priors = height(prior boxes) / 4, loc channels = priors x loc
    classes x 4 (loc classes 1 with share_location, else num_classes), conf
    channels = priors x num_classes; the top is the scalar loss."""
    from ..layers.blob import legacy_dim
    p = param(layer, "multibox_loss_param", FORK)
    loc, conf, prior = bottoms[0], bottoms[1], bottoms[2]
    if not loc or not conf or loc[0] != conf[0]:
        raise NetdslError("The data and label should have the same first dimension: %s vs %s"
                          % (loc, conf))
    priors = legacy_dim(prior, 2) // 4
    classes = int(p.num_classes)
    loc_classes = 1 if p.share_location else classes
    if priors * loc_classes * 4 != legacy_dim(loc, 1):
        raise NetdslError("Number of priors must match number of location predictions "
                          "(%d priors x %d x 4 != %d)" % (priors, loc_classes, legacy_dim(loc, 1)))
    if priors * classes != legacy_dim(conf, 1):
        raise NetdslError("Number of priors must match number of confidence predictions "
                          "(%d priors x %d != %d)" % (priors, classes, legacy_dim(conf, 1)))
    return [()]


declare("MultiBoxLoss", family="ssd", registry=PACKS, bottoms=4, tops=1, loss=True,
        labels=True, reads=("multibox_loss_param", "loss_param"), shape=multibox_loss_shape,
        source="netdsl.packs.ssd")

