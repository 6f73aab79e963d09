"""Numpy forward of the FCN-32s deploy net beside OpenCV dnn on the same files.

The net is built here with NetSpec (VGG16 with conv1_1 pad 100, fc6/fc7 as
convolutions, score_fr, upscore k64 s32, crop offset 19), its weights drawn by
netdsl.weights fillers (xavier, bilinear upscore) and written with netdsl's
caffemodel writer; both back-ends then run the same prototxt + caffemodel on
one random 1x3xHxW input.

    python bench/forward.py [--size 224] [--fc 4096] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from netdsl import NetSpec, layers as L, params as P  # noqa: E402
from netdsl.forward import forward  # noqa: E402
from netdsl.prototxt import write  # noqa: E402
from netdsl.weights import init_weights, write_caffemodel  # noqa: E402

XAVIER = {"type": "xavier"}
ZERO = {"type": "constant", "value": 0.1}


def fcn32s(size: int, fc: int, classes: int = 21):
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, size, size]))
    x = n.data
    blocks = [(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]
    for b, (width, reps) in enumerate(blocks, 1):
        for r in range(1, reps + 1):
            name = "conv%d_%d" % (b, r)
            conv = L.Convolution(x, num_output=width, kernel_size=3,
                                 pad=100 if name == "conv1_1" else 1,
                                 weight_filler=XAVIER, bias_filler=ZERO)
            setattr(n, name, conv)
            x = L.ReLU(conv, in_place=True)
            setattr(n, "relu%d_%d" % (b, r), x)
        x = L.Pooling(x, pool=P.Pooling.MAX, kernel_size=2, stride=2)
        setattr(n, "pool%d" % b, x)
    n.fc6 = L.Convolution(x, num_output=fc, kernel_size=7, weight_filler=XAVIER,
                          bias_filler=ZERO)
    n.relu6 = L.ReLU(n.fc6, in_place=True)
    n.drop6 = L.Dropout(n.relu6, dropout_ratio=0.5, in_place=True)
    n.fc7 = L.Convolution(n.drop6, num_output=fc, kernel_size=1, weight_filler=XAVIER,
                          bias_filler=ZERO)
    n.relu7 = L.ReLU(n.fc7, in_place=True)
    n.drop7 = L.Dropout(n.relu7, dropout_ratio=0.5, in_place=True)
    n.score_fr = L.Convolution(n.drop7, num_output=classes, kernel_size=1,
                               weight_filler=XAVIER, bias_filler=ZERO)
    n.upscore = L.Deconvolution(n.score_fr, convolution_param=dict(
        num_output=classes, kernel_size=64, stride=32, bias_term=False,
        weight_filler={"type": "bilinear"}), param=[dict(lr_mult=0)])
    n.score = L.Crop(n.upscore, n.data, offset=19)
    return n.to_proto()


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--fc", type=int, default=4096, help="fc6/fc7 width (4096 in FCN-32s)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    net = fcn32s(args.size, args.fc)
    with tempfile.TemporaryDirectory() as tmp:
        proto = os.path.join(tmp, "fcn32s.prototxt")
        model = os.path.join(tmp, "fcn32s.caffemodel")
        t0 = time.perf_counter()
        weights = init_weights(net, seed=0)
        write(proto, net)
        nbytes = write_caffemodel(model, weights, types=net)
        prep = time.perf_counter() - t0
        del weights
        x = np.random.default_rng(0).uniform(-1, 1, (1, 3, args.size, args.size)).astype(
            np.float32)
        print("FCN-32s, input 1x3x%dx%d, fc %d, caffemodel %.0f MB (weights + write %.1f s)"
              % (args.size, args.size, args.fc, nbytes / 1e6, prep))
        print("numpy %s, %d threads available" % (np.__version__, os.cpu_count() or 1))

        result = {}

        def ours():
            result["score"] = forward(proto, model, {"data": x})["score"]
        t_np = best_of(ours, args.repeat)
        print("netdsl numpy forward: %.3f s (best of %d)" % (t_np, args.repeat))
        try:
            import cv2
        except ImportError:
            print("OpenCV dnn: not installed")
            return
        cvnet = cv2.dnn.readNetFromCaffe(proto, model)
        cvnet.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        cvnet.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)

        def theirs():
            cvnet.setInput(x)
            result["cv"] = cvnet.forward("score")
        theirs()  # first run sets the network up
        t_cv = best_of(theirs, args.repeat)
        print("OpenCV %s dnn forward: %.3f s (best of %d, after one warm-up run)"
              % (cv2.__version__, t_cv, args.repeat))
        ref = result["cv"].reshape(result["score"].shape)
        err = float(np.abs(result["score"] - ref).max())
        print("output %s, max |numpy - OpenCV| = %.3g (max |OpenCV| = %.3g); ratio %.1fx"
              % ("x".join(map(str, ref.shape)), err, float(np.abs(ref).max()), t_np / t_cv))


if __name__ == "__main__":
    main()
