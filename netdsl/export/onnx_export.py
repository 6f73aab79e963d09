"""Caffe → ONNX: walk the net (:mod:`.walk`), let each layer type's ``onnx`` rule
emit its nodes (:mod:`.onnx_graph`), build the ModelProto, write it (ONNX
external data past 2 GiB) and check it with onnxruntime against netdsl's
numpy forward (:mod:`.onnx_check`).

The default opset is the newest one both the installed ``onnx``
(``onnx.defs.onnx_opset_version()``) and onnxruntime run: onnxruntime is asked
by loading a one-node model at each opset from onnx's newest down.
"""
from __future__ import annotations

import functools
from typing import Any, Dict, List, Mapping, Optional, Sequence

from ..errors import NetdslError
from .onnx_graph import Emitter, Graph
from .walk import Walk, walk_net
from .weights import blob_source as _blob_source, layer_blobs as _layer_blobs

__all__ = ["to_onnx", "OnnxExport", "default_opset", "MIN_OPSET"]

MIN_OPSET = 13
#: protobuf's limit on one serialised message; past it initialisers go to external data
_LIMIT = 2 ** 31 - 2 ** 24


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise NetdslError("exporting to ONNX needs the onnx package: "
                          "pip install 'netdsl[onnx]'") from None
    return onnx


@functools.lru_cache(maxsize=None)
def default_opset() -> int:
    """The newest opset that both onnx and onnxruntime support (onnx's newest when
    onnxruntime is not installed)."""
    onnx = _onnx()
    newest = onnx.defs.onnx_opset_version()
    try:
        import onnxruntime as ort
    except ImportError:
        return newest
    from onnx import TensorProto, helper
    for opset in range(newest, MIN_OPSET - 1, -1):
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
        g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", [x], [y])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = min(m.ir_version, _ir_version(opset))
        try:
            opts = ort.SessionOptions()
            opts.log_severity_level = 4
            ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
            return opset
        except Exception:
            continue
    return MIN_OPSET


def _ir_version(opset: int) -> int:
    """The lowest IR version that carries ``opset`` (onnx.helper.VERSION_TABLE), so
    that a runtime older than the installed onnx still reads the file."""
    from onnx import helper
    irs = [row[1] for row in helper.VERSION_TABLE if row[2] >= opset]
    return min(irs) if irs else helper.VERSION_TABLE[-1][1]


class OnnxExport:
    """An export: the walk, the opset, the graph's input and output names, the
    parity report (None unchecked) and the model: ``model`` (a ModelProto, built
    on first use), :meth:`model_bytes`, :meth:`save`.  The weights stay arrays
    until written (:mod:`.onnx_write`)."""

    def __init__(self, lean: Any, initializers: Dict[str, Any], walk: Walk, opset: int,
                 blob_values: List[str], weights: Any = None) -> None:
        self.lean = lean
        self.initializers = initializers
        self.walk = walk
        self.opset = opset
        self.inputs: Dict[str, Any] = dict(walk.inputs)
        self.outputs: List[str] = list(walk.outputs)
        self.blob_values = blob_values
        self.weights = weights
        self.parity: Any = None
        self.path: Optional[str] = None
        self._model: Any = None

    @property
    def model(self) -> Any:
        """The whole ModelProto (built once; changes to it are what later runs see)."""
        if self._model is None:
            onnx = _onnx()
            if self.path is not None:
                self._model = onnx.load(self.path)
            else:
                self._model = onnx.load_model_from_string(self._stream_bytes())
        return self._model

    def _stream_bytes(self) -> bytes:
        import io
        from .onnx_write import write_model
        buf = io.BytesIO()
        write_model(_onnx(), self.lean, self.initializers, buf)
        return buf.getvalue()

    def model_bytes(self) -> bytes:
        if self._model is not None:
            return self._model.SerializeToString()
        return self._stream_bytes()

    def save(self, path: str, release: bool = False,
             external_above: Optional[int] = None) -> List[str]:
        """Write the model to ``path`` atomically (initialisers past 2 GiB, or past
        ``external_above`` bytes when given, in ``<path>.data``, ONNX external
        data); returns the paths written.  With ``release`` the weight arrays are
        let go: the model is read back from the file when asked for."""
        if self._model is not None:
            written = save(self._model, path, external_above)
        else:
            written = _save_stream(self.lean, self.initializers, path, external_above)
        if release and self._model is None:
            self.path = path
            self.initializers = {}
        return written


