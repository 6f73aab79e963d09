"""High-level spec ops that expand to plain Caffe layers.

``upsample`` (a fixed bilinear or nearest-neighbour Deconvolution),
``crop`` (a Crop whose offsets come from the coordinate maps) and the
PyTorch-parity recipes of :mod:`netdsl.ops.pytorch` (``torch_interpolate``,
``torch_conv_transpose2d``, ...).  Each op is a function
``expand(call: OpCall) -> list[Record]`` registered in :data:`OPS`.
"""
from __future__ import annotations

from typing import Callable, Dict, List

from .base import OpCall, Record, make_record
from . import crop, pytorch, upsample

OPS: Dict[str, Callable[[OpCall], List[Record]]] = {
    "upsample": upsample.expand,
    "crop": crop.expand,
}
OPS.update(pytorch.SPEC_OPS)

__all__ = ["OPS", "OpCall", "Record", "make_record"]
