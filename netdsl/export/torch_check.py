"""The parity check of a to-torch export: the written ``model.py`` is imported
fresh (from its file, under a name of its own, never entered in
``sys.modules``), loads ``weights.pt`` and runs in ``eval()`` on the two seeded
inputs of :mod:`.parity`; netdsl's numpy forward runs the same layers; every
output is compared with the converters' report
(:class:`netdsl.torch.parity.ParityReport`).  On a failure the first blob, in
net order, that diverges is named (the module is run once more returning every
blob)."""
from __future__ import annotations

import importlib.util
import itertools
import os
from typing import Any, Dict, List, Optional

from ..errors import NetdslError
from .parity import reference_net, seeded_inputs

__all__ = ["check_parity", "load_model"]

_COUNT = itertools.count()


def load_model(directory: str) -> Any:
    """``Model()`` of ``directory``/model.py with ``weights.pt`` loaded, in eval mode."""
    import torch
    path = os.path.join(directory, "model.py")
    spec = importlib.util.spec_from_file_location("netdsl_to_torch_%d" % next(_COUNT), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)            # type: ignore[union-attr]
    model = module.Model()
    state = torch.load(os.path.join(directory, "weights.pt"), weights_only=True)
    model.load_state_dict(state)
    return model.eval()


def _run(model: Any, names: List[str], feeds: Dict[str, Any]) -> Dict[str, Any]:
    import torch
    try:
        with torch.no_grad():
            out = model(*[torch.from_numpy(v) for v in feeds.values()])
    except Exception as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NetdslError("the generated PyTorch module cannot run (%s); export with "
                          "--no-check to write it anyway" % msg) from None
    return {k: out[k].numpy() for k in names}


def check_parity(export: Any, *, tolerance: float = 1e-4, seed: int = 0,
                 directory: str) -> Any:
    """Compare the module written in ``directory`` with netdsl's forward."""
    from ..forward import forward
    from ..torch.parity import ParityReport
    model = load_model(directory)
    net = reference_net(export.walk)
    report = ParityReport(tolerance)
    failing = None
    for label, feeds in seeded_inputs(export.inputs, seed):
        got = _run(model, export.outputs, feeds)
        ours = forward(net, export.weights, feeds)
        for name in export.outputs:
            if not report.record(label, name, got[name], ours[name]) and failing is None:
                failing = (feeds, ours)
    if failing is not None:
        report.divergence = first_divergence(export, failing[0], failing[1], tolerance,
                                             directory)
    return report


def _traced(model: Any, feeds: Dict[str, Any]) -> Dict[int, Dict[str, Any]]:
    """Run ``model`` with the values of forward's local tensors after each line
    (by the line's number in model.py)."""
    import sys
    import torch
    code = type(model).forward.__code__
    after: Dict[int, Dict[str, Any]] = {}
    last = [0]

    def trace(frame: Any, event: str, arg: Any) -> Any:
        if frame.f_code is not code:
            return None
        if event in ("line", "return") and last[0]:
            after[last[0]] = {k: v for k, v in frame.f_locals.items()
                              if isinstance(v, torch.Tensor)}
        last[0] = frame.f_lineno if event == "line" else 0
        return trace

    old = sys.gettrace()
    sys.settrace(trace)
    try:
        with torch.no_grad():
            model(*[torch.from_numpy(v) for v in feeds.values()])
    except Exception:
        pass          # the values up to the failing line are what is compared
    finally:
        sys.settrace(old)
    return after


def first_divergence(export: Any, feeds: Dict[str, Any], ours: Dict[str, Any],
                     tolerance: float, directory: str) -> Optional[Dict[str, Any]]:
    """The first layer, in net order, whose top (a blob's final value) in the
    written module differs from netdsl's: forward is run once more, its local
    variables read after each statement."""
    from ..torch.parity import errors
    model = load_model(directory)
    after = _traced(model, feeds)
    lines = export.source.splitlines()
    for st in export.walk.steps:
        mark = "  # %s (%s)" % (st.layer.name, st.layer.type)
        lineno = next((i + 1 for i, text in enumerate(lines) if mark in text and
                       not text.lstrip().startswith("#")), None)
        if lineno is None:
            continue
        values = after.get(lineno)
        for t, v in zip(st.layer.top, st.top_values):
            if t != v or t not in ours:
                continue
            var = export.variables.get(t)
            got = values.get(var) if values is not None else None
            e = errors(got.numpy(), ours[t]) if got is not None else \
                {"rel": float("inf"), "max_abs": float("inf")}
            if e["rel"] > tolerance:
                return {"blob": t, "op": st.layer.type, "module": st.layer.name,
                        "layer_type": st.layer.type, "source": "model.py:%d" % lineno,
                        "rel": e["rel"], "max_abs": e["max_abs"]}
    return None
