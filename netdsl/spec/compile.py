"""Layer records to a NetParameter, through the NetSpec builder.

Each record becomes ``n.<top> = L.<Type>(*bottoms, **params)`` -- the call a
pycaffe script makes -- so naming, order and parameter routing are the
builder's (pycaffe's) and the prototxt equals the one the same net written as
a script gives.  Names are checked here first, so a wrong bottom, a duplicate
top or a cycle is reported at the spec line that caused it; errors the builder
raises later (unknown fields, wrong value types) are mapped back to the field's
line and column.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Dict, List, Optional, Tuple

from google.protobuf.message import Message

from ..errors import NetdslError, did_you_mean
from ..ops import Record
from .load import MappingNode, Node, SequenceNode, chain_error, pairs, where

# layer types that read no bottoms (sources): they never take the previous top
SOURCE_TYPES = frozenset(("Data", "ImageData", "WindowData", "MemoryData", "HDF5Data",
                          "DummyData", "Input", "Parameter"))
INPUT_LAYER = "input"


class Compiled:
    """A phase's net and what the spec knows about its layers."""

    def __init__(self, net: Message, layers: Dict[str, Record], surgery: Dict[str, List[str]],
                 inputs: Dict[str, List[int]],
                 declared: Optional[Dict[str, List[int]]] = None) -> None:
        self.net = net
        self.layers = layers        # layer name -> record (for locating errors)
        self.surgery = surgery      # {"interp": [...], "nearest": [...]}
        self.inputs = inputs        # input shapes that apply to this net's source layers
        self.declared = declared or {}   # `inputs` naming tops of other layers (Python, custom)


def _loc(rec: Record, field: Optional[str] = None) -> Node:
    if field and field in rec.field_nodes:
        return rec.field_nodes[field]
    return rec.node


def locate(err: NetdslError, rec: Record) -> NetdslError:
    """Point ``err`` (raised by the builder, shapes or coord_map) at the record's spec node:
    the field's key for an unknown field, its value for a wrong value, else the layer."""
    node = None
    if err.field:
        hit = find_field(rec, err.field)
        if hit is not None:
            node = hit[0] if err.message.startswith("unknown") else hit[1]
    if node is None:
        node = rec.node
    if getattr(err, "chained", False):   # already at the user's line, with its chain
        return err
    if node is not None:
        f, line, col = where(node)
        err.file, err.line, err.column = f, line, col
    return chain_error(err, rec.trace)


def find_field(rec: Record, field: str) -> Optional[Tuple[Node, Node]]:
    """(key node, value node) of key ``field`` in the record's item, breadth-first."""
    if not isinstance(rec.node, MappingNode):
        return None
    queue: List[Node] = [rec.node]
    i = 0
    while i < len(queue):
        n = queue[i]
        i += 1
        if isinstance(n, MappingNode):
            for k, kn, vn in pairs(n):
                if k == field:
                    return kn, vn
                queue.append(vn)
        elif isinstance(n, SequenceNode):
            queue.extend(n.value)
    return None


def _error(rec: Record, message: str, field: Optional[str] = None,
           hint: Optional[str] = None, layer: Optional[str] = None) -> NetdslError:
    node = _loc(rec, field)
    f, line, col = where(node) if node is not None else (None, None, None)
    err = NetdslError(message, file=f, line=line, column=col, hint=hint, field=field,
                      layer=layer)
    return chain_error(err, rec.trace)


def _where_text(rec: Record) -> str:
    if rec.node is None:
        return "the net's inputs"
    return "%s:%d:%d" % where(rec.node)


_CODES: Dict[str, Any] = {}


def _mark(out: Any, rec: Record, name: Optional[str] = None,
          tops: Optional[List[str]] = None) -> None:
    """Make the builder's layer remember its spec file and line (not this module's):
    messages that name layers by where they were made (coordinate maps, the builder's
    own errors) then point into the spec."""
    if rec.node is None:
        return
    fn = out[0].fn if isinstance(out, tuple) and out else getattr(out, "fn", out)
    if name:
        try:
            fn.labels = (name, list(tops or ()))   # crop messages name layers, blobs
        except AttributeError:  # pragma: no cover - not a NetSpec Function
            pass
    f, line, _ = where(rec.node)
    code = _CODES.get(f)
    if code is None:
        code = _CODES[f] = compile("", f, "exec")
    try:
        fn._code, fn._line = code, line
    except AttributeError:  # pragma: no cover - a builder without source locations
        pass


