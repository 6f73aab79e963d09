"""Blob and parameter shapes exactly as Caffe computes them, without Caffe.

The walk follows Caffe's Net::Init: layers in order, filtered by phase, each
checked against its type's blob counts (``layer.hpp`` CheckBlobCounts) and
shaped by its type's rule in the layer registry (:mod:`netdsl.layers`), which
mirrors the type's ``LayerSetUp``/``Reshape`` with Caffe's integer arithmetic.
Checks Caffe makes with ``CHECK`` raise :class:`~netdsl.errors.NetdslError`
naming the layer and field, Caffe's rule and the numbers involved.

:func:`infer_shapes` walks a net once (linear in its size, no recursion);
:func:`check_net` also rejects empty blobs (an output size below 1), which
Caffe itself allows but which no network means.  :mod:`netdsl.shape_table`
prints the result.
"""
from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from typing import (Any, Dict, Iterable, Iterator, List, Mapping, NamedTuple, NoReturn, Optional,
                    Sequence, Tuple, Union)

from google.protobuf.message import Message

from .errors import NetdslError, did_you_mean
from .layers import current, lookup
from .layers.blob import (INT_MAX, Shape, blob_dims, canonical_axis, check_blob_shape,  # noqa: F401
                          Noted, count, declare_hint, shape_str)
from .layers.conv import conv_out, deconv_out  # noqa: F401  (Caffe's formulas, for callers)
from .layers.pool import pool_dims, pool_out  # noqa: F401
from .coord_walk import InputMaps
from .layers.registry import LayerType
from .maps import IDENTITY
from .netstate import included_layers, make_state

__all__ = ["infer_shapes", "check_net", "param_shapes", "NetShapes", "LayerShapes",
           "conv_out", "deconv_out", "pool_out", "pool_dims",
           "canonical_axis", "count", "check_blob_shape", "shape_str", "INT_MAX"]


# -- results --------------------------------------------------------------------

class BlobView(NamedTuple):
    """A layer's per-blob results as tuples (:attr:`LayerShapes.view`)."""
    bottoms: Tuple[str, ...]
    tops: Tuple[str, ...]
    bottom_shapes: Tuple[Shape, ...]
    top_shapes: Tuple[Shape, ...]
    param_shapes: Tuple[Shape, ...]
    loss_weights: Tuple[float, ...]
    strides: Tuple[Optional[Tuple[Union[int, float], ...]], ...]
    offsets: Tuple[Optional[Tuple[Union[int, float], ...]], ...]
    in_place: Tuple[bool, ...]


_FIELDS = BlobView._fields


class LayerShapes:
    """One layer as Caffe sets it up.

    ``bottoms``, ``tops``, ``bottom_shapes``, ``top_shapes``, ``param_shapes``,
    ``loss_weights``, ``strides``, ``offsets`` and ``in_place`` are lists (one
    entry per blob); ``strides``/``offsets`` (None when undefined) place a top
    on the net input: ``x_input = stride * x_top + offset`` per spatial axis,
    from the coordinate maps (:mod:`netdsl.coord_map`).  ``layer`` is the
    LayerParameter shaped (None for legacy net inputs).
    """
    # kept as one tuple: a deep net's results then hold almost no objects the cyclic
    # garbage collector has to scan (tuples of ints and strings are untracked)
    __slots__ = ("name", "type", "param_count", "declared", "note", "layer", "_v", "_lists")

    def __init__(self, name: str, type: str, bottoms: Sequence[str], tops: Sequence[str],
                 bottom_shapes: Sequence[Shape], top_shapes: Sequence[Shape],
                 param_shapes: Sequence[Shape], param_count: int,
                 loss_weights: Sequence[float] = (),
                 strides: Sequence[Optional[Tuple[Union[int, float], ...]]] = (),
                 offsets: Sequence[Optional[Tuple[Union[int, float], ...]]] = (),
                 in_place: Sequence[bool] = (), declared: bool = False,
                 note: Optional[str] = None, layer: Optional[Message] = None) -> None:
        self.name = name
        self.type = type
        self.param_count = param_count
        self.declared = declared
        self.note = note
        self.layer = layer
        self._v = (tuple(bottoms), tuple(tops), tuple(bottom_shapes), tuple(top_shapes),
                   tuple(param_shapes), tuple(loss_weights), tuple(strides), tuple(offsets),
                   tuple(in_place))
        self._lists: Optional[List[Optional[list]]] = None

    @property
    def view(self) -> BlobView:
        """The per-blob fields as tuples, without copying (for reports over big nets)."""
        return BlobView(*self._v)

    def __repr__(self) -> str:
        return "LayerShapes(%s)" % ", ".join(
            ["name=%r" % self.name, "type=%r" % self.type]
            + ["%s=%r" % (f, list(v)) for f, v in zip(_FIELDS, self._v)]
            + ["param_count=%r" % self.param_count, "declared=%r" % self.declared,
               "note=%r" % self.note])


