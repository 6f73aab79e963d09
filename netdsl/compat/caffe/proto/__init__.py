"""``caffe.proto``: ``caffe.proto.caffe_pb2`` is the schema in use when it is read
(BVLC's, or the one given with --proto or a spec's ``proto:``), not when the
stand-in was installed."""
from __future__ import annotations

import types
from typing import Any


class SchemaInUse(types.ModuleType):
    """``caffe_pb2``: every attribute comes from the schema in use at that moment."""

    def __getattr__(self, name: str) -> Any:
        from netdsl.schema import current_schema
        return getattr(current_schema(), name)

    def __dir__(self):
        from netdsl.schema import current_schema
        return dir(current_schema())


caffe_pb2 = SchemaInUse("caffe.proto.caffe_pb2", "the Caffe schema in use")
