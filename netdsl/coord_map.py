"""Coordinate maps between blobs, and the Crop offsets that align them.

The semantics are those of pycaffe's ``caffe.coord_map`` (BVLC
python/caffe/coord_map.py).  A layer's map is ``(axis, scale, shift)``: an
output coordinate ``y`` relates to an input coordinate ``x`` by
``y = scale * x + shift`` on the spatial axes after ``axis``.  For a
convolution, pooling or im2col window of extent ``e = dilation*(kernel-1)+1``::

    scale = 1 / stride              shift = (pad - (e - 1) / 2) / stride

for a deconvolution::

    scale = stride                  shift = (e - 1) / 2 - pad

element-wise layers are the identity ``(None, 1, 0)`` and a Crop with
``offset`` o is ``(axis - 1, 1, -o)``.  Maps compose along a path; the map
between two blobs is found by walking back from both to a common ancestor.

This module is the public face of three others: the exact algebra
(:mod:`netdsl.maps`), the walk along a NetParameter that gives Crop offsets
(:mod:`netdsl.coord_walk`) and pycaffe's functions on NetSpec tops
(:mod:`netdsl.compat.coord_map`).
"""
from __future__ import annotations

from typing import Any

from .compat.coord_map import coord_map, coord_map_from_to, crop  # noqa: F401
from .coord_walk import (CropOffsets, NetGraph, crop_offsets_at, crop_params,  # noqa: F401
                         layer_coord_map, offsets_for)
from .errors import NetdslError
from .maps import (IDENTITY, AxisMismatchException, Map, Number, UndefinedMapException,  # noqa: F401
                   Vec, as_map, broadcast, canon_axis, channel_axis_map, compose, compose_exact,
                   down_map, exact, format_map, inverse, same_map, stride_offset)


def __getattr__(name: str) -> Any:
    if name in ("COORD_MAPS", "coord_rule", "PASS_THROUGH_LAYERS"):   # netdsl 0.1 tables
        raise NetdslError("netdsl.coord_map.%s is gone: every layer type's rules live in one "
                          "LayerType in netdsl.layers" % name,
                          hint="read a map rule with netdsl.layers.lookup(TYPE).coord_map; "
                               "declare a type with netdsl.plugins.register_layer(TYPE, "
                               "coord_map=...) (see docs/custom-layers.md)")
    raise AttributeError("module 'netdsl.coord_map' has no attribute %r" % name)
