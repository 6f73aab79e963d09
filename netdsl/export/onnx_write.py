"""ONNX bytes written as a stream: the model without its initialisers is
serialised by protobuf, and each initialiser (a TensorProto whose ``raw_data``
is the array's own buffer) is appended to the graph in the wire format
(``onnx.proto``: ModelProto.graph = 7, GraphProto.initializer = 5,
TensorProto.raw_data = 9), so the weights are never copied into a protobuf
message.  Past protobuf's 2 GiB limit the arrays go to a ``.data`` file as ONNX
external data (TensorProto.external_data = 13, data_location = 14).
"""
from __future__ import annotations

import os
from typing import Any, BinaryIO, Dict, Iterator, List, Tuple

from ..layers.runtime import np
from ..wire import key, varint

__all__ = ["write_model", "model_size", "EXTERNAL_LIMIT"]

#: protobuf's limit on one serialised message, with room for the graph itself
EXTERNAL_LIMIT = 2 ** 31 - 2 ** 24
_LEN = 2
_ALIGN = 4096


def _tensor_header(onnx: Any, name: str, arr: Any, external: Any = None) -> bytes:
    """A TensorProto's fields other than raw_data (dims, type, name, external data)."""
    t = onnx.TensorProto()
    t.dims.extend(int(d) for d in arr.shape)
    t.data_type = onnx.helper.np_dtype_to_tensor_dtype(arr.dtype)
    t.name = name
    if external is not None:
        for k, v in external:
            e = t.external_data.add()
            e.key, e.value = k, v
        t.data_location = onnx.TensorProto.EXTERNAL
    return t.SerializeToString()


def _entries(onnx: Any, inits: Dict[str, Any], external: Dict[str, Any]
             ) -> Iterator[Tuple[bytes, Any]]:
    """(initialiser entry bytes before the data, the array or None) per initialiser."""
    for name, arr in inits.items():
        a = np.ascontiguousarray(arr)
        if a.dtype.byteorder == ">":
            a = a.astype(a.dtype.newbyteorder("<"))
        if name in external:
            body = _tensor_header(onnx, name, a, external[name])
            yield key(5, _LEN) + varint(len(body)) + body, None
            continue
        head = _tensor_header(onnx, name, a)
        raw = key(9, _LEN) + varint(a.nbytes)
        yield key(5, _LEN) + varint(len(head) + len(raw) + a.nbytes) + head + raw, a


def model_size(inits: Dict[str, Any]) -> int:
    return sum(int(np.asarray(a).nbytes) for a in inits.values())


def write_model(onnx: Any, lean: Any, inits: Dict[str, Any], fh: BinaryIO,
                data_path: str = "", data_fh: Any = None) -> None:
    """Write ``lean`` (a ModelProto without initialisers) with ``inits`` (name ->
    array) to ``fh``; with ``data_fh`` the arrays go there as external data named
    ``os.path.basename(data_path)``."""
    external: Dict[str, List[Tuple[str, str]]] = {}
    if data_fh is not None:
        location = os.path.basename(data_path)
        offset = 0
        for name, arr in inits.items():
            a = np.ascontiguousarray(arr)
            pad = (-offset) % _ALIGN
            data_fh.write(b"\0" * pad)
            offset += pad
            data_fh.write(a.reshape(-1).view(np.uint8))
            external[name] = [("location", location), ("offset", str(offset)),
                              ("length", str(a.nbytes))]
            offset += a.nbytes
    graph_rest = lean.graph.SerializeToString()
    model = type(lean)()
    model.CopyFrom(lean)
    model.ClearField("graph")
    entries = list(_entries(onnx, inits, external))
    graph_len = len(graph_rest) + sum(len(h) + (a.nbytes if a is not None else 0)
                                      for h, a in entries)
    fh.write(model.SerializeToString())
    fh.write(key(7, _LEN) + varint(graph_len))
    fh.write(graph_rest)
    for head, a in entries:
        fh.write(head)
        if a is not None:
            fh.write(a.reshape(-1).view(np.uint8))
