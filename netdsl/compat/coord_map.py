"""pycaffe's coordinate-map functions on NetSpec tops: ``coord_map``, ``compose``,
``inverse``, ``coord_map_from_to`` and ``crop`` (BVLC python/caffe/coord_map.py).

Maps are found as :mod:`netdsl.coord_walk` finds them, on the layers the tops' Functions
would emit; labels name a Function by the layer and top names it carries
(``Function.labels``, which the spec compiler sets) or by the line that made it.
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple

from google.protobuf.message import Message

from ..coord_walk import (_check_crop, _crop_hint, _culprit_text, _map_between, _Walk,
                          layer_coord_map)
from ..layers import lookup
from ..maps import Map, UndefinedMapException, _to_numpy, as_map, compose, inverse  # noqa: F401
from ..netspec import layers as L


def _fn_layer(fn, cache: dict) -> Message:
    key = id(fn)
    hit = cache.get(key)
    if hit is None:
        hit = (fn, fn.to_layer())
        cache[key] = hit
    return hit[1]


def coord_map(fn):
    """pycaffe's ``coord_map(fn)`` for a NetSpec Function: ``(axis, scale, shift)``.

    Raises :class:`UndefinedMapException` for a layer with no map.
    """
    layer = fn.to_layer() if hasattr(fn, "to_layer") else fn
    lt = lookup(layer.type)
    if lt is None or lt.coord_map is None:
        raise UndefinedMapException("%s layers have no coordinate map" % layer.type)
    return _to_numpy(as_map(lt.map(layer, None)))


# -- NetSpec tops (pycaffe's API) ----------------------------------------------

def _top_graph():
    cache: dict = {}
    mcache: dict = {}

    def parents(top):
        fn = top.fn
        key = id(fn)
        hit = mcache.get(key)
        if hit is None:
            layer = _fn_layer(fn, cache)
            m = layer_coord_map(layer, None)
            lt = lookup(layer.type)
            k = lt.map_bottoms if lt is not None else None
            bottoms = tuple(fn.inputs[:k]) if k else tuple(fn.inputs)
            hit = (m, bottoms, _fn_label(fn))
            mcache[key] = (fn, hit)
        else:
            hit = hit[1]
        return hit

    def label(top):
        return _top_label(top)

    def layer_of(top):
        m, _, lname = parents(top)
        return lname, m

    return parents, label, layer_of


def _names_of(fn) -> Optional[Tuple[str, List[str]]]:
    """(layer name, top names) a Function carries before NetSpec.to_proto names it (the
    spec compiler sets ``Function.labels``), so crop messages and hints name a spec's
    layers and blobs rather than "Convolution at file:line"."""
    return getattr(fn, "labels", None)


def _fn_label(fn) -> str:
    names = _names_of(fn)
    if names:
        return names[0]
    where = getattr(fn, "where", None)
    if where:
        return "%s at %s:%d" % (fn.type_name, where[0].rsplit("/", 1)[-1], where[1])
    return fn.type_name


def _top_label(top) -> str:
    fn = top.fn
    names = _names_of(fn)
    if names and top.n < len(names[1]):
        return names[1][top.n]
    return "top %d of %s" % (top.n, _fn_label(fn)) if fn.ntop > 1 else _fn_label(fn)


def _between_tops(top_from, top_to) -> Tuple[Map, Any, _Walk, _Walk, Any]:
    parents, label, layer_of = _top_graph()
    m, common, wf, wt = _map_between(top_from, top_to, parents, label, layer_of)
    return m, common, wf, wt, layer_of


def coord_map_from_to(top_from, top_to):
    """pycaffe's ``coord_map_from_to``: the map from ``top_from`` to ``top_to`` coordinates.

    Returns ``(axis, scale, shift)`` with numpy arrays (plain floats when
    only element-wise layers lie between), as pycaffe does.
    """
    m = _between_tops(top_from, top_to)[0]
    return _to_numpy(m)


def crop(top_from, top_to, same_size: Optional[Callable[[], bool]] = None):
    """pycaffe's ``crop``: a Crop layer cropping ``top_from`` to ``top_to``'s extent.

    ``L.Crop(top_from, top_to, crop_param=dict(axis=ax + 1, offset=[...]))``
    with the offsets the coordinate maps give.  ``same_size`` (netdsl's): a
    function telling whether the two tops have the same spatial size, asked only
    to word the advice when no crop can align them.
    """
    m, common, wf, wt, layer_of = _between_tops(top_from, top_to)
    culprits = _culprit_text(wf, wt, common, layer_of)
    fl, tl = _top_label(top_from), _top_label(top_to)
    ax, offsets = _check_crop(m, fl, tl, culprits, lambda kind: _crop_hint(
        kind, m, wf, wt, common, layer_of, fl, tl, same_size or False))
    if ax is None:
        ax = 1
    return L.Crop(top_from, top_to, crop_param=dict(axis=ax + 1, offset=offsets))