def _field(i: int) -> property:
    def get(self: LayerShapes) -> list:
        lists = self._lists
        if lists is None:
            lists = self._lists = [None] * len(_FIELDS)
        v = lists[i]
        if v is None:
            v = lists[i] = list(self._v[i])
        return v
    return property(get, doc="``%s``, a list" % _FIELDS[i])


for _i, _name in enumerate(_FIELDS):
    setattr(LayerShapes, _name, _field(_i))
del _i, _name


@dataclass
class NetShapes:
    """Shapes of a whole net.

    ``blobs`` has one entry per blob name in the order Caffe creates them
    (in-place blobs with their final shape).  Caffe's automatic split blobs
    and the anonymous tops of loss layers without tops are not listed.
    """
    blobs: Dict[str, Shape]
    layers: List[LayerShapes]

    def layer(self, name: str) -> LayerShapes:
        """The (first) layer called ``name``."""
        cached = self.__dict__.get("_index")
        if cached is None or cached[0] != len(self.layers):
            index: Dict[str, LayerShapes] = {}
            for ls in self.layers:
                index.setdefault(ls.name, ls)
            cached = self.__dict__["_index"] = (len(self.layers), index)
        index = cached[1]
        if name in index:
            return index[name]
        raise NetdslError("no layer named '%s'" % name,
                          hint=did_you_mean(name, [ls.name for ls in self.layers]))

    @property
    def param_count(self) -> int:
        """Values of every parameter blob (learned ones and statistics); a blob shared
        by name (``param { name: ... }``) counts once, as Caffe's Net::AppendParam
        makes the later owners shares of the first."""
        return self._counts()[0]

    @property
    def statistics_count(self) -> int:
        """Values of blobs that hold statistics, never learned (types whose declaration
        says ``statistics``: BatchNorm's mean, variance and factor, whose lr_mult
        batch_norm_layer.cpp fixes at 0); ``param_count`` minus this is what is learned."""
        return self._counts()[1]

    @property
    def statistics_types(self) -> List[str]:
        """The types, in net order, of the layers counted by ``statistics_count``."""
        out: List[str] = []
        holds: Dict[str, bool] = {}
        for ls in self.layers:
            if ls.param_count and _holds_statistics(ls.type, holds) and ls.type not in out:
                out.append(ls.type)
        return out

    def _counts(self) -> Tuple[int, int]:
        """(param_count, statistics_count) in one walk, kept until layers are added.
        Names share blobs only (net.cpp AppendParam runs once per blob): a layer
        without blobs takes no part."""
        cached = self.__dict__.get("_counted")
        if cached is not None and cached[0] == len(self.layers):
            return cached[1]
        total = stats = 0
        seen: set = set()
        holds: Dict[str, bool] = {}
        for ls in self.layers:
            if not ls.param_count:
                continue
            own = ls.param_count
            if ls.layer is not None and len(ls.layer.param):
                own -= _shared_values(ls, seen)
            total += own
            if _holds_statistics(ls.type, holds):
                stats += own
        self.__dict__["_counted"] = (len(self.layers), (total, stats))
        return total, stats


def _shared_values(ls: "LayerShapes", seen: set) -> int:
    """The values of ``ls``'s blobs that share (by ``param { name }``) a blob of an
    earlier layer in ``seen``; adds its own names to ``seen``."""
    shared = 0
    for j, p in enumerate(ls.layer.param[:len(ls.param_shapes)]):
        if not p.name:
            continue
        if p.name in seen:   # a share of an earlier owner's blob
            n = 1
            for d in ls.param_shapes[j]:
                n *= int(d)
            shared += n
        seen.add(p.name)
    return shared


def _holds_statistics(ltype: str, known: Dict[str, bool]) -> bool:
    """Whether a type's blobs are statistics (its declaration's ``statistics``), read
    once per type into ``known``."""
    holds = known.get(ltype)
    if holds is None:
        lt = lookup(ltype)
        holds = known[ltype] = lt is not None and bool(lt.extra.get("statistics"))
    return holds


# -- parameter shapes -----------------------------------------------------------------------

def param_shapes(layer: Message, bottom_shapes: Sequence[Sequence[int]]) -> List[Shape]:
    """The shapes of a layer's learnable blobs (``layer.blobs`` in a caffemodel), in order.

    Types without learnable blobs give ``[]``.  Raises NetdslError for a type
    netdsl has no rule for.
    """
    bottoms = [tuple(int(d) for d in s) for s in bottom_shapes]
    lt = lookup(layer.type)
    if lt is None:
        raise NetdslError("no parameter rule for layer type `%s`" % layer.type,
                          layer=layer.name or None, field="type",
                          hint=did_you_mean(layer.type, current().names()) or
                          "register the type with netdsl.plugins.register_layer(%r, ...)"
                          % layer.type)
    try:
        return lt.param_shapes(layer, bottoms)
    except NetdslError as exc:
        raise exc.located(layer=layer.name or None)


