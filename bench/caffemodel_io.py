"""Benchmark: caffemodel write/read with netdsl.weights against two baselines.

The model has FCN-32s's parameter shapes (VGG16's convolutions, fc6 as a 7x7
convolution 4096x512x7x7, fc7 4096x4096x1x1, score_fr 21x4096x1x1 and a dense
upscore 21x21x64x64): about 134 M float32 values, 537 MB.  Routes:

* netdsl      write_caffemodel / open_caffemodel (+ every array read)
* protobuf    caffe_pb2.NetParameter filled with extend(tolist()),
              SerializeToString; ParseFromString + np.array per blob
* raw numpy   ndarray.tofile / np.fromfile of the same floats (no format at all)

Every measurement runs in a fresh subprocess, which reports its own wall time
for the operation and its peak RSS (getrusage(RUSAGE_SELF).ru_maxrss).  Every
write ends with fsync, as write_caffemodel's atomic replace does.  Reads run
on a warm page cache (the file was just written) and sum every array, so the
values are really touched.

    python bench/caffemodel_io.py            # the full model
    python bench/caffemodel_io.py --scale 0.25   # channel widths x 0.25, ~1/16 the size
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

CLASSES = 21


def fcn32s_shapes(scale: float = 1.0):
    """(name, type, [param shapes]) of FCN-32s, channel widths times ``scale``."""
    def w(c):
        return max(1, int(round(c * scale)))

    vgg = [("conv1_1", 3, 64), ("conv1_2", 64, 64), ("conv2_1", 64, 128),
           ("conv2_2", 128, 128), ("conv3_1", 128, 256), ("conv3_2", 256, 256),
           ("conv3_3", 256, 256), ("conv4_1", 256, 512), ("conv4_2", 512, 512),
           ("conv4_3", 512, 512), ("conv5_1", 512, 512), ("conv5_2", 512, 512),
           ("conv5_3", 512, 512)]
    layers = []
    for name, cin, cout in vgg:
        cin = cin if cin == 3 else w(cin)
        layers.append((name, "Convolution", [(w(cout), cin, 3, 3), (w(cout),)]))
    layers.append(("fc6", "Convolution", [(w(4096), w(512), 7, 7), (w(4096),)]))
    layers.append(("fc7", "Convolution", [(w(4096), w(4096), 1, 1), (w(4096),)]))
    layers.append(("score_fr", "Convolution", [(CLASSES, w(4096), 1, 1), (CLASSES,)]))
    layers.append(("upscore", "Deconvolution", [(CLASSES, CLASSES, 64, 64)]))
    return layers


def make_weights(scale):
    out = []
    for i, (name, type_, shapes) in enumerate(fcn32s_shapes(scale)):
        rng = np.random.default_rng(i)
        out.append((name, type_, [rng.standard_normal(s, dtype=np.float32) for s in shapes]))
    return out


def n_values(scale):
    return sum(int(np.prod(s)) for _, _, shapes in fcn32s_shapes(scale) for s in shapes)


# ---------------------------------------------------------------- workers


def _peak_rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def worker(mode, directory, scale):
    model = os.path.join(directory, "fcn32s.caffemodel")
    pbmodel = os.path.join(directory, "fcn32s_pb.caffemodel")
    raw = os.path.join(directory, "fcn32s.f32")
    result = {}
    if mode.startswith("write"):
        layers = make_weights(scale)
        if mode == "write:none":  # the weights alone: the floor for every write
            pass
        elif mode == "write:netdsl":
            from netdsl.weights import write_caffemodel
            t = time.perf_counter()
            write_caffemodel(model, layers)
            result["seconds"] = time.perf_counter() - t
        elif mode == "write:protobuf":
            from netdsl.proto import caffe_pb2
            t = time.perf_counter()
            net = caffe_pb2.NetParameter()
            for name, type_, arrays in layers:
                lp = net.layer.add(name=name, type=type_)
                for a in arrays:
                    bp = lp.blobs.add()
                    bp.shape.dim.extend(a.shape)
                    bp.data.extend(a.ravel().tolist())
            data = net.SerializeToString()
            with open(pbmodel, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            result["seconds"] = time.perf_counter() - t
        elif mode == "write:numpy":
            t = time.perf_counter()
            with open(raw, "wb") as fh:
                for _, _, arrays in layers:
                    for a in arrays:
                        a.tofile(fh)
                fh.flush()
                os.fsync(fh.fileno())
            result["seconds"] = time.perf_counter() - t
    elif mode == "read:netdsl":
        from netdsl.weights import open_caffemodel
        t = time.perf_counter()
        m = open_caffemodel(model)
        listing = [(e.name, e.type, e.shapes) for e in m.layers]
        result["open_ms"] = (time.perf_counter() - t) * 1e3
        total = 0.0
        for entry in m.layers:
            for a in m.arrays(entry):
                total += float(a.sum(dtype=np.float64))
        result["seconds"] = time.perf_counter() - t
        result["layers"] = len(listing)
        result["checksum"] = total
        m.close()
    elif mode == "read:protobuf":
        from netdsl.proto import caffe_pb2
        t = time.perf_counter()
        with open(pbmodel, "rb") as fh:
            net = caffe_pb2.NetParameter.FromString(fh.read())
        listing = [(l.name, l.type, [tuple(b.shape.dim) for b in l.blobs]) for l in net.layer]
        result["open_ms"] = (time.perf_counter() - t) * 1e3
        total = 0.0
        for l in net.layer:
            for b in l.blobs:
                a = np.array(b.data, dtype=np.float32).reshape(tuple(b.shape.dim))
                total += float(a.sum(dtype=np.float64))
        result["seconds"] = time.perf_counter() - t
        result["layers"] = len(listing)
        result["checksum"] = total
    elif mode == "read:numpy":
        t = time.perf_counter()
        flat = np.fromfile(raw, dtype=np.float32)
        total, pos = 0.0, 0
        for _, _, shapes in fcn32s_shapes(scale):
            for s in shapes:
                n = int(np.prod(s))
                total += float(flat[pos:pos + n].reshape(s).sum(dtype=np.float64))
                pos += n
        result["seconds"] = time.perf_counter() - t
        result["checksum"] = total
    else:
        raise SystemExit("unknown mode %s" % mode)
    result["peak_rss"] = _peak_rss()
    print(json.dumps(result))


def run(mode, directory, scale):
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", mode,
                           "--dir", directory, "--scale", repr(scale)],
                          stdout=subprocess.PIPE, check=True)
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


# ---------------------------------------------------------------- report


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=float, default=1.0,
                    help="channel widths times this (parameter count about scale^2)")
    ap.add_argument("--dir", help="where to write the files (default: a temporary directory)")
    ap.add_argument("--skip-protobuf", action="store_true",
                    help="leave out the protobuf route (the slowest)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker, args.dir, args.scale)
        return 0
    directory = args.dir or tempfile.mkdtemp(prefix="netdsl-bench-")
    os.makedirs(directory, exist_ok=True)
    try:
        values = n_values(args.scale)
        weight_bytes = values * 4
        print("FCN-32s parameter shapes, scale %g: %d layers, %.1f M float32 values, %.1f MB"
              % (args.scale, len(fcn32s_shapes(args.scale)), values / 1e6, weight_bytes / 1e6))
        routes = ["netdsl", "numpy"] + ([] if args.skip_protobuf else ["protobuf"])
        floor = run("write:none", directory, args.scale)
        res = {}
        for r in routes:
            res[r] = {"write": run("write:" + r, directory, args.scale)}
            res[r]["read"] = run("read:" + r, directory, args.scale)
        size = os.path.getsize(os.path.join(directory, "fcn32s.caffemodel"))

        def mb(x):
            return "%.0f" % (x / 1e6)

        head = ("route", "write s", "write peak MB", "peak/weights", "open+list ms", "read s",
                "read peak MB")
        rows = [head]
        for r in routes:
            w, rd = res[r]["write"], res[r]["read"]
            rows.append((r, "%.3f" % w["seconds"], mb(w["peak_rss"]),
                         "%.2f" % (w["peak_rss"] / weight_bytes),
                         "%.1f" % rd["open_ms"] if "open_ms" in rd else "-",
                         "%.3f" % rd["seconds"], mb(rd["peak_rss"])))
        rows.append(("(weights only)", "-", mb(floor["peak_rss"]),
                     "%.2f" % (floor["peak_rss"] / weight_bytes), "-", "-", "-"))
        widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
        print()
        for i, row in enumerate(rows):
            print("  ".join(c.ljust(widths[j]) if j == 0 else c.rjust(widths[j])
                            for j, c in enumerate(row)))
            if i == 0:
                print("  ".join("-" * wd for wd in widths))
        print()
        sums = {r: res[r]["read"]["checksum"] for r in routes}
        same = len({round(v, 3) for v in sums.values()}) == 1
        print("caffemodel %d bytes (weights %d + %d of framing); checksums %s"
              % (size, weight_bytes, size - weight_bytes, "agree" if same else "DIFFER %r" % sums))
        nd, npy = res["netdsl"], res["numpy"]
        checks = [
            ("write within 1.5x of tofile", nd["write"]["seconds"] / npy["write"]["seconds"], 1.5),
            ("write peak RSS <= 1.25x weight bytes", nd["write"]["peak_rss"] / weight_bytes, 1.25),
            ("open + list <= 50 ms", nd["read"]["open_ms"], 50.0),
            ("read every array within 1.5x of fromfile",
             nd["read"]["seconds"] / npy["read"]["seconds"], 1.5),
        ]
        for label, value, limit in checks:
            print("%-44s %8.2f  (limit %.2f)  %s" % (label, value, limit,
                                                    "ok" if value <= limit else "MISSED"))
        if "protobuf" in res:
            pb = res["protobuf"]
            print("netdsl vs protobuf: write %.1fx faster, read %.1fx faster, write peak RSS "
                  "%.1fx lower" % (pb["write"]["seconds"] / nd["write"]["seconds"],
                                   pb["read"]["seconds"] / nd["read"]["seconds"],
                                   pb["write"]["peak_rss"] / nd["write"]["peak_rss"]))
    finally:
        if not args.dir:
            shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
