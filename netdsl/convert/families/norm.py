"""Normalisation: batch norm -> BatchNorm + Scale (or folded into the
Convolution before it with ``fold_bn``), instance norm -> the parity recipe
:func:`netdsl.convert.recipes.instance_norm`, group norm -> that recipe on the
(N, G, C/G*H, W) view plus a per-channel Scale."""
from __future__ import annotations

from typing import Optional

import numpy as np

from netdsl.convert import recipes
from netdsl.convert.graph import Blob, Context, Op
from netdsl.convert.families.common import array, reshape
from netdsl.convert.table import register_converter


def _const(op: Op, name: str) -> Optional[np.ndarray]:
    v = op.get(name)
    if v is not None and not isinstance(v, np.ndarray):
        raise op.error("%s must be a constant (parameter or buffer)" % name)
    return array(v)


def batch_norm_eval(cx: Context, op: Op, x: Blob, mean: np.ndarray, var: np.ndarray,
                    weight: Optional[np.ndarray], bias: Optional[np.ndarray], eps: float
                    ) -> Blob:
    """Eval-mode batch norm over axis 1: Caffe's BatchNorm computes
    ``(x - mean) / sqrt(var + eps)`` with the stored statistics (scale factor
    1), then a Scale with bias gives ``* weight + bias``."""
    c = x.shape[1]
    info = x.info or {}
    if cx.fold_bn and info.get("conv") is not None and info.get("users") == 1:
        # fold into the convolution: w' = w s, b' = (b - mean) s + beta, s = gamma/sqrt(var+eps)
        s = (weight if weight is not None else np.ones(c, np.float32)) / np.sqrt(
            var.astype(np.float64) + eps)
        blobs = cx.weights[info["wname"]]
        w = blobs[0].astype(np.float64) * s.reshape(-1, 1, 1, 1)
        b = blobs[1].astype(np.float64) if len(blobs) > 1 else np.zeros(c)
        beta = bias if bias is not None else np.zeros(c, np.float32)
        b = (b - mean) * s + beta
        info["conv"]["bias_term"] = True
        cx.weights[info["wname"]] = [w.astype(np.float32), b.astype(np.float32)]
        return Blob(x.top, op.out_shape if not isinstance(op.out_shape, list)
                    else op.out_shape[0])
    top = cx.L.BatchNorm(x.top, name=op.name,
                         batch_norm_param={"use_global_stats": True, "eps": float(eps)})
    cx.weights[op.name] = [mean.reshape(c), var.reshape(c), np.ones(1, np.float32)]
    if weight is not None or bias is not None:
        sname = op.name + "/scale"
        top = cx.L.Scale(top, name=sname, scale_param={"bias_term": True})
        cx.weights[sname] = [weight.reshape(c) if weight is not None else np.ones(c, np.float32),
                             bias.reshape(c) if bias is not None else np.zeros(c, np.float32)]
    shape = op.out_shape[0] if isinstance(op.out_shape, list) else op.out_shape
    return Blob(top, shape)


@register_converter("aten.batch_norm", "aten._native_batch_norm_legit_no_training",
                    "aten.native_batch_norm", "aten._native_batch_norm_legit")
def batch_norm(cx: Context, op: Op):
    training = op.get("training", False)
    if training:
        raise op.error("batch norm in training mode; call model.eval() first")
    x = op["input"]
    mean, var = _const(op, "running_mean"), _const(op, "running_var")
    if mean is None or var is None:
        raise op.error("batch norm without running statistics has no eval-mode layer")
    out = batch_norm_eval(cx, op, x, mean, var, _const(op, "weight"), _const(op, "bias"),
                          float(op.get("eps", op.get("epsilon", 1e-5))))
    if op.key != "aten.batch_norm":
        return (out, None, None)
    return out


@register_converter("aten.instance_norm")
def instance_norm(cx: Context, op: Op) -> Blob:
    x = op["input"]
    w, b = _const(op, "weight"), _const(op, "bias")
    eps = float(op.get("eps", 1e-5))
    if not op.get("use_input_stats", True):
        mean, var = _const(op, "running_mean"), _const(op, "running_var")
        return batch_norm_eval(cx, op, x, mean, var, w, b, eps)
    if x.ndim != 4:
        raise op.error("instance norm needs a 4-D input, got %s" % (x.shape,))
    affine = w is not None or b is not None
    top = recipes.instance_norm(x.top, x.shape, eps, w, b, affine=affine,
                                name=op.name if affine else None,
                                weights=cx.weights if affine else None)
    return Blob(top, op.out_shape)


@register_converter("aten.group_norm")
def group_norm(cx: Context, op: Op) -> Blob:
    """``(x - mean) / sqrt(var + eps)`` over each group's C/G maps: the
    instance-norm recipe on the (N, G, C/G*H, W) view, then ``* weight + bias``
    per channel (Scale with bias)."""
    x = op["input"]
    if x.ndim != 4:
        raise op.error("group norm needs a 4-D input, got %s" % (x.shape,))
    n, c, h, w = x.shape
    g = int(op["num_groups"])
    view = reshape(cx, x, (n, g, (c // g) * h, w))
    top = recipes.instance_norm(view.top, view.shape, float(op.get("eps", 1e-5)))
    y = reshape(cx, Blob(top, view.shape), x.shape)
    wt, b = _const(op, "weight"), _const(op, "bias")
    if wt is not None or b is not None:
        sname = op.name
        top = cx.L.Scale(y.top, name=sname, scale_param={"bias_term": True})
        cx.weights[sname] = [wt.reshape(c) if wt is not None else np.ones(c, np.float32),
                             b.reshape(c) if b is not None else np.zeros(c, np.float32)]
        y = Blob(top, x.shape)
    return y


@register_converter("aten.layer_norm")
def layer_norm(cx: Context, op: Op) -> Blob:
    """Normalised over the last ``len(normalized_shape)`` axes: the instance-norm
    recipe on the (rows, 1, D, 1) view, then ``* weight + bias`` by a Scale over
    those axes."""
    x = op["input"]
    k = len(op["normalized_shape"])
    d = int(np.prod(x.shape[x.ndim - k:]))
    rows = int(np.prod(x.shape[:x.ndim - k]))
    view = reshape(cx, x, (rows, 1, d, 1))
    top = recipes.instance_norm(view.top, view.shape, float(op.get("eps", 1e-5)))
    y = reshape(cx, Blob(top, view.shape), x.shape)
    wt, b = _const(op, "weight"), _const(op, "bias")
    if wt is not None or b is not None:
        tail = x.shape[x.ndim - k:]
        top = cx.L.Scale(y.top, name=op.name, scale_param={
            "axis": x.ndim - k, "num_axes": k, "bias_term": True})
        cx.weights[op.name] = [wt.reshape(tail) if wt is not None else np.ones(tail, np.float32),
                               b.reshape(tail) if b is not None else np.zeros(tail, np.float32)]
        y = Blob(top, x.shape)
    return y
