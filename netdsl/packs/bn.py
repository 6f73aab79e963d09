"""The ``BN`` layer type of the segmentation forks.

Three forks call a layer ``BN``, each with its own ``BNParameter``; the schema
in use says which one a layer is:

* SegNet and ENet (caffe-segnet, caffe-enet ``src/caffe/layers/bn_layer.cpp``):
  ``bn_mode``; blobs scale and shift, each (1, C, 1, 1).  INFERENCE:
  ``top = x * scale + shift``.  LEARN (the default, also at test time): the
  batch's mean and variance over N, H, W (variance as E(x^2) - E(x)^2, plus
  1e-9, square-rooted), then scale and shift.
* PSPNet (hszhao/PSPNet ``src/caffe/layers/bn_layer.cpp``): ``slope_filler``,
  ``eps``, ``frozen``; blobs slope, bias, moving mean and moving variance, each
  (1, C, 1, 1).  TEST (or frozen): ``(x - mean) * (var + eps)^-1/2 * slope + bias``.
* DeconvNet (V1 type ``BN``, HyeonwooNoh/caffe): the SegNet rule (its
  ``bn_mode`` INFERENCE after DeconvNet's BN_make_INFERENCE script).
"""
from __future__ import annotations

from typing import Any, List, Sequence, Tuple

import numpy as np

from ..errors import NetdslError
from ..layers.blob import f32_code
from ..layers.registry import PACKS, declare
from ._util import param

_F = np.float32
Shape = Tuple[int, ...]


def flavour(layer: Any) -> str:
    """``"segnet"`` or ``"pspnet"``: which fork's BNParameter the schema has."""
    p = param(layer, "bn_param", "SegNet, ENet, PSPNet or DeconvNet")
    fields = p.DESCRIPTOR.fields_by_name
    if "bn_mode" in fields:
        return "segnet"
    if "slope_filler" in fields:
        return "pspnet"
    raise NetdslError("this schema's BNParameter is neither SegNet's (bn_mode) nor PSPNet's "
                      "(slope_filler)", field="bn_param")


def bn_shape(layer: Any, bottoms: List[Shape], ntop: int) -> List[Shape]:
    x = tuple(bottoms[0])
    if flavour(layer) == "segnet":
        c = x[1]
        return [x] + [(1, c, 1, 1)] * (ntop - 1)    # optional batch mean and variance tops
    return [x]


def bn_tops(layer: Any) -> Tuple[int, int]:
    return (1, 3) if flavour(layer) == "segnet" else (1, 1)


def bn_params(layer: Any, bottoms: List[Shape]) -> List[Shape]:
    c = bottoms[0][1]
    n = 2 if flavour(layer) == "segnet" else 4
    return [(1, c, 1, 1)] * n


def bn_fillers(layer: Any, shapes: Sequence[Shape]) -> List[Any]:
    p = layer.bn_param
    if flavour(layer) == "segnet":
        return [p.scale_filler, p.shift_filler]
    return [p.slope_filler, p.bias_filler, {"type": "constant", "value": 0.0},
            {"type": "constant", "value": 1.0 if p.frozen else 0.0}]


def _per_channel(b: Any, c: int, nd: int) -> np.ndarray:
    a = np.asarray(b, dtype=_F).reshape(-1)
    if a.size != c:
        raise NetdslError("a BN blob has %d values; the layer has %d channels" % (a.size, c))
    return a.reshape((1, c) + (1,) * (nd - 2))


def bn_forward(layer: Any, bottoms: List[np.ndarray], blobs: Any, ctx: Any):
    x = bottoms[0]
    c, nd = x.shape[1], x.ndim
    if flavour(layer) == "segnet":
        scale, shift = (_per_channel(b, c, nd) for b in blobs[:2])
        if layer.bn_param.bn_mode == 1:        # INFERENCE
            return [(x * scale + shift).astype(_F)]
        axes = (0,) + tuple(range(2, nd))
        mean = x.mean(axis=axes, dtype=np.float64, keepdims=True).astype(_F)
        ex2 = np.square(x).mean(axis=axes, dtype=np.float64, keepdims=True).astype(_F)
        var = (ex2 - np.square(mean)).astype(_F)
        std = np.power(var + _F(1e-9), _F(0.5), dtype=_F)
        y = ((x - mean) / std * scale + shift).astype(_F)
        extra = [mean.reshape(1, c, 1, 1), var.reshape(1, c, 1, 1)][:ctx.ntop - 1]
        return [y] + extra
    slope, bias, mean, var = (_per_channel(b, c, nd) for b in blobs[:4])
    if ctx.phase != 1 and not layer.bn_param.frozen:
        raise NetdslError("PSPNet's BN runs in the TEST phase (or frozen) only here: in TRAIN "
                          "it updates its moving averages", field="bn_param")
    inv = np.power(var + _F(layer.bn_param.eps), _F(-0.5), dtype=_F)
    return [(((x - mean) * inv) * slope + bias).astype(_F)]


