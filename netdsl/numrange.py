"""The value range of every scalar protobuf field type, checked in one place.

Caffe reads its messages through protobuf, whose types have fixed ranges:
int32 and enums (stored as int32) take -2^31 .. 2^31-1, uint32 0 .. 2^32-1,
int64 -2^63 .. 2^63-1, uint64 0 .. 2^64-1; a float holds a finite value up to
FLT_MAX (3.4028235e+38) and a double up to DBL_MAX.  A finite number past a
float's range would silently become infinity, so it is refused like an integer
out of range; ``inf`` and ``nan`` written as such are kept.  Specs, NetSpec
keywords and prototxt files all ask :func:`check` (or :func:`problem`), so the
message names the same field, value and range whichever way the number came in.
"""
from __future__ import annotations

import math
import re
from typing import Any, List, Optional, Tuple

from google.protobuf.descriptor import FieldDescriptor

from .errors import NetdslError, NetdslValueError

FD = FieldDescriptor

#: integer ranges by protobuf C++ type
INT_RANGES = {
    FD.CPPTYPE_INT32: (-2 ** 31, 2 ** 31 - 1, "int32"),
    FD.CPPTYPE_UINT32: (0, 2 ** 32 - 1, "uint32"),
    FD.CPPTYPE_INT64: (-2 ** 63, 2 ** 63 - 1, "int64"),
    FD.CPPTYPE_UINT64: (0, 2 ** 64 - 1, "uint64"),
}

FLT_MAX = 3.4028234663852886e+38
#: the smallest magnitude that rounds to infinity in float32 (round to nearest):
#: FLT_MAX plus half a unit in the last place, 2^128 - 2^103
FLT_OVERFLOW = 2.0 ** 128 - 2.0 ** 103
DBL_MAX = 1.7976931348623157e+308


def _type_name(fd: FieldDescriptor) -> str:
    if fd.cpp_type in INT_RANGES:
        return INT_RANGES[fd.cpp_type][2]
    return {FD.CPPTYPE_FLOAT: "float", FD.CPPTYPE_DOUBLE: "double", FD.CPPTYPE_BOOL: "bool",
            FD.CPPTYPE_ENUM: "enum", FD.CPPTYPE_STRING: "string",
            FD.CPPTYPE_MESSAGE: "message"}.get(fd.cpp_type, "?")


def range_text(fd: FieldDescriptor) -> str:
    """The accepted values of a scalar field, in words."""
    kind = fd.cpp_type
    if kind in INT_RANGES:
        lo, hi, name = INT_RANGES[kind]
        return "%s: %d to %d" % (name, lo, hi)
    if kind == FD.CPPTYPE_FLOAT:
        return "float: -3.4028235e+38 to 3.4028235e+38"
    if kind == FD.CPPTYPE_DOUBLE:
        return "double: -1.7976931348623157e+308 to 1.7976931348623157e+308"
    if kind == FD.CPPTYPE_BOOL:
        return "bool: true or false (1 or 0)"
    if kind == FD.CPPTYPE_ENUM:
        return "enum %s: %s" % (fd.enum_type.name, ", ".join(
            "%s=%d" % (v.name, v.number) for v in fd.enum_type.values))
    return _type_name(fd)


def fast_bounds(fd: FieldDescriptor) -> Tuple[Any, Any]:
    """(lo, hi): plain numbers with ``lo <= v <= hi`` fit ``fd`` without more checks
    (NaN fails the comparison and so takes the careful path); (None, None) for
    fields that are not numbers."""
    if fd.cpp_type in INT_RANGES:
        lo, hi, _ = INT_RANGES[fd.cpp_type]
        return lo, hi
    if fd.cpp_type == FD.CPPTYPE_FLOAT:
        return -FLT_MAX, FLT_MAX
    if fd.cpp_type == FD.CPPTYPE_DOUBLE:
        return -DBL_MAX, DBL_MAX
    if fd.cpp_type == FD.CPPTYPE_BOOL:
        return 0, 1
    return None, None


