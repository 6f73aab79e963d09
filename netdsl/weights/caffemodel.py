"""Caffe weight files (``.caffemodel``): a streaming writer and a lazy reader.

A caffemodel is a binary ``NetParameter``.  Caffe's ``Net::CopyTrainedLayersFrom``
reads it, matches layers by name and copies each ``BlobProto`` into the layer's
parameter blobs.  Both directions here speak the protobuf wire format directly:

* :func:`write_caffemodel` computes every length prefix from array shapes, then
  writes tags and lengths around the arrays' own buffers, so the floats go from
  numpy to the file without a second full copy and without a protobuf message
  being built.  The bytes are the ones protobuf's serializer would give.
* :func:`open_caffemodel` maps the file and scans the wire format, recording
  where each blob's floats are; arrays are numpy views of the mapping, made on
  demand.  No protobuf limit applies, so files past 2 GiB read as well.

Both formats Caffe has written are read: the current one (``layer``, field 100)
and the V1 one (``layers``, field 2, ``V1LayerParameter`` with an enum type),
including V0 layers nested inside V1 ones.  Field numbers are taken from the
schema module (``pb2``, the bundled BVLC schema by default), so a fork's
``caffe_pb2`` works the same way.
"""
from __future__ import annotations

import mmap
import os
import stat
import warnings
from dataclasses import dataclass, field
from types import ModuleType
from typing import (Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence,
                    Tuple, Union)

import numpy as np

from ..wire import key as _key, varint as _varint
from ..errors import NetdslError, did_you_mean
from ..fileio import atomic_open

__all__ = ["write_caffemodel", "open_caffemodel", "CaffeModel", "LayerEntry", "BlobEntry",
           "inspect", "format_inspect",
           "V1_TYPES", "PROTO_LIMIT"]

#: Caffe reads binary protos with ``SetTotalBytesLimit(kProtoReadBytesLimit)``,
#: ``kProtoReadBytesLimit = INT_MAX``: a message of 2 GiB or more cannot be read
#: by Caffe, nor parsed by protobuf itself.
PROTO_LIMIT = 2 ** 31 - 1

# wire types
_VARINT, _I64, _LEN, _SGROUP, _EGROUP, _I32 = 0, 1, 2, 3, 4, 5

#: V1LayerParameter.LayerType enum names and the type strings Caffe's
#: ``UpgradeV1LayerType`` gives them (NONE becomes the empty string).
V1_TYPES: Dict[str, str] = {
    "NONE": "", "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax",
    "BNLL": "BNLL", "CONCAT": "Concat", "CONTRASTIVE_LOSS": "ContrastiveLoss",
    "CONVOLUTION": "Convolution", "DECONVOLUTION": "Deconvolution", "DATA": "Data",
    "DROPOUT": "Dropout", "DUMMY_DATA": "DummyData", "EUCLIDEAN_LOSS": "EuclideanLoss",
    "ELTWISE": "Eltwise", "EXP": "Exp", "FLATTEN": "Flatten", "HDF5_DATA": "HDF5Data",
    "HDF5_OUTPUT": "HDF5Output", "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col",
    "IMAGE_DATA": "ImageData", "INFOGAIN_LOSS": "InfogainLoss",
    "INNER_PRODUCT": "InnerProduct", "LRN": "LRN", "MEMORY_DATA": "MemoryData",
    "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss", "MVN": "MVN",
    "POOLING": "Pooling", "POWER": "Power", "RELU": "ReLU", "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss", "SILENCE": "Silence",
    "SOFTMAX": "Softmax", "SOFTMAX_LOSS": "SoftmaxWithLoss", "SPLIT": "Split",
    "SLICE": "Slice", "TANH": "TanH", "WINDOW_DATA": "WindowData",
    "THRESHOLD": "Threshold",
}