def _nparams(shapes: List[Shape]) -> int:
    return sum(count(s) for s in shapes)


# -- the walk ------------------------------------------------------------------------------

def _as_shape(value: Any, what: str) -> Shape:
    try:
        shape = tuple(value)
    except TypeError:
        raise NetdslError("%s: a shape is a sequence of ints, got %r" % (what, value)) from None
    for d in shape:
        if isinstance(d, bool) or not isinstance(d, int):
            try:
                import numpy as np
                if isinstance(d, np.integer):
                    continue
            except ImportError:  # pragma: no cover
                pass
            raise NetdslError("%s: a shape is a sequence of ints, got %r" % (what, value))
    shape = tuple(int(d) for d in shape)
    try:
        check_blob_shape(shape, what)
    except NetdslError as exc:
        raise NetdslError(exc.message) from None
    return shape


def _is_shape_list(value: Any) -> bool:
    if isinstance(value, (str, bytes)):
        return False
    try:
        items = list(value)
    except TypeError:
        return False
    return bool(items) and all(not isinstance(x, (int, str, bytes)) and hasattr(x, "__iter__")
                               for x in items)


_NONE_FIXED: Dict[int, Shape] = {}     # shared, never written: no shapes given by the caller
_NO_TOPS: List[Any] = []               # shared, never written
_ZERO_WEIGHTS = {n: (0.0,) * n for n in range(1, 9)}


def _auto_tops(lt: LayerType, layer: Message, ntop: int) -> List[str]:
    # Net::Init: a layer with AutoTopBlobs() (every LossLayer) gets anonymous tops up to
    # its required count
    if not lt.loss:
        return []
    lo, _ = _count_spec(lt.tops, layer)
    return ["(automatic)"] * max((lo or 0) - ntop, 0)


def _count_spec(spec: Any, layer: Message) -> Tuple[Optional[int], Optional[int]]:
    if callable(spec):
        spec = spec(layer)
    if spec is None:
        return None, None
    if isinstance(spec, int):
        return spec, spec
    return spec


def _check_counts(layer: Message, lt: LayerType, nb: int, nt: int) -> None:
    """layer.hpp CheckBlobCounts: Exact/Min/MaxNum{Bottom,Top}Blobs, EqualNumBottomTopBlobs;
    an AutoTopBlobs layer may have fewer tops than its minimum."""
    if lt.bottoms == nb and lt.tops == nt and not lt.equal:   # the common case: exact counts
        return
    t = layer.type
    for what, n, cs in (("bottom", nb, lt.bottoms), ("top", nt, lt.tops)):
        if cs is None:
            continue
        lo, hi = _count_spec(cs, layer)
        if lo == hi and n == lo:
            continue
        auto = what == "top" and lt.loss
        if lo is not None and lo == hi and n != lo and not (auto and n < lo):
            raise NetdslError("%s takes exactly %d %s blob%s; got %d"
                              % (t, lo, what, "" if lo == 1 else "s", n), field=what)
        if lo is not None and n < lo and not auto:
            raise NetdslError("%s takes at least %d %s blob%s; got %d"
                              % (t, lo, what, "" if lo == 1 else "s", n), field=what)
        if hi is not None and n > hi:
            raise NetdslError("%s takes at most %d %s blob%s; got %d"
                              % (t, hi, what, "" if hi == 1 else "s", n), field=what)
    if lt.equal and nb != nt:
        raise NetdslError("%s takes as many top blobs as bottom blobs; got %d bottoms, %d tops"
                          % (t, nb, nt), field="top")


def _layer_names(net: Message) -> Tuple[set, set]:
    names, tops = set(), set()
    for layer in net.layer:
        names.add(layer.name)
        tops.update(layer.top)
    tops.update(net.input)
    return names, tops


def _missing_field(exc: Exception, layer: Message, ltype: str, lname: str) -> Exception:
    """A NetdslError when ``exc`` comes from a BVLC field that the (fork) schema of
    ``layer`` lacks; else ``exc`` itself."""
    import re
    from .proto import caffe_pb2
    if layer.DESCRIPTOR.file is caffe_pb2.DESCRIPTOR:
        return exc
    text = str(exc.args[0]) if exc.args else ""
    m = re.match(r'Protocol message (\w+) has no "(\w+)" field', text)
    if m:
        message, name = m.groups()
    elif isinstance(exc, AttributeError) and re.fullmatch(r"\w+", text):
        message, name = None, text
    else:
        return exc
    known = [d for d in caffe_pb2.DESCRIPTOR.message_types_by_name.values()
             if (message is None or d.name == message) and name in d.fields_by_name]
    if not known:
        return exc
    return NetdslError("the schema has no field `%s`%s, which a %s layer needs"
                       % (name, " in %s" % message if message else "", ltype),
                       layer=lname or None, field=name)