def compile_records(records: List[Record], inputs: Dict[str, List[int]],
                    phase: str = "", input_node: Optional[Node] = None) -> Compiled:
    """A NetParameter of ``records`` built with the NetSpec builder: the names first
    (which declared inputs the phase reads, which names are given), then the Input
    layer netdsl adds for those inputs, then one builder call per record."""
    c = _Compiler(records, inputs)
    c.scan()
    c.add_inputs(input_node)
    for idx, rec in enumerate(records):
        c.add_layer(idx, rec)
    return c.finish()


class _Compiler:
    """The state of one :func:`compile_records`: the NetSpec, each blob's builder top,
    who made it, the layer names taken so far."""

    def __init__(self, records: List[Record], inputs: Dict[str, List[int]]) -> None:
        from .. import netspec
        from ..fork import lacks_input_layer
        self.records, self.inputs = records, inputs
        self.L = netspec.layers
        self.n = netspec.NetSpec()
        self.legacy = lacks_input_layer(netspec.current_schema())   # older than Input
        self.needed: List[str] = []          # declared inputs read before being produced
        self.given_names: Dict[str, Record] = {}
        self.later: Dict[str, int] = {}      # name -> index of the record that makes it
        self.first_bottom_default: Optional[str] = None
        self.blobs: Dict[str, Any] = {}      # blob name (or in-place layer name) -> Top
        self.blob_name: Dict[Any, str] = {}  # Top -> its blob name
        self.owner: Dict[str, Record] = {}   # blob name -> record that made it
        self.layer_names: Dict[str, Record] = {}
        self.records_by_name: Dict[str, Record] = {}
        self.surgery: Dict[str, List[str]] = {"interp": [], "nearest": []}
        self.autonames: Counter = Counter()
        self.phase_inputs: Dict[str, List[int]] = {}
        self.sources: set = set()            # tops of layers without bottoms
        self.prev = None                     # the previous layer's first top

    def scan(self) -> None:
        """Pass 1: which declared inputs this phase reads without producing them, and
        the names given explicitly (automatic names must not collide with them)."""
        inputs, needed, produced = self.inputs, self.needed, set()
        for idx, rec in enumerate(self.records):
            if rec.bottoms is None and not produced and not _is_source(rec, inputs) and inputs:
                self.first_bottom_default = next(iter(inputs))
                if self.first_bottom_default not in needed:
                    needed.append(self.first_bottom_default)
            for b in list(rec.bottoms or ()) + ([rec.reference] if rec.reference else []):
                if b not in produced and b in inputs and b not in needed:
                    needed.append(b)
            for t in rec.tops or ():
                produced.add(t)
                self.given_names.setdefault(t, rec)
                self.later.setdefault(t, idx)
            if rec.name:
                produced.add(rec.name)
                self.given_names.setdefault(rec.name, rec)
            if rec.in_place and rec.name:
                self.later.setdefault(rec.name, idx)
        needed.sort(key=list(inputs).index)

    def add_inputs(self, input_node: Optional[Node]) -> None:
        """The Input layer netdsl adds for the declared inputs the phase reads."""
        needed, inputs = self.needed, self.inputs
        if not needed:
            return
        shapes = [{"dim": list(inputs[k])} for k in needed]
        kw: Dict[str, Any] = {} if self.legacy else {"shape": shapes if len(shapes) > 1
                                                     else shapes[0]}
        if len(needed) > 1:
            kw["ntop"] = len(needed)
        if needed[0] != INPUT_LAYER:
            kw["name"] = INPUT_LAYER
        out = self.L.Input(**kw)
        if input_node is not None:
            _mark(out, Record("Input", node=input_node), kw.get("name", INPUT_LAYER), needed)
        tops = out if isinstance(out, tuple) else (out,)
        for k, t in zip(needed, tops):
            self.n[k] = t
            self.blobs[k] = t
            self.blob_name[t] = k
            self.phase_inputs[k] = list(inputs[k])
        self.layer_names[INPUT_LAYER] = Record("Input", name=INPUT_LAYER)
        if INPUT_LAYER in self.given_names:
            rec = self.given_names[INPUT_LAYER]
            raise _error(rec, "the name `%s` is taken by the Input layer netdsl adds for %s"
                         % (INPUT_LAYER, ", ".join(needed)), field="name",
                         hint="rename this layer")

    def add_layer(self, idx: int, rec: Record) -> None:
        """One record: its bottoms, in-place or not, its names, the builder call, its tops."""
        btops = self.bottoms(idx, rec)
        bnames = [self.blob_name[t] for t in btops]
        ref_top = None
        if rec.reference is not None:
            ref_top = _resolve(rec.reference, rec, idx, self.records, self.blobs, self.later,
                               "reference")
        in_place = _is_in_place(rec, btops, bnames)
        kwargs = dict(rec.params)
        if in_place:
            name, key, tops = self.in_place_names(rec, kwargs)
        else:
            name, key, tops = self.top_names(rec, bnames, kwargs)
        self.take_name(rec, name)
        out = self.call(rec, btops, ref_top, kwargs, name)
        _mark(out, rec, name, [key] if in_place else tops)
        self.store(rec, out, key, tops, bnames if in_place else None)
        if not btops:
            self.sources.update(tops)
        if rec.surgery:
            self.surgery[rec.surgery].append(name)

    def bottoms(self, idx: int, rec: Record) -> List[Any]:
        """The builder tops of ``rec``'s bottoms: given, or by default the previous
        layer's first top (or the first declared input); none for a source."""
        if rec.bottoms is not None:
            return [_resolve(b, rec, idx, self.records, self.blobs, self.later, "bottom")
                    for b in rec.bottoms]
        if _is_source(rec, self.inputs):
            return []
        if self.prev is not None:
            return [self.prev]
        if self.first_bottom_default is not None and self.first_bottom_default in self.blobs:
            return [self.blobs[self.first_bottom_default]]
        return []

    def in_place_names(self, rec: Record, kwargs: Dict[str, Any]):
        """(layer name, key, tops) of an in-place layer: it needs a name of its own."""
        name = rec.name
        if name is None:
            name = _autoname(rec, self.autonames, self.given_names)
        key = name
        if key in self.blobs or key in self.n:
            other = self.owner.get(key)
            raise _error(rec, "in-place layer `%s` has the name of blob `%s`%s; an in-place "
                         "layer needs a name of its own"
                         % (key, key, " (made by the layer at %s)" % _where_text(other)
                            if other else ""),
                         hint="e.g. `relu_%s`" % key if rec.type == "ReLU" else None)
        kwargs["in_place"] = True
        return name, key, []

    def top_names(self, rec: Record, bnames: List[str], kwargs: Dict[str, Any]):
        """(layer name, key, tops) of a layer writing new blobs: each top new."""
        ntop = rec.ntop if rec.ntop is not None else (len(rec.tops) if rec.tops else 1)
        if rec.tops is not None and rec.ntop is not None and rec.ntop != len(rec.tops):
            raise _error(rec, "ntop is %d but %d tops are named" % (rec.ntop, len(rec.tops)),
                         field="ntop")
        if rec.tops:
            tops = list(rec.tops)
        else:
            tops = [_autoname(rec, self.autonames, self.given_names) for _ in range(ntop)]
        self.check_new_tops(rec, tops, bnames)
        if ntop != 1:
            kwargs["ntop"] = ntop
        name = rec.name
        if ntop == 0:
            key = name = name or _autoname(rec, self.autonames, self.given_names)
        else:
            key = tops[0]
            if name is None:
                name = key
        if name != key:
            kwargs["name"] = name
        return name, key, tops

    def check_new_tops(self, rec: Record, tops: List[str], bnames: List[str]) -> None:
        seen = set()
        for t in tops:
            if t in seen:
                raise _error(rec, "top `%s` is listed twice" % t, field="top")
            seen.add(t)
            if t in self.blobs or t in self.n:
                other = self.owner.get(t)
                raise _error(rec, "duplicate top `%s`: %s already produces it; only an "
                             "in-place layer (top equal to its bottom) may write a blob "
                             "again" % (t, "the layer at %s" % _where_text(other)
                                        if other else "the net's inputs"),
                             field="top", hint=(
                                 "for an in-place layer write `in_place: true`"
                                 if rec.bottoms is None and t in bnames
                                 else "give this top another name"))

    def take_name(self, rec: Record, name: str) -> None:
        if name in self.layer_names:
            other = self.layer_names[name]
            raise _error(rec, "duplicate layer name `%s` (also the layer at %s)"
                         % (name, _where_text(other)), field="name" if rec.name else "top",
                         layer=None)
        self.layer_names[name] = rec
        self.records_by_name[name] = rec

    def call(self, rec: Record, btops: List[Any], ref_top: Any, kwargs: Dict[str, Any],
             name: str) -> Any:
        """The builder call ``L.<Type>(*bottoms, **params)``; its errors located."""
        try:
            if rec.type == "Crop" and rec.reference is not None:
                return _crop(rec, btops, ref_top, kwargs)
            return getattr(self.L, rec.type)(*btops, **kwargs)
        except NetdslError as exc:
            if rec.type == "Crop" and exc.layer is None and _out_of_range(exc):
                try:  # the value is in a layer the crop reaches back to: name that one
                    self.n.to_proto()
                except NetdslError as real:
                    if real.layer in self.records_by_name:
                        raise locate(real, self.records_by_name[real.layer])
            exc.layer = exc.layer or name
            raise locate(exc, rec)

    def store(self, rec: Record, out: Any, key: str, tops: List[str],
              in_place_bottoms: Optional[List[str]]) -> None:
        """The builder's result under its blob names (an in-place layer's under its
        bottoms' names too)."""
        n, blobs, blob_name, owner = self.n, self.blobs, self.blob_name, self.owner
        if in_place_bottoms is not None:
            n[key] = out
            for b in in_place_bottoms:
                blobs[b] = out
            blob_name[out] = in_place_bottoms[0]
            blobs[key] = out
            owner.setdefault(key, rec)
            self.prev = out
        elif isinstance(out, tuple):
            for t, tname in zip(out, tops):
                n[tname] = t
                blobs[tname] = t
                blob_name[t] = tname
                owner[tname] = rec
            self.prev = out[0] if out else self.prev
        elif hasattr(out, "fn") and hasattr(out, "n"):   # one Top
            n[key] = out
            blobs[key] = out
            blob_name[out] = key
            owner[key] = rec
            self.prev = out
        else:   # ntop 0: the layer itself
            n[key] = out

    def finish(self) -> Compiled:
        """The NetParameter, and which ``inputs`` feed source layers or name the tops
        of other layers (declared)."""
        try:
            net = self.n.to_proto()
        except NetdslError as exc:
            rec = self.records_by_name.get(exc.layer or "")
            if rec is None:
                raise
            raise locate(exc, rec)
        if self.legacy and self.needed:
            from ..fork import to_legacy_inputs
            to_legacy_inputs(net, INPUT_LAYER, self.inputs)
        declared: Dict[str, List[int]] = {}
        for k, shape in self.inputs.items():
            if k in self.sources:
                self.phase_inputs.setdefault(k, list(shape))
            elif k in self.owner:
                declared[k] = list(shape)
        return Compiled(net, self.layer_names, self.surgery, self.phase_inputs, declared)


