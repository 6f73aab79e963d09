"""Writing caffemodels: weights as a binary ``NetParameter``, streamed.

:func:`write_caffemodel` computes every length prefix from array shapes, then
writes tags and lengths around the arrays' own buffers, so the floats go from
numpy to the file without a second full copy and without a protobuf message
being built.  The bytes are the ones protobuf's serializer would give.
"""
from __future__ import annotations

import warnings
from types import ModuleType
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ...errors import NetdslError, did_you_mean
from ...fileio import atomic_open
from ...layers.legacy import V1_LAYER_TYPES, v1_enum_name
from ...wire import LEN as _LEN, VARINT as _VARINT, key as _key, varint as _varint
from .fields import PROTO_LIMIT, _F32, _F64, FieldNumbers, field_numbers as _field_numbers
from .reader import CaffeModel

__all__ = ["write_caffemodel", "LegacyBlob"]


class LegacyBlob(np.ndarray):
    """An array to store with the legacy ``num/channels/height/width`` dims (padded
    with leading 1s) instead of ``shape { dim }``.  Blob::ShapeEquals (blob.cpp)
    matches such a blob by LegacyShape, so 1x1x1x1 loads into Caffe's 0-axis blob
    (a channel-shared PReLU slope) as Caffe's own empty ``shape {}`` does, and
    OpenCV's Caffe importer, which cannot make a Mat of no dims, loads it too.
    Only the mark travels: arithmetic on it gives plain arrays."""

    def __new__(cls, array: Any) -> "LegacyBlob":
        return np.asarray(array).view(cls)

    def __array_wrap__(self, out: np.ndarray, context: Any = None,
                       return_scalar: bool = False) -> Any:
        out = out.view(np.ndarray)
        return out[()] if return_scalar else out


def _len_head(number: int, length: int) -> bytes:
    return _key(number, _LEN) + _varint(length)


class _ArrayPiece:
    """The raw little-endian payload of one array, written from its buffer."""

    __slots__ = ("array", "dtype", "nbytes")

    def __init__(self, array: np.ndarray, dtype: np.dtype) -> None:
        self.array = array
        self.dtype = dtype
        self.nbytes = array.size * dtype.itemsize


_CHUNK = 1 << 22  # elements converted at a time when an array needs converting


def _write_array(fh, piece: _ArrayPiece) -> None:
    arr, dtype = piece.array, piece.dtype
    if arr.dtype == dtype and arr.flags.c_contiguous:
        fh.write(memoryview(arr.reshape(-1)).cast("B"))
        return
    # another dtype or layout: convert a bounded chunk at a time
    flat = arr.reshape(-1) if arr.flags.c_contiguous else None
    for start in range(0, arr.size, _CHUNK):
        stop = min(start + _CHUNK, arr.size)
        part = flat[start:stop] if flat is not None else arr.flat[start:stop]
        fh.write(np.ascontiguousarray(part, dtype=dtype).data.cast("B"))


def _as_array(value: Any, layer: str, index: int) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiub":
        raise NetdslError("blob %d has dtype %s; only real numbers can be stored"
                          % (index, arr.dtype), layer=layer)
    return arr


LayersArg = Union[Mapping[str, Sequence[Any]], Iterable[Tuple[str, str, Sequence[Any]]],
                  "CaffeModel"]


def _layer_items(layers: LayersArg, types: Any) -> Iterator[Tuple[str, str, Sequence[Any]]]:
    type_of: Dict[str, str] = {}
    if types is not None:
        if hasattr(types, "layer") and hasattr(types, "layers"):  # a NetParameter
            for lp in types.layer:
                type_of[lp.name] = lp.type
        else:
            type_of = dict(types)
    if isinstance(layers, Mapping):
        for name, blobs in layers.items():
            yield str(name), type_of.get(name, ""), blobs
        return
    if isinstance(layers, CaffeModel):  # e.g. a V1 file rewritten in the current format
        for entry in layers.layers:
            yield entry.name, entry.type, layers.arrays(entry)
        return
    for item in layers:
        try:
            name, type_, blobs = item
        except (TypeError, ValueError):
            raise NetdslError("each layer must be a (name, type, [arrays]) triple; got %r"
                              % (item,))
        yield str(name), str(type_) if type_ else type_of.get(name, ""), blobs