_DECLARED: "contextvars.ContextVar[Optional[Tuple[Dict[str, Any], set]]]" = contextvars.ContextVar(
    "netdsl_declared_shapes", default=None)


@contextlib.contextmanager
def declared_shapes(declared: Optional[Mapping[str, Any]]) -> Iterator[set]:
    """Within the block, every shape inference also takes these declarations (as
    ``declared=``; the call's own win), for the layers and tops of its net that
    they name: ``--declare`` for verbs whose nets are shaped deep inside (init,
    run, pycaffe's ``caffe.Net``, build --weights).  Yields the set of the names
    some net had, filled in as nets are shaped."""
    used: set = set()
    token = _DECLARED.set((dict(declared), used) if declared else None)
    try:
        yield used
    finally:
        _DECLARED.reset(token)


def _with_context_declared(net: Message, declared: Optional[Mapping[str, Any]]
                           ) -> Optional[Mapping[str, Any]]:
    state = _DECLARED.get()
    if not state:
        return declared
    extra, used = state
    names, tops = _layer_names(net)
    merged = {k: v for k, v in extra.items() if k in names or k in tops}
    used.update(merged)
    merged.update(declared or {})
    return merged or None


def _infer(net: Message, inputs: Optional[Mapping[str, Sequence[int]]], phase, declared,
           level, stages, strict: bool) -> NetShapes:
    from .plugins import ensure_env_plugins
    ensure_env_plugins()  # custom layers' rules named in NETDSL_PLUGINS
    declared = _with_context_declared(net, declared)
    return _walk(net, inputs, phase, declared, level, stages, strict)


def _walk(net: Message, inputs: Optional[Mapping[str, Sequence[int]]], phase, declared,
          level, stages, strict: bool) -> NetShapes:
    """Caffe's Net::Init over the layers the phase includes: one step per layer, then
    the inputs and declarations no layer used."""
    if "layers" in net.DESCRIPTOR.fields_by_name and len(net.layers) and not len(net.layer):
        raise NetdslError("this is a legacy (V1) net with `layers` entries; upgrade it first "
                          "(netdsl.upgrade.upgrade_net, or `netdsl upgrade`)", field="layers")
    walk = _ShapeWalk(net, phase, level, stages, inputs, declared, strict)
    if len(net.input):
        walk.legacy_inputs()
    for layer in walk.layers:
        walk.layer(layer)
    if walk.unused():
        walk.refuse_unused()
    return NetShapes(walk.blobs, walk.out)


