"""Compiling a caffe.proto text into message classes, in a descriptor pool of its own
(``caffe_pb2`` is BVLC's, compiled from the bundled file at import)."""
from __future__ import annotations

import os
import types
from typing import Dict

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