def _net_check(types: Any):
    """A check of (layer name, blobs) against the net ``types``, or None when
    ``types`` is not a NetParameter."""
    if not (hasattr(types, "layer") and hasattr(types, "layers")):
        return None
    names = {lp.name for lp in types.layer}
    params: Dict[str, List[Tuple[int, ...]]] = {}
    from ...shapes import infer_shapes
    try:
        for ls in infer_shapes(types).layers:
            params.setdefault(ls.name, [tuple(s) for s in ls.param_shapes])
    except NetdslError:
        params = {}     # the net needs inputs to be shaped: names only

    def check(name: str, blobs: Sequence[Any], v1: bool) -> None:
        if name not in names:
            raise NetdslError("no layer '%s' in the net; Caffe's CopyTrainedLayersFrom would "
                              "ignore its blobs (\"Ignoring source layer %s\"), so they could "
                              "never load" % (name, name), layer=name,
                              hint=did_you_mean(name, names))
        want = params.get(name)
        if want is None or isinstance(blobs, np.ndarray):
            return
        if len(want) != len(blobs):
            raise NetdslError("Incompatible number of blobs for layer %s (the net's layer has "
                              "%d, the weights %d)" % (name, len(want), len(blobs)), layer=name)
        from .shape_check import copy_mismatch, shape_equals
        for j, (target, value) in enumerate(zip(want, blobs)):
            source = tuple(np.shape(value))
            legacy = v1 or isinstance(value, LegacyBlob)
            if legacy:   # written with num/channels/height/width, padded with leading 1s
                source = (1,) * (4 - len(source)) + source if len(source) <= 4 else source
            if not shape_equals(target, source, legacy):
                raise copy_mismatch(name, j, source, target)
    return check


#: the (message, field) pairs a caffemodel written here sets
_WRITTEN = (("caffe.NetParameter", "name"), ("caffe.NetParameter", "layer"),
            ("caffe.NetParameter", "layers"), ("caffe.LayerParameter", "name"),
            ("caffe.LayerParameter", "type"), ("caffe.LayerParameter", "blobs"),
            ("caffe.V1LayerParameter", "name"), ("caffe.V1LayerParameter", "type"),
            ("caffe.V1LayerParameter", "blobs"), ("caffe.BlobProto", "data"),
            ("caffe.BlobProto", "double_data"), ("caffe.BlobProto", "shape"),
            ("caffe.BlobProto", "num"), ("caffe.BlobProto", "channels"),
            ("caffe.BlobProto", "height"), ("caffe.BlobProto", "width"),
            ("caffe.BlobShape", "dim"))


def write_caffemodel(path: str, layers: LayersArg, *, types: Any = None,
                     name: Optional[str] = None, double: bool = False,
                     v1: Optional[bool] = None,
                     allow_large: bool = False, pb2: Optional[ModuleType] = None) -> int:
    """Write weights as a binary ``NetParameter`` that Caffe and OpenCV load.

    ``layers`` is either a mapping ``{layer_name: [array, ...]}`` (types then come
    from ``types``: a mapping name -> type string, or a ``NetParameter`` whose
    layers give them; missing ones are written empty, which Caffe ignores since
    it matches layers by name), or an iterable of ``(name, type, [arrays])``
    triples, which may be a generator: layers are encoded one at a time, or an
    open :class:`CaffeModel` (all its layers: a V1 file rewritten as current).

    Each layer becomes ``layer { name type blobs { data shape { dim } } }``: the
    floats as one packed field written straight from the array's buffer
    (little-endian float32; other dtypes and layouts are converted a bounded
    chunk at a time).  ``double=True`` stores ``double_data`` (float64) instead,
    as Caffe's ``Blob<double>::ToProto`` does; Caffe reads it, but OpenCV's
    Caffe importer rejects ``double_data`` blobs, so a warning says so.

    ``v1=True`` writes the legacy form: ``layers`` (field 2) of
    ``V1LayerParameter`` with the enum type, and blobs with the 4-D
    ``num/channels/height/width`` dims (shapes padded with leading 1s, as legacy
    Caffe's blobs were); types V1 has no enum value for are refused.  It is
    the default for a schema that has V1 layers only (a 2014 fork's, whose
    Caffe skips the current ``layer`` field, so would load no weights).

    A file of 2 GiB or more is refused unless ``allow_large=True``: Caffe reads
    binary protos with a total-bytes limit of INT_MAX and protobuf cannot parse
    a message that large, so only this module's reader could open it.

    When ``types`` is a ``NetParameter`` the weights must fit that net: a layer
    name the net lacks is refused (Caffe's ``CopyTrainedLayersFrom`` would skip it
    with "Ignoring source layer", so its weights would never load: a misspelt
    name, or weights for another net), and so is a blob whose shape
    ``Blob::ShapeEquals`` rejects for the net's layer, or a layer with another
    number of blobs (Caffe stops at both; see :mod:`.shape_check`).  The
    parameter shapes come from the net's own shape inference (its TEST phase);
    when that needs more (inputs of data layers) only names are checked.

    The file is replaced atomically (temporary file, fsync, rename).  Returns the
    number of bytes written.
    """
    if pb2 is None:
        from ...schema import explicit_schema
        pb2 = explicit_schema()       # a fork's schema in use, else BVLC's
    if v1 is None:
        v1 = bool(getattr(pb2, "V1_ONLY", False))
    s = _field_numbers(pb2)
    if pb2 is not None:
        from ...fork import warn_fields
        warn_fields(pb2, _WRITTEN, "caffemodel")
    if double:
        warnings.warn("writing double_data: Caffe reads it, but OpenCV's Caffe importer "
                      "(cv2.dnn.readNetFromCaffe) rejects double_data blobs",
                      stacklevel=2)
    dtype = _F64 if double else _F32
    if double and s.blob_double < 0:
        raise NetdslError("this schema's BlobProto has no double_data; write float data "
                          "(without --double)", field="double_data")
    total = 0
    with atomic_open(path, "wb") as fh:
        if name:
            piece = name.encode("utf-8")
            head = _len_head(s.net_name, len(piece)) + piece
            fh.write(head)
            total += len(head)
        check = _net_check(types)
        for lname, ltype, blobs in _layer_items(layers, types):
            if check is not None:
                check(lname, blobs, v1)
            pieces = _plan_layer(s, lname, ltype, blobs, dtype, v1)
            size = sum(len(p) if isinstance(p, bytes) else p.nbytes for p in pieces)
            if total + size > PROTO_LIMIT and not allow_large:
                raise NetdslError(
                    "the caffemodel would reach %d bytes or more (at layer '%s'), past "
                    "2 GiB - 1: Caffe (kProtoReadBytesLimit = INT_MAX) and protobuf cannot "
                    "parse a message that large; pass allow_large=True to write it for "
                    "readers without that limit" % (total + size, lname), file=path)
            for p in pieces:
                if isinstance(p, bytes):
                    fh.write(p)
                else:
                    _write_array(fh, p)
            total += size
    return total