class _ShapeWalk:
    """The state of one shape walk and its named steps (:func:`_walk`)."""

    def __init__(self, net: Message, phase, level, stages,
                 inputs: Optional[Mapping[str, Sequence[int]]],
                 declared: Optional[Mapping[str, Any]], strict: bool) -> None:
        self.net = net
        self.state = make_state(net, phase, level, stages)
        self.layers = included_layers(net, self.state)
        self.strict = strict
        self.given: Dict[str, Shape] = {}
        for k, v in (inputs or {}).items():
            self.given[k] = _as_shape(v, "inputs['%s']" % k)
        self.decl_layer: Dict[str, Any] = {}
        self.decl_top: Dict[str, Shape] = {}
        for k, v in (declared or {}).items():
            if _is_shape_list(v):
                self.decl_layer[k] = [_as_shape(s, "declared['%s']" % k) for s in v]
            else:
                self.decl_top[k] = _as_shape(v, "declared['%s']" % k)
        self.used_inputs: set = set()
        self.used_decl: set = set()
        self.overrides = bool(self.given or self.decl_layer or self.decl_top)
        self.blobs: Dict[str, Shape] = {}
        self.producer: Dict[str, str] = {}
        self.maps = InputMaps()
        self.out: List[LayerShapes] = []
        self.registry = current()
        self.types: Dict[str, Optional[LayerType]] = {}   # the registry is fixed for the walk

    # -- blobs ------------------------------------------------------------------------

    def add_top(self, lname: str, name: str, shape: Shape, in_place: bool, fmap) -> Tuple[Any, Any]:
        """Record a top blob; its (stride, offset) on the net input."""
        if not in_place and name in self.blobs:
            raise NetdslError("top blob '%s' is produced by multiple sources (also by layer '%s'); "
                              "Caffe reuses a name only in place, as top i equal to bottom i"
                              % (name, self.producer[name]), layer=lname or None, field="top")
        self.blobs[name] = shape
        self.producer[name] = lname
        return self.maps.place(name, fmap)

    def legacy_inputs(self) -> None:
        """NetParameter input / input_shape / input_dim (upgrade_proto.cpp UpgradeNetInput)."""
        net = self.net
        names = list(net.input)
        shapes: List[Optional[Shape]] = []
        ns, nd = len(net.input_shape), len(net.input_dim)
        if ns and ns != len(names):
            raise NetdslError("%d input_shape entries for %d inputs (give one per input)"
                              % (ns, len(names)), field="input_shape")
        if not ns and nd and nd != 4 * len(names):
            raise NetdslError("%d input_dim values for %d inputs (give 4 per input)"
                              % (nd, len(names)), field="input_dim")
        for i, nm in enumerate(names):
            if nm in self.given:
                shapes.append(self.given[nm])
                self.used_inputs.add(nm)
            elif nm in self.decl_top:
                shapes.append(self.decl_top[nm])
                self.used_decl.add(nm)
            elif ns:
                shapes.append(blob_dims(net.input_shape[i]))
            elif nd:
                shapes.append(tuple(int(d) for d in net.input_dim[4 * i:4 * i + 4]))
            else:
                raise NetdslError("net input '%s' has no shape (no input_shape or input_dim)" % nm,
                                  field="input", hint="pass inputs={'%s': (N, C, H, W)}" % nm)
        placed = [self.add_top("input", nm, shapes[i], False, IDENTITY)
                  for i, nm in enumerate(names)]
        self.out.append(LayerShapes("input", "Input", (), names, (), shapes, (), 0,
                                    [0.0] * len(names), [so[0] for so in placed],
                                    [so[1] for so in placed], [False] * len(names)))

    def refuse_unknown_bottom(self, layer: Message, bnames: List[str]) -> NoReturn:
        """A bottom no earlier layer makes, named, with the layer the phase's
        include/exclude rules leave out when one makes it."""
        blobs = self.blobs
        bi = next(i for i, b in enumerate(bnames) if b not in blobs)
        hint = did_you_mean(bnames[bi], blobs)
        left_out = [lp.name for lp in self.net.layer if bnames[bi] in lp.top
                    and lp not in self.layers and (lp.include or lp.exclude)]
        if left_out:   # made by a layer the phase's include/exclude rules leave out
            hint = ("layer '%s' makes it, but its include/exclude rules leave it out of "
                    "this phase (%s); give the phase that includes it (--phase)"
                    % (left_out[0], "TRAIN" if self.state.phase == 0 else "TEST"))
        raise NetdslError("unknown bottom blob '%s' (bottom %d): no earlier layer produces "
                          "it" % (bnames[bi], bi), layer=layer.name or None, field="bottom",
                          hint=hint) from None

    def type_of(self, ltype: str) -> Optional[LayerType]:
        lt = self.types.get(ltype, self.types)
        if lt is self.types:
            lt = self.types[ltype] = self.registry.get(ltype)
        return lt

    # -- one layer --------------------------------------------------------------------

    def layer(self, layer: Message) -> None:
        """One layer: its bottoms, tops, learnable blobs, checks, loss weights and maps."""
        lname, ltype = layer.name, layer.type
        bnames = list(layer.bottom)
        tnames = list(layer.top)
        try:
            bshapes = [self.blobs[b] for b in bnames]
        except KeyError:
            self.refuse_unknown_bottom(layer, bnames)
        lt = self.types.get(ltype, self.types)
        if lt is self.types:
            lt = self.type_of(ltype)
        try:
            fixed, is_declared = (self.fixed_tops(lname, bnames, tnames) if self.overrides
                                  else (_NONE_FIXED, False))
            tnames, tshapes, auto, geo, note = self.top_shapes(layer, lt, bnames, tnames, bshapes,
                                                               fixed)
            pshapes = _param_shapes_of(layer, lt, bshapes, geo)
            if len(layer.propagate_down):
                _check_propagate_down(layer, bnames)
            nall = len(tnames) + len(auto)
            weights = (_loss_weights(layer, lt, nall) if lt is not None and lt.loss
                       or len(layer.loss_weight) else _NO_TOPS)
        except NetdslError as exc:
            raise exc.located(layer=lname or None)
        except (AttributeError, ValueError) as exc:  # a fork schema lacking a BVLC field
            raise _missing_field(exc, layer, ltype, lname)
        fm = self.maps.top_map(layer, lt, bnames, bshapes, geo, is_declared)
        tnames, strides, offsets, inplace = self.place_tops(lname, bnames, tnames, tshapes, auto,
                                                            fm)
        ls = LayerShapes(lname, ltype, bnames, tnames, bshapes, tshapes, pshapes,
                         _nparams(pshapes) if pshapes else 0,
                         weights or _ZERO_WEIGHTS.get(nall) or (0.0,) * nall,
                         strides, offsets, inplace, is_declared, note, layer)
        if self.strict:
            _check_nonempty(lname, layer, tnames, tshapes, bshapes)
        self.out.append(ls)

    def fixed_tops(self, lname: str, bnames: List[str], tnames: List[str]
                   ) -> Tuple[Dict[int, Shape], bool]:
        """Shapes given by the caller: inputs for bottomless layers, declarations anywhere
        (top index -> shape), and whether a declaration gave any."""
        fixed: Dict[int, Shape] = {}
        is_declared = False
        ntop = len(tnames)
        if lname in self.decl_layer:
            ds = self.decl_layer[lname]
            self.used_decl.add(lname)
            if len(ds) != ntop:
                raise NetdslError("declared %d shapes for a layer with %d tops"
                                  % (len(ds), ntop), field="top")
            fixed.update(enumerate(ds))
            is_declared = True
        elif lname in self.decl_top and lname not in tnames:
            if ntop != 1:
                raise NetdslError("declared one shape for a layer with %d tops (give a list "
                                  "of %d shapes, or declare each top by name)" % (ntop, ntop),
                                  field="top")
            fixed[0] = self.decl_top[lname]
            self.used_decl.add(lname)
            is_declared = True
        for i, t in enumerate(tnames):
            if not bnames and t in self.given:
                fixed[i] = self.given[t]
                self.used_inputs.add(t)
            elif t in self.decl_top:
                fixed[i] = self.decl_top[t]
                self.used_decl.add(t)
                is_declared = True
        return fixed, is_declared

    def top_shapes(self, layer: Message, lt: Optional[LayerType], bnames: List[str],
                   tnames: List[str], bshapes: List[Shape], fixed: Dict[int, Shape]):
        """The shape rule: (top names, top shapes, a loss layer's automatic tops, the
        parsed geometry, the rule's note), after the counts and in-place checks."""
        ntop = len(tnames)
        geo = note = None
        auto: List[str] = _NO_TOPS
        if len(fixed) == ntop and (ntop or lt is None or lt.opaque):
            tshapes = [fixed[i] for i in range(ntop)]
        else:
            if lt is None or lt.shape is None:
                _refuse_unknown_type(layer, tnames, fixed)
            _check_counts(layer, lt, len(bnames), ntop)
            if not lt.in_place:
                _check_not_in_place(layer, bnames, tnames)
            if lt.loss:
                auto = _auto_tops(lt, layer, ntop)
            try:
                if lt.geometry is not None:
                    geo = lt.geometry(layer, bshapes[0] if bshapes else None)
                    tshapes = lt.shape(layer, bshapes, ntop + len(auto), geo)
                else:
                    tshapes = lt.shape(layer, bshapes, ntop + len(auto))
            except NetdslError as exc:
                if bnames or auto:
                    raise
                tnames, tshapes = _data_tops_given(exc, layer, fixed, self.layers)
                fixed = {}
            note = getattr(tshapes, "note", None)
            if fixed:
                tshapes = list(tshapes)
                for i, s in fixed.items():
                    tshapes[i] = s
        for s in tshapes:
            check_blob_shape(s, "top")
        return tnames, tshapes, auto, geo, note

    def place_tops(self, lname: str, bnames: List[str], tnames: List[str],
                   tshapes: List[Shape], auto: List[str], fm):
        """Record the tops; (all top names, strides, offsets, in-place flags)."""
        nb = len(bnames)
        if len(tnames) == 1 and not auto:    # the common case
            ip = nb > 0 and tnames[0] == bnames[0]
            so = self.add_top(lname, tnames[0], tshapes[0], ip, fm)
            return tnames, (so[0],), (so[1],), (ip,)
        inplace = [i < nb and t == bnames[i] for i, t in enumerate(tnames)]
        placed = [self.add_top(lname, t, tshapes[i], inplace[i], fm)
                  for i, t in enumerate(tnames)]
        if auto:
            tnames = tnames + auto
            placed += [(None, None)] * len(auto)
            inplace += [False] * len(auto)
        return tnames, [so[0] for so in placed], [so[1] for so in placed], inplace

    # -- after the last layer ---------------------------------------------------------

    def unused(self) -> bool:
        return bool(self.given.keys() - self.used_inputs
                    or (self.decl_layer.keys() | self.decl_top.keys()) - self.used_decl)

    def refuse_unused(self) -> None:
        """An input or declaration that names nothing of the net (a top of a layer this
        phase leaves out is fine)."""
        names, tops = _layer_names(self.net)
        input_names = [t for ls in self.out if not ls.bottoms for t in ls.tops]
        for k in self.given.keys() - self.used_inputs:
            if k in tops and k not in self.blobs:
                continue   # a top of a layer this phase leaves out
            raise NetdslError("no net input named '%s'%s" % (
                k, " ('%s' is computed by layer '%s'; use declared= to override it)"
                % (k, self.producer[k]) if k in self.producer else ""), field="inputs",
                hint=did_you_mean(k, input_names))
        for k in (self.decl_layer.keys() | self.decl_top.keys()) - self.used_decl:
            if (k in names or k in tops) and k not in self.blobs:
                continue
            raise NetdslError("declared shape for '%s', which is neither a layer nor a top of this "
                              "net" % k, field="declared",
                              hint=did_you_mean(k, list(names) + list(tops)))


