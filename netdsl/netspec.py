"""A drop-in for pycaffe's ``caffe.net_spec``: ``NetSpec``, ``layers``, ``params``, ``to_proto``.

The rules are pycaffe's (python/caffe/net_spec.py), so the same script gives
the same NetParameter and, through protobuf's text format, the same prototxt
bytes:

* a top is named by the NetSpec attribute it is assigned to; an unnamed top
  gets ``<Type><k>``, ``k`` counting per type in the order layers are emitted;
  a layer takes the name of its first top, or ``<Type><k>`` when it has none;
* layers are emitted depth-first, inputs before the layer, in the order the
  NetSpec's tops were assigned;
* a keyword ending in ``param`` goes to that LayerParameter field; any other
  goes to the layer's own ``<type>_param`` message when that message has the
  field, else to LayerParameter.

Where pycaffe fails with an unhelpful error, this module does what the script
meant or says exactly what is wrong: flat keywords of layers without a message
of their own (``Deconvolution`` -> ``convolution_param``, ``SoftmaxWithLoss`` ->
``softmax_param``/``loss_param``), tuples for repeated fields, empty lists,
enum names, message instances, unknown fields (with suggestions) and automatic
names that collide with given ones.  Emission is iterative, so a net of any
depth builds.
"""
from __future__ import annotations

import sys
from collections import Counter
from types import ModuleType
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple, Union

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from . import numrange, schema
from .schema import is_repeated
# the schema in use lives in netdsl.schema; these names stay importable from here
from .schema import current_schema, explicit_schema, schema_in_use, use_schema  # noqa: F401
from .wire import LEN, key, varint as _varint
from .errors import (NetdslAttributeError, NetdslError, NetdslKeyError, NetdslTypeError,
                     NetdslValueError, did_you_mean)

_MESSAGE = FieldDescriptor.CPPTYPE_MESSAGE
_ENUM = FieldDescriptor.CPPTYPE_ENUM

class Top:
    """One output blob of a layer (``fn``) -- its ``n``-th top."""

    __slots__ = ("fn", "n")

    def __init__(self, fn: "Function", n: int) -> None:
        self.fn = fn
        self.n = n

    def to_proto(self) -> Message:
        """A NetParameter with every layer needed to compute this top."""
        return to_proto(self)

    def __repr__(self) -> str:
        return "<Top %d of %s>" % (self.n, self.fn.type_name)


class Function:
    """A layer: its type, its input Tops and its keyword parameters."""

    # labels: (layer name, top names) known before to_proto names them (set by the spec
    # compiler; read with getattr(fn, "labels", None))
    # _out: the one Top when ntop is 1, else the tuple of Tops (one slot for both keeps
    # a Function at 96 bytes, which the collector walks fastest in deep nets)
    __slots__ = ("type_name", "_in", "params", "ntop", "in_place", "_out",
                 "_code", "_line", "labels", "__weakref__")

    def __init__(self, type_name: str, inputs: Iterable[Any], params: Dict[str, Any]) -> None:
        self.type_name = type_name
        inputs = tuple(inputs)
        for index, inp in enumerate(inputs):
            if type(inp) is not Top and not isinstance(inp, Top):
                # pycaffe raises TypeError with this text; scripts match on it
                raise NetdslTypeError("input %d of %s is %s, not a top"
                                      % (index, type_name, _describe(inp)),
                                      hint="inputs are the tops returned by L.<Type>(...)",
                                      pycaffe="%s input %d is not a Top (type is %s)"
                                      % (type_name, index, type(inp)))
        # a lone input is kept bare (no tuple) to keep big nets light on the collector
        self._in = inputs[0] if len(inputs) == 1 else inputs
        self.params = params
        ntop = params.pop("ntop", 1)
        if type(ntop) is not int or ntop < 0:
            raise NetdslError("ntop of %s must be a whole number >= 0, got %r" % (type_name, ntop))
        self.ntop = ntop
        self.in_place = params.pop("in_place", False)
        # one Top is kept bare (no tuple) to keep big nets light on the collector
        self._out = Top(self, 0) if ntop == 1 else tuple(Top(self, n) for n in range(ntop))
        # the user's line that created the layer, for error messages
        f = sys._getframe(1)
        if f.f_code.co_filename == __file__:
            f = f.f_back
        self._code, self._line = (f.f_code, f.f_lineno) if f is not None else (None, 0)

    @property
    def inputs(self) -> Tuple[Top, ...]:
        """The input Tops (bottoms), in order."""
        ins = self._in
        return (ins,) if isinstance(ins, Top) else ins

    @property
    def tops(self) -> Tuple[Top, ...]:
        """This layer's output Tops, in order."""
        return (self._out,) if self.ntop == 1 else self._out

    @property
    def where(self) -> Optional[Tuple[str, int]]:
        """(file, line) of the script line that created this layer."""
        return (self._code.co_filename, self._line) if self._code is not None else None

    def to_layer(self, pb2: Optional[ModuleType] = None) -> Message:
        """A LayerParameter with this layer's type and parameters (no names)."""
        layer = (pb2 or current_schema()).LayerParameter()
        layer.type = self.type_name
        _assign_params(layer, self)
        return layer

    def __repr__(self) -> str:
        return "<Function %s>" % self.type_name


