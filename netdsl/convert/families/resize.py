"""Resizing: ``F.interpolate`` bilinear / nearest through the parity recipe
:func:`netdsl.convert.recipes.interpolate` (integer factors: fixed Deconvolution
kernels; any other size or ``align_corners=True``: the interpolation matrix).

Besides the ATen arguments the converters read two optional ones another
front end gives: ``coordinate_transformation_mode`` and ``nearest_mode``
(ONNX Resize's sampling rules; absent: PyTorch's)."""
from __future__ import annotations

from typing import Optional, Tuple

from netdsl.convert import recipes
from netdsl.convert.graph import Blob, Context, Op
from netdsl.convert.families.common import nchw
from netdsl.convert.table import register_converter


def resize(cx: Context, op: Op, mode: str, align_corners: Optional[bool],
           size: Optional[Tuple[int, int]], scales: Optional[Tuple[float, float]]) -> Blob:
    x = op["input"]
    nchw(x.shape, op)
    if scales is not None and all(s is not None for s in scales):
        kw = {"scale_factor": (float(scales[0]), float(scales[1]))}
    else:
        kw = {"size": tuple(op.out_shape[2:])}
    coord = op.args.get("coordinate_transformation_mode")
    if coord is not None:
        kw.update(coordinate_mode=coord, nearest_mode=op.get("nearest_mode", "floor"))
    top = recipes.interpolate(x.top, x.shape, mode=mode, align_corners=align_corners,
                              name=op.name, weights=cx.weights, **kw)
    return Blob(top, op.out_shape)


@register_converter("aten.upsample_bilinear2d")
def upsample_bilinear2d(cx: Context, op: Op) -> Blob:
    scales = op.args.get("scale_factors")
    if scales is None and op.args.get("scales_h") is not None:
        scales = (op.args.get("scales_h"), op.args.get("scales_w"))
    return resize(cx, op, "bilinear", bool(op.get("align_corners", False)), None, scales)


@register_converter("aten.upsample_nearest2d")
def upsample_nearest2d(cx: Context, op: Op) -> Blob:
    scales = op.args.get("scale_factors")
    if scales is None and op.args.get("scales_h") is not None:
        scales = (op.args.get("scales_h"), op.args.get("scales_w"))
    return resize(cx, op, "nearest", None, None, scales)