def _refuse_unknown_type(layer: Message, tnames: List[str], fixed: Dict[int, Shape]) -> None:
    """A type with no shape rule whose tops were not all given."""
    ltype = layer.type
    missing = [t for i, t in enumerate(tnames) if i not in fixed]
    close = did_you_mean(ltype, current().names())
    raise NetdslError(
        "no shape rule for layer type `%s` (not a BVLC layer type), so the shapes "
        "of %s are unknown" % (ltype, ", ".join("'%s'" % m for m in missing)),
        field="type",
        hint=(close + "; otherwise " if close else "") + declare_hint(layer)
        + " (`--declare TOP=N,C,H,W` on the command line), or give the type "
        "rules: `custom_layers:` in a spec, a plugin (`--plugin`, "
        "netdsl.plugins.register_layer(%r, ...))" % ltype)


def _check_not_in_place(layer: Message, bnames: List[str], tnames: List[str]) -> None:
    """A type whose Reshape CHECKs its top is not its bottom (Caffe's in-place refusals)."""
    for i, t in enumerate(tnames):
        if i < len(bnames) and t == bnames[i]:
            raise NetdslError("%s Layer does not allow in-place computation "
                              "(top '%s' is its bottom)" % (layer.type, t), field="top")


def _param_shapes_of(layer: Message, lt: Optional[LayerType], bshapes: List[Shape],
                     geo: Any) -> List[Shape]:
    """The learnable blobs' shapes; more ``param`` entries than blobs is Caffe's
    "Too many params specified for layer" (net.cpp AppendParam)."""
    pshapes: List[Shape] = _NO_TOPS
    nparam = len(layer.param)
    if lt is not None and lt.params is not None:
        if geo is not None:
            pshapes = lt.params(layer, bshapes, geo)
        else:
            pshapes = lt.param_shapes(layer, bshapes)
        if nparam > len(pshapes):
            raise NetdslError("Too many params specified for layer: %d param entries, "
                              "%d learnable blobs" % (nparam, len(pshapes)), field="param")
    elif nparam and lt is not None and not lt.opaque:
        raise NetdslError("Too many params specified for layer: %d param entries, %s has "
                          "no learnable blobs" % (nparam, layer.type), field="param")
    return pshapes