def _describe(inp: Any) -> str:
    if isinstance(inp, Function):
        return "a layer with no tops (ntop=0)"
    if isinstance(inp, tuple):
        return "a tuple of %d tops; pass them one by one" % len(inp)
    return "a %s" % type(inp).__name__


class _Emitter:
    """State of one emission: the net being filled and what is already in it.

    Each layer is encoded straight to protobuf wire bytes (name, type, bottoms,
    tops, then its parameters, which pycaffe assigns last) and the whole net is
    parsed once at the end; a parameter block is built through the message
    classes once per distinct set of keywords and reused.  The result is the
    message pycaffe's field-by-field assignment gives.
    """

    def __init__(self, net: Message) -> None:
        self.net = net
        self.layer_cls = type(net.layer.add())
        net.ClearField("layer")
        fields = self.layer_cls.DESCRIPTOR.fields_by_name
        self.tags = tuple(_tag(fields[f].number) for f in ("name", "type", "bottom", "top"))
        self.layer_tag = _tag(net.DESCRIPTOR.fields_by_name["layer"].number)
        self.chunks: List[bytes] = []
        self.bottom_field: Dict[str, bytes] = {}  # emitted blob name -> its encoded bottom field
        self.type_bytes: Dict[str, bytes] = {}  # layer type -> its encoded type field
        self.param_bytes: Dict[Any, bytes] = {}  # (type, frozen keywords) -> encoded params
        self.routes: Dict[str, tuple] = {}   # layer type -> where its keywords go
        self.top_names: Dict[Function, List[str]] = {}  # emitted layer -> its top names
        self.given: Any = ()  # top names given in the NetSpec (a container of names)
        self.automatic: set = set()  # top names given automatically

    def type_field(self, type_name: str) -> bytes:
        """The encoded ``type`` field for a layer type (cached)."""
        b = self.type_bytes[type_name] = self.tags[1] + _len_prefixed(type_name)
        return b

    def finish(self) -> Message:
        self.net.MergeFromString(b"".join(self.chunks))
        self.chunks = []
        return self.net


_SHORT = [bytes((i,)) for i in range(128)]


def _len_prefixed(text: str) -> bytes:
    """A string's wire payload: varint length, then its UTF-8 bytes."""
    b = text.encode()
    n = len(b)
    return (_SHORT[n] if n < 128 else _varint(n)) + b


def _tag(number: int) -> bytes:
    return key(number, LEN)


def _freeze(value: Any) -> Any:
    """A hashable, type-exact key for plain keyword values (None when not plain)."""
    t = type(value)
    if t is int or t is str or t is bool:
        return (t, value)
    if t is float:  # repr tells -0.0 from 0.0, which compare equal
        return (t, repr(value))
    if t is dict:
        items = []
        for k, v in value.items():
            f = _freeze(v)
            if f is None:
                return None
            items.append((k, f))
        return (dict, tuple(items))
    if t is list or t is tuple:
        items = []
        for v in value:
            f = _freeze(v)
            if f is None:
                return None
            items.append(f)
        return (list, tuple(items))
    return None


