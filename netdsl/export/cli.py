"""``netdsl to-onnx NET [WEIGHTS] -o model.onnx``: export, write the model, check
it against netdsl's forward with onnxruntime, write ``<model>.parity.json`` beside it
(``model.onnx`` -> ``model.parity.json``).  Exit status as the converters': 0
parity holds (or --no-check), 1 parity fails (the files are written and the
report names the first diverging blob), 2 user error or a layer with no export
rule (nothing written)."""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from typing import Any, List

from ..errors import NetdslError
from .walk import split_blobs as _outputs

__all__ = ["run", "add_arguments", "parity_path"]


def parity_path(model_path: str) -> str:
    root, ext = os.path.splitext(model_path)
    return (root if ext.lower() == ".onnx" else model_path) + ".parity.json"


def _save_checked(result: Any, args: Any) -> List[str]:
    """Write the model into a private directory beside ``-o``, check it there, then
    move the files into place: an error (the check cannot run) leaves nothing."""
    final_dir = os.path.dirname(os.path.abspath(args.output))
    try:
        os.makedirs(final_dir, exist_ok=True)
        work = tempfile.mkdtemp(prefix=".netdsl-to-onnx-", dir=final_dir)
    except OSError as exc:
        raise NetdslError("cannot write there: %s" % (exc.strerror or exc),
                          file=args.output) from None
    try:
        tmp = os.path.join(work, os.path.basename(args.output))
        written = result.save(tmp, release=True)
        if not args.no_check:
            from .onnx_check import check_parity
            result.parity = check_parity(result, tolerance=args.tolerance or 1e-4,
                                         seed=args.seed, path=tmp)
        final = [os.path.join(final_dir, os.path.basename(p)) for p in written]
        for src, dst in zip(reversed(written), reversed(final)):   # external data first
            os.replace(src, dst)
        result.path = final[0]
        return [os.path.join(os.path.dirname(args.output), os.path.basename(p))
                for p in written]
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: Any) -> int:
    from ..fileio import atomic_write
    from ..torch.cli import parse_inputs
    from .onnx_export import to_onnx
    if args.tolerance is not None and not args.tolerance > 0:
        raise NetdslError("--tolerance must be positive")
    shapes = dict(parse_inputs(args.input)) if args.input else None
    result = to_onnx(args.net, args.weights, inputs=shapes, outputs=_outputs(args.outputs),
                     opset=args.opset, dynamic_batch=args.dynamic_batch, check=False)
    if result.walk.dropped:
        print("netdsl: note: not exported: the net's output%s %s (past a layer with no export "
              "rule)" % ("s" if len(result.walk.dropped) > 1 else "",
                         ", ".join(result.walk.dropped)), file=sys.stderr)
    written = _save_checked(result, args)
    report = parity_path(args.output)
    data = result.parity.to_json() if result.parity is not None else {"checked": False}
    data.update(opset=result.opset, inputs={k: list(v) for k, v in result.inputs.items()},
                graph_outputs=result.outputs)
    atomic_write(report, json.dumps(data, indent=1) + "\n")
    for p in written + [report]:
        print("wrote %s" % p, file=sys.stderr)
    if result.parity is not None:
        sys.stdout.write(result.parity.table())
        if not result.parity.ok:
            print("netdsl: parity FAILS: onnxruntime's outputs differ from netdsl's forward "
                  "beyond the tolerance (see %s)" % report, file=sys.stderr)
            return 1
    return 0


def add_arguments(p: Any) -> None:
    p.add_argument("net", metavar="NET.prototxt", help="the deploy net (prototxt)")
    p.add_argument("weights", metavar="WEIGHTS.caffemodel", nargs="?",
                   help="its trained weights (layers without weights need fixed fillers)")
    p.add_argument("-o", "--output", required=True, metavar="model.onnx",
                   help="the ONNX file to write (its parity report goes beside it)")
    p.add_argument("--input", action="append", metavar="NAME=N,C,H,W",
                   help="an input's shape instead of the net's own (repeatable)")
    p.add_argument("--outputs", action="append", metavar="BLOB,...",
                   help="blobs to export as graph outputs besides the net's outputs; the net's "
                        "outputs past a layer with no export rule are then left out")
    p.add_argument("--opset", type=int, metavar="N",
                   help="ONNX opset, 13 or newer (default: the newest the installed onnx and "
                        "onnxruntime both support)")
    p.add_argument("--dynamic-batch", action="store_true",
                   help="make the batch axis of the inputs and outputs symbolic ('N')")
    p.add_argument("--no-check", action="store_true",
                   help="skip the parity check (which needs onnxruntime)")
    p.add_argument("--tolerance", type=float, metavar="REL",
                   help="largest relative error accepted (default 1e-4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the check's random inputs")
