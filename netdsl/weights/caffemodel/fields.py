"""Where a caffemodel's fields are: their numbers, from the schema in use.

Field numbers are read from the schema module (``pb2``; BVLC's numbers are
known without compiling it), so a fork's ``caffe_pb2`` is read and written the
same way.  Shared by the writer and the reader.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Dict, Optional, Tuple

import numpy as np

from ...errors import NetdslError
from ...layers.legacy import V1_LAYER_NUMBERS

__all__ = ["PROTO_LIMIT", "FieldNumbers", "field_numbers"]

#: Caffe reads binary protos with ``SetTotalBytesLimit(kProtoReadBytesLimit)``,
#: ``kProtoReadBytesLimit = INT_MAX``: a message of 2 GiB or more cannot be read
#: by Caffe, nor parsed by protobuf itself.
PROTO_LIMIT = 2 ** 31 - 1

# payload dtypes: BlobProto.data (float) and double_data (double), little-endian
_F32 = np.dtype("<f4")
_F64 = np.dtype("<f8")


@dataclass(frozen=True)
class FieldNumbers:
    """The numbers of the fields a caffemodel reader or writer touches."""

    net_name: int
    net_layer: int
    net_layers: int
    layer_name: int
    layer_type: int
    layer_blobs: int
    v1_name: int
    v1_type: int
    v1_blobs: int
    v1_v0: int
    v0_name: int
    v0_type: int
    v0_blobs: int
    blob_shape: int
    blob_data: int
    blob_double: int
    blob_legacy: Tuple[int, int, int, int]
    shape_dim: int
    v1_enum_names: Dict[int, str]
    v1_enum_values: Dict[str, int]


_schemas: Dict[int, Tuple[ModuleType, FieldNumbers]] = {}

#: BVLC's field numbers: the bundled schema's, known without compiling it, so
#: that opening a file costs only the scan.
_BVLC = FieldNumbers(
    net_name=1, net_layer=100, net_layers=2, layer_name=1, layer_type=2, layer_blobs=7,
    v1_name=4, v1_type=5, v1_blobs=6, v1_v0=1, v0_name=1, v0_type=2, v0_blobs=50,
    blob_shape=7, blob_data=5, blob_double=8, blob_legacy=(1, 2, 3, 4), shape_dim=1,
    v1_enum_names={v: k for k, v in V1_LAYER_NUMBERS.items()},
    v1_enum_values=dict(V1_LAYER_NUMBERS))


def field_numbers(pb2: Optional[ModuleType]) -> FieldNumbers:
    """The field numbers of schema ``pb2`` (None: BVLC's), computed once per schema."""
    if pb2 is None:
        return _BVLC
    hit = _schemas.get(id(pb2))
    if hit is not None and hit[0] is pb2:
        return hit[1]

    def num(message: str, name: str) -> int:
        try:
            return getattr(pb2, message).DESCRIPTOR.fields_by_name[name].number
        except (AttributeError, KeyError):
            raise NetdslError("schema %s has no field %s.%s, which caffemodel I/O needs"
                              % (getattr(pb2, "SOURCE", pb2.__name__), message, name))

    def opt(message: str, name: str) -> int:
        # a field older forks lack (SegNet's BlobProto has no double_data): -1, never on the wire
        try:
            return getattr(pb2, message).DESCRIPTOR.fields_by_name[name].number
        except (AttributeError, KeyError):
            return -1

    try:
        enum = pb2.V1LayerParameter.DESCRIPTOR.enum_types_by_name["LayerType"]
    except (AttributeError, KeyError):
        raise NetdslError("schema %s has no enum V1LayerParameter.LayerType, which caffemodel "
                          "I/O needs" % getattr(pb2, "SOURCE", pb2.__name__)) from None
    s = FieldNumbers(
        net_name=num("NetParameter", "name"), net_layer=num("NetParameter", "layer"),
        net_layers=num("NetParameter", "layers"),
        layer_name=num("LayerParameter", "name"), layer_type=num("LayerParameter", "type"),
        layer_blobs=num("LayerParameter", "blobs"),
        v1_name=num("V1LayerParameter", "name"), v1_type=num("V1LayerParameter", "type"),
        v1_blobs=num("V1LayerParameter", "blobs"), v1_v0=num("V1LayerParameter", "layer"),
        v0_name=opt("V0LayerParameter", "name"), v0_type=opt("V0LayerParameter", "type"),
        v0_blobs=opt("V0LayerParameter", "blobs"),
        # BlobProto.shape (BVLC, 2015): without it, blobs are num/channels/height/width
        blob_shape=opt("BlobProto", "shape"), blob_data=num("BlobProto", "data"),
        blob_double=opt("BlobProto", "double_data"),
        blob_legacy=tuple(num("BlobProto", n) for n in ("num", "channels", "height", "width")),
        shape_dim=num("BlobShape", "dim"),
        v1_enum_names={v.number: v.name for v in enum.values},
        v1_enum_values={v.name: v.number for v in enum.values},
    )
    _schemas[id(pb2)] = (pb2, s)
    return s

