"""Forward values of Caffe's common loss and accuracy layers, for ``caffe.Net``.

Used only when netdsl's forward has no rule for the type.  Each follows the
layer's ``Forward_cpu`` in BVLC's src/caffe/layers, float32 throughout, with
sums taken in Caffe's order (outer index, then inner index).  Only the
values: nothing here runs backward.
"""
from __future__ import annotations

from typing import Callable, Dict, List

import numpy as np
from google.protobuf.message import Message

from netdsl.errors import NetdslError

__all__ = ["LOSS_FORWARD"]

_FLT_MIN = np.float32(np.finfo(np.float32).tiny)


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


def _softmax(layer: Message, x: np.ndarray) -> np.ndarray:
    """SoftmaxWithLoss's inner Softmax layer (same softmax_param), run by netdsl.forward."""
    from netdsl.forward import forward
    from netdsl.proto import caffe_pb2
    net = caffe_pb2.NetParameter()
    feed = net.layer.add(name="x", type="Input")
    feed.top.append("x")
    soft = net.layer.add(name=layer.name, type="Softmax")
    soft.bottom.append("x")
    soft.top.append("prob")
    soft.softmax_param.CopyFrom(layer.softmax_param)
    return forward(net, None, {"x": x})["prob"]


def softmax_with_loss(layer: Message, bottoms: List[np.ndarray]) -> List[np.ndarray]:
    """SoftmaxWithLossLayer::Forward_cpu: -sum log(max(prob[label], FLT_MIN)) over the
    labels not ignored, divided by the normalizer (VALID: that count; FULL:
    outer x inner; BATCH_SIZE: outer; NONE: 1; at least 1).  ``normalize``
    (deprecated) picks VALID or BATCH_SIZE when ``normalization`` is unset."""
    x, label = bottoms[0], bottoms[1]
    axis = _axis(layer.softmax_param.axis, x.ndim, layer)
    prob = _softmax(layer, x)
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
    modes = type(lp).NormalizationMode
    if not lp.HasField("normalization") and lp.HasField("normalize"):
        mode = modes.Value("VALID") if lp.normalize else modes.Value("BATCH_SIZE")
    else:
        mode = lp.normalization
    norm = {modes.Value("FULL"): outer * inner, modes.Value("VALID"): int(keep.sum()),
            modes.Value("BATCH_SIZE"): outer, modes.Value("NONE"): 1}[mode]
    tops = [np.array(loss / np.float32(max(1.0, norm)), dtype=np.float32)]
    if len(layer.top) > 1:
        tops.append(prob)
    return tops


def accuracy(layer: Message, bottoms: List[np.ndarray]) -> List[np.ndarray]:
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
    if len(layer.top) > 1:
        n = x3.shape[1]
        seen = np.bincount(lab[i, j], minlength=n).astype(np.float32)
        hits = np.bincount(lab[i, j][right], minlength=n).astype(np.float32)
        tops.append(np.where(seen == 0, np.float32(0), hits / np.maximum(seen, 1))
                    .astype(np.float32))
    return tops


def euclidean_loss(layer: Message, bottoms: List[np.ndarray]) -> List[np.ndarray]:
    """EuclideanLossLayer::Forward_cpu: sum((a - b)^2) / num / 2, num = the first axis."""
    a, b = bottoms[0], bottoms[1]
    if a.size != b.size:
        raise NetdslError("EuclideanLoss inputs must have the same count, not %d and %d"
                          % (a.size, b.size), layer=layer.name)
    d = (a.reshape(-1) - b.reshape(-1)).astype(np.float32)
    num = a.shape[0] if a.ndim else 1
    loss = np.float32(np.dot(d, d)) / np.float32(num) / np.float32(2)
    return [np.array(loss, dtype=np.float32)]


LOSS_FORWARD: Dict[str, Callable[[Message, List[np.ndarray]], List[np.ndarray]]] = {
    "SoftmaxWithLoss": softmax_with_loss,
    "Accuracy": accuracy,
    "EuclideanLoss": euclidean_loss,
}
