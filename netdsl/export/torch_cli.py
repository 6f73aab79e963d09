"""``netdsl to-torch NET [WEIGHTS] -o DIR``: write DIR/model.py (``class Model``)
and DIR/weights.pt (its state_dict), check the module against netdsl's forward,
write DIR/parity.json.  Exit status as the converters': 0 parity holds (or
--no-check), 1 parity fails (the files are written and the report names the
first diverging blob), 2 user error or a layer with no export rule (nothing
written)."""
from __future__ import annotations

import json
import os
from typing import Any

from .verb import add_check_arguments, add_net_arguments, export, finish

__all__ = ["run", "add_arguments"]


def run(args: Any) -> int:
    from ..fileio import atomic_write
    from .torch_export import to_torch
    result = export(args, to_torch)
    written = result.save(args.output, check=not args.no_check,
                          tolerance=args.tolerance or 1e-4, seed=args.seed)
    data = result.parity.to_json() if result.parity is not None else {"checked": False}
    data.update(inputs={k: list(v) for k, v in result.inputs.items()},
                model_outputs=result.outputs)
    report = os.path.join(args.output, "parity.json")
    atomic_write(report, json.dumps(data, indent=1) + "\n")
    return finish(result, written, report, "the PyTorch module's")


def add_arguments(p: Any) -> None:
    add_net_arguments(p, "DIR", "the directory to write model.py, weights.pt and parity.json "
                                "into",
                      "blobs forward returns besides the net's outputs; the net's outputs "
                      "past a layer with no export rule are then left out")
    add_check_arguments(p, "skip the parity check")