def _is_in_place(rec: Record, btops: List[Any], bnames: List[str]) -> bool:
    """Whether ``rec`` writes its bottoms: ``in_place: true``, or tops equal to the
    bottoms given with ``bottom:`` (a default bottom is not enough: reusing the
    previous top's name by accident is a duplicate top)."""
    in_place = rec.in_place
    if not in_place and rec.tops and rec.bottoms and any(t in bnames for t in rec.tops):
        if rec.tops == bnames:
            in_place = True
        else:
            t = next(t for t in rec.tops if t in bnames)
            raise _error(rec, "top `%s` is also a bottom, but the tops (%s) are not the "
                         "bottoms (%s): an in-place layer writes all its bottoms"
                         % (t, ", ".join(rec.tops), ", ".join(bnames)), field="top")
    if in_place and not btops:
        raise _error(rec, "an in-place layer needs a bottom", field="in_place")
    return bool(in_place)


def _is_source(rec: Record, inputs: Dict[str, List[int]]) -> bool:
    # a source type, or a layer that makes a declared input: it takes no default bottom
    return rec.type in SOURCE_TYPES or any(t in inputs for t in rec.tops or ())


def _autoname(rec: Record, autonames: Counter, given: Dict[str, Record]) -> str:
    # pycaffe's automatic name: <Type><k>, k counting per type in emission order
    autonames[rec.type] += 1
    name = "%s%d" % (rec.type, autonames[rec.type])
    if name in given:
        raise _error(rec, "this unnamed layer's automatic name `%s` is also given to the layer "
                     "at %s" % (name, _where_text(given[name])), hint="name this layer")
    return name


