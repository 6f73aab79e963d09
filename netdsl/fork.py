"""Fork schemas: a user's extended caffe.proto checked against BVLC's numbers.

A fork may add messages, fields and enum values freely.  What it must not do
is give one of BVLC's field numbers (or enum numbers) to something else in a
message BVLC also has: prototxt would still read, but every binary file
(caffemodel, binaryproto) written with the fork would be misread by BVLC-based
tools (Caffe, OpenCV, converters), and theirs by it.
"""
from __future__ import annotations

from types import ModuleType
from typing import List

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
    """
    from .proto import caffe_pb2 as bvlc
    locations = getattr(pb2, "LOCATIONS", {})
    found: List[NetdslError] = []

    def report(scope: str, name: str, message: str, hint: str) -> None:
        path, line, col = locations.get((scope, name), (getattr(pb2, "SOURCE", None), None, None))
        found.append(NetdslError(message, file=path, line=line, column=col, hint=hint))

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
                       "give `%s` a number BVLC does not use in %s (e.g. %d)"
                       % (fd.name, short, _free_number(ref, desc)))
                continue
            same = ref.fields_by_name.get(fd.name)
            if same is not None and same.number != fd.number:
                report(full, fd.name,
                       "field `%s` of %s is %d here but %d in BVLC's schema"
                       % (fd.name, short, fd.number, same.number),
                       "keep BVLC's number %d so files stay readable by Caffe" % same.number)
            elif same is not None and _type_of(same) != _type_of(fd):
                report(full, fd.name,
                       "field `%s` of %s has a different type than in BVLC's schema"
                       % (fd.name, short), "keep BVLC's type for `%s`" % fd.name)
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
                       "use a number BVLC does not use in this enum")
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