def _check_propagate_down(layer: Message, bnames: List[str]) -> None:
    """net.cpp Init: propagate_down is given for no bottom or for every one."""
    npd = len(layer.propagate_down)
    if npd and npd != len(bnames):
        raise NetdslError("propagate_down param must be specified either 0 or bottom_size "
                          "times (%d given, %d bottoms)" % (npd, len(bnames)),
                          field="propagate_down")


def _loss_weights(layer: Message, lt: Optional[LayerType], nall: int) -> List[float]:
    """A layer's loss weights (layer.hpp SetLossWeights; a loss layer's default is a
    single 1, loss_layer.cpp LayerSetUp), checked against its ``nall`` tops (automatic
    ones too)."""
    is_loss = lt is not None and lt.loss
    lw = layer.loss_weight
    weights = [float(w) for w in lw] if len(lw) else _NO_TOPS
    if is_loss and not weights:
        weights = [1.0]   # loss_layer.cpp LayerSetUp
    if weights and len(weights) != nall:
        raise NetdslError("loss_weight must be unspecified or specified once per top blob "
                          "(%d loss_weight values for %d tops%s)"
                          % (len(weights), nall, "; Caffe gives loss layers a single "
                             "loss_weight 1 when none is set" if is_loss and
                             not len(layer.loss_weight) else ""),
                          field="loss_weight")
    return weights