def bn_onnx(layer: Any, ctx: Any) -> List[str]:
    """The rules above as ONNX: SegNet INFERENCE ``x * scale + shift``; SegNet LEARN
    the batch's statistics (variance E(x^2) - E(x)^2, plus 1e-9, square-rooted);
    PSPNet ``(x - mean) * (var + eps)^-1/2 * slope + bias`` with its stored
    statistics (the TEST phase)."""
    x = ctx.inputs[0]
    shape = ctx.in_shapes[0]
    c, nd = shape[1], len(shape)
    per = (1, c) + (1,) * (nd - 2)
    if flavour(layer) == "segnet":
        scale, shift = ctx.weight(0, per), ctx.weight(1, per)
        if layer.bn_param.bn_mode == 1:
            return [ctx.node("Add", [ctx.node("Mul", [x, scale]), shift], out=ctx.top(0))]
        axes = [0] + list(range(2, nd))
        mean = ctx.reduce("ReduceMean", x, axes)
        var = ctx.node("Sub", [ctx.reduce("ReduceMean", ctx.node("Mul", [x, x]), axes),
                               ctx.node("Mul", [mean, mean])])
        std = ctx.node("Sqrt", [ctx.node("Add", [var, ctx.scalar(1e-9, "eps")])])
        y = ctx.node("Div", [ctx.node("Sub", [x, mean]), std])
        y = ctx.node("Add", [ctx.node("Mul", [y, scale]), shift], out=ctx.top(0))
        stats = [mean, var][:len(layer.top) - 1]      # the optional batch mean and variance
        return [y] + [ctx.reshape(v, (1, c, 1, 1), out=ctx.top(i), in_shape=per)
                      for i, v in enumerate(stats, 1)]
    inv = np.power(ctx.blob(3, (c,)) + _F(layer.bn_param.eps), _F(-0.5), dtype=_F)
    y = ctx.node("Mul", [ctx.node("Sub", [x, ctx.weight(2, per)]), ctx.const(inv.reshape(per),
                                                                             "inv_std")])
    return [ctx.node("Add", [ctx.node("Mul", [y, ctx.weight(0, per)]), ctx.weight(1, per)],
                     out=ctx.top(0))]


def bn_torch(layer: Any, ctx: Any) -> str:
    """SegNet INFERENCE ``x * scale + shift`` (its blobs as parameters); SegNet LEARN
    the batch's statistics (biased variance, eps 1e-9) then scale and shift;
    PSPNet's BN with its stored statistics is nn.BatchNorm2d (slope and bias its
    weight and bias)."""
    x = ctx.x[0]
    shape = ctx.in_shapes[0]
    c, nd = shape[1], len(shape)
    per = (1, c) + (1,) * (nd - 2)
    if flavour(layer) == "segnet":
        if len(layer.top) > 1:
            raise ctx.refuse("the batch mean and variance tops are not exported")
        mod = ctx.blobs_module([ctx.blob(0, per), ctx.blob(1, per)])
        if layer.bn_param.bn_mode != 1:
            x = "%s(%s)" % (ctx.helper("caffe_bn_batch"), x)
        return "%s * %s.blob0 + %s.blob1" % (x, mod, mod)
    if nd != 4:
        raise ctx.refuse("PSPNet's BN is exported for 4-D inputs")
    state = {"weight": ctx.blob(0, (c,)), "bias": ctx.blob(1, (c,)),
             "running_mean": ctx.blob(2, (c,)), "running_var": ctx.blob(3, (c,)),
             "num_batches_tracked": np.zeros((), np.int64)}
    mod = ctx.module("nn.BatchNorm2d(%d, eps=%s)" % (c, f32_code(layer.bn_param.eps)), state)
    return "%s(%s)" % (mod, x)



def _fixed(layer: Any) -> bool:
    fs = bn_fillers(layer, ())
    return all((f.get("type") if isinstance(f, dict) else f.type) == "constant" for f in fs)


declare("BN", family="bn", registry=PACKS, bottoms=1, tops=bn_tops, reads=("bn_param",),
        shape=bn_shape, params=bn_params, fillers=bn_fillers, forward=bn_forward,
        needs_weights=True, fixed_blobs=_fixed, onnx=bn_onnx, torch=bn_torch,
        coord_map=lambda layer, shapes=None: (None, (1,), (0,)), source="netdsl.packs.bn")
