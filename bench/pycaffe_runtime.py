"""Benchmark: pycaffe's ``caffe.Net`` stand-in on a VGG16-shaped deploy net.

The net is VGG16's deploy (13 3x3 convolutions with ReLUs, 5 max pools,
fc6/fc7/fc8 with ReLU and Dropout, Softmax) on a 1x3x224x224 input, channel
widths times ``--scale`` (1.0 is VGG16 itself: 138 M parameters, a 553 MB
caffemodel).  Its weights come from netdsl itself (``init_weights`` with
msra/xavier fillers, ``write_caffemodel``).  Every measurement runs in a fresh
subprocess that reports its wall time and its peak RSS above the RSS it had
before (VmHWM - VmRSS after imports, from /proc/self/status), so imports do not
count:

* ``open_caffemodel``        open + every array read into memory (``to_dict(copy=True)``)
* ``caffe.Net(..., weights)``  set-up (shapes, fillers) + ``CopyTrainedLayersFrom``
* ``net.forward()``          one forward pass of the set-up net
* ``netdsl run``             ``netdsl.forward.run`` on the same files (loads, then runs)
* ``prepare`` + ``forward``  ``netdsl.forward.prepare`` (weights read once), then one
                             forward (the time is the forward's)

    python bench/pycaffe_runtime.py                 # VGG16's own sizes (~10 s)
    python bench/pycaffe_runtime.py --scale 0.25    # widths x 0.25, ~1/15 the size
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

VGG16 = [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]]


def vgg16_deploy(scale: float):
    """A VGG16 deploy NetParameter with channel widths times ``scale``."""
    from netdsl import NetSpec, layers as L, params as P

    def w(c):
        return max(1, int(round(c * scale)))

    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 224, 224]))
    x = n.data
    for s, stage in enumerate(VGG16, 1):
        for i, c in enumerate(stage, 1):
            conv = L.Convolution(x, num_output=w(c), kernel_size=3, pad=1,
                                 weight_filler=dict(type="msra"))
            setattr(n, "conv%d_%d" % (s, i), conv)
            x = L.ReLU(conv, in_place=True)
            setattr(n, "relu%d_%d" % (s, i), x)
        x = L.Pooling(x, pool=P.Pooling.MAX, kernel_size=2, stride=2)
        setattr(n, "pool%d" % s, x)
    for name, nout in (("fc6", w(4096)), ("fc7", w(4096))):
        fc = L.InnerProduct(x, num_output=nout, weight_filler=dict(type="xavier"))
        setattr(n, name, fc)
        x = L.ReLU(fc, in_place=True)
        setattr(n, "relu" + name[2:], x)
        x = L.Dropout(x, dropout_ratio=0.5, in_place=True)
        setattr(n, "drop" + name[2:], x)
    n.fc8 = L.InnerProduct(x, num_output=1000, weight_filler=dict(type="xavier"))
    n.prob = L.Softmax(n.fc8)
    return n.to_proto()


def _status(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def child(op: str, deploy: str, weights: str, inp: str) -> None:
    """One measured operation; prints a JSON line."""
    import netdsl.compat  # noqa: F401  (imports counted in the baseline)
    from netdsl.compat.caffe import Net
    from netdsl.forward import run
    from netdsl.weights import open_caffemodel
    base = _status("VmRSS")
    t0 = time.perf_counter()
    if op == "open_caffemodel":
        with open_caffemodel(weights) as model:
            arrays = model.to_dict(copy=True)
        n = sum(a.size for v in arrays.values() for a in v)
    elif op == "net":
        net = Net(deploy, 1, weights=weights)
        n = sum(b.count for v in net.params.values() for b in v)
    elif op == "forward":
        net = Net(deploy, 1, weights=weights)
        net.blobs["data"].data[...] = np.load(inp)
        t0 = time.perf_counter()
        out = net.forward()
        n = int(out["prob"].argmax())
    elif op == "prepared":
        from netdsl.forward import prepare
        prep = prepare(deploy, weights)
        x = np.load(inp)
        t0 = time.perf_counter()
        n = int(prep.forward({"data": x})["prob"].argmax())
    elif op == "run":
        result = run(deploy, weights, {"data": inp})
        n = int(result["prob"].argmax())
    else:
        raise SystemExit("unknown op " + op)
    dt = time.perf_counter() - t0
    print(json.dumps({"op": op, "seconds": dt, "peak_bytes": _status("VmHWM") - base,
                      "n": n}))


def measure(op: str, deploy: str, weights: str, inp: str) -> dict:
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", op, deploy,
                          weights, inp], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=float, default=1.0,
                    help="channel widths times this (default 1: VGG16 itself)")
    ap.add_argument("--child", nargs=4, metavar=("OP", "DEPLOY", "WEIGHTS", "INPUT"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    from netdsl.weights import init_weights, write_caffemodel
    tmp = tempfile.mkdtemp(prefix="netdsl-bench-")
    try:
        net = vgg16_deploy(args.scale)
        deploy = os.path.join(tmp, "deploy.prototxt")
        with open(deploy, "w") as fh:
            fh.write(str(net))
        weights = os.path.join(tmp, "vgg16.caffemodel")
        t0 = time.perf_counter()
        size = write_caffemodel(weights, init_weights(net, seed=0), types=net)
        gen = time.perf_counter() - t0
        inp = os.path.join(tmp, "data.npy")
        np.save(inp, np.random.default_rng(0).uniform(-1, 1, (1, 3, 224, 224))
                .astype(np.float32))
        print("VGG16-shaped deploy, widths x %g: caffemodel %.1f MB (generated in %.1f s)"
              % (args.scale, size / 1e6, gen))
        print("%-28s %9s %14s %10s" % ("operation", "seconds", "peak RSS MB", "x file"))
        rows = [("open_caffemodel + read all", "open_caffemodel"),
                ("caffe.Net(deploy, weights)", "net"),
                ("net.forward()", "forward"),
                ("netdsl run (load + forward)", "run"),
                ("prepare(); forward()", "prepared")]
        for label, op in rows:
            r = measure(op, deploy, weights, inp)
            print("%-28s %9.3f %14.1f %10.2f" % (label, r["seconds"], r["peak_bytes"] / 1e6,
                                                 r["peak_bytes"] / size))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
