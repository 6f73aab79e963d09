"""The parity check both front ends run on every conversion: netdsl's numpy
forward of the converted net against the source framework's own run (PyTorch,
onnxruntime), on the example inputs and on one seeded random input.

Per output: the max abs error and the relative error, which is the max abs
error over the largest magnitude of the reference output (so a tolerance reads
as "this fraction of the output's scale").  When an output is off by more than
the tolerance, the front end's ``divergence`` finds the first value that maps
to a Caffe blob and diverges.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["ParityReport", "compare", "errors", "weak_outputs"]

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

    def record(self, label: str, output: str, ours: np.ndarray, ref: np.ndarray) -> bool:
        """One row: ``ours`` against ``ref`` (the shape shown is ``ref``'s); whether it
        is within the tolerance."""
        e = errors(ours, ref)
        ok = e["rel"] <= self.tolerance
        self.rows.append({"input": label, "output": output, "shape": list(np.shape(ref)),
                          "max_abs": e["max_abs"], "rel": e["rel"], "ok": ok})
        return ok

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


def compare(conv: Any, sets: Sequence[Tuple[str, Any]],
            reference: Callable[[Any], Sequence[Any]],
            arrays: Callable[[Any], List[np.ndarray]], tolerance: float,
            divergence: Callable[[Any, Dict[str, np.ndarray]], Optional[Dict[str, Any]]]
            ) -> ParityReport:
    """The report of ``conv`` (a Conversion) on each ``(label, inputs)`` of
    ``sets``: ``reference(inputs)`` gives the reference outputs as arrays,
    ``arrays(inputs)`` the input arrays (in ``conv.inputs`` order) for netdsl's
    forward; on a failure, ``divergence(inputs, ours)`` of the first failing set."""
    from netdsl.forward import forward
    report = ParityReport(tolerance)
    failing = None
    refs, used = [], []
    for label, ins in sets:
        ref = list(reference(ins))
        xs = arrays(ins)
        refs.append(ref)
        used.append(xs)
        ours = forward(conv.net, conv.weights, dict(zip(conv.inputs, xs)))
        for oname, r in zip(conv.outputs, ref):
            if not report.record(label, oname, ours[oname], r) and failing is None:
                failing = (ins, ours)
    report.warnings.extend(weak_outputs(conv.outputs, refs, used))
    if failing is not None:
        report.divergence = divergence(failing[0], failing[1])
    return report
