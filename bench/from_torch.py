"""PyTorch -> Caffe conversion cost: time for trace / map / write / check and
peak RSS above the baseline of an interpreter that has imported torch,
torchvision and netdsl.torch.  Each model runs in its own process.

    python bench/from_torch.py [--models resnet50,efficientnet_b0] [--size 224] [--no-check]

Target (issue 11): resnet50 converted (without the check) in under 5 s, peak
RSS under 2x the parameter bytes above the baseline.  "warm/param" measures
from a second baseline taken after a one-layer trace, when torch.export's own
lazily imported machinery (a fixed ~25 MB) is already loaded (a second
process).  Times are those of the first, cold conversion in a process.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kB


def one(name: str, size: int, check: bool, warm_up: bool) -> dict:
    sys.path.insert(0, ROOT)
    import torch
    import torchvision
    from netdsl.torch import convert
    torch.set_num_threads(2)
    base = _rss_mb()
    if warm_up:
        # torch.export imports most of its machinery on first use: a one-layer
        # trace first gives a baseline with that fixed cost paid
        from netdsl.torch.convert import trace
        trace(torch.nn.Conv2d(1, 1, 1).eval(), (torch.randn(1, 1, 2, 2),))
        base = _rss_mb()
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)().eval()
    params = sum(p.numel() * p.element_size() for p in model.parameters()) + sum(
        b.numel() * b.element_size() for b in model.buffers())
    x = torch.randn(1, 3, size, size)
    result = convert(model, x, check=False)
    out = tempfile.mkdtemp(prefix="netdsl-bench-")
    t0 = time.perf_counter()
    result.save(out)
    write = time.perf_counter() - t0
    peak = _rss_mb() - base
    row = {"model": name, "input": "1x3x%dx%d" % (size, size),
           "param_mb": params / 2 ** 20, "layers": len(result.net.layer),
           "trace_s": result.timings["trace"], "map_s": result.timings["map"],
           "write_s": write,
           "total_s": result.timings["trace"] + result.timings["map"] + write,
           "peak_rss_mb": peak, "rss_over_params": peak / (params / 2 ** 20)}
    if check:
        from netdsl.torch.parity import check_parity
        t0 = time.perf_counter()
        report = check_parity(result, model, (x,))
        row["check_s"] = time.perf_counter() - t0
        row["max_rel"] = report.max_rel
        row["peak_rss_with_check_mb"] = _rss_mb() - base
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet50,efficientnet_b0")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--no-check", action="store_true")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--warm", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.size, not args.no_check, args.warm)))
        return
    print("%-16s %-11s %8s %7s %7s %7s %7s %8s %8s %9s %9s %7s" % (
        "model", "input", "params", "trace", "map", "write", "total", "check", "peakRSS",
        "RSS/param", "warm/param", "maxrel"))
    for name in args.models.split(","):
        cmd = [sys.executable, __file__, "--one", name, "--size", str(args.size)]
        if args.no_check:
            cmd.append("--no-check")

        def go(extra):
            return json.loads(subprocess.run(cmd + extra, check=True, capture_output=True,
                                             text=True).stdout.strip().splitlines()[-1])
        r = go([])                       # cold: times and RSS of a one-shot conversion
        w = go(["--no-check", "--warm"])  # RSS above a warmed-up torch.export
        r["rss_warm_over_params"] = w["rss_over_params"]
        print("%-16s %-11s %6.1fMB %6.2fs %6.2fs %6.2fs %6.2fs %7s %6.0fMB %9.2f %9.2f %7s" % (
            r["model"], r["input"], r["param_mb"], r["trace_s"], r["map_s"], r["write_s"],
            r["total_s"], "%.2fs" % r["check_s"] if "check_s" in r else "-",
            r["peak_rss_mb"], r["rss_over_params"], r["rss_warm_over_params"],
            "%.1e" % r["max_rel"] if "max_rel" in r else "-"))


if __name__ == "__main__":
    main()