def _resolve(b: str, rec: Record, idx: int, records: List[Record], blobs: Dict[str, Any],
             later: Dict[str, int], field: str):
    top = blobs.get(b)
    if top is not None:
        return top
    j = later.get(b)
    if j is not None and j > idx:
        producer = records[j]
        if _depends(producer, rec, records, later, idx):
            raise _error(rec, "cycle: `%s` is made by the layer at %s, which (through its "
                         "bottoms) needs this layer's output" % (b, _where_text(producer)),
                         field=field)
        raise _error(rec, "bottom `%s` is produced only later (by the layer at %s); layers run "
                     "in the order listed" % (b, _where_text(producer)), field=field,
                     hint="move this layer after it")
    raise _error(rec, "undefined %s `%s`: no earlier layer produces it" % (field, b),
                 field=field, hint=did_you_mean(b, list(blobs)))


def _depends(producer: Record, rec: Record, records: List[Record], later: Dict[str, int],
             idx: int) -> bool:
    """Whether ``producer`` reaches back to ``rec``'s tops through later layers' bottoms."""
    mine = set(rec.tops or ()) | ({rec.name} if rec.name else set())
    seen = set()
    queue = [producer]
    steps = 0
    while queue and steps < 100000:
        steps += 1
        r = queue.pop()
        if id(r) in seen:
            continue
        seen.add(id(r))
        for b in (r.bottoms or ()):
            if b in mine:
                return True
            j = later.get(b)
            if j is not None and j > idx:
                queue.append(records[j])
    return False