def _emit(roots: List[Function], names: dict, autonames: Counter, em: _Emitter) -> None:
    """Emit ``roots`` and their inputs depth-first, inputs first, without recursion."""
    _emit_all(roots, names, autonames, em)


def _emit_all(roots: List[Function], names: dict, autonames: Counter, em: _Emitter) -> None:
    done = em.top_names
    # locals for the common case, inlined below: a one-top layer whose top has
    # a given name and whose inputs are already emitted
    t_name, t_type, t_bottom, t_top = em.tags
    bfield, type_bytes = em.bottom_field, em.type_bytes
    chunk = em.chunks.append
    layer_tag = em.layer_tag
    short = _SHORT
    for root in roots:
        if root in done:
            continue
        ins = root._in
        if isinstance(ins, Top):
            ready = ins.fn in done
        else:
            ready = all(inp.fn in done for inp in ins)
        if ready:
            lname = names.get(root._out) if root.ntop == 1 and not root.in_place else None
            if lname is None or root in names:
                _emit_one(root, names, autonames, em)
                continue
            lb = lname.encode()
            n = len(lb)
            lp = (short[n] if n < 128 else _varint(n)) + lb
            parts = [t_name, lp, type_bytes.get(root.type_name) or em.type_field(root.type_name)]
            if isinstance(ins, Top):
                parts.append(bfield[done[ins.fn][ins.n]])
            else:
                for inp in ins:
                    parts.append(bfield[done[inp.fn][inp.n]])
            parts.append(t_top + lp)
            bfield[lname] = t_bottom + lp
            if root.params:
                parts.append(_param_bytes(root, lname, em))
            body = b"".join(parts)
            n = len(body)
            chunk(layer_tag + (short[n] if n < 128 else _varint(n)) + body)
            done[root] = [lname]
            continue
        stack = [[root, 0, root.inputs]]
        while stack:
            frame = stack[-1]
            i = frame[1]
            if i < len(frame[2]):
                frame[1] = i + 1
                child = frame[2][i].fn
                if child not in done:
                    stack.append([child, 0, child.inputs])
                continue
            stack.pop()
            _emit_one(frame[0], names, autonames, em)


def _autoname(type_name: str, autonames: Counter) -> str:
    autonames[type_name] += 1
    return type_name + str(autonames[type_name])


def _emit_one(fn: Function, names: dict, autonames: Counter, em: _Emitter) -> None:
    top_names = em.top_names
    type_name = fn.type_name
    inputs = fn.inputs
    if len(inputs) == 1:
        inp = inputs[0]
        bottoms = [top_names[inp.fn][inp.n]]
    else:
        bottoms = [top_names[inp.fn][inp.n] for inp in inputs]
    if fn.in_place:
        tops = bottoms
    else:
        tops = []
        for top in ((fn._out,) if fn.ntop == 1 else fn._out):
            name = names.get(top)
            if name is None:
                name = names[top] = _autoname(type_name, autonames)
                # only an automatic name can clash: given names are unique keys
                if name in em.given or name in em.automatic:
                    _collision(name, type_name)
                em.automatic.add(name)
            tops.append(name)
    # layer name: its own given name, else its first top's name, else <Type><k>
    lname = names.get(fn)
    if lname is None:
        if fn.ntop > 0:
            first = fn._out if fn.ntop == 1 else fn._out[0]
            lname = names.get(first)
            if lname is None:  # in-place layer whose top has no name yet
                lname = names[first] = _autoname(type_name, autonames)
        else:
            lname = _autoname(type_name, autonames)
    t_name, t_type, t_bottom, t_top = em.tags
    bfield = em.bottom_field
    lb = lname.encode()
    n = len(lb)
    lp = (_SHORT[n] if n < 128 else _varint(n)) + lb
    parts = [t_name, lp, em.type_bytes.get(type_name) or em.type_field(type_name)]
    for b in bottoms:
        parts.append(bfield[b])
    for t in tops:
        tp = lp if t == lname else _len_prefixed(t)
        parts.append(t_top + tp)
        if t not in bfield:
            bfield[t] = t_bottom + tp
    if fn.params:
        parts.append(_param_bytes(fn, lname, em))
    body = b"".join(parts)
    n = len(body)
    em.chunks.append(em.layer_tag + (_SHORT[n] if n < 128 else _varint(n)) + body)
    top_names[fn] = tops