def _data_tops_given(exc: NetdslError, layer: Message, fixed: Dict[int, Shape],
                     layers: Sequence[Message]) -> Tuple[List[str], List[Shape]]:
    """A data layer its type's rule cannot shape (its size comes from its files), given
    ``fixed`` tops as inputs: the tops that feed no layer of the phase are left out,
    unshaped, as nothing in the phase can tell their shape; a top a layer reads and no
    input gives is an error naming that top and the flag that gives it."""
    tops = list(layer.top)
    readers: Dict[str, str] = {}
    for lp in layers:
        for b in lp.bottom:
            readers.setdefault(b, lp.name)
    needed = [t for i, t in enumerate(tops) if i not in fixed and t in readers]
    if not fixed and getattr(exc, "declare_tops", None):
        raise exc     # its hint names both ways (declared= or inputs=)
    if needed or not fixed:
        flags = " ".join("--input %s=N,C,H,W" % t for t in (needed or tops))
        which = needed or tops
        read = ("; '%s' feeds layer '%s'" % (which[0], readers[which[0]])
                if fixed else "")
        raise NetdslError("%s%s" % (exc.message, read), field=exc.field,
                          hint="give the shape of %s: %s (from Python: inputs={'%s': (N, C, H, "
                               "W)})%s" % (", ".join("'%s'" % t for t in which), flags,
                                           which[0], "; tops that feed nothing in this phase "
                                           "can be left out" if len(which) < len(tops) else ""))
    left = [t for i, t in enumerate(tops) if i not in fixed]
    kept = [i for i in range(len(tops)) if i in fixed]
    return [tops[i] for i in kept], Noted(
        [fixed[i] for i in kept], "%s: not shaped, feed%s nothing in this phase" % (
            ", ".join("'%s'" % t for t in left), "s" if len(left) == 1 else ""))


def _check_nonempty(name: str, layer: Message, tops: Sequence[str], top_shapes: Sequence[Shape],
                    bottom_shapes: List[Shape]) -> None:
    for t, s in zip(tops, top_shapes):
        if 0 in s:
            axis = s.index(0)
            lt = lookup(layer.type)
            raise NetdslError("output size below 1: top '%s' is %s, empty on axis %d%s"
                              % (t, shape_str(s), axis, _explain_size(lt, layer, bottom_shapes,
                                                                      axis)),
                              layer=name or None, field=lt.size_field if lt else None)


def _explain_size(lt: Optional[LayerType], layer: Message, bottoms: List[Shape], axis: int) -> str:
    """The type's own account of an empty output (its size formula), else the input shape."""
    if lt is not None and lt.empty_hint is not None and bottoms:
        try:
            return lt.empty_hint(layer, bottoms, axis, lt.parse(layer, bottoms[0]))
        except NetdslError:
            pass
    if bottoms:
        return " (input %s)" % shape_str(bottoms[0])
    return ""


def infer_shapes(net: Message, inputs: Optional[Mapping[str, Sequence[int]]] = None, *,
                 phase=None, declared: Optional[Mapping[str, Any]] = None,
                 level: Optional[int] = None, stages: Optional[Iterable[str]] = None) -> NetShapes:
    """Every blob's and layer's shapes as Caffe's Net set-up computes them.

    The net is first filtered as Caffe's Net does (netdsl.netstate): with
    ``phase``/``level``/``stages`` when given, else with ``net.state`` (TEST
    unless set), so an already filtered net is left as it is.  Input shapes
    come from Input and DummyData layers, data layers whose parameters fix
    them, the legacy ``input``/``input_shape``/``input_dim`` fields, or
    ``inputs`` (top name -> shape), which overrides them.  ``declared`` maps
    a layer name (to a list of shapes, one per top) or a top name (to one
    shape) for layers Caffe cannot shape statically (Python, HDF5Data, fork
    types); it overrides the computed shapes.
    """
    return _infer(net, inputs, phase, declared, level, stages, strict=False)


def check_net(net: Message, inputs: Optional[Mapping[str, Sequence[int]]] = None, *,
              phase=None, declared: Optional[Mapping[str, Any]] = None,
              level: Optional[int] = None, stages: Optional[Iterable[str]] = None) -> NetShapes:
    """:func:`infer_shapes`, and also reject empty blobs (an output size below 1).

    Everything Caffe CHECKs while setting a net up (crop bounds, Eltwise and
    Concat shapes, group divisibility, Reshape counts, ...) raises in both;
    Caffe accepts a zero-sized top, this does not.
    """
    return _infer(net, inputs, phase, declared, level, stages, strict=True)


_MOVED = {"SHAPE_RULES": "shape", "PARAM_RULES": "params", "BLOB_COUNTS": "bottoms/.tops",
          "rule": "shape", "param_rule": "params", "conv_geometry": "geometry"}


def __getattr__(name: str) -> Any:
    if name in ("format_table", "to_json"):   # the shapes table lives in netdsl.shape_table
        from . import shape_table
        return getattr(shape_table, name)
    if name in _MOVED:   # the per-type tables of netdsl 0.1 are one registry now
        raise NetdslError("netdsl.shapes.%s is gone: every layer type's rules live in one "
                          "LayerType in netdsl.layers" % name,
                          hint="read a rule with netdsl.layers.lookup(TYPE).%s; declare a type "
                               "with netdsl.plugins.register_layer(TYPE, ...) (see "
                               "docs/custom-layers.md)" % _MOVED[name])
    raise AttributeError("module 'netdsl.shapes' has no attribute %r" % name)