def _plan_layer(s: FieldNumbers, name: str, type_: str, blobs: Sequence[Any], dtype: np.dtype,
                v1: bool) -> List[Union[bytes, _ArrayPiece]]:
    """The pieces of one layer field (in field-number order, as protobuf writes)."""
    if isinstance(blobs, np.ndarray):
        raise NetdslError("blobs must be a list of arrays, not one array", layer=name)
    name_b = name.encode("utf-8")
    if v1:
        enum_name = v1_enum_name(type_)
        if enum_name is None:
            from ...packs import v1_enum_of    # a fork's own V1 type (DeconvNet's UNPOOLING)
            enum_name = v1_enum_of(type_)
        if enum_name is None or enum_name not in s.v1_enum_values:
            hint = did_you_mean(type_, [t for t in V1_LAYER_TYPES.values() if t])
            raise NetdslError("type '%s' has no V1LayerParameter enum value, so it cannot "
                              "be written in the V1 format" % type_, layer=name, hint=hint)
        head = (_len_head(s.v1_name, len(name_b)) + name_b
                + _key(s.v1_type, _VARINT) + _varint(s.v1_enum_values[enum_name]))
        blob_field, layer_field = s.v1_blobs, s.net_layers
    else:
        type_b = type_.encode("utf-8")
        head = _len_head(s.layer_name, len(name_b)) + name_b
        if type_b:
            head += _len_head(s.layer_type, len(type_b)) + type_b
        blob_field, layer_field = s.layer_blobs, s.net_layer
    body: List[Union[bytes, _ArrayPiece]] = [head]
    for i, value in enumerate(blobs):
        arr = _as_array(value, name, i)
        parts = _plan_blob(s, arr, dtype, v1 or isinstance(value, LegacyBlob), name, i)
        size = sum(len(p) if isinstance(p, bytes) else p.nbytes for p in parts)
        body.append(_len_head(blob_field, size))
        body.extend(parts)
    size = sum(len(p) if isinstance(p, bytes) else p.nbytes for p in body)
    return [_len_head(layer_field, size)] + body


def _plan_blob(s: FieldNumbers, arr: np.ndarray, dtype: np.dtype, v1: bool, layer: str,
               index: int) -> List[Union[bytes, _ArrayPiece]]:
    parts: List[Union[bytes, _ArrayPiece]] = []
    if v1 or s.blob_shape < 0:   # V1, or a schema older than BlobProto.shape
        if arr.ndim > 4:
            raise NetdslError("blob %d has %d axes; the %s holds at most 4 (num, channels, "
                              "height, width)" % (index, arr.ndim, "V1 format" if v1 else
                                                  "schema's BlobProto (no `shape`)"),
                              layer=layer)
        dims = (1,) * (4 - arr.ndim) + tuple(arr.shape)
        legacy = b"".join(_key(f, _VARINT) + _varint(d) for f, d in zip(s.blob_legacy, dims))
        parts.append(legacy)
        shape = b""
    else:
        dims_b = b"".join(_varint(d) for d in arr.shape)
        inner = _len_head(s.shape_dim, len(dims_b)) + dims_b if dims_b else b""
        shape = _len_head(s.blob_shape, len(inner)) + inner
    data_field = s.blob_double if dtype == _F64 else s.blob_data
    piece = _ArrayPiece(arr, dtype)
    data = [_len_head(data_field, piece.nbytes), piece] if piece.nbytes else []
    # protobuf writes fields in number order: put data and shape accordingly
    if data_field < s.blob_shape:
        parts += data + ([shape] if shape else [])
    else:
        parts += ([shape] if shape else []) + data
    return parts


