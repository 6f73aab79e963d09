"""The parity check run on every conversion: netdsl's numpy forward of the
converted net against PyTorch, on the example inputs and on one seeded random
input (standard normal, same shapes).

Per output: the max abs error and the relative error, which is the max abs
error over the largest magnitude of PyTorch's output (so a tolerance reads as
"this fraction of the output's scale").  When an output is off by more than
the tolerance, the PyTorch graph is run once more keeping every intermediate
tensor, and the first one that maps to a Caffe blob and diverges is reported
(its blob, op, module path and source line).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np


__all__ = ["ParityReport", "check_parity", "errors", "weak_outputs"]

#: an output whose largest magnitude is below this fraction of the input's proves little
TINY = 1e-4


def errors(ours: np.ndarray, ref: np.ndarray) -> Dict[str, float]:
    """max abs error and relative error (over max |ref|) of ``ours`` against ``ref``."""
    ours = np.asarray(ours, np.float64)
    ref = np.asarray(ref, np.float64)
    if ours.shape != ref.shape:
        return {"max_abs": float("inf"), "rel": float("inf")}
    if ref.size == 0:
        return {"max_abs": 0.0, "rel": 0.0}
    diff = np.abs(ours - ref)
    max_abs = float(np.nanmax(diff)) if not np.isnan(diff).all() else float("inf")
    if np.isnan(diff).any():
        max_abs = float("inf")
    scale = float(np.abs(ref).max())
    return {"max_abs": max_abs, "rel": max_abs / scale if scale > 0 else max_abs}


class ParityReport:
    """``rows``: one dict per (input, output) with ``input``, ``output``,
    ``shape``, ``max_abs``, ``rel``, ``ok``; ``divergence``: where the first
    mismatch starts (None when parity holds)."""

    def __init__(self, tolerance: float) -> None:
        self.tolerance = tolerance
        self.rows: List[Dict[str, Any]] = []
        self.divergence: Optional[Dict[str, Any]] = None
        #: outputs the check proves little about (``output``, ``why``), and notes
        self.warnings: List[Dict[str, str]] = []

    @property
    def ok(self) -> bool:
        return all(r["ok"] for r in self.rows)

    @property
    def max_rel(self) -> float:
        return max((r["rel"] for r in self.rows), default=0.0)

    def to_json(self) -> Dict[str, Any]:
        return {"checked": True, "ok": self.ok, "tolerance": self.tolerance,
                "outputs": self.rows, "divergence": self.divergence,
                "weak": bool(self.warnings), "warnings": self.warnings}

    def table(self) -> str:
        lines = ["%-10s %-24s %-18s %12s %12s  %s" % ("input", "output", "shape", "max abs",
                                                     "rel", "")]
        for r in self.rows:
            lines.append("%-10s %-24s %-18s %12.3g %12.3g  %s" % (
                r["input"], r["output"], "x".join(map(str, r["shape"])), r["max_abs"],
                r["rel"], "ok" if r["ok"] else "FAIL (tolerance %g)" % self.tolerance))
        if self.divergence:
            d = self.divergence
            where = d.get("source") or ""
            lines.append("first divergence: blob '%s' (%s%s) rel %.3g%s" % (
                d["blob"], d["op"], ", module " + d["module"] if d.get("module") else "",
                d["rel"], ", at " + where if where else ""))
        for w in self.warnings:
            lines.append("warning: %s%s" % ("output '%s' " % w["output"] if w.get("output")
                                            else "", w["why"]))
        return "\n".join(lines) + "\n"


def weak_outputs(names: Sequence[str], refs: Sequence[Sequence[np.ndarray]],
                 inputs: Sequence[Sequence[np.ndarray]]) -> List[Dict[str, str]]:
    """Outputs on which a passing check proves little: the reference does not
    change between the input sets (a constant, or an input that does not reach
    it), or it is tiny next to the inputs (below :data:`TINY` of their largest
    magnitude: values that vanish, e.g. through untrained normalisation, hide
    wrong arithmetic).  ``refs[k][i]`` is output i on input set k."""
    scale = max((float(np.abs(np.asarray(x, np.float64)).max()) for xs in inputs for x in xs
                 if np.asarray(x).size), default=0.0)
    out: List[Dict[str, str]] = []
    for i, name in enumerate(names):
        vals = [np.asarray(r[i], np.float64) for r in refs]
        if len(vals) > 1 and all(v.shape == vals[0].shape and np.array_equal(v, vals[0])
                                 for v in vals[1:]):
            out.append({"output": name, "why": "does not change between the two inputs; "
                        "the check proves little about it"})
            continue
        top = max((float(np.abs(v).max()) for v in vals if v.size), default=0.0)
        if scale > 0 and top < TINY * scale:
            out.append({"output": name, "why": "is tiny next to the input (largest magnitude "
                        "%.3g against %.3g); the check proves little about it" % (top, scale)})
    return out


def _flat(value: Any) -> List[Any]:
    from torch.utils import _pytree as pytree
    return pytree.tree_flatten(value)[0]


def check_parity(conv: Any, model: Any, example_inputs: Sequence[Any], *,
                 tolerance: float = 1e-4, seed: int = 0) -> ParityReport:
    """Compare ``conv`` (a Conversion) with ``model`` on the example inputs and on
    seeded standard-normal inputs of the same shapes."""
    import torch
    from netdsl.forward import forward
    report = ParityReport(tolerance)
    gen = torch.Generator().manual_seed(seed)
    sets = [("example", tuple(example_inputs)),
            ("random", tuple(torch.randn(tuple(x.shape), generator=gen, dtype=torch.float32)
                             for x in example_inputs))]
    failing = None
    refs, used = [], []
    for label, ins in sets:
        if getattr(conv, "cut", None):
            values = run_keeping(conv.program, ins)
            ref = [values[n] for n in conv.cut]
        else:
            with torch.no_grad():
                ref = _flat(model(*ins))
        refs.append([r.detach().cpu().numpy() for r in ref])
        used.append([x.detach().cpu().numpy() for x in ins])
        arrays = {name: x.detach().cpu().numpy().astype(np.float32)
                  for name, x in zip(conv.inputs, ins)}
        ours = forward(conv.net, conv.weights, arrays)
        for oname, r in zip(conv.outputs, ref):
            r = r.detach().cpu().numpy()
            e = errors(ours[oname], r)
            ok = e["rel"] <= tolerance
            report.rows.append({"input": label, "output": oname, "shape": list(r.shape),
                                "max_abs": e["max_abs"], "rel": e["rel"], "ok": ok})
            if not ok and failing is None:
                failing = (ins, ours)
    report.warnings.extend(weak_outputs(conv.outputs, refs, used))
    if failing is not None:
        report.divergence = first_divergence(conv, failing[0], failing[1], tolerance)
    return report


def first_divergence(conv: Any, inputs: Sequence[Any], ours: Dict[str, np.ndarray],
                     tolerance: float) -> Optional[Dict[str, Any]]:
    """Run the exported graph keeping every tensor; the first node (in graph
    order) whose Caffe blob differs by more than ``tolerance``."""
    from netdsl.torch.graph import module_path, source_line
    import torch
    try:
        values = run_keeping(conv.program, inputs)
    except Exception as exc:  # pragma: no cover - diagnostics only
        return {"blob": "", "op": "", "rel": float("nan"),
                "error": "cannot rerun the graph: %s" % exc}
    for node_name, (blob, node) in conv.blob_of_node.items():
        v = values.get(node_name)
        if not isinstance(v, torch.Tensor) or blob not in ours:
            continue
        e = errors(ours[blob], v.detach().cpu().numpy())
        if e["rel"] > tolerance:
            src = source_line(node)
            path, cls = module_path(node)
            return {"blob": blob, "op": str(node.target), "module": path,
                    "source": "%s:%d: %s" % src if src else None, "rel": e["rel"],
                    "max_abs": e["max_abs"]}
    return None


def run_keeping(program: Any, inputs: Sequence[Any]) -> Dict[str, Any]:
    """Run an exported program's graph on ``inputs``; every node's value (a copy
    taken when the node ran) by node name."""
    import torch
    from torch.export.graph_signature import InputKind
    values: Dict[str, Any] = {}
    args = []
    user = iter(inputs)
    for spec in program.graph_signature.input_specs:
        if spec.kind == InputKind.USER_INPUT:
            args.append(next(user))
        elif spec.target in program.state_dict:
            args.append(program.state_dict[spec.target])
        else:
            args.append(program.constants[spec.target])

    class Keep(torch.fx.Interpreter):
        def run_node(self, n):
            out = super().run_node(n)
            # a copy: a later in-place op (relu_) would change the kept tensor
            values[n.name] = torch.utils._pytree.tree_map(
                lambda t: t.clone() if isinstance(t, torch.Tensor) else t, out)
            return out
    with torch.no_grad():
        Keep(program.graph_module).run(*args)
    return values