def _is_int(value: Any) -> bool:
    return not isinstance(value, bool) and (isinstance(value, int) or
                                           type(value).__name__.startswith(("int", "uint")))


def in_range(fd: FieldDescriptor, value: Any) -> bool:
    """Whether a number of the right kind fits the field's type (see module doc)."""
    kind = fd.cpp_type
    if kind in INT_RANGES:
        lo, hi, _ = INT_RANGES[kind]
        return lo <= int(value) <= hi
    if kind == FD.CPPTYPE_ENUM:
        return fd.enum_type.values_by_number.get(int(value)) is not None
    if kind == FD.CPPTYPE_BOOL:
        return isinstance(value, bool) or type(value).__name__ == "bool_" or int(value) in (0, 1)
    if kind in (FD.CPPTYPE_FLOAT, FD.CPPTYPE_DOUBLE):
        limit = FLT_OVERFLOW if kind == FD.CPPTYPE_FLOAT else None
        if _is_int(value):
            v = int(value)
            return abs(v) < limit if limit is not None else abs(v) <= DBL_MAX
        try:
            f = float(value)
        except OverflowError:
            return False
        if math.isnan(f) or math.isinf(f):
            return True  # written as inf or nan: kept, as Caffe keeps it
        return abs(f) < limit if limit is not None else True
    return True


def problem(fd: FieldDescriptor, value: Any) -> Optional[str]:
    """None when ``value`` fits ``fd``; else "VALUE is out of range (RANGE)"."""
    try:
        if in_range(fd, value):
            return None
    except (TypeError, ValueError, OverflowError):
        return None  # not a number: the caller's type check reports it
    return "%s is out of range (%s)" % (_show(value), range_text(fd))


def _show(value: Any) -> str:
    return str(value) if _is_int(value) else repr(value)


def check(fd: FieldDescriptor, value: Any, place: Optional[str] = None) -> None:
    """Raise a NetdslError naming the field, value and range when ``value`` does not fit."""
    what = problem(fd, value)
    if what is not None:
        raise NetdslValueError("`%s`%s: %s" % (fd.name, " in %s" % place if place else "", what),
                               field=fd.name)


# -- prototxt: which field and layer a text position belongs to --------------

_TOKEN = re.compile(r"""\s+|\#[^\n]*|"(?:[^"\\\n]|\\.)*"?|'(?:[^'\\\n]|\\.)*'?|
                        [A-Za-z_][\w.]*|[-+]?[\w.+-]+|.""", re.X)


def _unquote(tok: str) -> str:
    return tok[1:-1] if len(tok) >= 2 and tok[0] == tok[-1] and tok[0] in "\"'" else tok


def locate(text: str, line: int, column: int) -> Tuple[List[str], Optional[str], Optional[str]]:
    """(path of message fields, field name, layer name) at a 1-based text position.

    A light scan of prototxt syntax: ``name {`` / ``name: {`` / ``name <`` open a
    message, ``}`` / ``>`` close it; the field is the last name before the
    position.  The layer name is the ``name:`` of the enclosing top-level
    ``layer`` / ``layers`` block, wherever it is written in the block.
    """
    lines = text.split("\n")
    offset = sum(len(s) + 1 for s in lines[:max(line - 1, 0)]) + max(column - 1, 0)
    stack: List[str] = []
    last: Optional[str] = None
    found: Optional[Tuple[List[str], Optional[str]]] = None
    prev: List[str] = []  # the last two significant tokens
    layer: Optional[str] = None
    for m in _TOKEN.finditer(text):
        tok = m.group()
        if tok.isspace() or tok.startswith("#"):
            continue
        if found is None and m.start() >= offset:
            found = (list(stack), last)
            if not stack:
                break
        if tok in ("{", "<"):
            stack.append(last or "")
            last = None
            if len(stack) == 1 and found is None:
                layer = None  # a new top-level block
        elif tok in ("}", ">"):
            if stack:
                stack.pop()
            if found is not None and not stack:
                break  # the end of the block holding the position
        elif tok[0] in "\"'":
            if len(stack) == 1 and prev[-2:] == ["name", ":"]:
                layer = _unquote(tok)
        elif re.match(r"[A-Za-z_]\w*$", tok) and tok not in ("true", "false", "inf", "nan"):
            last = tok
        prev = (prev + [tok])[-2:]
    if found is None:
        found = (list(stack), last)
    path, field = found
    if not (path and path[0] in ("layer", "layers")):
        layer = None
    return path, field, layer


