"""``caffe.coord_map``: crop offsets from coordinate maps (netdsl.coord_map)."""
from netdsl.errors import NetdslError as _Err

try:
    from netdsl.coord_map import coord_map_from_to, crop, inverse, compose  # noqa: F401
except ImportError:  # pragma: no cover - until the coordinate-map module exists
    def crop(top_from, top_to):
        raise _Err("caffe.coord_map.crop is not available yet in this netdsl")

    coord_map_from_to = crop
