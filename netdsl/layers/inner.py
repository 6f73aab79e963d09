"""InnerProduct and Embed (inner_product_layer.cpp, embed_layer.cpp).
"""
from __future__ import annotations

from typing import List, Tuple

from google.protobuf.message import Message

from ..errors import NetdslError
from .blob import fixed_weight_bias, weight_bias_fillers, Shape, canonical_axis, count, err
from .registry import Ops, declare
from .runtime import Context, blob_as, np


def _inner_product(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # inner_product_layer.cpp: shape[:axis] + (num_output,)
    p = layer.inner_product_param
    shape = bottoms[0]
    axis = canonical_axis(p.axis, shape, "inner_product_param.axis")
    return [shape[:axis] + (p.num_output,)]


def _transposed(p: Message) -> bool:
    """``transpose`` (BVLC 2016); an older fork's schema has no such field and reads
    it as false (netdsl.fork.fill_missing_fields): weights kept as (N, K)."""
    return bool(p.transpose)


def _inner_product_params(layer: Message, bottoms: List[Shape]) -> List[Shape]:
    # weights (N, K), or (K, N) with transpose; K = count(axis); bias (N,)
    p = layer.inner_product_param
    k = count(bottoms[0], canonical_axis(p.axis, bottoms[0], "inner_product_param.axis"))
    n = p.num_output
    w = (k, n) if _transposed(p) else (n, k)
    return [w, (n,)] if p.bias_term else [w]


def _embed_check(layer: Message) -> Tuple[int, int]:
    p = layer.embed_param
    if p.num_output <= 0:
        raise err("EmbedLayer num_output must be positive", "embed_param.num_output")
    if p.input_dim <= 0:
        raise err("EmbedLayer input_dim must be positive", "embed_param.input_dim")
    return p.input_dim, p.num_output


def _embed(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # embed_layer.cpp: bottom shape + (num_output,)
    _, n = _embed_check(layer)
    return [bottoms[0] + (n,)]


def _embed_params(layer: Message, bottoms: List[Shape]) -> List[Shape]:
    k, n = _embed_check(layer)
    return [(k, n), (n,)] if layer.embed_param.bias_term else [(k, n)]


def inner_product(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
                  ctx: Context) -> List[np.ndarray]:
    """``y = x W^T + b`` on ``x`` flattened from ``axis`` on; W is (N, K), or (K, N)
    with ``transpose``."""
    p = layer.inner_product_param
    x = bottoms[0]
    axis = p.axis + x.ndim if p.axis < 0 else p.axis
    if not 0 <= axis < max(1, x.ndim):
        raise NetdslError("axis %d is out of range for a %d-D input" % (p.axis, x.ndim),
                          field="axis")
    m = int(np.prod(x.shape[:axis], dtype=np.int64))
    k = int(np.prod(x.shape[axis:], dtype=np.int64))
    nout = int(p.num_output)
    need = 2 if p.bias_term else 1
    if len(blobs) < need:
        raise NetdslError("InnerProduct needs %d blob(s), the weights have %d" % (need, len(blobs)))
    if _transposed(p):
        wt = blob_as(blobs[0], (k, nout), layer, 0, "weight blob")
    else:
        wt = blob_as(blobs[0], (nout, k), layer, 0, "weight blob").T
    y = x.reshape(m, k) @ wt
    if p.bias_term:
        y = y + blob_as(blobs[1], (nout,), layer, 1, "bias blob")
    return [y.reshape(x.shape[:axis] + (nout,))]


def _inner_product_cost(ls) -> Ops:
    # inner_product_layer.cpp: an (M x K) by (K x N) GEMM, M = count(top) / N
    n = ls.layer.inner_product_param.num_output
    return Ops(macs=count(ls.param_shapes[0]) * count(ls.top_shapes[0]) // n if n else 0)


# -- ONNX export -------------------------------------------------------------------------

def _inner_product_onnx(layer: Message, ctx) -> List[str]:
    """Flatten(axis) to (M, K), Gemm with Caffe's (N, K) weights (transB; with
    ``transpose`` they are (K, N) already), then back to ``shape[:axis] + (N,)``."""
    p = layer.inner_product_param
    shape = ctx.in_shapes[0]
    axis = canonical_axis(p.axis, shape, "inner_product_param.axis")
    k, n = count(shape, axis), int(p.num_output)
    trans = _transposed(p)
    ins = [ctx.node("Flatten", ctx.inputs, axis=axis) if len(shape) != 2 or axis != 1
           else ctx.inputs[0], ctx.weight(0, (k, n) if trans else (n, k))]
    if p.bias_term:
        ins.append(ctx.weight(1, (n,)))
    direct = axis == 1
    y = ctx.node("Gemm", ins, out=ctx.top(0) if direct else None, transB=0 if trans else 1)
    if direct:
        return [y]
    # back to the bottom's leading axes, read at run time under a dynamic batch
    return [ctx.node("Reshape", [y, ctx.shape_of(ctx.inputs[0], shape, axis, [n])],
                     out=ctx.top(0))]


def _embed_onnx(layer: Message, ctx) -> List[str]:
    """embed_layer.cpp: row ``static_cast<int>(x)`` of the (K, N) weights (Cast to
    int64 truncates toward zero as the C++ cast does), plus the bias."""
    k, n = _embed_check(layer)
    idx = ctx.node("Cast", ctx.inputs, to=7)
    bias = layer.embed_param.bias_term
    y = ctx.node("Gather", [ctx.weight(0, (k, n)), idx], out=None if bias else ctx.top(0),
                 axis=0)
    return [ctx.node("Add", [y, ctx.weight(1, (n,))], out=ctx.top(0)) if bias else y]


# -- declarations ----------------------------------------------------------------------

def _inner_product_torch(layer: Message, ctx) -> str:
    """nn.Linear on the bottom flattened from ``axis`` (inner_product_layer.cpp: top
    is bottom[:axis] + (num_output,)); Caffe's (N, K) weights are Linear's
    layout, transposed ones ((K, N), ``transpose: true``) are stored as (N, K)."""
    p = layer.inner_product_param
    shape = ctx.in_shapes[0]
    axis = canonical_axis(p.axis, shape, "inner_product_param.axis")
    k, n = count(shape[axis:]), p.num_output
    w = ctx.blob(0, (k, n)).T if p.transpose else ctx.blob(0, (n, k))
    state = {"weight": w}
    if p.bias_term:
        state["bias"] = ctx.blob(1, (n,))
    mod = ctx.module("nn.Linear(%d, %d%s)" % (k, n, "" if p.bias_term else ", bias=False"),
                     state)
    x = ctx.x[0]
    if not (len(shape) == axis + 1):
        x = "torch.flatten(%s, %d)" % (x, axis)
    return "%s(%s)" % (mod, x)


def _embed_torch(layer: Message, ctx) -> str:
    """embed_layer.cpp: row ``int(x)`` of the (input_dim, num_output) weights (+ bias)."""
    p = layer.embed_param
    arrays = [ctx.blob(0, (p.input_dim, p.num_output))]
    if p.bias_term:
        arrays.append(ctx.blob(1, (p.num_output,)))
    mod = ctx.blobs_module(arrays)
    y = "F.embedding(%s.long(), %s.blob0)" % (ctx.x[0], mod)
    return y + (" + %s.blob1" % mod if p.bias_term else "")




declare("InnerProduct", family="inner", bottoms=1, tops=1, shape=_inner_product,
        params=_inner_product_params, forward=inner_product, cost=_inner_product_cost,
        fillers=weight_bias_fillers("inner_product_param"),
        fixed_blobs=fixed_weight_bias("inner_product_param"), needs_weights=True,
        onnx=_inner_product_onnx, torch=_inner_product_torch,
        size_field="inner_product_param.num_output")
declare("Embed", family="inner", bottoms=1, tops=1, shape=_embed, params=_embed_params,
        fillers=weight_bias_fillers("embed_param"), needs_weights=True, onnx=_embed_onnx,
        torch=_embed_torch)
