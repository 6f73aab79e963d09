"""The parity check run on every conversion: netdsl's numpy forward of the
converted net against PyTorch, on the example inputs and on one seeded random
input (standard normal, same shapes).

Errors and the report are :mod:`netdsl.convert.parity`'s (max abs, and relative
to the largest magnitude of PyTorch's output).  When an output is off by more
than the tolerance, the PyTorch graph is run once more keeping every intermediate
tensor, and the first one that maps to a Caffe blob and diverges is reported
(its blob, op, module path and source line).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from netdsl.convert.parity import ParityReport, compare, errors, weak_outputs

__all__ = ["ParityReport", "check_parity", "errors", "weak_outputs"]


def _flat(value: Any) -> List[Any]:
    from torch.utils import _pytree as pytree
    return pytree.tree_flatten(value)[0]


def check_parity(conv: Any, model: Any, example_inputs: Sequence[Any], *,
                 tolerance: float = 1e-4, seed: int = 0) -> ParityReport:
    """Compare ``conv`` (a Conversion) with ``model`` on the example inputs and on
    seeded standard-normal inputs of the same shapes."""
    import torch
    gen = torch.Generator().manual_seed(seed)
    sets = [("example", tuple(example_inputs)),
            ("random", tuple(torch.randn(tuple(x.shape), generator=gen, dtype=torch.float32)
                             for x in example_inputs))]

    def reference(ins: Sequence[Any]) -> List[np.ndarray]:
        if getattr(conv, "cut", None):
            values = run_keeping(conv.program, ins)
            ref = [values[n] for n in conv.cut]
        else:
            with torch.no_grad():
                ref = _flat(model(*ins))
        return [r.detach().cpu().numpy() for r in ref]

    return compare(conv, sets, reference,
                   lambda ins: [x.detach().cpu().numpy().astype(np.float32) for x in ins],
                   tolerance, lambda ins, ours: first_divergence(conv, ins, ours, tolerance))


def first_divergence(conv: Any, inputs: Sequence[Any], ours: Dict[str, np.ndarray],
                     tolerance: float) -> Optional[Dict[str, Any]]:
    """Run the exported graph keeping every tensor; the first node (in graph
    order) whose Caffe blob differs by more than ``tolerance``."""
    from netdsl.convert.graph import module_path, source_line
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
