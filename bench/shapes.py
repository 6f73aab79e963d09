"""Time shape inference on very deep nets; print the figures.

    python bench/shapes.py [--sizes 1000 10000 100000] [--repeat 3]

Each net is an Input of 1x8x32x32 followed by alternating Convolution (8
outputs, kernel 3, pad 1) and in-place ReLU layers, built directly with
caffe_pb2.  Printed per size: the time of infer_shapes (best of --repeat),
microseconds per layer, and the ratio of per-layer cost to the smallest size
(about 1.0 when the cost is linear).  Also timed: check_net, offsets_for and
format_table on the largest net.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from netdsl.coord_map import offsets_for  # noqa: E402
from netdsl.proto import caffe_pb2  # noqa: E402
from netdsl.shapes import check_net, format_table, infer_shapes  # noqa: E402


def build(num_layers: int):
    net = caffe_pb2.NetParameter()
    net.name = "deep%d" % num_layers
    inp = net.layer.add()
    inp.name, inp.type = "data", "Input"
    inp.top.append("data")
    inp.input_param.shape.add().dim.extend([1, 8, 32, 32])
    prev = "data"
    for i in range(1, num_layers):
        lp = net.layer.add()
        if i % 2:
            lp.name = lp.type = "conv%d" % i
            lp.type = "Convolution"
            lp.bottom.append(prev)
            lp.top.append(lp.name)
            cp = lp.convolution_param
            cp.num_output = 8
            cp.kernel_size.append(3)
            cp.pad.append(1)
            prev = lp.name
        else:
            lp.name, lp.type = "relu%d" % i, "ReLU"
            lp.bottom.append(prev)
            lp.top.append(prev)
    return net


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    print("%10s  %12s  %12s  %10s  %s" % ("layers", "build (s)", "infer (s)", "us/layer",
                                            "per-layer vs smallest"))
    base = None
    net = None
    for size in args.sizes:
        t0 = time.perf_counter()
        net = build(size)
        t_build = time.perf_counter() - t0
        t = best(lambda: infer_shapes(net), args.repeat)
        per = t / size * 1e6
        base = base or per
        print("%10d  %12.3f  %12.3f  %10.2f  %.2f" % (size, t_build, t, per, per / base))
    shapes = infer_shapes(net)
    last = list(shapes.blobs.items())[-1]
    print("last blob %s %s; %d blobs" % (last[0], last[1], len(shapes.blobs)))
    size = args.sizes[-1]
    print("check_net     %8.3f s" % best(lambda: check_net(net), 1))
    print("offsets_for   %8.3f s" % best(lambda: offsets_for(net), 1))
    print("format_table  %8.3f s" % best(lambda: format_table(shapes), 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