def _out_of_range(exc: NetdslError) -> bool:
    return exc.field is not None and " is out of range (" in exc.message


def _same_size(a: Any, b: Any) -> bool:
    """Whether two builder tops have the same spatial size (False when they cannot be
    shaped on their own)."""
    from ..shapes import infer_shapes
    sizes = []
    for top in (a, b):
        try:
            net = top.to_proto()
            sizes.append(infer_shapes(net).blobs[net.layer[-1].top[top.n]][2:])
        except (NetdslError, AttributeError, IndexError, KeyError):
            return False
    return sizes[0] == sizes[1]


def _crop(rec: Record, btops: List[Any], ref_top: Any, kwargs: Dict[str, Any]):
    from .. import layers as L
    if len(btops) != 1:
        raise _error(rec, "a crop has one bottom (the blob to crop)", field="bottom")
    if rec.offset is None:
        from ..compat.coord_map import crop
        try:
            auto = crop(btops[0], ref_top, lambda: _same_size(btops[0], ref_top))
        except NetdslError as exc:
            if _out_of_range(exc):
                raise  # a bad value in an earlier layer: reported where it is written
            raise _error(rec, "cannot compute the crop offset: %s" % exc.message,
                         field="reference", hint=exc.hint)
        cp = dict(auto.fn.params["crop_param"])
        if rec.axis is not None and rec.axis != cp["axis"]:
            raise _error(rec, "the coordinate maps give axis %d, not %d" % (cp["axis"], rec.axis),
                         field="axis", hint="drop `axis`, or give `offset` too")
    else:
        cp = {"axis": rec.axis if rec.axis is not None else 2, "offset": list(rec.offset)}
    params = dict(kwargs)
    params["crop_param"] = cp
    return L.Crop(btops[0], ref_top, **params)
