"""Python layers of the forks' own repositories whose rules are known, by class
name (``python_param.layer``): py-faster-rcnn's ``ProposalLayer`` (its shape;
netdsl.packs.faster_rcnn) and ENet's ``SpatialDropoutLayer`` (shape and
forward; netdsl.packs.segnet).  Any other Python layer keeps BVLC's rule: its
tops' shapes must be declared, and netdsl does not run it.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from ..errors import NetdslError
from ..layers.registry import BUILTIN, PACKS

Shape = Tuple[int, ...]


class PythonLayer(NamedTuple):
    shape: Callable[[Any, List[Shape], int], List[Shape]]
    forward: Optional[Callable[[Any, List[np.ndarray], Any, Any], List[np.ndarray]]] = None
    onnx: Optional[Callable[[Any, Any], List[str]]] = None
    torch: Optional[Callable[[Any, Any], str]] = None


#: python_param.layer (the class name) -> its rules
KNOWN: Dict[str, PythonLayer] = {}


def register(class_name: str, shape: Callable, forward: Optional[Callable] = None,
             onnx: Optional[Callable] = None, torch: Optional[Callable] = None) -> None:
    KNOWN[class_name] = PythonLayer(shape, forward, onnx, torch)


def python_shape(layer: Any, bottoms: List[Shape], ntop: int) -> List[Shape]:
    known = KNOWN.get(layer.python_param.layer)
    if known is not None:
        return known.shape(layer, bottoms, ntop)
    return BUILTIN.get("Python").shape(layer, bottoms, ntop)


def python_forward(layer: Any, bottoms: List[np.ndarray], blobs: Any, ctx: Any
                   ) -> List[np.ndarray]:
    known = KNOWN.get(layer.python_param.layer)
    if known is None or known.forward is None:
        p = layer.python_param
        runs = sorted(k for k, v in KNOWN.items() if v.forward)
        raise NetdslError("no numpy forward for the Python layer %s.%s (netdsl runs only "
                          "the fork packs' Python layers%s)" % (
                              p.module, p.layer, ": " + ", ".join(runs) if runs else ""),
                          layer=layer.name,
                          hint="run the net with pycaffe's API (`netdsl pycaffe`), which "
                               "imports the layer's module")
    return known.forward(layer, bottoms, blobs, ctx)


def python_onnx(layer: Any, ctx: Any) -> List[str]:
    """The ONNX rule of the class ``python_param.layer`` names (only those that
    :func:`python_exports` accepts reach here)."""
    return KNOWN[layer.python_param.layer].onnx(layer, ctx)


def python_exports(layer: Any) -> bool:
    """Whether this Python layer's class has an export rule; any other Python
    layer's code is the user's, which netdsl neither runs nor exports."""
    known = KNOWN.get(layer.python_param.layer)
    return known is not None and known.onnx is not None


def python_torch(layer: Any, ctx: Any) -> str:
    """The PyTorch code rule of the class ``python_param.layer`` names (only those
    that :func:`python_exports_torch` accepts reach here)."""
    return KNOWN[layer.python_param.layer].torch(layer, ctx)


def python_exports_torch(layer: Any) -> bool:
    known = KNOWN.get(layer.python_param.layer)
    return known is not None and known.torch is not None


python_onnx.covers = python_exports    # type: ignore[attr-defined]   (read by the export walk)
python_torch.covers = python_exports_torch    # type: ignore[attr-defined]

PACKS.add(replace(BUILTIN.get("Python"), shape=python_shape, forward=python_forward,
                  onnx=python_onnx, torch=python_torch, builtin=False, source="netdsl.packs.python_layers"))
