"""The coordinate-map algebra: exact maps, their composition, inverse and text.

A map is ``(axis, scale, shift)``: an output coordinate ``y`` relates to an input
coordinate ``x`` by ``y = scale * x + shift`` on the spatial axes after ``axis``
(pycaffe's ``caffe.coord_map``, BVLC python/caffe/coord_map.py).  Here scale and
shift are tuples of ints and fractions, one per spatial axis (or one for all), so
offsets are never lost to rounding.  Pure arithmetic: the layer families build
their map rules from these helpers, and :mod:`netdsl.coord_walk` composes maps
along a net.
"""
from __future__ import annotations

from fractions import Fraction
from typing import List, Optional, Sequence, Tuple, Union

from google.protobuf.message import Message

from .errors import NetdslError

Number = Union[int, Fraction]
Vec = Tuple[Number, ...]
Map = Tuple[Optional[int], Vec, Vec]

IDENTITY: Map = (None, (1,), (0,))


class UndefinedMapException(NetdslError):
    """A layer whose output coordinates do not follow from its input's."""


class AxisMismatchException(NetdslError):
    """Maps on different axes composed together."""


# -- exact arithmetic ---------------------------------------------------------

def exact(num: int, den: int = 1) -> Number:
    """num/den as an int when exact, else a Fraction."""
    if den < 0:
        num, den = -num, -den
    if num % den == 0:
        return num // den
    return Fraction(num, den)


def broadcast(*vecs: Vec) -> Tuple[int, List[Vec]]:
    n = max(len(v) for v in vecs)
    out = []
    for v in vecs:
        if len(v) == n:
            out.append(v)
        elif len(v) == 1:
            out.append(v * n)
        else:
            raise NetdslError("coordinate maps over %d and %d spatial axes cannot be combined"
                              % (len(v), n))
    return n, out


def _compose_axis(ax1, ax2):
    """The axis of a composed map: None (no spatial effect) gives way to the other."""
    if ax1 is None:
        return ax2
    if ax2 is None or ax1 == ax2:
        return ax1
    raise AxisMismatchException("coordinate maps on axis %s and axis %s cannot be composed"
                                % (ax1, ax2))


def _compose(base: Map, nxt: Map) -> Map:
    """pycaffe's compose on exact maps: scales multiply, ``b = a1*b2 + b1``."""
    if base is IDENTITY:
        return nxt
    if nxt is IDENTITY:
        return base
    ax1, a1, b1 = base
    ax2, a2, b2 = nxt
    ax = _compose_axis(ax1, ax2)
    if len(a1) == len(b1) == len(a2) == len(b2) == 1:
        x1, y1, x2, y2 = a1[0], b1[0], a2[0], b2[0]
        return ax, (x1 * x2,), (x1 * y2 + y1,)
    _, (a1, b1, a2, b2) = broadcast(a1, b1, a2, b2)
    return ax, tuple(x * y for x, y in zip(a1, a2)), tuple(x * y + z for x, y, z in zip(a1, b2, b1))


def _inverse(m: Map) -> Map:
    """(axis, 1/a, -b/a), exactly."""
    ax, a, b = m
    _, (a, b) = broadcast(a, b)
    return ax, tuple(_norm(1 / Fraction(x)) for x in a), \
        tuple(_norm(-Fraction(y) / x) for x, y in zip(a, b))


def _norm(x: Number) -> Number:
    if isinstance(x, Fraction) and x.denominator == 1:
        return int(x)
    return x


def _is_identity(m: Map) -> bool:
    return all(x == 1 for x in m[1]) and all(y == 0 for y in m[2])


def _same(m1: Map, m2: Map) -> bool:
    if _is_identity(m1) and _is_identity(m2):
        return True
    if m1[0] != m2[0] and m1[0] is not None and m2[0] is not None:
        return False
    try:
        _, (a1, b1, a2, b2) = broadcast(m1[1], m1[2], m2[1], m2[2])
    except NetdslError:
        return False
    return a1 == a2 and b1 == b2


