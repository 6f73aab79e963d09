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
import tempfile
from typing import Any, List

from ..errors import NetdslError
from .verb import add_check_arguments, add_net_arguments, export, finish

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
    from .onnx_export import to_onnx
    result = export(args, to_onnx, opset=args.opset, dynamic_batch=args.dynamic_batch)
    written = _save_checked(result, args)
    report = parity_path(args.output)
    data = result.parity.to_json() if result.parity is not None else {"checked": False}
    data.update(opset=result.opset, inputs={k: list(v) for k, v in result.inputs.items()},
                graph_outputs=result.outputs)
    atomic_write(report, json.dumps(data, indent=1) + "\n")
    return finish(result, written, report, "onnxruntime's")


def add_arguments(p: Any) -> None:
    add_net_arguments(p, "model.onnx", "the ONNX file to write (its parity report goes beside it)",
                      "blobs to export as graph outputs besides the net's outputs; the net's "
                      "outputs past a layer with no export rule are then left out")
    p.add_argument("--opset", type=int, metavar="N",
                   help="ONNX opset, 13 or newer (default: the newest the installed onnx and "
                        "onnxruntime both support)")
    p.add_argument("--dynamic-batch", action="store_true",
                   help="make the batch axis of the inputs and outputs symbolic ('N')")
    add_check_arguments(p, "skip the parity check (which needs onnxruntime)")
