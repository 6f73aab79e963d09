"""BVLC's ``Dropout`` with the forks' own ``DropoutParameter`` fields (both at
number 2, each in its own fork's schema):

* caffe-segnet's ``sample_weights_test`` (Bayesian SegNet,
  ``src/caffe/layers/dropout_layer.cpp`` at 344c113b): the TEST phase samples a
  mask as TRAIN does (Monte Carlo dropout; Caffe's random numbers are not
  netdsl's);
* Fast/Faster R-CNN's ``scale_train`` (rbgirshick/caffe-fast-rcnn
  ``dropout_layer.cpp`` at 4115385d), default true: when false, TRAIN keeps the
  kept values unscaled and TEST multiplies by ``1 / scale_`` with
  ``scale_ = 1 / (1 - ratio)`` (both in float, as the fork's Dtype).

Enabled with the segnet and faster_rcnn packs.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, List

import numpy as np

from ..layers.blob import f32_code
from ..layers.registry import BUILTIN, PACKS

TRAIN = 0


def _has(p: Any, name: str) -> bool:
    return name in p.DESCRIPTOR.fields_by_name


def dropout_forward(layer: Any, bottoms: List[np.ndarray], blobs: Any, ctx: Any
                    ) -> List[np.ndarray]:
    p = layer.dropout_param
    bvlc = BUILTIN.get("Dropout")
    if _has(p, "sample_weights_test") and p.sample_weights_test:
        ctx = replace(ctx, phase=TRAIN)             # TRAIN's sampling at test time
    if _has(p, "scale_train") and not p.scale_train:
        ratio = np.float32(p.dropout_ratio)
        scale = np.float32(1.0 / (1.0 - float(ratio)))   # scale_ (Dtype)
        if ctx.phase == TRAIN:    # mask only: BVLC's result times 1 / scale_
            kept = bvlc.run(layer, bottoms, blobs, ctx)[0]
            return [(kept != 0) * bottoms[0]]
        return [bottoms[0] * np.float32(1.0 / float(scale))]
    return bvlc.run(layer, bottoms, blobs, ctx)


def dropout_onnx(layer: Any, ctx: Any) -> List[str]:
    """TEST phase: Bayesian SegNet's sampling has no deterministic export; Fast R-CNN's
    ``scale_train: false`` multiplies by ``1 / scale_``; otherwise the identity."""
    p = layer.dropout_param
    if _has(p, "sample_weights_test") and p.sample_weights_test:
        raise ctx.refuse("sample_weights_test draws a random mask in the TEST phase")
    if _has(p, "scale_train") and not p.scale_train:
        scale = np.float32(1.0 / (1.0 - float(np.float32(p.dropout_ratio))))
        return [ctx.node("Mul", [ctx.inputs[0], ctx.scalar(float(1.0 / float(scale)), "keep")],
                         out=ctx.top(0))]
    return [ctx.inputs[0]]


def dropout_torch(layer: Any, ctx: Any) -> str:
    """nn.Dropout; Fast R-CNN's ``scale_train: false`` also times ``1 - ratio``, which
    is Caffe's TEST (``1 / scale_``) in eval() and its unscaled mask in train();
    Bayesian SegNet's TEST-time sampling is refused."""
    p = layer.dropout_param
    if _has(p, "sample_weights_test") and p.sample_weights_test:
        raise ctx.refuse("sample_weights_test draws a random mask in the TEST phase")
    ratio = float(np.float32(p.dropout_ratio))
    y = "%s(%s)" % (ctx.module("nn.Dropout(%s)" % f32_code(ratio)), ctx.x[0])
    if _has(p, "scale_train") and not p.scale_train:
        scale = np.float32(1.0 / (1.0 - ratio))
        y = "%s * %s" % (f32_code(1.0 / float(scale)), y)
    return y


PACKS.add(replace(BUILTIN.get("Dropout"), forward=dropout_forward, onnx=dropout_onnx,
                  torch=dropout_torch,
                  builtin=False, source="netdsl.packs.dropout"))
