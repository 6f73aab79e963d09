"""What the two export verbs share (``to-onnx``, ``to-torch``): their common
arguments, the export call with ``--input`` / ``--outputs``, and the ending
(the files written, the parity table, exit status 0 or 1)."""
from __future__ import annotations

import sys
from typing import Any, Callable, List

from ..errors import NetdslError
from .walk import split_blobs

__all__ = ["add_net_arguments", "add_check_arguments", "export", "finish"]


def add_net_arguments(p: Any, output: str, output_help: str, outputs_help: str) -> None:
    """NET, WEIGHTS, -o, --input and --outputs."""
    p.add_argument("net", metavar="NET.prototxt", help="the deploy net (prototxt)")
    p.add_argument("weights", metavar="WEIGHTS.caffemodel", nargs="?",
                   help="its trained weights (layers without weights need fixed fillers)")
    p.add_argument("-o", "--output", required=True, metavar=output, help=output_help)
    p.add_argument("--input", action="append", metavar="NAME=N,C,H,W",
                   help="an input's shape instead of the net's own (repeatable)")
    p.add_argument("--outputs", action="append", metavar="BLOB,...", help=outputs_help)


def add_check_arguments(p: Any, no_check_help: str) -> None:
    """--no-check, --tolerance and --seed of the parity check."""
    p.add_argument("--no-check", action="store_true", help=no_check_help)
    p.add_argument("--tolerance", type=float, metavar="REL",
                   help="largest relative error accepted (default 1e-4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the check's random inputs")


def export(args: Any, exporter: Callable[..., Any], **kw: Any) -> Any:
    """``exporter(net, weights, inputs=, outputs=, check=False, **kw)`` on the verb's
    arguments; a note names the net's outputs left out past a layer with no rule."""
    from ..convert.options import parse_inputs
    if args.tolerance is not None and not args.tolerance > 0:
        raise NetdslError("--tolerance must be positive")
    shapes = dict(parse_inputs(args.input)) if args.input else None
    result = exporter(args.net, args.weights, inputs=shapes, outputs=split_blobs(args.outputs),
                      check=False, **kw)
    if result.walk.dropped:
        print("netdsl: note: not exported: the net's output%s %s (past a layer with no export "
              "rule)" % ("s" if len(result.walk.dropped) > 1 else "",
                         ", ".join(result.walk.dropped)), file=sys.stderr)
    return result


def finish(result: Any, written: List[str], report: str, what: str) -> int:
    """Name the files written, print the parity table; 1 when parity fails."""
    for p in written + [report]:
        print("wrote %s" % p, file=sys.stderr)
    if result.parity is not None:
        sys.stdout.write(result.parity.table())
        if not result.parity.ok:
            print("netdsl: parity FAILS: %s outputs differ from netdsl's forward beyond the "
                  "tolerance (see %s)" % (what, report), file=sys.stderr)
            return 1
    return 0
