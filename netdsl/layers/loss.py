"""Loss layers and Accuracy (loss_layer.cpp and the *_loss_layer.cpp files).
"""
from __future__ import annotations

from typing import List

from google.protobuf.message import Message

from ..errors import NetdslError

from .blob import Shape, canonical_axis, count, enum_name, err, legacy_dim, shape_str
from .registry import declare
from .runtime import Context, np


def _loss_base(bottoms: List[Shape]) -> None:
    # loss_layer.cpp Reshape
    a, b = bottoms[0], bottoms[1]
    if not a or not b or a[0] != b[0]:
        raise err("The data and label should have the same first dimension: %s vs %s"
                  % (shape_str(a), shape_str(b)))


def _labels_match(pred: Shape, label: Shape, axis_value: int, field: str, what: str) -> int:
    axis = canonical_axis(axis_value, pred, field)
    outer, inner = count(pred, 0, axis), count(pred, axis + 1)
    if outer * inner != count(label):
        raise err("Number of labels must match number of predictions: with %s axis %d and "
                  "prediction shape %s, the label count must be %d x %d = %d; label %s has %d"
                  % (what, axis, shape_str(pred), outer, inner, outer * inner,
                      shape_str(label), count(label)), field)
    return axis


def _softmax_loss(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # softmax_loss_layer.cpp: scalar loss; optional second top is the softmax output
    _loss_base(bottoms)
    _labels_match(bottoms[0], bottoms[1], layer.softmax_param.axis, "softmax_param.axis", "softmax")
    return [()] + [bottoms[0]] * (ntop - 1)


def _infogain_loss(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # infogain_loss_layer.cpp: the infogain matrix (bottom[2] or a file) is labels x labels
    _loss_base(bottoms)
    axis = _labels_match(bottoms[0], bottoms[1], layer.infogain_loss_param.axis,
                         "infogain_loss_param.axis", "infogain")
    if len(bottoms) > 2:
        k = bottoms[0][axis]
        if count(bottoms[2]) != k * k:
            raise err("the infogain matrix (bottom[2]) %s must have %d x %d = %d elements"
                      % (shape_str(bottoms[2]), k, k, k * k))
    return [()] + [bottoms[0]] * (ntop - 1)


def _loss(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    _loss_base(bottoms)
    a, b = bottoms
    if layer.type == "EuclideanLoss" and count(a, 1) != count(b, 1):
        raise err("Inputs must have the same dimension: count(1) %d vs %d (%s, %s)"
                  % (count(a, 1), count(b, 1), shape_str(a), shape_str(b)))
    if layer.type == "SigmoidCrossEntropyLoss" and count(a) != count(b):
        raise err("SIGMOID_CROSS_ENTROPY_LOSS layer inputs must have the same count: %d vs %d"
                  % (count(a), count(b)))
    if layer.type == "MultinomialLogisticLoss":
        if any(legacy_dim(b, i) != 1 for i in (1, 2, 3)):
            raise err("the label blob must be (N, 1, 1, 1) in legacy terms; got %s" % shape_str(b))
    return [()]


def _contrastive_loss(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # contrastive_loss_layer.cpp: two (N, C, 1, 1) features and an (N, 1, 1, 1) similarity
    _loss_base(bottoms)
    a, b, s = bottoms
    ok = (legacy_dim(a, 1) == legacy_dim(b, 1) and legacy_dim(a, 2) == 1 and legacy_dim(a, 3) == 1
          and legacy_dim(b, 2) == 1 and legacy_dim(b, 3) == 1
          and all(legacy_dim(s, i) == 1 for i in (1, 2, 3)))
    if not ok:
        raise err("ContrastiveLoss needs two (N, C, 1, 1) features and an (N, 1, 1, 1) "
                  "similarity; got %s, %s, %s" % (shape_str(a), shape_str(b), shape_str(s)))
    return [()]


def _accuracy(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # accuracy_layer.cpp: scalar accuracy; optional second top has one entry per class
    p = layer.accuracy_param
    pred, label = bottoms
    if count(label) == 0 or p.top_k > count(pred) // count(label):
        raise err("top_k must be less than or equal to the number of classes (top_k %d, %d "
                  "predictions per label)" % (p.top_k, count(pred) // max(count(label), 1)),
                  "accuracy_param.top_k")
    axis = _labels_match(pred, label, p.axis, "accuracy_param.axis", "label")
    return [()] + [(pred[axis],)] * (ntop - 1)


# -- numpy forward (values only; Forward_cpu of each layer, float32, Caffe's summation order) --

_FLT_MIN = 1.1754943508222875e-38   # FLT_MIN


def _axis(axis: int, ndim: int, layer: Message) -> int:
    a = axis + ndim if axis < 0 else axis
    if not 0 <= a < ndim:
        raise NetdslError("axis %d out of range for a %d-axis blob" % (axis, ndim),
                          layer=layer.name)
    return a


def _split(x: np.ndarray, axis: int):
    """(outer, channels, inner) view of ``x`` around ``axis`` (Caffe's count(0, axis) ...)."""
    outer = int(np.prod(x.shape[:axis], dtype=np.int64))
    inner = int(np.prod(x.shape[axis + 1:], dtype=np.int64))
    return x.reshape(outer, x.shape[axis], inner), outer, inner


def _labels(label: np.ndarray, outer: int, inner: int, layer: Message) -> np.ndarray:
    if label.size != outer * inner:
        raise NetdslError("Number of labels must match number of predictions: %d labels for "
                          "%d x %d predictions" % (label.size, outer, inner), layer=layer.name)
    return label.reshape(outer, inner).astype(np.int64)  # static_cast<int> truncates


def _seq_sum(values: np.ndarray) -> np.float32:
    # Caffe adds one term at a time in float; cumsum is sequential too
    if values.size == 0:
        return np.float32(0)
    return np.cumsum(values.astype(np.float32), dtype=np.float32)[-1]


def _softmax(layer: Message, x: np.ndarray, ctx: Context) -> np.ndarray:
    """SoftmaxWithLoss's inner Softmax layer (the same softmax_param): Softmax's forward."""
    from .norm import softmax
    return softmax(layer, [x], [], ctx)[0]


def _softmax_with_loss(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
                       ctx: Context) -> List[np.ndarray]:
    """SoftmaxWithLossLayer::Forward_cpu: -sum log(max(prob[label], FLT_MIN)) over the
    labels not ignored, divided by the normalizer (VALID: that count; FULL:
    outer x inner; BATCH_SIZE: outer; NONE: 1; at least 1).  ``normalize``
    (deprecated) picks VALID or BATCH_SIZE when ``normalization`` is unset."""
    x, label = bottoms[0], bottoms[1]
    axis = _axis(layer.softmax_param.axis, x.ndim, layer)
    prob = _softmax(layer, x, ctx)
    p3, outer, inner = _split(prob, axis)
    lab = _labels(label, outer, inner, layer)
    lp = layer.loss_param
    keep = np.ones(lab.shape, dtype=bool)
    if lp.HasField("ignore_label"):
        keep = lab != lp.ignore_label
    if np.any((lab[keep] < 0) | (lab[keep] >= p3.shape[1])):
        raise NetdslError("labels must lie in 0..%d" % (p3.shape[1] - 1), layer=layer.name)
    i, j = np.nonzero(keep)
    picked = p3[i, lab[i, j], j]
    loss = _seq_sum(-np.log(np.maximum(picked, _FLT_MIN)))
    fields = lp.DESCRIPTOR.fields_by_name
    if "normalization" not in fields:    # an old fork's schema: `normalize` (default true)
        mode = "VALID" if "normalize" not in fields or lp.normalize else "BATCH_SIZE"
    elif not lp.HasField("normalization") and lp.HasField("normalize"):
        mode = "VALID" if lp.normalize else "BATCH_SIZE"
    else:
        mode = enum_name(lp, "normalization")
    norm = {"FULL": outer * inner, "VALID": int(keep.sum()), "BATCH_SIZE": outer,
            "NONE": 1}[mode]
    tops = [np.array(loss / np.float32(max(1.0, norm)), dtype=np.float32)]
    if ctx.ntop > 1:
        tops.append(prob)
    return tops


def _accuracy_forward(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
                      ctx: Context) -> List[np.ndarray]:
    """AccuracyLayer::Forward_cpu: a label counts as right when fewer than ``top_k``
    classes other than it score at least as high; the fraction of labels not
    ignored (0 when none); top 1, per class, the same fraction per true label."""
    x, label = bottoms[0], bottoms[1]
    p = layer.accuracy_param
    axis = _axis(p.axis, x.ndim, layer)
    x3, outer, inner = _split(x, axis)
    lab = _labels(label, outer, inner, layer)
    keep = np.ones(lab.shape, dtype=bool)
    if p.HasField("ignore_label"):
        keep = lab != p.ignore_label
    i, j = np.nonzero(keep)
    true = x3[i, lab[i, j], j]
    better = (x3[i, :, j] >= true[:, None]).sum(axis=1) - 1
    right = better < p.top_k
    count = len(true)
    tops = [np.array(np.float32(right.sum()) / np.float32(count) if count else 0,
                     dtype=np.float32)]
    if ctx.ntop > 1:
        n = x3.shape[1]
        seen = np.bincount(lab[i, j], minlength=n).astype(np.float32)
        hits = np.bincount(lab[i, j][right], minlength=n).astype(np.float32)
        tops.append(np.where(seen == 0, np.float32(0), hits / np.maximum(seen, 1))
                    .astype(np.float32))
    return tops


def _euclidean_loss(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
                    ctx: Context) -> List[np.ndarray]:
    """EuclideanLossLayer::Forward_cpu: sum((a - b)^2) / num / 2, num = the first axis."""
    a, b = bottoms[0], bottoms[1]
    if a.size != b.size:
        raise NetdslError("EuclideanLoss inputs must have the same count, not %d and %d"
                          % (a.size, b.size), layer=layer.name)
    d = (a.reshape(-1) - b.reshape(-1)).astype(np.float32)
    num = a.shape[0] if a.ndim else 1
    loss = np.float32(np.dot(d, d)) / np.float32(num) / np.float32(2)
    return [np.array(loss, dtype=np.float32)]


# -- declarations ----------------------------------------------------------------------

declare("Accuracy", family="loss", labels=True, bottoms=2, tops=(1, 2), shape=_accuracy,
        forward=_accuracy_forward)
declare("ContrastiveLoss", family="loss", labels=True, bottoms=3, tops=1, loss=True,
        shape=_contrastive_loss)
declare("EuclideanLoss", family="loss", labels=True, bottoms=2, tops=1, loss=True, shape=_loss,
        forward=_euclidean_loss)
declare("HingeLoss", family="loss", labels=True, bottoms=2, tops=1, loss=True, shape=_loss)
declare("InfogainLoss", family="loss", labels=True, bottoms=(2, 3), tops=(1, 2), loss=True,
        shape=_infogain_loss)
declare("MultinomialLogisticLoss", family="loss", labels=True, bottoms=2, tops=1, loss=True,
        shape=_loss)
declare("SigmoidCrossEntropyLoss", family="loss", labels=True, bottoms=2, tops=1, loss=True,
        reads=("loss_param",), shape=_loss)
declare("SoftmaxWithLoss", family="loss", labels=True, bottoms=2, tops=(1, 2), loss=True,
        reads=("softmax_param", "loss_param"), shape=_softmax_loss,
        forward=_softmax_with_loss)
