"""Loss layers and Accuracy (loss_layer.cpp and the *_loss_layer.cpp files).
"""
from __future__ import annotations

from typing import List

from google.protobuf.message import Message

from .blob import Shape, canonical_axis, count, err, legacy_dim, shape_str
from .registry import declare


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


# -- declarations ----------------------------------------------------------------------

declare("Accuracy", family="loss", labels=True, bottoms=2, tops=(1, 2), shape=_accuracy)
declare("ContrastiveLoss", family="loss", labels=True, bottoms=3, tops=1, loss=True, shape=_contrastive_loss)
declare("EuclideanLoss", family="loss", labels=True, bottoms=2, tops=1, loss=True, shape=_loss)
declare("HingeLoss", family="loss", labels=True, bottoms=2, tops=1, loss=True, shape=_loss)
declare("InfogainLoss", family="loss", labels=True, bottoms=(2, 3), tops=(1, 2), loss=True, shape=_infogain_loss)
declare("MultinomialLogisticLoss", family="loss", labels=True, bottoms=2, tops=1, loss=True, shape=_loss)
declare("SigmoidCrossEntropyLoss", family="loss", labels=True, bottoms=2, tops=1, loss=True,
        reads=("loss_param",), shape=_loss)
declare("SoftmaxWithLoss", family="loss", labels=True, bottoms=2, tops=(1, 2), loss=True,
        reads=("softmax_param", "loss_param"), shape=_softmax_loss)