def field_position(text: str, layer: str, field: str) -> Optional[Tuple[int, int]]:
    """1-based (line, column) of the first value of ``field`` (a dotted path such as
    ``convolution_param.kernel_size``) in the top-level ``layer``/``layers`` block
    named ``layer``; None when the text does not spell it out."""
    want = field.split(".")
    stack: List[str] = []
    last: Optional[str] = None
    prev: List[str] = []
    name: Optional[str] = None
    hit: Optional[int] = None
    pending = False
    for m in _TOKEN.finditer(text):
        tok = m.group()
        if tok.isspace() or tok.startswith("#"):
            continue
        if pending and tok != ":":
            if tok not in ("{", "<") and hit is None:
                hit = m.start()
            pending = False
        if tok in ("{", "<"):
            stack.append(last or "")
            last = None
            if len(stack) == 1:
                name, hit = None, None
        elif tok in ("}", ">"):
            if stack:
                stack.pop()
            if not stack and name == layer and hit is not None:
                break
        elif tok[0] in "\"'":
            if len(stack) == 1 and prev[-2:] == ["name", ":"]:
                name = _unquote(tok)
        elif re.match(r"[A-Za-z_]\w*$", tok) and tok not in ("true", "false", "inf", "nan"):
            last = tok
            pending = (bool(stack) and stack[0] in ("layer", "layers")
                       and stack[1:] + [tok] == want)
        prev = (prev + [tok])[-2:]
    else:
        if not (name == layer and hit is not None):
            return None
    if hit is None:
        return None
    line = text.count("\n", 0, hit) + 1
    return line, hit - (text.rfind("\n", 0, hit) + 1) + 1


def field_at_path(message_desc: Any, path: List[str], name: Optional[str]
                  ) -> Optional[FieldDescriptor]:
    """The descriptor of field ``name`` reached through message fields ``path``."""
    desc = message_desc
    for part in path:
        fd = desc.fields_by_name.get(part)
        if fd is None or fd.message_type is None:
            return None
        desc = fd.message_type
    return desc.fields_by_name.get(name) if name else None


# finite literals that may overflow a float: an exponent of two digits or more,
# or 39 digits and more before the point
_BIG_LITERAL = re.compile(r"(?<![\w.])[-+]?(?:\d[\d.]*[eE]\+?\d{2,}|\d{39,}(?:\.\d*)?)(?![\w.])")


def check_float_literals(text: str, message: Any, filename: str) -> None:
    """Refuse finite prototxt numbers that overflow their float field (protobuf's
    text parser turns them into inf without a word)."""
    if not _BIG_LITERAL.search(text):
        return
    desc = message.DESCRIPTOR
    for m in _BIG_LITERAL.finditer(text):
        try:
            value = float(m.group())
        except (ValueError, OverflowError):
            value = math.inf
        if not math.isinf(value) and abs(value) < FLT_OVERFLOW:
            continue
        line = text.count("\n", 0, m.start()) + 1
        col = m.start() - (text.rfind("\n", 0, m.start()) + 1) + 1
        path, name, layer = locate(text, line, col)
        fd = field_at_path(desc, path, name)
        if fd is None or fd.cpp_type not in (FD.CPPTYPE_FLOAT, FD.CPPTYPE_DOUBLE):
            continue
        if fd.cpp_type == FD.CPPTYPE_DOUBLE and not math.isinf(value):
            continue
        where = fd.containing_type.name if fd.containing_type else None
        raise NetdslError("`%s` in %s: %s is out of range (%s)"
                          % (fd.name, where, m.group(), range_text(fd)),
                          file=filename, line=line, column=col, layer=layer, field=fd.name)
