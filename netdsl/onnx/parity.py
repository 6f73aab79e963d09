"""The parity check of an ONNX conversion: netdsl's numpy forward of the
converted net against onnxruntime running the ONNX graph itself, on the
example inputs and on one seeded random input (standard normal).  Errors as
in :mod:`netdsl.convert.parity` (max abs, and relative to the largest magnitude
of the reference).  On a failure the graph is run once more with every value
that has a Caffe blob as an extra output, and the first one (in graph order)
that diverges is reported."""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from netdsl.errors import NetdslError
from netdsl.convert.parity import ParityReport, compare, errors

__all__ = ["check_parity", "session"]


def session(model: Any) -> Any:
    """An onnxruntime CPU session of ``model`` (a ModelProto)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise NetdslError("the parity check runs the ONNX graph with onnxruntime, which is "
                          "not installed: pip install 'netdsl[onnx]' (or convert with "
                          "--no-check / check=False)") from None
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    data = model.SerializeToString() if model.ByteSize() < 2 ** 31 - 1 else None
    if data is None:  # pragma: no cover - models past protobuf's 2 GB limit
        raise NetdslError("the model is too large to check in memory; use --no-check")
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def check_parity(conv: Any, example_inputs: Optional[Mapping[str, np.ndarray]] = None, *,
                 tolerance: float = 1e-4, seed: int = 0) -> ParityReport:
    """Compare ``conv`` (an OnnxConversion) with onnxruntime."""
    sess = session(conv.model)
    rng = np.random.default_rng(seed)
    shapes = [conv.inputs[n] for n in conv.inputs]
    if example_inputs is None:
        example = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    else:
        example = [np.asarray(example_inputs[n], np.float32) for n in conv.onnx_inputs]
    sets = [("example", example),
            ("random", [rng.standard_normal(s).astype(np.float32) for s in shapes])]

    def reference(arrays: Sequence[np.ndarray]) -> List[np.ndarray]:
        try:
            return sess.run(conv.onnx_outputs, dict(zip(conv.onnx_inputs, arrays)))
        except Exception as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise NetdslError("onnxruntime cannot run the graph, so there is no reference "
                              "for the parity check (%s); convert with --no-check" % msg
                              ) from None

    return compare(conv, sets, reference, list, tolerance,
                   lambda arrays, ours: first_divergence(conv, arrays, ours, tolerance))


def first_divergence(conv: Any, arrays: Sequence[np.ndarray], ours: Dict[str, np.ndarray],
                     tolerance: float) -> Optional[Dict[str, Any]]:
    """The first node output (in graph order) whose Caffe blob differs from
    onnxruntime's value by more than ``tolerance``."""
    import onnx
    model = onnx.ModelProto()
    model.CopyFrom(conv.model)
    have = {o.name for o in model.graph.output}
    wanted = [v for v in conv.blob_of_node if conv.blob_of_node[v][0] in ours]
    for v in wanted:
        if v not in have:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(v))
    try:
        sess = session(model)
        values = dict(zip(wanted, sess.run(wanted, dict(zip(conv.onnx_inputs, arrays)))))
    except Exception as exc:  # pragma: no cover - diagnostics only
        return {"blob": "", "op": "", "rel": float("nan"),
                "error": "cannot rerun the graph: %s" % exc}
    for v in wanted:
        blob, node = conv.blob_of_node[v]
        e = errors(ours[blob], values[v])
        if e["rel"] > tolerance:
            return {"blob": blob, "op": node.op_type, "module": node.name, "source": None,
                    "rel": e["rel"], "max_abs": e["max_abs"]}
    return None
