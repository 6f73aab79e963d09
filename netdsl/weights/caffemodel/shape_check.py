"""Caffe's rule for loading a stored blob into a net's parameter blob.

``Net::CopyTrainedLayersFrom`` (net.cpp) matches layers by name and each blob
with ``Blob::ShapeEquals`` (blob.cpp): a blob stored with the legacy
``num/channels/height/width`` fields matches a parameter of at most 4 axes
whose shape, padded with leading 1s to 4 axes (``LegacyShape``), equals
those four numbers; a blob stored with ``shape { dim }`` matches only the
same shape.  Otherwise Caffe stops with the message of :func:`copy_mismatch`.
"""
from __future__ import annotations

from typing import Sequence

from ...errors import NetdslError

__all__ = ["shape_equals", "shape_string", "copy_mismatch"]


def shape_equals(target: Sequence[int], source: Sequence[int], legacy: bool) -> bool:
    """Blob::ShapeEquals of a parameter of shape ``target`` and a stored blob of shape
    ``source`` (``legacy``: stored as num, channels, height, width)."""
    target, source = tuple(int(d) for d in target), tuple(int(d) for d in source)
    if legacy:
        return len(target) <= 4 and (1,) * (4 - len(target)) + target == source
    return target == source


def shape_string(shape: Sequence[int]) -> str:
    """Blob::shape_string: the dims, each followed by a space, then the count:
    ``3 5 1 1 (15)``."""
    count = 1
    for d in shape:
        count *= int(d)
    return "".join("%d " % d for d in shape) + "(%d)" % count


def copy_mismatch(layer: str, index: int, source: Sequence[int], target: Sequence[int]
                  ) -> NetdslError:
    """The error net.cpp's CopyTrainedLayersFrom stops with (LOG(FATAL))."""
    return NetdslError(
        "Cannot copy param %d weights from layer '%s'; shape mismatch.  Source param shape "
        "is %s; target param shape is %s. To learn this layer's parameters from scratch "
        "rather than copying from a saved net, rename the layer."
        % (index, layer, shape_string(source), shape_string(target)), layer=layer)