# V0 type strings and their V1 enum names (Caffe's UpgradeV0LayerType)
_V0_TYPES: Dict[str, str] = {
    "accuracy": "ACCURACY", "bnll": "BNLL", "concat": "CONCAT", "conv": "CONVOLUTION",
    "data": "DATA", "dropout": "DROPOUT", "euclidean_loss": "EUCLIDEAN_LOSS",
    "flatten": "FLATTEN", "hdf5_data": "HDF5_DATA", "hdf5_output": "HDF5_OUTPUT",
    "im2col": "IM2COL", "images": "IMAGE_DATA", "infogain_loss": "INFOGAIN_LOSS",
    "innerproduct": "INNER_PRODUCT", "lrn": "LRN",
    "multinomial_logistic_loss": "MULTINOMIAL_LOGISTIC_LOSS", "pool": "POOLING",
    "relu": "RELU", "sigmoid": "SIGMOID", "softmax": "SOFTMAX",
    "softmax_loss": "SOFTMAX_LOSS", "split": "SPLIT", "tanh": "TANH",
    "window_data": "WINDOW_DATA",
}

_F32 = np.dtype("<f4")
_F64 = np.dtype("<f8")


# --------------------------------------------------------------------------
# field numbers, from the schema


@dataclass(frozen=True)
class _Schema:
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


_schemas: Dict[int, Tuple[ModuleType, _Schema]] = {}


# V1LayerParameter.LayerType numbers in BVLC's caffe.proto
_V1_NUMBERS: Dict[str, int] = {
    "NONE": 0, "ABSVAL": 35, "ACCURACY": 1, "ARGMAX": 30, "BNLL": 2, "CONCAT": 3,
    "CONTRASTIVE_LOSS": 37, "CONVOLUTION": 4, "DATA": 5, "DECONVOLUTION": 39, "DROPOUT": 6,
    "DUMMY_DATA": 32, "EUCLIDEAN_LOSS": 7, "ELTWISE": 25, "EXP": 38, "FLATTEN": 8,
    "HDF5_DATA": 9, "HDF5_OUTPUT": 10, "HINGE_LOSS": 28, "IM2COL": 11, "IMAGE_DATA": 12,
    "INFOGAIN_LOSS": 13, "INNER_PRODUCT": 14, "LRN": 15, "MEMORY_DATA": 29,
    "MULTINOMIAL_LOGISTIC_LOSS": 16, "MVN": 34, "POOLING": 17, "POWER": 26, "RELU": 18,
    "SIGMOID": 19, "SIGMOID_CROSS_ENTROPY_LOSS": 27, "SILENCE": 36, "SOFTMAX": 20,
    "SOFTMAX_LOSS": 21, "SPLIT": 22, "SLICE": 33, "TANH": 23, "WINDOW_DATA": 24,
    "THRESHOLD": 31,
}

#: BVLC's field numbers: the bundled schema's, known without compiling it, so
#: that opening a file costs only the scan.
_BVLC = _Schema(
    net_name=1, net_layer=100, net_layers=2, layer_name=1, layer_type=2, layer_blobs=7,
    v1_name=4, v1_type=5, v1_blobs=6, v1_v0=1, v0_name=1, v0_type=2, v0_blobs=50,
    blob_shape=7, blob_data=5, blob_double=8, blob_legacy=(1, 2, 3, 4), shape_dim=1,
    v1_enum_names={v: k for k, v in _V1_NUMBERS.items()}, v1_enum_values=dict(_V1_NUMBERS))


def _schema(pb2: Optional[ModuleType]) -> _Schema:
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

    try:
        enum = pb2.V1LayerParameter.DESCRIPTOR.enum_types_by_name["LayerType"]
    except (AttributeError, KeyError):
        raise NetdslError("schema %s has no enum V1LayerParameter.LayerType, which caffemodel "
                          "I/O needs" % getattr(pb2, "SOURCE", pb2.__name__)) from None
    s = _Schema(
        net_name=num("NetParameter", "name"), net_layer=num("NetParameter", "layer"),
        net_layers=num("NetParameter", "layers"),
        layer_name=num("LayerParameter", "name"), layer_type=num("LayerParameter", "type"),
        layer_blobs=num("LayerParameter", "blobs"),
        v1_name=num("V1LayerParameter", "name"), v1_type=num("V1LayerParameter", "type"),
        v1_blobs=num("V1LayerParameter", "blobs"), v1_v0=num("V1LayerParameter", "layer"),
        v0_name=num("V0LayerParameter", "name"), v0_type=num("V0LayerParameter", "type"),
        v0_blobs=num("V0LayerParameter", "blobs"),
        blob_shape=num("BlobProto", "shape"), blob_data=num("BlobProto", "data"),
        blob_double=num("BlobProto", "double_data"),
        blob_legacy=tuple(num("BlobProto", n) for n in ("num", "channels", "height", "width")),
        shape_dim=num("BlobShape", "dim"),
        v1_enum_names={v.number: v.name for v in enum.values},
        v1_enum_values={v.name: v.number for v in enum.values},
    )
    _schemas[id(pb2)] = (pb2, s)
    return s


