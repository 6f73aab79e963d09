"""ONNX -> Caffe conversion cost: torchvision resnet50 exported once to an
ONNX file (dynamo exporter, weights in model.onnx.data), then converted in a
fresh process without the check and, in another, with it.

    python bench/from_onnx.py [--model resnet50] [--size 224] [--exporter dynamo|legacy13]

Reported: load (onnx.load with external data), map (folding, per-node shape
inference, converters), write (deploy.prototxt + model.caffemodel +
parity.json), check (onnxruntime and netdsl's numpy forward on two inputs) and
the peak RSS of the converting process above an interpreter that has imported
onnx, onnxruntime and netdsl.onnx.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def _rss_mb() -> float:
    """Peak RSS of this process: VmHWM (ru_maxrss would carry the exporting
    parent's peak across fork + exec on Linux)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:  # pragma: no cover - not Linux
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def export(name: str, size: int, exporter: str, directory: str) -> str:
    import logging
    import warnings
    import torch
    import torchvision
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)().eval()
    path = os.path.join(directory, "model.onnx")
    logging.disable(logging.WARNING)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        x = (torch.randn(1, 3, size, size),)
        if exporter == "dynamo":
            torch.onnx.export(model, x, path, dynamo=True, external_data=True)
        else:
            torch.onnx.export(model, x, path, dynamo=False,
                              opset_version=int(exporter[len("legacy"):]))
    return path


def one(path: str, check: bool) -> dict:
    sys.path.insert(0, ROOT)
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401
    from netdsl.onnx import convert
    base = _rss_mb()
    t0 = time.perf_counter()
    result = convert(path, check=check)
    out = tempfile.mkdtemp(prefix="netdsl-bench-")
    t1 = time.perf_counter()
    result.save(out)
    write = time.perf_counter() - t1
    total = time.perf_counter() - t0
    data = sum(os.path.getsize(os.path.join(os.path.dirname(path), f))
               for f in os.listdir(os.path.dirname(path)))
    row = {"layers": len(result.net.layer), "opset": result.opset,
           "file_mb": data / 2 ** 20, "load_s": result.timings["load"],
           "map_s": result.timings["map"], "write_s": write, "total_s": total,
           "peak_rss_mb": _rss_mb() - base}
    if check:
        row["check_s"] = result.timings["check"]
        row["max_rel"] = result.parity.max_rel
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--exporter", default="dynamo")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--check", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.check)))
        return
    with tempfile.TemporaryDirectory(prefix="netdsl-onnx-") as d:
        path = export(args.model, args.size, args.exporter, d)
        print("%-10s %-9s %6s %8s %7s %7s %7s %7s %8s %8s %8s" % (
            "model", "exporter", "opset", "file", "load", "map", "write", "check", "total",
            "peakRSS", "maxrel"))
        for check in (False, True):
            cmd = [sys.executable, __file__, "--one", path] + (["--check"] if check else [])
            r = json.loads(subprocess.run(cmd, check=True, capture_output=True,
                                          text=True).stdout.strip().splitlines()[-1])
            print("%-10s %-9s %6d %6.1fMB %6.2fs %6.2fs %6.2fs %7s %7.2fs %6.0fMB %8s" % (
                args.model, args.exporter, r["opset"], r["file_mb"], r["load_s"], r["map_s"],
                r["write_s"], "%.2fs" % r["check_s"] if check else "-", r["total_s"],
                r["peak_rss_mb"], "%.1e" % r["max_rel"] if check else "-"))


if __name__ == "__main__":
    main()
