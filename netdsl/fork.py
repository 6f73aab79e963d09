"""Fork schemas: a user's extended caffe.proto compared with BVLC's numbers.

A fork's schema is used as it is: its caffemodels were written with its own
field numbers, and renumbering would break every one of them.  Where a fork
gives one of BVLC's field numbers (or enum numbers) to something else in a
message BVLC also has, binary files written with it are misread by BVLC-based
tools (Caffe, OpenCV, converters) in exactly those fields.  netdsl says so in
one warning line when it writes a file that sets such a field
(:func:`warn_on_write`); ``strict`` loading (``--strict-proto``, for people
authoring a new fork) makes the first reuse a located error instead.

A fork older than a BVLC field lacks it; every engine reads such a field as the
behaviour before it existed (:func:`fill_missing_fields`, applied to each
loaded schema), so an old fork's nets run as its own Caffe ran them.
"""
from __future__ import annotations

import sys
from types import ModuleType
from typing import Any, List, Optional, Set, Tuple

from .errors import NetdslError


def _walk_messages(desc, out: dict) -> None:
    out[desc.full_name] = desc
    for nested in desc.nested_types:
        _walk_messages(nested, out)


def _messages(pb2: ModuleType) -> dict:
    out: dict = {}
    for desc in pb2.DESCRIPTOR.message_types_by_name.values():
        _walk_messages(desc, out)
    return out


def _enums(pb2: ModuleType) -> dict:
    out = {e.full_name: e for e in pb2.DESCRIPTOR.enum_types_by_name.values()}
    for m in _messages(pb2).values():
        for e in m.enum_types:
            out[e.full_name] = e
    return out


def _type_of(fd) -> str:
    if fd.message_type is not None:
        return fd.message_type.full_name
    if fd.enum_type is not None:
        return fd.enum_type.full_name
    return str(fd.type)


def check_against_bvlc(pb2: ModuleType, *, raise_errors: bool = True) -> List[str]:
    """Conflicts between ``pb2`` and BVLC's schema, as located messages.

    A conflict is a field number (or enum value number) that BVLC uses for a
    different name in the same message (or enum), or a BVLC field name given a
    different number or type.  The first conflict raises NetdslError naming the
    fork's file and line unless ``raise_errors`` is false; all are returned.
    The fields concerned are also kept on ``pb2.CONFLICT_FIELDS`` as
    ``(message full name, field name, description)``.
    """
    from .proto import caffe_pb2 as bvlc
    locations = getattr(pb2, "LOCATIONS", {})
    found: List[NetdslError] = []
    fields: List[Tuple[str, str, str]] = []

    def report(scope: str, name: str, message: str, hint: str, what: str = "") -> None:
        path, line, col = locations.get((scope, name), (getattr(pb2, "SOURCE", None), None, None))
        found.append(NetdslError(message, file=path, line=line, column=col, hint=hint))
        if what:
            fields.append((scope, name, what))

    theirs = _messages(bvlc)
    for full, desc in _messages(pb2).items():
        ref = theirs.get(full)
        if ref is None:
            continue
        short = full.split(".", 1)[-1]
        for fd in desc.fields:
            other = ref.fields_by_number.get(fd.number)
            if other is not None and other.name != fd.name:
                report(full, fd.name,
                       "field `%s` = %d in %s takes BVLC's number of `%s`"
                       % (fd.name, fd.number, short, other.name),
                       "a new fork would pick a number BVLC does not use in %s (e.g. %d); "
                       "an existing fork keeps its numbers (load it without --strict-proto)"
                       % (short, _free_number(ref, desc)),
                       "%s.%s (%d is BVLC's %s)" % (short, fd.name, fd.number, other.name))
                continue
            same = ref.fields_by_name.get(fd.name)
            if same is not None and same.number != fd.number:
                report(full, fd.name,
                       "field `%s` of %s is %d here but %d in BVLC's schema"
                       % (fd.name, short, fd.number, same.number),
                       "a new fork would keep BVLC's number %d; an existing fork keeps its "
                       "own (load it without --strict-proto)" % same.number,
                       "%s.%s (%d here, %d in BVLC)" % (short, fd.name, fd.number, same.number))
            elif same is not None and _type_of(same) != _type_of(fd):
                report(full, fd.name,
                       "field `%s` of %s has a different type than in BVLC's schema"
                       % (fd.name, short),
                       "a new fork would keep BVLC's type for `%s`" % fd.name,
                       "%s.%s (type differs from BVLC's)" % (short, fd.name))
    their_enums = _enums(bvlc)
    for full, enum in _enums(pb2).items():
        ref = their_enums.get(full)
        if ref is None:
            continue
        for v in enum.values:
            other = ref.values_by_number.get(v.number)
            if other is not None and other.name != v.name and \
                    ref.values_by_name.get(v.name) is None:
                report(full, v.name,
                       "enum value %s = %d in %s takes BVLC's number of %s"
                       % (v.name, v.number, full.split(".", 1)[-1], other.name),
                       "a new fork would use a number BVLC does not use in this enum",
                       "%s.%s (%d is BVLC's %s)" % (full.split(".", 1)[-1], v.name, v.number,
                                                    other.name))
    pb2.CONFLICT_FIELDS = fields
    if found and raise_errors:
        first = found[0]
        if len(found) > 1:
            first.message += " (and %d more conflicts)" % (len(found) - 1)
        raise first
    return [str(e) for e in found]


