"""Caffe's schema, compiled at run time into message classes.

``from netdsl.proto import caffe_pb2`` gives the bundled BVLC schema with the
same names as pycaffe's ``caffe.proto.caffe_pb2``.  :func:`load_schema`
compiles a fork's extended ``caffe.proto`` the same way into a module of its
own, with a private descriptor pool, so several schemas (and a real pycaffe)
can live in one process.  :func:`load_schema` lives in :mod:`netdsl.proto.load`
(it checks a fork against BVLC's schema with :mod:`netdsl.fork`, which reads
``caffe_pb2``) and is offered here lazily, so that ``caffe_pb2`` needs neither.
"""
from __future__ import annotations

import types

from ..errors import NetdslError
from .compiler import BUNDLED, _cache, populate  # noqa: F401


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


def __getattr__(name: str):
    if name == "load_schema":
        from .load import load_schema
        return load_schema
    raise AttributeError("module 'netdsl.proto' has no attribute %r" % name)