_PLAIN = frozenset((int, float, str, bool))


def _param_bytes(fn: Function, lname: str, em: _Emitter) -> bytes:
    params = fn.params
    values = params.values()
    if _PLAIN.issuperset(map(type, values)):
        # flat scalar keywords (the common case): repr keeps 1, 1.0, True and
        # -0.0 apart, and for these types it is exact
        key = (fn.type_name, tuple(params), tuple(map(repr, values)))
    else:
        key = _freeze(params)
        if key is not None:
            key = (fn.type_name, key)
    if key is not None:
        cached = em.param_bytes.get(key)
        if cached is not None:
            return cached
    scratch = em.layer_cls()
    try:
        _assign_params(scratch, fn, em.routes)
    except NetdslError as err:
        if err.layer is None:
            err.layer = lname
        if err.file is None and fn.where is not None:
            err.file, err.line = fn.where
        raise
    data = scratch.SerializeToString()
    if key is not None:
        em.param_bytes[key] = data
    return data


def _collision(name: str, kind: str) -> None:
    raise NetdslError(
        "top name '%s' would be produced twice: it is the automatic name of an unnamed "
        "%s layer's top and also a name given in the NetSpec" % (name, kind),
        hint="assign the unnamed layer's output to the NetSpec (n.some_name = ...) "
             "or choose another name")


# -- parameters ------------------------------------------------------------

def _route(layer: Message, type_name: str) -> tuple:
    """Where a layer type's flat keywords go: (own field, its fields, fast setters,
    LayerParameter's fields)."""
    layer_desc = layer.DESCRIPTOR
    own = schema.param_field_of(layer_desc, type_name)
    own_fields = getattr(layer, own).DESCRIPTOR.fields_by_name if own else {}
    fast = {}
    for name, fd in own_fields.items():
        if fd.cpp_type not in (_MESSAGE, _ENUM):
            lo, hi = numrange.fast_bounds(fd)
            fast[name] = (is_repeated(fd), frozenset(t for t, kinds in _FAST.items()
                                                     if fd.cpp_type in kinds), lo, hi)
    return own, own_fields, fast, layer_desc.fields_by_name


def _assign_params(layer: Message, fn: Function, routes: Optional[dict] = None) -> None:
    route = routes.get(fn.type_name) if routes is not None else None
    if route is None:
        route = _route(layer, fn.type_name)
        if routes is not None:
            routes[fn.type_name] = route
    own, own_fields, fast, layer_fields = route
    sub = None
    for key, value in fn.params.items():
        if key.endswith("param"):
            # pycaffe: generic *param keywords go straight to LayerParameter
            assign(layer, key, value, where="LayerParameter")
            continue
        if key in own_fields:
            if sub is None:
                sub = getattr(layer, own)
            setter = fast.get(key)
            # plain values inside the type's range take the fast path; the rest
            # (inf, nan, out of range) go through assign, which checks them
            if setter is not None and type(value) in setter[1] and (
                    setter[2] is None or setter[2] <= value <= setter[3]):
                if setter[0]:
                    getattr(sub, key).append(value)
                else:
                    setattr(sub, key, value)
            else:
                assign(sub, key, value, where=own)
            continue
        if key in layer_fields:
            assign(layer, key, value, where="LayerParameter")
            continue
        # pycaffe would fail here; route to the other messages this type reads
        target = None
        for extra in schema.param_fields(fn.type_name, _module_of(layer)):
            if key in getattr(layer, extra).DESCRIPTOR.fields_by_name:
                target = extra
                break
        if target is not None:
            assign(getattr(layer, target), key, value, where=target)
            continue
        cands = list(layer_fields)
        places = ["LayerParameter"]
        for extra in schema.param_fields(fn.type_name, _module_of(layer)):
            cands += list(getattr(layer, extra).DESCRIPTOR.fields_by_name)
            places.insert(0, extra)
        # pycaffe's getattr on LayerParameter raises AttributeError here
        raise NetdslAttributeError("unknown parameter `%s` for a %s layer (not a field of %s)"
                                   % (key, fn.type_name, " or ".join(places)),
                                   field=key, hint=did_you_mean(key, cands))