def _free_number(ref, desc) -> int:
    used = {f.number for f in ref.fields} | {f.number for f in desc.fields}
    n = max(used) + 1
    while n in used or 19000 <= n <= 19999:
        n += 1
    return n


def conflicts_in(message: Any, pb2: Optional[ModuleType] = None) -> List[str]:
    """The descriptions of the conflicting fields (:func:`check_against_bvlc`)
    that ``message`` (or a message inside it) sets, in schema order."""
    from .proto import schema_of
    pb2 = pb2 if pb2 is not None else schema_of(message)
    table = {}
    for scope, name, what in getattr(pb2, "CONFLICT_FIELDS", None) or ():
        table.setdefault(scope, {})[name] = what
    if not table:
        return []
    hit: Set[str] = set()
    enum_scopes = {s for s in table if s not in _messages(pb2)}

    def walk(msg: Any) -> None:
        full = msg.DESCRIPTOR.full_name
        mine = table.get(full, {})
        for fd, value in msg.ListFields():
            if fd.name in mine:
                hit.add(mine[fd.name])
            if fd.enum_type is not None and fd.enum_type.full_name in enum_scopes:
                names = table[fd.enum_type.full_name]
                vals = value if _repeated(fd) else [value]
                for v in vals:
                    ev = fd.enum_type.values_by_number.get(v)
                    if ev is not None and ev.name in names:
                        hit.add(names[ev.name])
            if fd.message_type is not None and _may_hold(fd.message_type, table, set()):
                for sub in (value if _repeated(fd) else [value]):
                    walk(sub)

    walk(message)
    order = [what for _, _, what in pb2.CONFLICT_FIELDS]
    return [w for w in order if w in hit]


def _repeated(fd: Any) -> bool:
    rep = getattr(fd, "is_repeated", None)
    if rep is not None:
        return bool(rep)
    return fd.label == 3    # LABEL_REPEATED


def _may_hold(desc: Any, table: dict, seen: set) -> bool:
    """Whether messages of ``desc`` can contain a conflicting field (so walking
    BlobProto's data is skipped)."""
    if desc.full_name in table:
        return True
    if desc.full_name in seen:
        return False
    seen.add(desc.full_name)
    for fd in desc.fields:
        if fd.enum_type is not None and fd.enum_type.full_name in table:
            return True
        if fd.message_type is not None and _may_hold(fd.message_type, table, seen):
            return True
    return False


def conflict_warning(message: Any, what: str = "file",
                     pb2: Optional[ModuleType] = None) -> Optional[str]:
    """The one-line warning for writing ``message`` with a fork schema that reuses
    BVLC numbers, or None when the message sets none of those fields."""
    hits = conflicts_in(message, pb2)
    if not hits:
        return None
    return ("this %s sets fields the fork schema numbers differently from BVLC, which "
            "BVLC-based tools (Caffe, OpenCV) would misread in binary files: %s"
            % (what, ", ".join(hits)))


def warn_on_write(message: Any, what: str = "file", stream: Any = None,
                  pb2: Optional[ModuleType] = None) -> Optional[str]:
    """Print :func:`conflict_warning` for ``message`` (when there is one) as one
    ``netdsl: warning:`` line on ``stream`` (stderr); returns it."""
    text = conflict_warning(message, what, pb2)
    if text:
        print("netdsl: warning: %s" % text, file=stream if stream is not None else sys.stderr)
    return text


def warn_fields(pb2: ModuleType, written: Any, what: str = "file",
                stream: Any = None) -> Optional[str]:
    """Warn (one line) when the ``(message full name, field)`` pairs a writer
    sets include fields ``pb2`` numbers differently from BVLC; returns the text."""
    wanted = set(written)
    hits = [w for scope, name, w in getattr(pb2, "CONFLICT_FIELDS", None) or ()
            if (scope, name) in wanted]
    if not hits:
        return None
    text = ("this %s sets fields the fork schema numbers differently from BVLC, which "
            "BVLC-based tools (Caffe, OpenCV) would misread in binary files: %s"
            % (what, ", ".join(hits)))
    print("netdsl: warning: %s" % text, file=stream if stream is not None else sys.stderr)
    return text


# -- BVLC fields a fork's schema lacks ----------------------------------------------------

def _old_normalize(loss_param: Any) -> int:
    # softmax_loss_layer.cpp before LossParameter.normalization (BVLC, 2016): divide by
    # the count of labels not ignored if `normalize` (default true), else by the batch
    from .proto import caffe_pb2 as bvlc
    mode = bvlc.LossParameter.NormalizationMode
    normalize = "normalize" not in loss_param.DESCRIPTOR.fields_by_name or loss_param.normalize
    return mode.Value("VALID") if normalize else mode.Value("BATCH_SIZE")