def _fmt(x: Number) -> str:
    x = _norm(x)
    if isinstance(x, int):
        return str(x)
    return "%s/%s" % (x.numerator, x.denominator)


def _fmt_vec(v: Vec) -> str:
    if len(set(v)) == 1:
        return _fmt(v[0])
    return "(" + ", ".join(_fmt(x) for x in v) + ")"


def format_map(m: Map) -> str:
    """``scale 1/32, shift 19/2`` style text of an exact map."""
    return "scale %s, shift %s" % (_fmt_vec(m[1]), _fmt_vec(m[2]))


def stride_offset(m: Map) -> Tuple[Vec, Vec]:
    """Per-axis (stride, offset) of a map from a net input to a blob.

    ``stride`` input pixels per blob pixel and ``offset`` the input coordinate
    of the centre of blob pixel 0: ``x_input = stride * x_blob + offset``.
    """
    _, a, b = _inverse(m)
    return a, b


# -- helpers for the layer types' map rules (netdsl/layers/) --------------------

def canon_axis(axis: int, layer: Message, shapes: Optional[Sequence[Tuple[int, ...]]],
                field: str) -> int:
    if axis >= 0 or not shapes:
        return axis
    n = len(shapes[0])
    if axis < -n:
        raise NetdslError("axis %d out of range for a %d-axis blob" % (axis, n),
                          layer=layer.name or None, field=field)
    return axis + n


def down_map(axis: int, stride: Vec, extent: Vec, pad: Vec) -> Map:
    # y = x/s + (p - (e-1)/2)/s
    return axis, tuple(exact(1, s) for s in stride), \
        tuple(exact(2 * p - (e - 1), 2 * s) for s, e, p in zip(stride, extent, pad))


def channel_axis_map(axis: int, layer: Message, shapes, field: str) -> Map:
    axis = canon_axis(axis, layer, shapes, field)
    if 0 <= axis <= 1:
        return IDENTITY
    raise UndefinedMapException("%s on axis %d changes spatial extent" % (layer.type, axis),
                                layer=layer.name or None)


def as_map(m) -> Map:
    """An exact map from what a registered function returns (numbers or sequences)."""
    ax, a, b = m
    if isinstance(a, tuple) and isinstance(b, tuple):
        return m
    def vec(v) -> Vec:
        vals = list(v) if hasattr(v, "__iter__") else [v]
        return tuple(_norm(Fraction(x).limit_denominator(1 << 20)) if isinstance(x, float)
                     else _norm(Fraction(x)) for x in vals)
    return ax, vec(a), vec(b)


# -- pycaffe-compatible functions on maps --------------------------------------

def _is_exact(m) -> bool:
    return isinstance(m[1], tuple)


def compose(base_map, next_map):
    """pycaffe's ``compose``: scales multiply; the further shift is scaled by the base scale.

    Works on pycaffe-style maps (numbers or numpy arrays) and on exact maps
    (tuples of ints and fractions) alike.
    """
    if _is_exact(base_map) and _is_exact(next_map):
        return _compose(base_map, next_map)
    ax1, a1, b1 = base_map
    ax2, a2, b2 = next_map
    ax = _compose_axis(ax1, ax2)
    return ax, a1 * a2, a1 * b2 + b1


def inverse(coord_map):
    """pycaffe's ``inverse``: ``(axis, 1/a, -b/a)``, the map back from output to input."""
    if _is_exact(coord_map):
        return _inverse(coord_map)
    ax, a, b = coord_map
    return ax, 1 / a, -b / a


def _to_numpy(m: Map):
    import numpy as np
    ax, a, b = m
    if ax is None:   # only element-wise layers: pycaffe's plain numbers
        return ax, float(a[0]), float(b[0])
    return ax, np.array([float(x) for x in a]), np.array([float(x) for x in b])


def compose_exact(base: Map, nxt: Map) -> Map:
    """The composition of two exact maps (``nxt`` applied first, then ``base``)."""
    return _compose(base, nxt)


def same_map(m1: Map, m2: Map) -> bool:
    """Whether two exact maps relate coordinates alike (identities on any axis agree)."""
    return _same(m1, m2)