def _module_of(message: Message) -> Optional[ModuleType]:
    # the schema module a message belongs to (bundled or a fork)
    cur = current_schema()
    if message.DESCRIPTOR.file is cur.DESCRIPTOR:
        return cur
    from .proto import caffe_pb2
    if message.DESCRIPTOR.file is caffe_pb2.DESCRIPTOR:
        return caffe_pb2
    return _FakeModule(message)


class _FakeModule:
    """Enough of a schema module to answer param-field questions for a message."""

    def __init__(self, message: Message) -> None:
        self.LayerParameter = type(message)


def assign(msg: Message, name: str, value: Any, *, where: Optional[str] = None) -> None:
    """pycaffe's ``assign_proto``: dicts become messages, lists repeated fields.

    A scalar given for a repeated field becomes a one-element list (pycaffe's
    rule); tuples count as lists; an empty list assigns nothing; enum values
    may be given by name; message instances are copied.
    """
    fd = msg.DESCRIPTOR.fields_by_name.get(name)
    place = where or msg.DESCRIPTOR.name
    if fd is None:
        raise NetdslAttributeError("unknown field `%s` in %s" % (name, place), field=name,
                          hint=did_you_mean(name, list(msg.DESCRIPTOR.fields_by_name)))
    if is_repeated(fd):
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        if not values:
            return
        container = getattr(msg, name)
        if fd.cpp_type == _MESSAGE:
            for item in values:
                if isinstance(item, Message):
                    container.add().CopyFrom(item)
                elif isinstance(item, dict):
                    sub = container.add()
                    for k, v in item.items():
                        assign(sub, k, v, where=name)
                else:
                    raise NetdslTypeError("`%s` in %s takes a dict (or a list of dicts), got %r"
                                      % (name, place, item), field=name)
        else:
            container.extend([_scalar(fd, v, place) for v in values])
        return
    if isinstance(value, (list, tuple)):
        raise NetdslTypeError("`%s` in %s takes a single value, got a %s of %d"
                          % (name, place, type(value).__name__, len(value)), field=name)
    if fd.cpp_type == _MESSAGE:
        sub = getattr(msg, name)
        if isinstance(value, Message):
            sub.CopyFrom(value)
        elif isinstance(value, dict):
            sub.SetInParent()
            for k, v in value.items():
                assign(sub, k, v, where=name)
        else:
            raise NetdslAttributeError("`%s` in %s is a %s message and takes a dict, got %r"
                              % (name, place, fd.message_type.name, value), field=name)
        return
    try:
        setattr(msg, name, _scalar(fd, value, place))
    except (TypeError, ValueError) as exc:
        cls = NetdslTypeError if isinstance(exc, TypeError) else NetdslValueError
        raise cls("`%s` in %s expects %s, got %r (%s)"
                  % (name, place, _kind(fd), value, exc), field=name) from None


_FAST = {
    int: {FieldDescriptor.CPPTYPE_INT32, FieldDescriptor.CPPTYPE_INT64,
          FieldDescriptor.CPPTYPE_UINT32, FieldDescriptor.CPPTYPE_UINT64,
          FieldDescriptor.CPPTYPE_FLOAT, FieldDescriptor.CPPTYPE_DOUBLE},
    float: {FieldDescriptor.CPPTYPE_FLOAT, FieldDescriptor.CPPTYPE_DOUBLE},
    str: {FieldDescriptor.CPPTYPE_STRING},
    bool: {FieldDescriptor.CPPTYPE_BOOL},
}