# --------------------------------------------------------------------------
# writer


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


def write_caffemodel(path: str, layers: LayersArg, *, types: Any = None,
                     name: Optional[str] = None, double: bool = False, v1: bool = False,
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
    Caffe's blobs were); types V1 has no enum value for are refused.

    A file of 2 GiB or more is refused unless ``allow_large=True``: Caffe reads
    binary protos with a total-bytes limit of INT_MAX and protobuf cannot parse
    a message that large, so only this module's reader could open it.

    The file is replaced atomically (temporary file, fsync, rename).  Returns the
    number of bytes written.
    """
    s = _schema(pb2)
    if double:
        warnings.warn("writing double_data: Caffe reads it, but OpenCV's Caffe importer "
                      "(cv2.dnn.readNetFromCaffe) rejects double_data blobs",
                      stacklevel=2)
    dtype = _F64 if double else _F32
    total = 0
    with atomic_open(path, "wb") as fh:
        if name:
            piece = name.encode("utf-8")
            head = _len_head(s.net_name, len(piece)) + piece
            fh.write(head)
            total += len(head)
        for lname, ltype, blobs in _layer_items(layers, types):
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


def _plan_layer(s: _Schema, name: str, type_: str, blobs: Sequence[Any], dtype: np.dtype,
                v1: bool) -> List[Union[bytes, _ArrayPiece]]:
    """The pieces of one layer field (in field-number order, as protobuf writes)."""
    if isinstance(blobs, np.ndarray):
        raise NetdslError("blobs must be a list of arrays, not one array", layer=name)
    name_b = name.encode("utf-8")
    if v1:
        enum_name = _v1_enum_name(type_)
        if enum_name is None or enum_name not in s.v1_enum_values:
            hint = did_you_mean(type_, [t for t in V1_TYPES.values() if t])
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
        parts = _plan_blob(s, arr, dtype, v1, name, i)
        size = sum(len(p) if isinstance(p, bytes) else p.nbytes for p in parts)
        body.append(_len_head(blob_field, size))
        body.extend(parts)
    size = sum(len(p) if isinstance(p, bytes) else p.nbytes for p in body)
    return [_len_head(layer_field, size)] + body


def _plan_blob(s: _Schema, arr: np.ndarray, dtype: np.dtype, v1: bool, layer: str,
               index: int) -> List[Union[bytes, _ArrayPiece]]:
    parts: List[Union[bytes, _ArrayPiece]] = []
    if v1:
        if arr.ndim > 4:
            raise NetdslError("blob %d has %d axes; the V1 format holds at most 4 "
                              "(num, channels, height, width)" % (index, arr.ndim), layer=layer)
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


def _v1_enum_name(type_: str) -> Optional[str]:
    for enum_name, t in V1_TYPES.items():
        if t == type_:
            return enum_name
    return None


# --------------------------------------------------------------------------
# reader


@dataclass(frozen=True)
class BlobEntry:
    """One stored blob: shape (Caffe's ``Blob::FromProto`` rule), dtype, location."""

    shape: Tuple[int, ...]
    dtype: np.dtype
    offset: int  # byte offset of the BlobProto message in the file
    segments: Tuple[Tuple[int, int, int], ...] = field(repr=False, default=())
    # (offset of the first value, number of values, stride in bytes)

    @property
    def count(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return self.count * self.dtype.itemsize


@dataclass(frozen=True)
class LayerEntry:
    """One stored layer: its name, type string, blobs and where it starts."""

    name: str
    type: str
    blobs: Tuple[BlobEntry, ...]
    index: int
    offset: int  # byte offset of the layer message in the file

    @property
    def shapes(self) -> List[Tuple[int, ...]]:
        return [b.shape for b in self.blobs]

    @property
    def dtypes(self) -> List[np.dtype]:
        return [b.dtype for b in self.blobs]


class CaffeModel:
    """A caffemodel opened for reading (see :func:`open_caffemodel`).

    ``layers`` lists every stored layer in file order.  ``arrays(name)`` gives
    that layer's blobs as numpy arrays: read-only views of the file mapping when
    the floats are one packed field (no copy), fresh arrays otherwise.  Views
    stay valid after :meth:`close`; the mapping goes when the last one does.
    """

    def __init__(self, path: str, buf: Any, mm: Optional[mmap.mmap], name: str, fmt: str,
                 layers: List[LayerEntry]) -> None:
        self.path = path
        self.name = name
        #: "layer" (current), "v1" (``layers`` of V1LayerParameter), "v0" (V1 with
        #: nested V0 layers) or "empty"
        self.format = fmt
        self.layers = layers
        self.size = len(buf)
        self._buf = buf
        self._mm = mm
        self._by_name: Dict[str, LayerEntry] = {}
        for entry in layers:
            # Caffe copies source layers in order, so a later duplicate wins
            self._by_name[entry.name] = entry

    # -- access

    def names(self) -> List[str]:
        """Layer names in file order."""
        return [e.name for e in self.layers]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[LayerEntry]:
        return iter(self.layers)

    def layer(self, name: str) -> LayerEntry:
        """The entry of layer ``name`` (the last one when a name repeats, as in Caffe)."""
        try:
            return self._by_name[name]
        except KeyError:
            raise NetdslError("no layer '%s' in the caffemodel" % name, file=self.path,
                              hint=did_you_mean(name, self._by_name)) from None

    def arrays(self, layer: Union[str, int, LayerEntry], *, copy: bool = False
               ) -> List[np.ndarray]:
        """The blobs of a layer (by name, index or entry) as numpy arrays.

        float32 for ``data``, float64 for ``double_data``.  ``copy=True`` gives
        writable arrays independent of the file.
        """
        if self._buf is None:
            raise NetdslError("the caffemodel is closed", file=self.path)
        if isinstance(layer, LayerEntry):
            entry = layer
        elif isinstance(layer, int):
            entry = self.layers[layer]
        else:
            entry = self.layer(layer)
        return [self._array(b, copy) for b in entry.blobs]

    def _array(self, blob: BlobEntry, copy: bool) -> np.ndarray:
        buf, dtype, segs = self._buf, blob.dtype, blob.segments
        if len(segs) == 1 and segs[0][2] == dtype.itemsize:
            off, n, _ = segs[0]
            arr = np.frombuffer(buf, dtype=dtype, count=n, offset=off).reshape(blob.shape)
            return arr.copy() if copy else arr
        out = np.empty(blob.count, dtype=dtype)
        pos = 0
        for off, n, stride in segs:
            if stride == dtype.itemsize:
                out[pos:pos + n] = np.frombuffer(buf, dtype=dtype, count=n, offset=off)
            else:
                raw = np.frombuffer(buf, dtype=np.uint8, count=(n - 1) * stride + dtype.itemsize,
                                    offset=off)
                rows = np.lib.stride_tricks.as_strided(raw, shape=(n, dtype.itemsize),
                                                       strides=(stride, 1), writeable=False)
                out[pos:pos + n] = np.ascontiguousarray(rows).view(dtype).reshape(n)
            pos += n
        return out.reshape(blob.shape)

    def to_dict(self, *, copy: bool = False) -> Dict[str, List[np.ndarray]]:
        """``{layer_name: [arrays]}`` for every layer that has blobs, in file order."""
        out: Dict[str, List[np.ndarray]] = {}
        for entry in self.layers:
            if entry.blobs:
                out.pop(entry.name, None)
                out[entry.name] = self.arrays(entry, copy=copy)
        return out

    # -- lifetime

    def close(self) -> None:
        """Release the file mapping (arrays handed out keep it alive until they go)."""
        mm, self._mm, self._buf = self._mm, None, None
        if mm is not None:
            try:
                mm.close()
            except BufferError:
                pass  # views are still alive; the mapping is released with them

    @property
    def closed(self) -> bool:
        return self._buf is None

    def __enter__(self) -> "CaffeModel":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return "<CaffeModel %s: %d layers, %d bytes, format %s>" % (
            self.path, len(self.layers), self.size, self.format)


def open_caffemodel(path: str, *, pb2: Optional[ModuleType] = None) -> CaffeModel:
    """Open a caffemodel lazily: scan its wire format, map it, read nothing else.

    Layers, types and blob shapes are known at once; float payloads are not
    touched until :meth:`CaffeModel.arrays`.  Blob shapes follow Caffe's
    ``Blob::FromProto``: when any of the legacy ``num/channels/height/width`` is
    present the shape is those four (absent ones 0), otherwise ``shape.dim``
    (no dims: a scalar, one value).  ``double_data``, when present, wins over
    ``data`` as in Caffe.  V1 enum types become the current type strings as
    Caffe's ``UpgradeV1LayerType`` does.

    Every length is checked against the bytes that remain, so a truncated or
    corrupt file raises :class:`NetdslError` naming the byte offset.
    """
    s = _schema(pb2)
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise NetdslError("cannot read: %s" % (exc.strerror or exc), file=path)
    with fh:
        try:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise NetdslError("not a regular file", file=path)
            if st.st_size == 0:
                mm, buf = None, b""
            else:
                mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
                buf = mm
        except OSError as exc:
            raise NetdslError("cannot map: %s" % (exc.strerror or exc), file=path)
    try:
        name, fmt, layers = _Scanner(buf, path, s).net()
    except BaseException:
        if mm is not None:
            mm.close()
        raise
    return CaffeModel(path, buf, mm, name, fmt, layers)


class _Scanner:
    """Walks the wire format of a NetParameter without touching float payloads."""

    def __init__(self, buf: Any, path: str, s: _Schema) -> None:
        self.buf = buf
        self.path = path
        self.s = s

    # -- primitives

    def fail(self, message: str, offset: int) -> NetdslError:
        return NetdslError("corrupt or truncated caffemodel at byte %d: %s" % (offset, message),
                           file=self.path)

    def varint(self, pos: int, end: int) -> Tuple[int, int]:
        buf = self.buf
        start = pos
        result = shift = 0
        while True:
            if pos >= end:
                raise self.fail("varint runs past the end of its message (ends at byte %d)"
                                % end, start)
            b = buf[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            if b < 0x80:
                if shift == 63 and b > 1:
                    raise self.fail("varint overflows 64 bits", start)
                return result, pos
            shift += 7
            if shift > 63:
                raise self.fail("varint longer than 10 bytes", start)

    def key(self, pos: int, end: int) -> Tuple[int, int, int]:
        key, npos = self.varint(pos, end)
        number, wire = key >> 3, key & 7
        if number == 0 or number > 0x1FFFFFFF:
            raise self.fail("invalid field number %d" % number, pos)
        if wire in (6, 7):
            raise self.fail("invalid wire type %d (field %d)" % (wire, number), pos)
        if wire == _EGROUP:
            raise self.fail("unexpected end-group tag (field %d)" % number, pos)
        return number, wire, npos

    def length(self, pos: int, end: int, tag_pos: int, number: int) -> Tuple[int, int]:
        n, pos = self.varint(pos, end)
        if n > end - pos:
            raise self.fail("field %d claims %d bytes but only %d remain in its message "
                            "(ends at byte %d)" % (number, n, end - pos, end), tag_pos)
        return pos, pos + n

    def skip(self, number: int, wire: int, pos: int, end: int, tag_pos: int) -> int:
        if wire == _VARINT:
            return self.varint(pos, end)[1]
        if wire == _I64:
            return self.fixed(pos, end, 8, tag_pos, number)
        if wire == _I32:
            return self.fixed(pos, end, 4, tag_pos, number)
        if wire == _LEN:
            return self.length(pos, end, tag_pos, number)[1]
        # start-group: skip to the matching end-group, nested ones included
        depth = [number]
        while depth:
            if len(depth) > 100:
                raise self.fail("groups nested too deeply", tag_pos)
            if pos >= end:
                raise self.fail("group (field %d) is not closed" % number, tag_pos)
            key, npos = self.varint(pos, end)
            n, w = key >> 3, key & 7
            if n == 0 or w in (6, 7):
                raise self.fail("invalid tag inside a group", pos)
            if w == _EGROUP:
                if n != depth[-1]:
                    raise self.fail("end-group for field %d closes group %d" % (n, depth[-1]),
                                    pos)
                depth.pop()
                pos = npos
            elif w == _SGROUP:
                depth.append(n)
                pos = npos
            else:
                pos = self.skip(n, w, npos, end, pos)
        return pos

    def fixed(self, pos: int, end: int, size: int, tag_pos: int, number: int) -> int:
        if end - pos < size:
            raise self.fail("field %d needs %d bytes but only %d remain" % (number, size,
                                                                            end - pos), tag_pos)
        return pos + size

    def text(self, start: int, stop: int) -> str:
        return bytes(self.buf[start:stop]).decode("utf-8", errors="replace")

    # -- messages

    def net(self) -> Tuple[str, str, List[LayerEntry]]:
        s, end = self.s, len(self.buf)
        pos, name = 0, ""
        current: List[Tuple[int, int, int]] = []
        legacy: List[Tuple[int, int, int]] = []
        while pos < end:
            tag_pos = pos
            number, wire, pos = self.key(pos, end)
            if wire == _LEN and number in (s.net_layer, s.net_layers, s.net_name):
                start, pos = self.length(pos, end, tag_pos, number)
                if number == s.net_name:
                    name = self.text(start, pos)
                elif number == s.net_layer:
                    current.append((tag_pos, start, pos))
                else:
                    legacy.append((tag_pos, start, pos))
            else:
                pos = self.skip(number, wire, pos, end, tag_pos)
        if current and legacy:
            raise NetdslError("the caffemodel has both 'layer' (current) and 'layers' (V1) "
                              "fields; Caffe refuses such a net", file=self.path)
        layers: List[LayerEntry] = []
        if legacy:
            parsed = [self.v1_layer(*where) for where in legacy]
            # Caffe's NetNeedsV0ToV1Upgrade: one nested V0 layer makes the whole net
            # V0, and UpgradeV0LayerParameter rebuilds every layer from its V0 part
            fmt = "v0" if any(p[3] is not None for p in parsed) else "v1"
            for i, ((tag_pos, _, _), (name_, type_, blobs, v0)) in enumerate(zip(legacy, parsed)):
                if fmt == "v0":
                    v0_name, v0_type, blobs = v0 if v0 is not None else (None, None, [])
                    name_ = v0_name or ""
                    type_ = ("" if v0_type is None else
                             V1_TYPES.get(_V0_TYPES.get(v0_type, ""), v0_type))
                entry_blobs = tuple(self.blob(b, name_) for b in blobs)
                layers.append(LayerEntry(name_, type_, entry_blobs, i, tag_pos))
        else:
            fmt = "layer" if current else "empty"
            for i, (tag_pos, start, stop) in enumerate(current):
                layers.append(self.layer(i, tag_pos, start, stop))
        return name, fmt, layers

    def layer(self, index: int, tag_pos: int, pos: int, end: int) -> LayerEntry:
        s = self.s
        name = type_ = ""
        blobs: List[Tuple[int, int, int]] = []
        while pos < end:
            fpos = pos
            number, wire, pos = self.key(pos, end)
            if wire == _LEN and number in (s.layer_name, s.layer_type, s.layer_blobs):
                start, pos = self.length(pos, end, fpos, number)
                if number == s.layer_name:
                    name = self.text(start, pos)
                elif number == s.layer_type:
                    type_ = self.text(start, pos)
                else:
                    blobs.append((fpos, start, pos))
            else:
                pos = self.skip(number, wire, pos, end, fpos)
        return LayerEntry(name, type_, tuple(self.blob(b, name) for b in blobs), index, tag_pos)

    def v1_layer(self, tag_pos: int, pos: int, end: int):
        """(name, type, blob locations, V0 part or None) of a V1LayerParameter."""
        s = self.s
        name, type_num = "", 0
        blobs: List[Tuple[int, int, int]] = []
        v0 = None
        while pos < end:
            fpos = pos
            number, wire, pos = self.key(pos, end)
            if wire == _LEN and number in (s.v1_name, s.v1_blobs, s.v1_v0):
                start, pos = self.length(pos, end, fpos, number)
                if number == s.v1_name:
                    name = self.text(start, pos)
                elif number == s.v1_blobs:
                    blobs.append((fpos, start, pos))
                else:
                    # a repeated occurrence of a message field merges into the first
                    n, t, b = self.v0_layer(start, pos)
                    if v0 is None:
                        v0 = (n, t, b)
                    else:
                        v0 = (n if n is not None else v0[0], t if t is not None else v0[1],
                              v0[2] + b)
            elif wire == _VARINT and number == s.v1_type:
                value, pos = self.varint(pos, end)
                value &= 0xFFFFFFFF  # enums are int32
                value = value - (1 << 32) if value >= 1 << 31 else value
                # a value the schema does not know is kept aside by protobuf: type unchanged
                if value in s.v1_enum_names:
                    type_num = value
            else:
                pos = self.skip(number, wire, pos, end, fpos)
        enum_name = s.v1_enum_names.get(type_num, "NONE")
        return name, V1_TYPES.get(enum_name, enum_name), blobs, v0

    def v0_layer(self, pos: int, end: int
                 ) -> Tuple[Optional[str], Optional[str], List[Tuple[int, int, int]]]:
        s = self.s
        name = type_ = None
        blobs: List[Tuple[int, int, int]] = []
        while pos < end:
            fpos = pos
            number, wire, pos = self.key(pos, end)
            if wire == _LEN and number in (s.v0_name, s.v0_type, s.v0_blobs):
                start, pos = self.length(pos, end, fpos, number)
                if number == s.v0_name:
                    name = self.text(start, pos)
                elif number == s.v0_type:
                    type_ = self.text(start, pos)
                else:
                    blobs.append((fpos, start, pos))
            else:
                pos = self.skip(number, wire, pos, end, fpos)
        return name, type_, blobs

    def blob(self, where: Tuple[int, int, int], layer: str) -> BlobEntry:
        s = self.s
        tag_pos, pos, end = where
        dims: List[int] = []
        legacy: Dict[int, int] = {}
        f32: List[Tuple[int, int, int]] = []
        f64: List[Tuple[int, int, int]] = []
        while pos < end:
            fpos = pos
            number, wire, pos = self.key(pos, end)
            if number == s.blob_data and wire in (_LEN, _I32):
                pos = self.floats(f32, wire, fpos, pos, end, number, 4)
            elif number == s.blob_double and wire in (_LEN, _I64):
                pos = self.floats(f64, wire, fpos, pos, end, number, 8)
            elif number == s.blob_shape and wire == _LEN:
                start, pos = self.length(pos, end, fpos, number)
                dims += self.shape(start, pos)
            elif number in s.blob_legacy and wire == _VARINT:
                value, pos = self.varint(pos, end)
                value &= 0xFFFFFFFF  # int32
                legacy[number] = value - (1 << 32) if value >= 1 << 31 else value
            else:
                pos = self.skip(number, wire, pos, end, fpos)
        if legacy:
            shape = tuple(legacy.get(n, 0) for n in s.blob_legacy)
        else:
            shape = tuple(dims)
        if any(d < 0 for d in shape):
            raise self.fail("blob of layer '%s' has a negative dimension %s" % (layer, shape),
                            tag_pos)
        if f64:
            segs, dtype = f64, _F64
        else:
            segs, dtype = f32, _F32
        stored = sum(n for _, n, _ in segs)
        count = 1
        for d in shape:
            count *= d
        if stored != count:
            raise self.fail("blob of layer '%s' has shape %s (%d values) but stores %d %s "
                            "values" % (layer, shape, count, stored,
                                        "double_data" if f64 else "data"), tag_pos)
        return BlobEntry(shape, dtype, tag_pos, tuple(segs))

    def floats(self, segs: List[Tuple[int, int, int]], wire: int, tag_pos: int, pos: int,
               end: int, number: int, size: int) -> int:
        if wire == _LEN:
            start, stop = self.length(pos, end, tag_pos, number)
            if (stop - start) % size:
                raise self.fail("packed field %d holds %d bytes, not a multiple of %d"
                                % (number, stop - start, size), tag_pos)
            if stop > start:
                segs.append((start, (stop - start) // size, size))
            return stop
        # not packed: a run of (tag, value) records; count the run with numpy
        tag = bytes(self.buf[tag_pos:pos])
        rec = len(tag) + size
        if end - pos < size:
            raise self.fail("field %d needs %d bytes but only %d remain" % (number, size,
                                                                            end - pos), tag_pos)
        run = 1
        probe = 64
        while True:
            start = tag_pos + run * rec
            n = min(probe, (end - start) // rec)
            if n <= 0:
                break
            block = np.frombuffer(self.buf, dtype=np.uint8, count=n * rec, offset=start)
            block = block.reshape(n, rec)[:, :len(tag)]
            ok = np.all(block == np.frombuffer(tag, dtype=np.uint8), axis=1)
            bad = np.flatnonzero(~ok)
            if bad.size:
                run += int(bad[0])
                break
            run += n
            probe *= 2
        segs.append((pos, run, rec))
        return tag_pos + run * rec

    def shape(self, pos: int, end: int) -> List[int]:
        dim_field = self.s.shape_dim
        dims: List[int] = []
        while pos < end:
            fpos = pos
            number, wire, pos = self.key(pos, end)
            if number == dim_field and wire == _LEN:
                start, stop = self.length(pos, end, fpos, number)
                p = start
                while p < stop:
                    value, p = self.varint(p, stop)
                    dims.append(_int64(value))
                pos = stop
            elif number == dim_field and wire == _VARINT:
                value, pos = self.varint(pos, end)
                dims.append(_int64(value))
            else:
                pos = self.skip(number, wire, pos, end, fpos)
        return dims


def _int64(value: int) -> int:
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


# --------------------------------------------------------------------------
# inspection


def inspect(path: str, stats: bool = False, *, pb2: Optional[ModuleType] = None
            ) -> Dict[str, Any]:
    """A plain description of a caffemodel, for printing or JSON.

    ``{"path", "name", "format", "size", "params", "layers": [{"name", "type",
    "blobs": [{"shape", "dtype", "count"[, "min", "max", "mean"]}]}]}``; with
    ``stats=True`` each blob also gets its minimum, maximum and mean (read from
    the file; NaN when the blob holds a NaN, None when it is empty).
    """
    with open_caffemodel(path, pb2=pb2) as model:
        layers = []
        total = 0
        for entry in model.layers:
            arrays = model.arrays(entry) if stats else [None] * len(entry.blobs)
            blobs = []
            for blob, arr in zip(entry.blobs, arrays):
                info: Dict[str, Any] = {"shape": list(blob.shape), "dtype": blob.dtype.name,
                                        "count": blob.count}
                total += blob.count
                if stats:
                    if arr.size:
                        info["min"] = float(arr.min())
                        info["max"] = float(arr.max())
                        info["mean"] = float(arr.mean(dtype=np.float64))
                    else:
                        info["min"] = info["max"] = info["mean"] = None
                blobs.append(info)
            layers.append({"name": entry.name, "type": entry.type, "blobs": blobs})
        return {"path": path, "name": model.name, "format": model.format,
                "size": model.size, "params": total, "layers": layers}


def format_inspect(info: Dict[str, Any]) -> str:
    """A text table of :func:`inspect`'s result: one row per blob, then totals."""
    has_stats = any("min" in b for layer in info["layers"] for b in layer["blobs"])
    head = ["layer", "type", "blob", "shape", "dtype", "count"]
    if has_stats:
        head += ["min", "max", "mean"]
    rows = [head]

    def num(v: Any) -> str:
        return "-" if v is None else "%.6g" % v

    for layer in info["layers"]:
        if not layer["blobs"]:
            rows.append([layer["name"], layer["type"] or "-", "-", "-", "-", "0"]
                        + (["", "", ""] if has_stats else []))
        for i, b in enumerate(layer["blobs"]):
            row = [layer["name"] if i == 0 else "", (layer["type"] or "-") if i == 0 else "",
                   str(i), "x".join(str(d) for d in b["shape"]) or "scalar", b["dtype"],
                   str(b["count"])]
            if has_stats:
                row += [num(b.get("min")), num(b.get("max")), num(b.get("mean"))]
            rows.append(row)
    widths = [max(len(r[c]) for r in rows) for c in range(len(head))]
    right = {2, 5, 6, 7, 8}
    lines = ["  ".join(cell.rjust(w) if c in right else cell.ljust(w)
                       for c, (cell, w) in enumerate(zip(r, widths))).rstrip() for r in rows]
    title = "%s: %s format, %d layers, %d parameters, %d bytes" % (
        info["path"], info["format"], len(info["layers"]), info["params"], info["size"])
    if info.get("name"):
        title += ", net '%s'" % info["name"]
    return "\n".join([title] + lines)
