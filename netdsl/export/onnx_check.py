"""The parity check of an export: onnxruntime runs the exported model and netdsl's
numpy forward runs the same layers, on two seeded inputs (uniform in [-1, 1],
then standard normal), compared on every graph output with the converters'
report (:class:`netdsl.torch.parity.ParityReport`: max abs error, and relative
to the largest magnitude of the reference).  On a failure the model is run once
more with every Caffe blob as an extra output and the first blob, in net order,
that diverges is named."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from .parity import reference_net, seeded_inputs

__all__ = ["check_parity", "reference_net", "seeded_inputs"]


def _run(sess: Any, names: List[str], feeds: Dict[str, Any]) -> List[Any]:
    from ..errors import NetdslError
    try:
        return sess.run(names, feeds)
    except Exception as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NetdslError("onnxruntime cannot run the exported model (%s); export with "
                          "--no-check to write it anyway" % msg) from None


class _Serialised:
    """Model bytes as :func:`netdsl.onnx.parity.session` reads a ModelProto."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def ByteSize(self) -> int:
        return len(self.data)

    def SerializeToString(self) -> bytes:
        return self.data


def _session(export: Any, path: Optional[str]) -> Any:
    from ..onnx.parity import session
    from .onnx_write import EXTERNAL_LIMIT, model_size
    if path is not None and (export._model is None or export.path is not None or
                             model_size(export.initializers) >= EXTERNAL_LIMIT):
        import onnxruntime as ort     # the written file (and its external data)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    return session(_Serialised(export.model_bytes()))


def check_parity(export: Any, *, tolerance: float = 1e-4, seed: int = 0,
                 path: Optional[str] = None) -> Any:
    """Compare ``export`` (an OnnxExport; written to ``path`` when given) with
    netdsl's forward."""
    from ..forward import forward
    from ..torch.parity import ParityReport
    sess = _session(export, path)
    net = reference_net(export.walk)
    report = ParityReport(tolerance)
    failing = None
    for label, feeds in seeded_inputs(export.inputs, seed):
        ref = _run(sess, export.outputs, feeds)
        ours = forward(net, export.weights, feeds)
        for name, r in zip(export.outputs, ref):
            if not report.record(label, name, ours[name], r) and failing is None:
                failing = (feeds, ours)
    if failing is not None:
        report.divergence = first_divergence(export, failing[0], failing[1], tolerance)
    return report


def first_divergence(export: Any, feeds: Dict[str, Any], ours: Dict[str, Any],
                     tolerance: float) -> Optional[Dict[str, Any]]:
    """The first blob, in net order, whose exported value differs from netdsl's."""
    import onnx
    from ..onnx.parity import session
    from ..torch.parity import errors
    model = onnx.ModelProto()
    model.CopyFrom(export.model)
    have = {o.name for o in model.graph.output}
    made = {o for n in model.graph.node for o in n.output}
    wanted = [b for b in export.blob_values if b in made and b in ours]
    for b in wanted:
        if b not in have:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(b))
    values = dict(zip(wanted, _run(session(model), wanted, feeds)))
    op_of = {o: n.op_type for n in model.graph.node for o in n.output}
    layer_of = {t: st.layer for st in export.walk.steps for t in st.top_values}
    for b in wanted:
        e = errors(ours[b], values[b])
        if e["rel"] > tolerance:
            lp = layer_of.get(b)
            return {"blob": b, "op": op_of.get(b, ""), "module": lp.name if lp else None,
                    "layer_type": lp.type if lp else None, "source": None,
                    "rel": e["rel"], "max_abs": e["max_abs"]}
    return None