def _scalar(fd: FieldDescriptor, value: Any, place: str) -> Any:
    fast = _FAST.get(type(value))
    if fast is not None and fd.cpp_type in fast:
        numrange.check(fd, value, place)
        return value
    if fd.cpp_type == _ENUM:
        if isinstance(value, str):
            ev = fd.enum_type.values_by_name.get(value)
            if ev is None:
                names = [v.name for v in fd.enum_type.values]
                raise NetdslValueError("`%s` is not a value of `%s` in %s (one of %s)"
                                  % (value, fd.name, place, ", ".join(names)), field=fd.name,
                                  hint=did_you_mean(value, names))
            return ev.number
        if isinstance(value, bool) or not isinstance(value, int) and not hasattr(value, "__index__"):
            raise NetdslTypeError("`%s` in %s expects %s, got %r"
                                  % (fd.name, place, _kind(fd), value), field=fd.name)
        numrange.check(fd, value, place)   # a number that is no value of the enum too
        return value
    kind = fd.cpp_type
    if kind in (FieldDescriptor.CPPTYPE_STRING,):
        if not isinstance(value, (str, bytes)):
            raise NetdslTypeError("`%s` in %s expects a string, got %r" % (fd.name, place, value),
                              field=fd.name)
        return value
    if kind == FieldDescriptor.CPPTYPE_BOOL:
        if not isinstance(value, (bool, int)) and type(value).__name__ != "bool_":
            raise NetdslTypeError("`%s` in %s expects true or false, got %r"
                                  % (fd.name, place, value), field=fd.name)
        numrange.check(fd, value, place)
        return value
    if kind in (FieldDescriptor.CPPTYPE_FLOAT, FieldDescriptor.CPPTYPE_DOUBLE):
        if isinstance(value, (str, bytes)) or not _is_number(value):
            raise NetdslTypeError("`%s` in %s expects a number, got %r" % (fd.name, place, value),
                              field=fd.name)
        numrange.check(fd, value, place)
        return value
    # integers
    if isinstance(value, (str, bytes, float)) or not _is_number(value):
        if isinstance(value, float) and value.is_integer():
            raise NetdslTypeError("`%s` in %s expects an integer, got %r" % (fd.name, place, value),
                              field=fd.name, hint="write %d" % int(value))
        raise NetdslTypeError("`%s` in %s expects an integer, got %r" % (fd.name, place, value),
                          field=fd.name)
    numrange.check(fd, value, place)
    return value


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _kind(fd: FieldDescriptor) -> str:
    return {
        FieldDescriptor.CPPTYPE_INT32: "an integer", FieldDescriptor.CPPTYPE_INT64: "an integer",
        FieldDescriptor.CPPTYPE_UINT32: "a non-negative integer",
        FieldDescriptor.CPPTYPE_UINT64: "a non-negative integer",
        FieldDescriptor.CPPTYPE_FLOAT: "a number", FieldDescriptor.CPPTYPE_DOUBLE: "a number",
        FieldDescriptor.CPPTYPE_BOOL: "true or false", FieldDescriptor.CPPTYPE_STRING: "a string",
        FieldDescriptor.CPPTYPE_ENUM: "an enum value", FieldDescriptor.CPPTYPE_MESSAGE: "a dict",
    }[fd.cpp_type]


# -- public entry points ----------------------------------------------------

def _as_function(item: Any, label: str) -> Function:
    if isinstance(item, Top):
        return item.fn
    if isinstance(item, Function):
        return item
    if isinstance(item, tuple):
        raise NetdslError("%s is a tuple of %d tops, not a top" % (label, len(item)),
                          hint="unpack a multi-top layer: n.a, n.b = L.Slice(..., ntop=2)")
    raise NetdslError("%s is a %s, not a top" % (label, type(item).__name__))


def to_proto(*tops: Union[Top, Function]) -> Message:
    """A NetParameter with every layer needed to compute ``tops`` (auto-named)."""
    net = current_schema().NetParameter()
    em = _Emitter(net)
    autonames: Counter = Counter()
    for i, top in enumerate(tops):
        # pycaffe gives each argument a fresh name table
        _emit([_as_function(top, "argument %d of to_proto" % i)], {}, autonames, em)
    return em.finish()


