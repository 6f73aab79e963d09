"""Convolution, transposed convolution and fully connected ops.

``aten.conv2d`` -> Convolution (``padding='same'`` with an odd total pad: the
recipe :func:`netdsl.convert.recipes.pad_conv2d`); ``aten.conv_transpose2d`` -> the
recipe :func:`netdsl.convert.recipes.conv_transpose2d` (``output_padding``; an
``output_size`` has already become ``output_padding`` in the traced graph);
``aten.linear`` / ``addmm`` / ``matmul`` / ``mm`` with a constant weight ->
InnerProduct on the last axis.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from netdsl.convert import recipes
from netdsl.convert.graph import Blob, Context, Op
from netdsl.convert.families.common import array, nchw, pair
from netdsl.convert.refusal import no_stock_form
from netdsl.convert.table import register_converter


def _weight(op: Op, name: str) -> np.ndarray:
    w = op[name]
    if not isinstance(w, np.ndarray):
        raise op.error("the %s must be a constant (a parameter), not computed from the inputs"
                       % name)
    return array(w)


def convolution(cx: Context, op: Op, x: Blob, w: np.ndarray, b: Optional[np.ndarray],
                stride: Any, padding: Any, dilation: Any, groups: int) -> Blob:
    """``F.conv2d``: Caffe's Convolution has PyTorch's windows and floor rounding.
    ``padding`` is a number, a pair (h, w), ``'same'``/``'valid'``, or four
    numbers (top, left, bottom, right) -- ONNX's ``pads`` order."""
    nchw(x.shape, op)
    sh, sw = pair(stride)
    dh, dw = pair(dilation)
    kh, kw = w.shape[2], w.shape[3]
    if isinstance(padding, str):
        if padding == "valid":
            pads = (0, 0, 0, 0)
        else:  # same: total d (k - 1), the odd one at the end (PyTorch's rule)
            th, tw = dh * (kh - 1), dw * (kw - 1)
            pads = (tw // 2, tw - tw // 2, th // 2, th - th // 2)
    elif isinstance(padding, (list, tuple)) and len(padding) == 4:
        t, lft, btm, r = (int(v) for v in padding)
        pads = (lft, r, t, btm)
    else:
        ph, pw = pair(padding)
        pads = (pw, pw, ph, ph)
    if pads[0] != pads[1] or pads[2] != pads[3]:
        top = recipes.pad_conv2d(x.top, x.shape, pads, w, b, stride=(sh, sw),
                                 dilation=(dh, dw), groups=groups, name=op.name,
                                 weights=cx.weights)
        return Blob(top, op.out_shape)
    p = {"num_output": int(w.shape[0]), "bias_term": b is not None}
    if kh == kw:
        p["kernel_size"] = kh
    else:
        p.update(kernel_h=kh, kernel_w=kw)
    if (sh, sw) != (1, 1):
        p.update({"stride": sh} if sh == sw else {"stride_h": sh, "stride_w": sw})
    ph, pw = pads[2], pads[0]
    if (ph, pw) != (0, 0):
        p.update({"pad": ph} if ph == pw else {"pad_h": ph, "pad_w": pw})
    if (dh, dw) != (1, 1):
        p["dilation"] = [dh, dw] if dh != dw else dh
    if groups != 1:
        p["group"] = int(groups)
    top = cx.L.Convolution(x.top, name=op.name, convolution_param=p)
    cx.weights[op.name] = [w] + ([array(b).reshape(-1)] if b is not None else [])
    return Blob(top, op.out_shape, {"conv": p, "wname": op.name, "users": op.users})


@register_converter("aten.conv2d")
def conv2d(cx: Context, op: Op) -> Blob:
    return convolution(cx, op, op["input"], _weight(op, "weight"), array(op.get("bias")),
                       op.get("stride", 1), op.get("padding", 0), op.get("dilation", 1),
                       int(op.get("groups", 1)))


def transposed(cx: Context, op: Op, x: Blob, w: np.ndarray, b: Optional[np.ndarray],
               stride: Any, padding: Any, output_padding: Any, groups: int,
               dilation: Any) -> Blob:
    nchw(x.shape, op)
    top = recipes.conv_transpose2d(x.top, x.shape, w, b, stride=pair(stride),
                                   padding=pair(padding), output_padding=pair(output_padding),
                                   groups=groups, dilation=pair(dilation), name=op.name,
                                   weights=cx.weights)
    return Blob(top, op.out_shape)


@register_converter("aten.conv_transpose2d")
def conv_transpose2d(cx: Context, op: Op) -> Blob:
    return transposed(cx, op, op["input"], _weight(op, "weight"), array(op.get("bias")),
                      op.get("stride", 1), op.get("padding", 0), op.get("output_padding", 0),
                      int(op.get("groups", 1)), op.get("dilation", 1))


@register_converter("aten.convolution", "aten._convolution")
def aten_convolution(cx: Context, op: Op) -> Blob:
    """The decomposed form (older torch.export graphs)."""
    if op["transposed"]:
        return transposed(cx, op, op["input"], _weight(op, "weight"), array(op.get("bias")),
                          op["stride"], op["padding"], op["output_padding"],
                          int(op["groups"]), op["dilation"])
    return convolution(cx, op, op["input"], _weight(op, "weight"), array(op.get("bias")),
                       op["stride"], op["padding"], op["dilation"], int(op["groups"]))


def inner_product(cx: Context, op: Op, x: Blob, w: np.ndarray, b: Optional[np.ndarray]
                  ) -> Blob:
    """``x @ w.T + b`` over the last axis: InnerProduct with ``axis`` the last
    axis; ``w`` is (out, in) as Caffe stores it."""
    if not isinstance(x, Blob):
        raise op.error("the input must come from the net's inputs")
    if w.ndim != 2 or w.shape[1] != x.shape[-1]:
        raise op.error("weight of shape %s does not match input %s" % (w.shape, x.shape))
    p = {"num_output": int(w.shape[0]), "bias_term": b is not None}
    if x.ndim != 2:
        p["axis"] = x.ndim - 1
    top = cx.L.InnerProduct(x.top, name=op.name, inner_product_param=p)
    cx.weights[op.name] = [np.ascontiguousarray(w)] + (
        [array(b).reshape(-1)] if b is not None else [])
    return Blob(top, op.out_shape)


@register_converter("aten.linear")
def linear(cx: Context, op: Op) -> Blob:
    return inner_product(cx, op, op["input"], _weight(op, "weight"), array(op.get("bias")))


@register_converter("aten.addmm")
def addmm(cx: Context, op: Op) -> Blob:
    """``beta * bias + alpha * (x @ W)`` with constant ``W`` and ``bias``."""
    if op.get("beta", 1) != 1 or op.get("alpha", 1) != 1:
        raise op.error("addmm with alpha/beta other than 1 has no exact layer")
    w = _weight(op, "mat2")
    b = op["input"]
    if not isinstance(b, np.ndarray):
        raise op.error("the bias must be a constant")
    b = np.broadcast_to(array(b), (w.shape[1],))
    return inner_product(cx, op, op["mat1"], np.ascontiguousarray(w.T), b)


@register_converter("aten.matmul", "aten.mm")
def matmul(cx: Context, op: Op) -> Blob:
    """``x @ W`` with a constant 2-D ``W``."""
    other = op.args.get("other", op.args.get("mat2"))
    x = op.args.get("input", op.args.get("self"))
    if isinstance(x, Blob) and isinstance(other, Blob):
        raise no_stock_form(op, "a product of two computed tensors (as attention computes)")
    if not isinstance(other, np.ndarray) or other.ndim != 2:
        raise op.error("only a product with a constant 2-D matrix (a weight) maps to "
                       "InnerProduct")
    return inner_product(cx, op, x, np.ascontiguousarray(array(other).T), None)