def emit_graph(walk: Walk, weights: Any, opset: int, dynamic_batch: bool = False) -> Graph:
    """Every step's nodes, through its type's ``onnx`` rule."""
    graph = Graph(opset, dynamic_batch)
    graph.inputs = dict(walk.inputs)
    for name in walk.inputs:
        graph.used[name] = None
    for st in walk.steps:
        graph.used.update(dict.fromkeys(st.top_values))
    wts = _blob_source(weights, as_stored=True)   # streamed: no aligned copies
    layers = [st.layer for st in walk.steps]
    try:
        for st in walk.steps:
            ctx = Emitter(graph, st, _layer_blobs(st, layers, wts))
            try:
                if st.lt.onnx is None:
                    raise ctx.refuse("the type has no ONNX export rule")
                values = st.lt.export_onnx(st.layer, ctx, st.geo)
            except NetdslError as err:
                raise err.located(layer=st.layer.name)
            if len(values) != len(st.top_values):
                raise NetdslError("internal error: the ONNX rule of %s gave %d values for %d "
                                  "tops" % (st.layer.type, len(values), len(st.top_values)),
                                  layer=st.layer.name)
            for top, v in zip(st.top_values, values):
                if v != top:
                    graph.aliases[top] = v
            for blob, top in zip(st.layer.top, st.top_values):
                if top == blob:
                    graph.blob_of[blob] = blob
    finally:
        wts.close()
    for name in walk.outputs:
        value = graph.resolve(name)
        if value != name and name not in walk.inputs:
            graph.nodes.append(_identity(value, name))
    graph.outputs = list(walk.outputs)
    return graph


def _identity(src: str, dst: str) -> Any:
    from .onnx_graph import Node
    return Node("Identity", [src], [dst], {}, dst + "/identity")


def _value_info(onnx: Any, name: str, shape: Sequence[int], dynamic: bool) -> Any:
    dims: List[Any] = [int(d) for d in shape]
    if dynamic and dims:
        dims[0] = "N"
    return onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, dims)


def build_model(graph: Graph, walk: Walk, name: str) -> Any:
    """The ModelProto of ``graph`` without its initialisers (those stay arrays in
    ``graph.initializers`` until written)."""
    onnx = _onnx()
    nodes = []
    for n in graph.nodes:
        nodes.append(onnx.helper.make_node(n.op, n.inputs, n.outputs, name=n.name,
                                           domain=n.domain or None, **n.attrs))
    ins = [_value_info(onnx, k, s, graph.dynamic_batch) for k, s in graph.inputs.items()]
    outs = [_value_info(onnx, k, walk.shapes[k], graph.dynamic_batch) for k in graph.outputs]
    g = onnx.helper.make_graph(nodes, name or "net", ins, outs)
    model = onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", graph.opset)],
                                   producer_name="netdsl")
    model.ir_version = _ir_version(graph.opset)
    return model


def to_onnx(net: Any, weights: Any = None, *, inputs: Optional[Mapping[str, Sequence[int]]] = None,
            outputs: Sequence[str] = (), opset: Optional[int] = None,
            dynamic_batch: bool = False, check: bool = True, tolerance: float = 1e-4,
            seed: int = 0) -> OnnxExport:
    """Export ``net`` (NetParameter, NetSpec or prototxt path) with ``weights``
    (caffemodel path, open CaffeModel or ``{layer: [arrays]}``) to ONNX.

    ``inputs`` overrides input shapes (``{"data": (1, 3, 224, 224)}``);
    ``outputs`` adds blobs to Caffe's ``net.outputs`` (and, when given, drops the
    net's outputs that only layers without an export rule make); ``opset``
    defaults to :func:`default_opset`.  With ``check`` the parity report is in
    ``.parity``.  Nothing is written: see :meth:`OnnxExport.save`.
    """
    onnx = _onnx()
    chosen = default_opset() if opset is None else int(opset)
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= chosen <= newest:
        raise NetdslError("--opset %d is outside %d..%d (the installed onnx's newest)"
                          % (chosen, MIN_OPSET, newest), field="opset")
    walk = walk_net(net, inputs, outputs, rule="onnx")
    graph = emit_graph(walk, weights, chosen, dynamic_batch)
    lean = build_model(graph, walk, walk.net.name)
    blob_values = [b for b in graph.blob_of if b not in graph.aliases]
    result = OnnxExport(lean, graph.initializers, walk, chosen, blob_values, weights)
    if check:
        from .onnx_check import check_parity
        result.parity = check_parity(result, tolerance=tolerance, seed=seed)
    return result


def _save_stream(lean: Any, inits: Dict[str, Any], path: str,
                 external_above: Optional[int] = None) -> List[str]:
    from ..fileio import atomic_open
    from .onnx_write import EXTERNAL_LIMIT, model_size, write_model
    onnx = _onnx()
    limit = min(_LIMIT, EXTERNAL_LIMIT) if external_above is None else int(external_above)
    if model_size(inits) < limit:
        with atomic_open(path, "wb") as fh:
            write_model(onnx, lean, inits, fh)
        return [path]
    data_path = path + ".data"
    with atomic_open(path, "wb") as fh, atomic_open(data_path, "wb") as data_fh:
        write_model(onnx, lean, inits, fh, data_path, data_fh)
    return [path, data_path]


def save(model: Any, path: str, external_above: Optional[int] = None) -> List[str]:
    """Write ``model`` (a whole ModelProto) to ``path`` atomically, its
    initialisers in ``<path>.data`` past 2 GiB (or ``external_above`` bytes).
    Returns the paths written."""
    from onnx import numpy_helper
    lean = type(model)()
    lean.CopyFrom(model)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    lean.graph.ClearField("initializer")
    return _save_stream(lean, inits, path, external_above)
