"""Reading caffemodels lazily: the file is mapped and its wire format scanned.

:func:`open_caffemodel` records where each blob's floats are; arrays are numpy
views of the mapping, made on demand.  No protobuf limit applies, so files
past 2 GiB read as well.  Both formats Caffe has written are read: the current
one (``layer``, field 100) and the V1 one (``layers``, field 2,
``V1LayerParameter`` with an enum type), including V0 layers nested inside V1
ones.
"""
from __future__ import annotations

import mmap
import os
import stat
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np

from ...errors import NetdslError, did_you_mean
from ...layers.legacy import V0_LAYER_TYPES, V1_LAYER_TYPES
from ...wire import (EGROUP as _EGROUP, I32 as _I32, I64 as _I64, LEN as _LEN,
                     SGROUP as _SGROUP, VARINT as _VARINT)
from .fields import _F32, _F64, FieldNumbers, field_numbers as _field_numbers

__all__ = ["open_caffemodel", "CaffeModel", "LayerEntry", "BlobEntry"]


@dataclass(frozen=True)
class BlobEntry:
    """One stored blob: shape (Caffe's ``Blob::FromProto`` rule), dtype, location."""

    shape: Tuple[int, ...]
    dtype: np.dtype
    offset: int  # byte offset of the BlobProto message in the file
    segments: Tuple[Tuple[int, int, int], ...] = field(repr=False, default=())
    # (offset of the first value, number of values, stride in bytes)
    legacy: bool = False  # stored with num/channels/height/width (Blob::ShapeEquals)

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

    def release(self, layer: Union[str, LayerEntry]) -> None:
        """Let the system drop this process's pages of the file that hold a layer's
        blobs (madvise DONTNEED), e.g. once they are copied: the process's memory
        then counts the copy only.  Views stay valid; touching one reads the file
        again."""
        advice = getattr(mmap, "MADV_DONTNEED", None)
        if self._mm is None or advice is None or not hasattr(self._mm, "madvise"):
            return
        entry = layer if isinstance(layer, LayerEntry) else self.layer(layer)
        for blob in entry.blobs:
            for off, n, stride in blob.segments:
                if not n:
                    continue
                end = off + (n - 1) * stride + blob.dtype.itemsize
                start = off - off % mmap.PAGESIZE
                self._mm.madvise(advice, start, end - start)

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
    s = _field_numbers(pb2)
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

    def __init__(self, buf: Any, path: str, s: FieldNumbers) -> None:
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
                             V1_LAYER_TYPES.get(V0_LAYER_TYPES.get(v0_type, ""), v0_type))
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
        return name, V1_LAYER_TYPES.get(enum_name, enum_name), blobs, v0

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
        return BlobEntry(shape, dtype, tag_pos, tuple(segs), bool(legacy))

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