class NetSpec:
    """Named tops; ``to_proto()`` emits every layer needed to compute them.

    ``n.name = top`` (or ``n["name"] = top``) names a top; ``n.tops`` is the
    name -> top mapping in assignment order.  The tops live in the instance's
    own attribute dictionary, so assigning and reading them costs no Python
    call (big generated nets assign hundreds of thousands).
    """

    @property
    def tops(self) -> Dict[str, Any]:
        """The named tops, in assignment order (pycaffe's ``NetSpec.tops``)."""
        return self.__dict__

    @tops.setter
    def tops(self, value: Any) -> None:  # a top named "tops", as pycaffe allows
        self.__dict__["tops"] = value

    def __getattr__(self, name: str) -> Any:
        # only called for names that are not assigned
        if name.startswith("__"):
            raise AttributeError(name)
        raise NetdslKeyError("the NetSpec has no top named '%s'" % name,  # pycaffe: KeyError
                             hint=did_you_mean(name, list(self.__dict__)))

    def __setitem__(self, key: str, value: Any) -> None:
        self.__dict__[key] = value

    def __getitem__(self, item: str) -> Any:
        try:
            return self.__dict__[item]
        except KeyError:
            return self.__getattr__(item)

    def __contains__(self, item: str) -> bool:
        return item in self.__dict__

    def __delitem__(self, name: str) -> None:
        if name not in self.__dict__:
            self.__getattr__(name)
        del self.__dict__[name]

    def keys(self) -> List[str]:
        """The top names in assignment order (the SSD fork's ``NetSpec.keys``)."""
        return list(self.__dict__)

    def vals(self) -> List[Any]:
        """The tops in assignment order (the SSD fork's ``NetSpec.vals``)."""
        return list(self.__dict__.values())

    def update(self, name: str, params: Dict[str, Any]) -> None:
        """Add or replace parameters of the layer that makes top ``name`` (the SSD
        fork's ``NetSpec.update``, used by its model_libs)."""
        fn = self[name]
        fn = fn.fn if isinstance(fn, Top) else fn
        fn.params.update(params)

    def to_proto(self) -> Message:
        """A NetParameter of every assigned top and what it needs, named as assigned."""
        tops = self.__dict__
        for k, v in tops.items():
            if type(v) is not Top:
                _as_function(v, "n." + k)  # a clear error for anything but a top or layer
        names = {v: k for k, v in tops.items()}
        em = _Emitter(current_schema().NetParameter())
        em.given = tops  # the given names (keys); only automatic names can clash with them
        _emit([v.fn if type(v) is Top else v for v in tops.values()], names, Counter(), em)
        return em.finish()


class Layers:
    """``L.<Type>(*bottoms, **params)``: a layer of any type; returns its top,
    a tuple of tops (ntop > 1), or the layer itself (ntop = 0)."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)

        def layer_fn(*args: Any, **kwargs: Any):
            fn = Function(name, args, kwargs)
            if fn.ntop == 0:
                return fn
            return fn._out
        layer_fn.__name__ = name
        self.__dict__[name] = layer_fn  # later lookups skip __getattr__
        return layer_fn


class _ParamNamespace:
    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        pb2 = current_schema()
        cls = getattr(pb2, self._name + "Parameter", None)
        if cls is None:
            raise NetdslError("no message %sParameter in the schema" % self._name,
                              hint=did_you_mean(self._name + "Parameter",
                                                list(pb2.DESCRIPTOR.message_types_by_name)))
        try:
            return getattr(cls, attr)
        except AttributeError:
            values = [v.name for e in cls.DESCRIPTOR.enum_types for v in e.values]
            values += [e.name for e in cls.DESCRIPTOR.enum_types]
            raise NetdslError("%sParameter has no enum value or enum `%s`" % (self._name, attr),
                              hint=did_you_mean(attr, values)) from None


class Parameters:
    """``P.<Type>.<VALUE>``: enum constants of ``<Type>Parameter``, e.g. ``P.Pooling.MAX``."""

    def __getattr__(self, name: str) -> _ParamNamespace:
        if name.startswith("__"):
            raise AttributeError(name)
        return _ParamNamespace(name)


layers = Layers()
params = Parameters()
