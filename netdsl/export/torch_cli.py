"""``netdsl to-torch NET [WEIGHTS] -o DIR``: write DIR/model.py (``class Model``)
and DIR/weights.pt (its state_dict), check the module against netdsl's forward,
write DIR/parity.json.  Exit status as the converters': 0 parity holds (or
--no-check), 1 parity fails (the files are written and the report names the
first diverging blob), 2 user error or a layer with no export rule (nothing
written)."""
from __future__ import annotations

import json
import os
import sys
from typing import Any

from ..errors import NetdslError
from .walk import split_blobs

__all__ = ["run", "add_arguments"]


def run(args: Any) -> int:
    from ..torch.cli import parse_inputs
    from .torch_export import to_torch
    if args.tolerance is not None and not args.tolerance > 0:
        raise NetdslError("--tolerance must be positive")
    shapes = dict(parse_inputs(args.input)) if args.input else None
    result = to_torch(args.net, args.weights, inputs=shapes, outputs=split_blobs(args.outputs),
                      check=False)
    if result.walk.dropped:
        print("netdsl: note: not exported: the net's output%s %s (past a layer with no export "
              "rule)" % ("s" if len(result.walk.dropped) > 1 else "",
                         ", ".join(result.walk.dropped)), file=sys.stderr)
    tolerance = args.tolerance or 1e-4

    def report() -> str:
        data = result.parity.to_json() if result.parity is not None else {"checked": False}
        data.update(inputs={k: list(v) for k, v in result.inputs.items()},
                    model_outputs=result.outputs)
        return json.dumps(data, indent=1) + "\n"

    written = result.save(args.output, check=not args.no_check, tolerance=tolerance,
                          seed=args.seed)
    from ..fileio import atomic_write
    path = os.path.join(args.output, "parity.json")
    atomic_write(path, report())
    for p in written + [path]:
        print("wrote %s" % p, file=sys.stderr)
    if result.parity is not None:
        sys.stdout.write(result.parity.table())
        if not result.parity.ok:
            print("netdsl: parity FAILS: the PyTorch module's outputs differ from netdsl's "
                  "forward beyond the tolerance (see %s)" % path, file=sys.stderr)
            return 1
    return 0


def add_arguments(p: Any) -> None:
    p.add_argument("net", metavar="NET.prototxt", help="the deploy net (prototxt)")
    p.add_argument("weights", metavar="WEIGHTS.caffemodel", nargs="?",
                   help="its trained weights (layers without weights need fixed fillers)")
    p.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="the directory to write model.py, weights.pt and parity.json into")
    p.add_argument("--input", action="append", metavar="NAME=N,C,H,W",
                   help="an input's shape instead of the net's own (repeatable)")
    p.add_argument("--outputs", action="append", metavar="BLOB,...",
                   help="blobs forward returns besides the net's outputs; the net's outputs "
                        "past a layer with no export rule are then left out")
    p.add_argument("--no-check", action="store_true", help="skip the parity check")
    p.add_argument("--tolerance", type=float, metavar="REL",
                   help="largest relative error accepted (default 1e-4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the check's random inputs")
