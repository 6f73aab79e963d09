"""Caffe -> ONNX export cost on VGG-16's sizes: a deploy net (224x224 input,
138,357,544 parameters) and a caffemodel of random weights (553 MB) are written
to a temporary directory, then exported in a fresh process without the check
and, in another, with it (onnxruntime and netdsl's numpy forward on two inputs).

    python bench/to_onnx.py [--size 224]

Reported per run: the export time (read the caffemodel, emit, build the model,
write model.onnx) and the check time, and the peak RSS of the exporting process
above an interpreter that has imported onnx, onnxruntime and netdsl.export, also
as a multiple of the caffemodel's size.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def vgg16(size: int):
    from netdsl import NetSpec, layers as L, params as P
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, size, size]))
    x = n.data
    for stage, (reps, width) in enumerate(((2, 64), (2, 128), (3, 256), (3, 512), (3, 512)), 1):
        for i in range(1, reps + 1):
            name = "conv%d_%d" % (stage, i)
            setattr(n, name, L.Convolution(x, num_output=width, kernel_size=3, pad=1))
            x = getattr(n, name)
            setattr(n, "relu%d_%d" % (stage, i), L.ReLU(x, in_place=True))
        setattr(n, "pool%d" % stage, L.Pooling(x, pool=P.Pooling.MAX, kernel_size=2, stride=2))
        x = getattr(n, "pool%d" % stage)
    n.fc6 = L.InnerProduct(x, num_output=4096)
    n.relu6 = L.ReLU(n.fc6, in_place=True)
    n.drop6 = L.Dropout(n.fc6, in_place=True)
    n.fc7 = L.InnerProduct(n.fc6, num_output=4096)
    n.relu7 = L.ReLU(n.fc7, in_place=True)
    n.drop7 = L.Dropout(n.fc7, in_place=True)
    n.fc8 = L.InnerProduct(n.fc7, num_output=1000)
    n.prob = L.Softmax(n.fc8)
    return n.to_proto()


def write_files(directory: str, size: int):
    import numpy as np
    from netdsl.prototxt import write
    from netdsl.shapes import infer_shapes
    from netdsl.weights import write_caffemodel
    net = vgg16(size)
    proto = os.path.join(directory, "vgg16.prototxt")
    model = os.path.join(directory, "vgg16.caffemodel")
    write(proto, net)
    rng = np.random.default_rng(0)
    weights = {}
    for ls in infer_shapes(net).layers:
        if ls.param_shapes:
            weights[ls.name] = [(rng.standard_normal(tuple(s), dtype=np.float32)
                                 * np.float32(0.01)) for s in ls.param_shapes]
    write_caffemodel(model, weights, types=net)
    return proto, model


def child(proto: str, model: str, out: str, check: bool) -> None:
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401
    from netdsl.export import onnx_export
    onnx_export.default_opset()
    base = _rss_mb()
    t0 = time.perf_counter()
    res = onnx_export.to_onnx(proto, model, check=False)
    res.save(out, release=True)
    t1 = time.perf_counter()
    if check:
        from netdsl.export.onnx_check import check_parity
        res.parity = check_parity(res, path=out)
        assert res.parity.ok, res.parity.table()
    t2 = time.perf_counter()
    print(json.dumps({"export_s": t1 - t0, "check_s": t2 - t1, "rss_mb": _rss_mb() - base,
                      "base_mb": base}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        proto, model, out, check = args.child
        child(proto, model, out, check == "1")
        return
    with tempfile.TemporaryDirectory() as d:
        proto, model = write_files(d, args.size)
        mb = os.path.getsize(model) / 2 ** 20
        print("VGG-16 caffemodel: %.0f MB, input 1x3x%dx%d" % (mb, args.size, args.size))
        for check in (False, True):
            r = subprocess.run([sys.executable, __file__, "--child", proto, model,
                                os.path.join(d, "vgg16.onnx"), "1" if check else "0"],
                               capture_output=True, text=True, env=dict(os.environ,
                                                                         PYTHONPATH=ROOT))
            if r.returncode:
                sys.exit(r.stderr)
            f = json.loads(r.stdout.strip().splitlines()[-1])
            print("%-13s export %.2f s  check %.2f s  peak RSS +%.0f MB (%.2fx the caffemodel; "
                  "import baseline %.0f MB)" % ("with check" if check else "without check",
                                                 f["export_s"], f["check_s"], f["rss_mb"],
                                                 f["rss_mb"] / mb, f["base_mb"]))


if __name__ == "__main__":
    main()
