"""Caffe's schema, compiled at run time into message classes.

``from netdsl.proto import caffe_pb2`` gives the bundled BVLC schema with the
same names as pycaffe's ``caffe.proto.caffe_pb2``.  :func:`load_schema`
compiles a fork's extended ``caffe.proto`` the same way into a module of its
own, with a private descriptor pool, so several schemas (and a real pycaffe)
can live in one process.
"""
from __future__ import annotations

import os
import types
from typing import Dict, Optional

from google.protobuf import descriptor_pool
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from ..errors import NetdslError
from ..protoparse import file_loader, parse_proto

try:  # protobuf >= 4.22
    from google.protobuf.message_factory import GetMessageClass as _get_class
except ImportError:  # protobuf 4.21
    _get_class = None
    from google.protobuf import message_factory as _mf

BUNDLED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "caffe.proto")

_cache: Dict[str, types.ModuleType] = {}


def populate(namespace: dict, text: str, path: str) -> None:
    """Compile ``text`` (a caffe.proto) and put its classes and enums into ``namespace``.

    ``LOCATIONS`` maps ``(scope, name)`` of each field and enum value to
    ``(file, line, column)`` in the schema source, for error messages.
    """
    locations: dict = {}
    fdps = parse_proto(text, path, load=file_loader(os.path.dirname(os.path.abspath(path))),
                       locations=locations)
    from .legacy_schema import is_v1_only, merge_into_bvlc
    namespace["V1_ONLY"] = is_v1_only(fdps[-1])
    namespace["ADDED_V2_FIELDS"] = []
    if namespace["V1_ONLY"] and os.path.abspath(path) != BUNDLED:
        with open(BUNDLED, encoding="utf-8") as fh:
            bvlc = parse_proto(fh.read(), BUNDLED)[-1]
        fdps[-1], namespace["ADDED_V2_FIELDS"] = merge_into_bvlc(fdps[-1], bvlc)
    pool = descriptor_pool.DescriptorPool()
    for fdp in fdps:
        try:
            pool.AddSerializedFile(fdp.SerializeToString())
        except (TypeError, ValueError) as exc:  # what protobuf's own checks refuse
            raise NetdslError("the schema does not build: %s" % " ".join(str(exc).split()),
                              file=path) from None
    fd = pool.FindFileByName(fdps[-1].name)
    factory = None if _get_class else _mf.MessageFactory(pool)

    def cls(desc):
        return _get_class(desc) if _get_class else factory.GetPrototype(desc)

    namespace["DESCRIPTOR"] = fd
    namespace["POOL"] = pool
    namespace["SOURCE"] = path
    namespace["LOCATIONS"] = locations
    for name, desc in fd.message_types_by_name.items():
        namespace[name] = cls(desc)
    for name, desc in fd.enum_types_by_name.items():
        namespace[name] = EnumTypeWrapper(desc)
        for v in desc.values:
            namespace[v.name] = v.number


def load_schema(path: Optional[str] = None, *, strict: bool = False,
                allow_conflicts: Optional[bool] = None) -> types.ModuleType:
    """A ``caffe_pb2``-like module for the schema at ``path`` (bundled when None).

    Compiled once per path and cached.  Errors in the schema raise
    :class:`~netdsl.errors.NetdslError` with file, line and column.  A fork's
    schema is used as published: where it reuses one of BVLC's field or enum
    numbers for something else, the module's ``CONFLICTS`` lists the located
    messages and ``CONFLICT_FIELDS`` the fields, and writers warn once when a
    file sets one (:func:`netdsl.fork.warn_on_write`).  ``strict`` (for
    authors of a new fork) raises the first such reuse as a located error
    instead.  ``allow_conflicts`` is the former opt-in, kept as an alias:
    true means not strict.  Loading a fork schema also enables the layer packs
    (:mod:`netdsl.packs`) whose parameter messages it has.
    """
    if allow_conflicts:
        strict = False
    if path is None:
        from . import caffe_pb2
        return caffe_pb2
    key = os.path.abspath(path)
    if key not in _cache:
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise NetdslError("cannot read schema: %s" % (exc.strerror or exc), file=path)
        except UnicodeDecodeError as exc:
            raise NetdslError("not a UTF-8 text file (byte %d)" % exc.start, file=path) from None
        mod = types.ModuleType("caffe_pb2", "Caffe schema compiled from %s" % path)
        populate(mod.__dict__, text, path)
        from ..fork import check_against_bvlc
        mod.CONFLICTS = check_against_bvlc(mod, raise_errors=False)
        from ..fork import fill_missing_fields
        mod.PRE_FIELD_DEFAULTS = fill_missing_fields(mod)
        _check_core(mod, path)
        _cache[key] = mod
    mod = _cache[key]
    if strict and mod.CONFLICTS:
        from ..fork import check_against_bvlc
        check_against_bvlc(mod, raise_errors=True)
    from ..packs import enable_for_schema
    enable_for_schema(mod)
    return mod


#: the messages and fields every netdsl verb relies on; a fork schema has them all
#: (forks add fields to BVLC's caffe.proto; old ones may lack later BVLC fields)
CORE_FIELDS = {
    "NetParameter": ("name", "layer"),
    "LayerParameter": ("name", "type", "bottom", "top", "blobs"),
    "BlobProto": ("data",),   # `shape` (2015): without it, num/channels/height/width
    "BlobShape": ("dim",),
}


def _check_core(mod: types.ModuleType, path: str) -> None:
    """Refuse a schema that lacks a message or field netdsl cannot do without."""
    for name, fields in CORE_FIELDS.items():
        desc = getattr(getattr(mod, name, None), "DESCRIPTOR", None)
        if desc is None or not hasattr(desc, "fields_by_name"):
            raise NetdslError("the schema has no message %s, which netdsl needs (a fork "
                              "schema extends BVLC's caffe.proto)" % name, file=path)
        missing = [f for f in fields if f not in desc.fields_by_name]
        if missing:
            raise NetdslError("message %s of the schema has no field %s, which netdsl needs"
                              % (name, ", ".join("`%s`" % m for m in missing)), file=path)


def schema_of(message) -> types.ModuleType:
    """The schema module (bundled or loaded with :func:`load_schema`) a message
    belongs to; the bundled one when it is not from a loaded schema."""
    from . import caffe_pb2
    fd = message.DESCRIPTOR.file
    if fd is caffe_pb2.DESCRIPTOR:
        return caffe_pb2
    for mod in _cache.values():
        if mod.DESCRIPTOR is fd:
            return mod
    return caffe_pb2
