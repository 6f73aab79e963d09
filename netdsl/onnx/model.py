"""Reading an ONNX model for conversion: loading (external data too), input
shapes, attributes, constant folding of nodes whose inputs are all known
(Shape arithmetic on static shapes, Constant, Cast, ...) with ONNX's reference
evaluator, and per-node output shapes from ONNX's own shape inference."""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from netdsl.errors import NetdslError

def onnx_module() -> Any:
    try:
        import onnx
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise NetdslError("the onnx package is not installed (%s); pip install 'netdsl[onnx]'"
                          % exc) from None
    return onnx


def load(model_or_path: Any) -> Tuple[Any, Optional[str]]:
    """(ModelProto, path or None).  A path loads with its external data
    (``model.onnx.data`` next to it); a ModelProto or serialised bytes are
    taken as they are."""
    onnx = onnx_module()
    if isinstance(model_or_path, onnx.ModelProto):
        check_graph(model_or_path)
        return model_or_path, None
    if isinstance(model_or_path, (bytes, bytearray)):
        try:
            model = onnx.load_from_string(bytes(model_or_path))
        except Exception as exc:
            raise NetdslError("not an ONNX model (cannot parse it: %s)"
                              % type(exc).__name__) from None
        check_graph(model)
        return model, None
    path = os.fspath(model_or_path)
    if not os.path.isfile(path):
        raise NetdslError("no such ONNX file", file=path)
    if os.path.getsize(path) == 0:
        raise NetdslError("the file is empty, not an ONNX model", file=path)
    try:
        model = onnx.load(path, load_external_data=True)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise NetdslError("not an ONNX model (cannot parse it: %s%s)"
                          % (type(exc).__name__, ": " + first if first else ""),
                          file=path) from None
    check_graph(model, path)
    return model, path


def check_graph(model: Any, path: Optional[str] = None) -> None:
    """Refuse a ModelProto without a graph to convert: protobuf parses many
    non-ONNX files (and an empty one) as a model with no graph, no outputs."""
    where = {"file": path} if path else {}
    if not model.HasField("graph"):
        raise NetdslError("not an ONNX model: it has no graph (is it an ONNX file?)", **where)
    if not model.graph.output:
        raise NetdslError("the ONNX graph has no outputs, so there is nothing to convert",
                          **where)


def opset_of(model: Any) -> int:
    """The default-domain opset the model imports."""
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 1


def newest_opset() -> int:
    return int(onnx_module().defs.onnx_opset_version())


def attributes(node: Any) -> Dict[str, Any]:
    """The node's attributes as Python values (tensors as numpy arrays)."""
    onnx = onnx_module()
    out: Dict[str, Any] = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode("utf-8")
        elif isinstance(v, onnx.TensorProto):
            v = onnx.numpy_helper.to_array(v)
        elif isinstance(v, list) and v and isinstance(v[0], bytes):
            v = [x.decode("utf-8") for x in v]
        out[a.name] = v
    return out


def graph_inputs(model: Any) -> List[Tuple[str, List[Optional[int]], int]]:
    """(name, dims with None for symbolic ones, elem type) of the real inputs
    (those that are not initialisers)."""
    inits = {i.name for i in model.graph.initializer}
    out = []
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        t = vi.type.tensor_type
        dims: List[Optional[int]] = []
        for d in t.shape.dim:
            dims.append(int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else None)
        out.append((vi.name, dims, int(t.elem_type)))
    return out


def initializers(model: Any) -> Dict[str, np.ndarray]:
    from onnx import numpy_helper
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


class Evaluator:
    """Folds nodes with constant inputs and infers output shapes, one node at a
    time, under the model's opset imports."""

    #: constants up to this many values go into the one-node model as values
    #: (Reshape's shape, Resize's sizes); larger ones only by shape
    SMALL = 4096

    def __init__(self, model: Any) -> None:
        self.onnx = onnx_module()
        self.opsets = [self.onnx.helper.make_opsetid(i.domain, i.version)
                       for i in model.opset_import]
        self.ir_version = model.ir_version
        self.functions = list(model.functions)

    def _model(self, node: Any, inputs: Sequence[Any], value_inputs: bool) -> Any:
        h = self.onnx.helper
        from onnx import numpy_helper
        ins, inits = [], []
        for name, v in zip(node.input, inputs):
            if not name:
                continue
            if isinstance(v, np.ndarray):
                if value_inputs:
                    ins.append(h.make_tensor_value_info(
                        name, h.np_dtype_to_tensor_dtype(v.dtype), v.shape))
                elif v.size <= self.SMALL:
                    inits.append(numpy_helper.from_array(v, name))
                else:
                    ins.append(h.make_tensor_value_info(
                        name, h.np_dtype_to_tensor_dtype(v.dtype), v.shape))
            else:  # a blob: float32 of its shape
                ins.append(h.make_tensor_value_info(name, self.onnx.TensorProto.FLOAT,
                                                    list(v.shape)))
        outs = [h.make_empty_tensor_value_info(o) for o in node.output if o]
        graph = h.make_graph([node], "node", ins, outs, initializer=inits)
        m = h.make_model(graph, opset_imports=self.opsets, functions=self.functions)
        m.ir_version = self.ir_version
        return m

    def fold(self, node: Any, inputs: Sequence[Any]) -> List[np.ndarray]:
        """The node's outputs computed from constant ``inputs``."""
        from onnx.reference import ReferenceEvaluator
        m = self._model(node, inputs, True)
        feeds = {n: v for n, v in zip(node.input, inputs) if n}
        ev = ReferenceEvaluator(m)
        res = ev.run(None, feeds)
        return [np.asarray(r) for r in res]

    def shapes(self, node: Any, inputs: Sequence[Any]) -> List[Optional[Tuple[int, ...]]]:
        """Static output shapes (None where ONNX's inference cannot tell)."""
        m = self._model(node, inputs, False)
        try:
            inferred = self.onnx.shape_inference.infer_shapes(m, strict_mode=True,
                                                              data_prop=True)
        except Exception as exc:
            raise NetdslError("ONNX shape inference fails on this node: %s"
                              % str(exc).strip().splitlines()[-1]) from None
        known: Dict[str, Any] = {}
        for vi in list(inferred.graph.output) + list(inferred.graph.value_info):
            known[vi.name] = vi
        out: List[Optional[Tuple[int, ...]]] = []
        for o in node.output:
            vi = known.get(o)
            if not o or vi is None or not vi.type.tensor_type.HasField("shape"):
                out.append(None)
                continue
            dims = []
            for d in vi.type.tensor_type.shape.dim:
                if not d.HasField("dim_value"):
                    dims = None
                    break
                dims.append(int(d.dim_value))
            out.append(tuple(dims) if dims is not None else None)
        return out
