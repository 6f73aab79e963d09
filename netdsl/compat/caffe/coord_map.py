"""``caffe.coord_map``: crop offsets from coordinate maps (netdsl.coord_map)."""
from netdsl.coord_map import (AxisMismatchException, UndefinedMapException,  # noqa: F401
                              compose, coord_map, coord_map_from_to, crop, inverse)
from netdsl.layers.blob import identity_map as _identity
from netdsl.layers.registry import BUILTIN as _BUILTIN

#: pycaffe's list: the types whose output pixel i sits where input pixel i does
PASS_THROUGH_LAYERS = sorted(t for t in _BUILTIN.names() if _BUILTIN.get(t).coord_map is _identity)