#: the value (or ``fn(message)`` giving it) that gives the behaviour before a BVLC
#: field existed, where it is not the field's default.  mvn_layer.cpp before
#: MVNParameter.eps (BVLC, 2015): ``Dtype eps = 1e-10;`` in Forward_cpu and
#: Backward_cpu; the field came with default 1e-9.
PRE_FIELD = {("caffe.MVNParameter", "eps"): 1e-10,
             ("caffe.LossParameter", "normalization"): _old_normalize}


def pre_field_value(fd: Any, pb2: ModuleType, message: Any = None) -> Any:
    """What reading BVLC field ``fd`` gives on ``message`` (of ``pb2``, which lacks
    it): :data:`PRE_FIELD`'s value, else the field's default (every other field
    BVLC added came with the default that keeps the older behaviour): an empty
    tuple for a repeated field, an empty message (of ``pb2``'s type when it has one)."""
    key = (fd.containing_type.full_name, fd.name)
    if key in PRE_FIELD:
        value = PRE_FIELD[key]
        return value(message) if callable(value) else value
    if _repeated(fd):
        return ()
    if fd.message_type is not None:
        from .proto import caffe_pb2 as bvlc
        name = fd.message_type.name
        cls = getattr(pb2, name, None) or getattr(bvlc, name)
        return cls()
    return fd.default_value


def _absent(fd: Any, pb2: ModuleType) -> property:
    def get(self: Any) -> Any:
        return pre_field_value(fd, pb2, self)
    get.__doc__ = "BVLC's `%s`, which this schema lacks (the behaviour before it)" % fd.name
    return property(get)


def fill_missing_fields(pb2: ModuleType) -> List[str]:
    """Make every BVLC field that a message of ``pb2`` (a fork's schema) lacks read
    as the behaviour before that field existed (:func:`pre_field_value`), so the
    engines read old forks' nets as the fork's Caffe ran them.  The descriptors
    are left alone: such a field still cannot be set in the fork's prototxt, is
    never printed or written, ``HasField`` says False and ``ClearField`` does
    nothing; the class's ``ABSENT_BVLC_FIELDS`` maps each name to BVLC's
    descriptor (for its enum).  Returns the fields filled in, as ``Message.field``.
    """
    from .proto import caffe_pb2 as bvlc
    filled: List[str] = []
    for name, ref in bvlc.DESCRIPTOR.message_types_by_name.items():
        cls = getattr(pb2, name, None)
        if cls is None or cls is getattr(bvlc, name) or not hasattr(cls, "DESCRIPTOR"):
            continue
        have = cls.DESCRIPTOR.fields_by_name
        missing = [fd for fd in ref.fields if fd.name not in have]
        for fd in missing:
            setattr(cls, fd.name, _absent(fd, pb2))
            filled.append("%s.%s" % (name, fd.name))
        if missing:
            names = frozenset(fd.name for fd in missing)
            cls.HasField = _has_field(cls.HasField, names)
            cls.ClearField = _clear_field(cls.ClearField, names)
            cls.ABSENT_BVLC_FIELDS = {fd.name: fd for fd in missing}
    return filled


def _has_field(base: Any, absent: frozenset) -> Any:
    def HasField(self: Any, name: str) -> bool:   # noqa: N802 (protobuf's name)
        return False if name in absent else base(self, name)
    return HasField


def _clear_field(base: Any, absent: frozenset) -> Any:
    def ClearField(self: Any, name: str) -> None:   # noqa: N802 (protobuf's name)
        if name not in absent:
            base(self, name)
    return ClearField


def lacks_input_layer(pb2: ModuleType) -> bool:
    """Whether schema ``pb2`` is older than the Input layer (``input_param``, BVLC
    2016): its nets take their inputs as NetParameter ``input`` fields."""
    return "input_param" not in pb2.LayerParameter.DESCRIPTOR.fields_by_name


def to_legacy_inputs(net: Any, layer_name: str, shapes: Any) -> None:
    """Put the tops of ``net``'s Input layer ``layer_name`` (added without
    ``input_param``, which the schema lacks) as the net's inputs, as Caffe took
    them before the Input layer: ``input`` with ``input_shape``, or four
    ``input_dim`` each where the schema has no ``input_shape`` either (the form
    upgrade_proto.cpp's UpgradeNetInput reads).  ``shapes``: top -> shape."""
    index = [i for i, lp in enumerate(net.layer) if lp.name == layer_name]
    if not index:
        return
    tops = list(net.layer[index[0]].top)
    del net.layer[index[0]]
    net.input.extend(tops)
    if "input_shape" in net.DESCRIPTOR.fields_by_name:
        for t in tops:
            net.input_shape.add().dim.extend(int(d) for d in shapes[t])
        return
    for t in tops:
        if len(shapes[t]) != 4:
            raise NetdslError("input `%s` has %d axes; this schema has neither input_param "
                              "nor input_shape, so inputs are four input_dim values each"
                              % (t, len(shapes[t])), field="input_dim")
        net.input_dim.extend(int(d) for d in shapes[t])
