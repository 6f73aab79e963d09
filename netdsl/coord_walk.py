"""Coordinate maps along a net: the walker behind Crop offsets and shape tables.

Each layer type's map comes from its LayerType (``coord_map`` rule, netdsl.layers);
maps compose along a path (:mod:`netdsl.maps`), and the map between two blobs is
found by walking back from both to a common ancestor, as pycaffe's
``coord_map_from_to`` does (BVLC python/caffe/coord_map.py).  :class:`NetGraph`
walks a NetParameter; :func:`crop_params` and :func:`offsets_for` give the Crop
offsets Caffe's ``CropLayer`` needs (crop_layer.cpp).
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from google.protobuf.message import Message

from .errors import NetdslAssertionError, NetdslError, NetdslRuntimeError, did_you_mean
from .layers import lookup
from .maps import (IDENTITY, AxisMismatchException, Map, Number, UndefinedMapException, Vec,  # noqa: F401
                   _compose, _fmt, _inverse, _is_identity, _norm, _same, as_map, broadcast, exact,
                   _fmt_vec, format_map, stride_offset)
from .netstate import included_layers, make_state


def layer_coord_map(layer: Message, bottom_shapes: Optional[Sequence[Tuple[int, ...]]] = None
                    ) -> Optional[Map]:
    """The exact map of a LayerParameter, or None when its type or parameters give none."""
    lt = lookup(layer.type)
    if lt is None or lt.coord_map is None:
        return None
    try:
        return as_map(lt.map(layer, bottom_shapes))
    except UndefinedMapException:
        return None


# -- walking a graph ----------------------------------------------------------

class _Walk:
    """Back-walks over an abstract graph of nodes.

    ``parents(node)`` gives (map of the producing layer or None, mapped bottom
    nodes, producing layer's name).  ``maps[node]`` maps node coordinates to
    the start node's; ``via[node]`` is the node it was reached from.
    """

    def __init__(self, start, parents, label) -> None:
        self.parents = parents
        self.label = label
        self.maps = {start: IDENTITY}
        self.via = {start: None}
        self.order = [start]

    def expand(self, node) -> None:
        m, bottoms, lname = self.parents(node)
        if m is None:
            return
        for b in bottoms:
            try:
                new = _compose(self.maps[node], m)
            except AxisMismatchException as exc:
                raise AxisMismatchException(
                    "%s; layer '%s' maps axis %s but the blobs after it map axis %s"
                    % (exc.message, lname, m[0], self.maps[node][0]), layer=lname) from None
            old = self.maps.get(b)
            if old is None:
                self.maps[b] = new
                self.via[b] = node
                self.order.append(b)
            elif not _same(old, new):
                other = self.parents(self.via[b])[2]
                raise NetdslError(
                    "blob '%s' reaches '%s' along two paths with different coordinate maps: "
                    "through layer '%s' (%s) and through layer '%s' (%s); the branches are "
                    "not aligned, so no single crop offset exists"
                    % (self.label(b), self.label(self.order[0]), other, format_map(old),
                       lname, format_map(new)), layer=lname)

    def run(self) -> None:
        i = 0
        while i < len(self.order):
            self.expand(self.order[i])
            i += 1

    def chain(self, node) -> List:
        """Nodes from ``node`` forward to the start."""
        out = []
        while node is not None:
            out.append(node)
            node = self.via[node]
        return out


def _map_between(start_from, start_to, parents, label, layer_of) -> Tuple[Map, Any, _Walk, _Walk]:
    """Map from ``start_from`` coordinates to ``start_to``'s, via a common ancestor."""
    wf = _Walk(start_from, parents, label)
    wf.run()
    wt = _Walk(start_to, parents, label)
    i = 0
    while i < len(wt.order):
        node = wt.order[i]
        if node in wf.maps:
            return _compose(wt.maps[node], _inverse(wf.maps[node])), node, wf, wt
        wt.expand(node)
        i += 1
    # pycaffe raises RuntimeError here
    raise NetdslRuntimeError(
        "no coordinate map between '%s' and '%s': walking back through "
        "spatial layers (convolution, pooling, deconvolution, crop, element-wise) "
        "from both never reaches a common blob" % (label(start_from), label(start_to)),
        hint="layers such as InnerProduct, Reshape or data layers end the walk")


def _spatial_layers(walk: _Walk, node, layer_of) -> List[str]:
    names = []
    for n in walk.chain(node)[1:]:
        lname, m = layer_of(n)
        if m is not None and not _is_identity(m) and lname not in names:
            names.append(lname)
    return names


def _check_crop(m: Map, from_label: str, to_label: str, culprits: str,
                hint: Optional[Callable[[str], Optional[str]]] = None) -> Tuple[int, List[int]]:
    ax, a, b = m
    _, (a, b) = broadcast(a, b)
    if any(x != 1 for x in a):
        raise NetdslAssertionError(
            "scale mismatch: '%s' and '%s' differ in resolution by a factor of %s "
            "(Crop only shifts, it cannot resample)%s"
            % (from_label, to_label, _fmt_vec(a), culprits),
            hint=hint("scale") if hint else None)
    if any(y > 0 for y in b):
        raise NetdslAssertionError(
            "cannot crop '%s' to '%s': the offset would be negative (%s); "
            "'%s' does not cover '%s'%s"
            % (from_label, to_label, _fmt_vec(tuple(-y for y in b)),
               from_label, to_label, culprits),
            hint=hint("cover") if hint else None)
    if any(not isinstance(_norm(y), int) for y in b):
        raise NetdslAssertionError(
            "cannot crop '%s' to '%s': the offset %s is not a whole number of "
            "pixels (Crop takes integer offsets)%s"
            % (from_label, to_label, _fmt_vec(tuple(-y for y in b)), culprits),
            hint=hint("fraction") if hint else None)
    return ax, [int(-y) for y in b]


def _path_layers(walk: _Walk, common, layer_of) -> List[Tuple[str, Map]]:
    """(layer name, map) of the layers from the common blob to the walk's start, in order."""
    out = []
    for n in walk.chain(common)[1:]:
        lname, lm = layer_of(n)
        if lm is not None and not _is_identity(lm):
            out.append((lname, lm))
    return out


def _one(v: Vec) -> Optional[Number]:
    """The value of a vector whose entries are all equal (None otherwise)."""
    vals = set(_norm(x) for x in v)
    return vals.pop() if len(vals) == 1 else None


def _resample_text(name: str, scale: Number) -> str:
    scale = _norm(Fraction(scale))
    if scale > 1:
        return "'%s' upsamples by %s (stride %s)" % (name, _fmt(scale), _fmt(scale))
    return "'%s' downsamples by %s (stride %s)" % (name, _fmt(1 / Fraction(scale)),
                                                    _fmt(1 / Fraction(scale)))


def _crop_hint(kind: str, m: Map, wf: _Walk, wt: _Walk, common, layer_of,
               from_label: str, to_label: str, same_size: Any = False) -> Optional[str]:
    """What change to the net would make the crop possible (the layer to change and how);
    ``same_size`` (a bool, or a function giving one, asked only when it matters): the
    two blobs have the same spatial size, so cropping one to the other cannot help."""
    from_path = _path_layers(wf, common, layer_of)
    to_path = _path_layers(wt, common, layer_of)
    ax, a, b = m
    _, (a, b) = broadcast(a, b)
    if kind == "scale":
        factor = _one(a)
        if factor is None:
            return None
        factor = Fraction(factor)
        # the resampling layer nearest the crop; an upsampling one first (the usual fix)
        options = []
        for path, side in ((from_path, "from"), (to_path, "to")):
            for lname, lm in reversed(path):
                s = _one(lm[1])
                if s is not None and s != 1:
                    options.append((lname, Fraction(s), side))
                    break
        if not options:
            return None
        options.sort(key=lambda o: o[1] <= 1)   # upsampling layers first
        lname, s, side = options[0]
        new = s * factor if side == "from" else s / factor
        change = ("upsample by %s instead" % _fmt(_norm(new)) if new > 1 else
                  "downsample by %s instead" % _fmt(_norm(1 / new)) if new < 1 else
                  "keep the resolution (stride 1)")
        return ("%s; to align '%s' with '%s' it would %s (e.g. an upsample `factor: %s`)"
                % (_resample_text(lname, s), from_label, to_label, change, _fmt(_norm(new)))
                if new > 1 and _norm(new) == int(new) else
                "%s; to align '%s' with '%s' it would %s"
                % (_resample_text(lname, s), from_label, to_label, change))
    if kind == "cover":
        short = max(Fraction(y) for y in b)   # pixels of '%s' missing before the reference
        if not from_path and (same_size() if callable(same_size) else same_size):
            return ("'%s' starts %s pixel(s) inside '%s' and both have the same size, so no "
                    "crop aligns them: the shift comes from the layers between them (%s); "
                    "change their pad or crop offset instead"
                    % (from_label, _fmt(_norm(short)), to_label,
                       ", ".join("'%s'" % n for n, _ in to_path) or "none"))
        if not from_path:
            return ("'%s' starts %s pixel(s) inside '%s'; crop the larger blob to the smaller "
                    "one instead" % (from_label, _fmt(_norm(short)), to_label))
        first, _ = from_path[0]
        scale = _one(wf.maps[common][1])
        need = None
        if scale is not None:
            # a pad of p more on the first layer after the common blob moves the offset by
            # p * (scale from that layer's input to the cropped blob)
            total = Fraction(1) / Fraction(scale)
            need = -(-short // total) if total > 0 else None
        return ("pad '%s' (the first layer after '%s') by %s more pixel(s) so that '%s' "
                "covers '%s' (FCN pads its first convolution by 100 for this)"
                % (first, wf.label(common) if hasattr(wf, "label") else common,
                   _fmt(_norm(need)) if need is not None else "some", from_label, to_label))
    if kind == "fraction":
        frac = set(Fraction(-y) - (Fraction(-y).numerator // Fraction(-y).denominator)
                   for y in b)
        if not from_path:
            return None
        last, lm = from_path[-1]
        scale = _one(lm[1])
        # shift = (pad - (k - 1)/2) / stride for a convolution, (k - 1)/2 - pad for a
        # deconvolution: one more kernel pixel moves the output by 1/2 when stride is 1
        # (convolution) or always (deconvolution, scale >= 1)
        if frac == {Fraction(1, 2)} and scale is not None and scale >= 1:
            return ("the offset is half a pixel off; '%s' is the last layer before the crop "
                    "that shifts coordinates (shift %s): a kernel_size one larger or smaller "
                    "there moves its output by half a pixel and makes the offset whole%s"
                    % (last, _fmt_vec(lm[2]), " (a spec's upsample op: `kernel: odd`)"
                       if scale > 1 else ""))
        return ("'%s' is the last layer before the crop that shifts coordinates (shift %s); "
                "its kernel_size and pad (or those of the layers before it) leave the offset "
                "between pixels" % (last, _fmt_vec(lm[2])))
    return None


def _culprit_text(wf: _Walk, wt: _Walk, common, layer_of) -> str:
    a = _spatial_layers(wf, common, layer_of)
    b = _spatial_layers(wt, common, layer_of)
    if not a and not b:
        return ""
    parts = []
    if a:
        parts.append("[%s]" % ", ".join(a))
    if b:
        parts.append("[%s]" % ", ".join(b))
    return "; the maps come from layers " + " and ".join(parts)


# -- NetParameter level ---------------------------------------------------------

class NetGraph:
    """Blob versions of a NetParameter and the layers that produce them.

    Each top of each layer is a node (an in-place top is a new version of
    its name); ``current[name]`` is the newest node of a name.
    """

    def __init__(self, net: Message, layers: Optional[Sequence[Message]] = None,
                 shapes: Optional[Mapping[str, Tuple[int, ...]]] = None) -> None:
        if layers is None:
            layers = included_layers(net)
        self.layers = list(layers)
        self.node_layer: List[int] = []
        self.node_name: List[str] = []
        self.bottoms: List[List[int]] = []
        self.current: Dict[str, int] = {}
        self.shapes = shapes
        self._maps: Dict[int, Optional[Map]] = {}
        for name in net.input:       # legacy inputs: roots
            self._add(-1, name)
        for li, layer in enumerate(self.layers):
            nodes = []
            for bi, b in enumerate(layer.bottom):
                node = self.current.get(b)
                if node is None:
                    raise NetdslError("unknown bottom blob '%s' (bottom %d); no earlier layer "
                                      "produces it" % (b, bi), layer=layer.name or None,
                                      field="bottom")
                nodes.append(node)
            self.bottoms.append(nodes)
            for t in layer.top:
                self._add(li, t)

    def _add(self, li: int, name: str) -> None:
        self.current[name] = len(self.node_layer)
        self.node_layer.append(li)
        self.node_name.append(name)

    def layer_map(self, li: int) -> Optional[Map]:
        if li not in self._maps:
            layer = self.layers[li]
            shapes = None
            if self.shapes is not None and layer.bottom:
                shapes = [self.shapes[b] for b in layer.bottom if b in self.shapes] or None
            self._maps[li] = layer_coord_map(layer, shapes)
        return self._maps[li]

    def parents(self, node: int):
        li = self.node_layer[node]
        if li < 0:
            return None, (), "input"
        layer = self.layers[li]
        bottoms = self.bottoms[li]
        k = self.map_bottoms(layer)
        if k:
            bottoms = bottoms[:k]
        return self.layer_map(li), bottoms, layer.name

    @staticmethod
    def map_bottoms(layer: Message) -> Optional[int]:
        lt = lookup(layer.type)
        return lt.map_bottoms if lt is not None else None

    def label(self, node: int) -> str:
        return self.node_name[node]

    def layer_of(self, node: int):
        m, _, lname = self.parents(node)
        return lname, m

    def node(self, blob: str) -> int:
        node = self.current.get(blob)
        if node is None:
            raise NetdslError("no blob named '%s' in the net" % blob, field="bottom",
                              hint=did_you_mean(blob, self.current))
        return node

    def map_between(self, n_from: int, n_to: int):
        return _map_between(n_from, n_to, self.parents, self.label, self.layer_of)


def _shape_dict(shapes) -> Optional[Mapping[str, Tuple[int, ...]]]:
    if shapes is None:
        return None
    return getattr(shapes, "blobs", shapes)


def _crop_between(graph: NetGraph, n_from: int, n_to: int,
                  shapes: Optional[Mapping[str, Tuple[int, ...]]],
                  from_shape: Optional[Tuple[int, ...]] = None,
                  to_shape: Optional[Tuple[int, ...]] = None) -> Tuple[int, List[int]]:
    m, common, wf, wt = graph.map_between(n_from, n_to)
    culprits = _culprit_text(wf, wt, common, graph.layer_of)
    fl, tl = graph.label(n_from), graph.label(n_to)
    known = shapes if shapes is not None else graph.shapes
    fs = from_shape if from_shape is not None else (known or {}).get(fl)
    ts = to_shape if to_shape is not None else (known or {}).get(tl)
    same = fs is not None and ts is not None and tuple(fs[2:]) == tuple(ts[2:])
    ax, offsets = _check_crop(m, fl, tl, culprits, lambda kind: _crop_hint(
        kind, m, wf, wt, common, graph.layer_of, fl, tl, same))
    axis = 2 if ax is None else ax + 1
    if len(set(offsets)) == 1:
        offsets = offsets[:1]
    if shapes is not None:
        fs = from_shape if from_shape is not None else shapes.get(fl)
        ts = to_shape if to_shape is not None else shapes.get(tl)
        if fs is not None and ts is not None:
            _check_extent(fl, tl, fs, ts, axis, offsets)
    return axis, offsets


def _check_extent(fl: str, tl: str, fs, ts, axis: int, offsets: List[int]) -> None:
    if axis >= len(fs) or len(fs) != len(ts):
        raise NetdslError("cannot crop %d-axis '%s' %s to %d-axis '%s' %s from axis %d"
                          % (len(fs), fl, _shape_str(fs), len(ts), tl, _shape_str(ts), axis))
    if len(offsets) > 1 and axis + len(offsets) != len(fs):
        raise NetdslError("%d offsets for axes %d.. of a %d-axis blob (Crop needs one offset, or "
                          "one per axis from crop_param.axis)" % (len(offsets), axis, len(fs)))
    for i in range(axis, len(fs)):
        off = offsets[0] if len(offsets) == 1 else offsets[i - axis]
        if fs[i] - off < ts[i]:
            raise NetdslError("the crop of '%s' %s to '%s' %s at offset %d is out of bounds on "
                              "axis %d: %d - %d < %d (Caffe requires bottom[0].shape(i) - offset "
                              ">= bottom[1].shape(i))"
                              % (fl, _shape_str(fs), tl, _shape_str(ts), off, i, fs[i], off,
                                 ts[i]))


def _shape_str(s) -> str:
    return "(" + ", ".join(str(d) for d in s) + ")"


def crop_params(net: Message, blob: str, reference: str, *, shapes=None,
                phase=None) -> Tuple[int, List[int]]:
    """The Crop ``(axis, offsets)`` aligning blob ``blob`` to blob ``reference``.

    Blob names refer to their newest version (after any in-place layers).
    The maps of both blobs are composed back to a common ancestor, as
    pycaffe's ``coord_map_from_to`` does; Crop layers map only their first
    bottom.  ``offsets`` is one int when every spatial axis shifts alike,
    else one per axis from ``axis``.  With ``shapes`` (a NetShapes or a
    name -> shape dict) the crop's extent is checked too.
    Raises NetdslError on a scale mismatch or a negative or fractional offset.
    """
    layers = None
    if phase is not None:
        layers = included_layers(net, make_state(net, phase))
    sd = _shape_dict(shapes)
    graph = NetGraph(net, layers, sd)
    return _crop_between(graph, graph.node(blob), graph.node(reference), sd)


@dataclass
class CropOffsets:
    """What the coordinate maps say about one Crop layer."""
    layer: str
    axis: Optional[int]          # from the coordinate maps (None when undefined)
    offsets: Optional[List[int]]
    given_axis: int              # the layer's own crop_param
    given_offsets: List[int]
    error: Optional[str] = None  # why no offset follows from the maps

    @property
    def matches(self) -> bool:
        """Whether the layer's crop_param equals the offsets the maps give."""
        if self.offsets is None:
            return False
        if self.axis != self.given_axis:
            return False
        given = self.given_offsets or [0]
        if len(given) == len(self.offsets):
            return given == self.offsets
        return len(set(given)) == 1 and len(set(self.offsets)) == 1 and given[0] == self.offsets[0]


def crop_offsets_at(net: Message, index: int) -> Tuple[int, List[int]]:
    """(axis, offsets) that the coordinate maps of its two bottoms give the Crop
    layer ``net.layer[index]`` (layers may share names); raises NetdslError
    when none follows."""
    graph = NetGraph(net, None, _shape_dict(None))
    n_from, n_to = graph.bottoms[index]
    return _crop_between(graph, n_from, n_to, None)


def offsets_for(net: Message, *, shapes=None, phase=None) -> Dict[str, CropOffsets]:
    """For every Crop layer, the axis and offsets its bottoms' coordinate maps give.

    Keyed by layer name, in net order.  When no offset follows (no common
    ancestor, a scale mismatch, ...) ``axis``/``offsets`` are None and
    ``error`` says why.
    """
    layers = None
    if phase is not None:
        layers = included_layers(net, make_state(net, phase))
    sd = _shape_dict(shapes)
    graph = NetGraph(net, layers, sd)
    out: Dict[str, CropOffsets] = {}
    for li, layer in enumerate(graph.layers):
        if layer.type != "Crop" or len(graph.bottoms[li]) != 2:
            continue
        n_from, n_to = graph.bottoms[li]
        cp = layer.crop_param
        rec = CropOffsets(layer.name, None, None, cp.axis, list(cp.offset))
        try:
            rec.axis, rec.offsets = _crop_between(graph, n_from, n_to, None)
        except NetdslError as exc:
            rec.error = exc.message
        out[layer.name] = rec
    return out


# -- maps from the net input, layer by layer ------------------------------------------

def _num(x) -> Any:
    """An exact number as the shapes table shows it: an int when whole, else a float."""
    if isinstance(x, Fraction):
        return int(x) if x.denominator == 1 else float(x)
    return x


class InputMaps:
    """The coordinate map from the net input to each blob, composed as a net is
    walked in Caffe's order (the strides and offsets of the shapes table).

    A bottomless layer's tops are the input (the identity); a layer's tops get
    its type's map composed with its first bottom's, when every mapped bottom
    has the same map; otherwise (no map, a declared layer, bottoms that
    disagree) they have none.
    """

    __slots__ = ("maps", "_placed")

    def __init__(self) -> None:
        self.maps: Dict[str, Optional[Map]] = {}
        self._placed: Dict[Map, Tuple[Any, Any]] = {}    # map -> (stride, offset), once

    def top_map(self, layer: Message, lt: Any, bottoms: Sequence[str], bottom_shapes,
                geo: Any, declared: bool) -> Optional[Map]:
        """The map from the net input to the tops of ``layer`` (LayerType ``lt``)."""
        if not bottoms:
            return IDENTITY
        first = self.maps.get(bottoms[0])
        if first is None or declared or lt is None or not lt.coord_map:
            return None
        try:
            m = as_map(lt.coord_map(layer, bottom_shapes, geo) if geo is not None
                       else lt.map(layer, bottom_shapes))
        except UndefinedMapException:
            return None
        for b in bottoms[1:lt.map_bottoms or len(bottoms)]:
            other = self.maps.get(b)
            if other is None or (other is not first and not _same(other, first)):
                return None
        try:
            return _compose(m, first)
        except NetdslError:
            return None

    def place(self, blob: str, fmap: Optional[Map]) -> Tuple[Any, Any]:
        """Record ``blob``'s map; its (stride, offset) on the net input, or (None, None)."""
        self.maps[blob] = fmap
        if fmap is None:
            return (None, None)
        so = self._placed.get(fmap)
        if so is None:
            st, off = stride_offset(fmap)
            so = self._placed[fmap] = (tuple(_num(x) for x in st), tuple(_num(x) for x in off))
        return so
