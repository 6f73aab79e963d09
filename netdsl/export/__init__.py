"""Caffe → other formats, on one net walk (:mod:`.walk`).

``to_onnx(net, weights, ...)`` exports to ONNX (:mod:`.onnx_export`): each layer
type's ``onnx`` rule in :mod:`netdsl.layers` emits its nodes; onnxruntime checks
the result against netdsl's numpy forward.  ``onnx`` is imported only when an
export runs (the ``onnx`` extra).  ``to_torch(net, weights, ...)`` writes PyTorch
code (:mod:`.torch_export`): each type's ``torch`` rule writes its statement.
"""
from typing import Any

__all__ = ["to_onnx", "to_torch", "walk_net"]


def to_onnx(net: Any, weights: Any = None, **kwargs: Any) -> Any:
    """See :func:`netdsl.export.onnx_export.to_onnx`."""
    from .onnx_export import to_onnx as run
    return run(net, weights, **kwargs)


def to_torch(net: Any, weights: Any = None, **kwargs: Any) -> Any:
    """See :func:`netdsl.export.torch_export.to_torch`."""
    from .torch_export import to_torch as run
    return run(net, weights, **kwargs)


def walk_net(net: Any, inputs: Any = None, outputs: Any = (), rule: str = "onnx") -> Any:
    """See :func:`netdsl.export.walk.walk_net`."""
    from .walk import walk_net as run
    return run(net, inputs, outputs, rule)
