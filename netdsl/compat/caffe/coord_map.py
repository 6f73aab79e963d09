"""``caffe.coord_map``: crop offsets from coordinate maps (netdsl.coord_map)."""
from netdsl.coord_map import (PASS_THROUGH_LAYERS, AxisMismatchException,  # noqa: F401
                              UndefinedMapException, compose, coord_map, coord_map_from_to,
                              crop, inverse)
