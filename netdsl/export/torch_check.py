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
    from ..torch.parity import ParityReport, errors
    model = load_model(directory)
    net = reference_net(export.walk)
    report = ParityReport(tolerance)
    failing = None
    for label, feeds in seeded_inputs(export.inputs, seed):
        got = _run(model, export.outputs, feeds)
        ours = forward(net, export.weights, feeds)
        for name in export.outputs:
            e = errors(got[name], ours[name])
            ok = e["rel"] <= tolerance
            report.rows.append({"input": label, "output": name, "shape": list(ours[name].shape),
                                "max_abs": e["max_abs"], "rel": e["rel"], "ok": ok})
            if not ok and failing is None:
                failing = (feeds, ours)
    if failing is not None:
        report.divergence = first_divergence(export, failing[0], failing[1], tolerance)
    return report


def first_divergence(export: Any, feeds: Dict[str, Any], ours: Dict[str, Any],
                     tolerance: float) -> Optional[Dict[str, Any]]:
    """The first layer, in net order, whose tops differ from netdsl's: the net is
    exported again up to each layer's tops in turn (a blob's final value)."""
    from ..forward import forward
    from ..torch.parity import errors
    import tempfile
    import shutil
    from .torch_export import to_torch
    for st in export.walk.steps:
        tops = [t for t, v in zip(st.layer.top, st.top_values) if t == v]
        if not tops:
            continue
        sub = to_torch(export.walk.net, export.weights, inputs=export.inputs, outputs=tops,
                       check=False)
        work = tempfile.mkdtemp(prefix="netdsl-to-torch-")
        try:
            sub.write_to(work)
            got = _run(load_model(work), tops, feeds)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        ref = forward(reference_net(sub.walk), export.weights, feeds)
        for t in tops:
            e = errors(got[t], ref[t])
            if e["rel"] > tolerance:
                return {"blob": t, "op": st.layer.type, "module": st.layer.name,
                        "layer_type": st.layer.type, "source": None,
                        "rel": e["rel"], "max_abs": e["max_abs"]}
    return None
