"""High-level spec ops that expand to plain Caffe layers.

``upsample`` (a fixed bilinear or nearest-neighbour Deconvolution) and
``crop`` (a Crop whose offsets come from the coordinate maps).  Each op is a
function ``expand(call: OpCall) -> list[Record]`` registered in :data:`OPS`.
"""
from __future__ import annotations

from typing import Callable, Dict, List

from .base import OpCall, Record, make_record
from . import crop, upsample

OPS: Dict[str, Callable[[OpCall], List[Record]]] = {
    "upsample": upsample.expand,
    "crop": crop.expand,
}

__all__ = ["OPS", "OpCall", "Record", "make_record"]
