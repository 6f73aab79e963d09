"""The numpy forward beside OpenCV dnn on ResNet-50, VGG16 and FCN-32s.

ResNet-50 and VGG16 are built here with NetSpec (ResNet-50 as He et al.'s
deploy: 7x7/2 stem, bottleneck stages 3-4-6-3 with the stride on branch2a,
BatchNorm + Scale after every convolution, global average pool, fc1000,
Softmax; VGG16 as bench/pycaffe_runtime.py's deploy), FCN-32s is built from
specs/fcn32s.yaml (deploy, input 1x3x384x384).  Weights are drawn by netdsl's
fillers (BatchNorm statistics set to mean 0, variance 1, factor 1, so the
forward stays finite) and written with netdsl's caffemodel writer into a temp
dir.  Every engine then runs the same prototxt + caffemodel on one random
input:

* ``netdsl.forward``   the forward API on a net prepared once (``prepare``),
                       or ``forward(prototxt, open CaffeModel, ...)`` where
                       ``prepare`` does not exist
* ``caffe.Net``        netdsl's pycaffe stand-in, ``net.forward()``
* ``OpenCV dnn``       ``cv2.dnn.readNetFromCaffe`` on the same files (its 3x3
                       stride-1 convolutions use Winograd's F(6,3) by default,
                       fewer multiplications than Caffe's im2col + GEMM)
* ``OpenCV no Winograd``  the same with ``enableWinograd(False)``

Each (net, engine) pair runs in a fresh subprocess: set-up, one warm-up
forward, then the best of ``--repeat`` timed forwards (wall and CPU time of
that run; CPU time counts every thread).  ``peak MB`` is the process's VmHWM
minus its VmRSS after imports (a subprocess each, so one engine's peak is not
another's), so it counts the weights, the set-up and the forwards; ``fwd MB``
is what the forwards add to the set-up net's RSS (VmHWM reset after set-up by
writing 5 to /proc/self/clear_refs).  ``Caffe MB`` is what
Caffe itself holds for the net: every blob (data) plus every parameter, in
float32.

    python bench/forward.py [--nets resnet50,vgg16,fcn32s] [--repeat 3] [--threads N]

``--threads N`` sets OPENBLAS_NUM_THREADS and OMP_NUM_THREADS for the
measuring subprocesses (numpy's BLAS reads them at start-up) and
``cv2.setNumThreads(N)`` for OpenCV; without it each library uses its own
default (all cores).

Under each net's rows, ``GEMM floor`` is the least time any forward that does
Caffe's arithmetic (im2col + one SGEMM per group, conv_layer.cpp) can take
here: the net's multiply-accumulates (netdsl.cost) at the rate numpy's BLAS
reaches on a large square float32 GEMM in a subprocess with the same thread
settings.  A time below it needs fewer multiplications than Caffe does
(Winograd's F(6,3), which OpenCV uses on 3x3 stride-1 convolutions), so other
rounding than Caffe's.
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
from typing import Optional

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

SIZES = {"resnet50": 224, "vgg16": 224, "fcn32s": 384}
ENGINES = ("netdsl.forward", "caffe.Net", "OpenCV dnn", "OpenCV no Winograd")


# -- the nets ---------------------------------------------------------------------------

def resnet50(size: int = 224):
    """ResNet-50's deploy net (Kaiming He's ResNet-50-deploy.prototxt layout)."""
    from netdsl import NetSpec, layers as L, params as P
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, size, size]))

    def conv_bn(name, x, nout, k, s, p, relu=True):
        c = L.Convolution(x, num_output=nout, kernel_size=k, stride=s, pad=p, bias_term=False,
                          weight_filler=dict(type="msra"))
        setattr(n, name, c)
        setattr(n, "bn" + name[3:] if name.startswith("res") else "bn_" + name,
                L.BatchNorm(c, in_place=True, batch_norm_param=dict(use_global_stats=True)))
        y = L.Scale(c, in_place=True, bias_term=True)
        setattr(n, "scale" + name[3:] if name.startswith("res") else "scale_" + name, y)
        if relu:
            y = L.ReLU(y, in_place=True)
            setattr(n, name + "_relu", y)
        return y

    x = conv_bn("conv1", n.data, 64, 7, 2, 3)
    n.pool1 = x = L.Pooling(x, pool=P.Pooling.MAX, kernel_size=3, stride=2)
    for stage, (width, blocks) in enumerate(((64, 3), (128, 4), (256, 6), (512, 3)), 2):
        for b in range(blocks):
            tag = "%d%s" % (stage, "abcdef"[b])
            stride = 2 if b == 0 and stage > 2 else 1
            if b == 0:
                short = conv_bn("res%s_branch1" % tag, x, 4 * width, 1, stride, 0, relu=False)
            else:
                short = x
            y = conv_bn("res%s_branch2a" % tag, x, width, 1, stride, 0)
            y = conv_bn("res%s_branch2b" % tag, y, width, 3, 1, 1)
            y = conv_bn("res%s_branch2c" % tag, y, 4 * width, 1, 1, 0, relu=False)
            s = L.Eltwise(short, y)
            setattr(n, "res" + tag, s)
            x = L.ReLU(s, in_place=True)
            setattr(n, "res%s_relu" % tag, x)
    n.pool5 = L.Pooling(x, pool=P.Pooling.AVE, kernel_size=7, stride=1)
    n.fc1000 = L.InnerProduct(n.pool5, num_output=1000, weight_filler=dict(type="xavier"))
    n.prob = L.Softmax(n.fc1000)
    return n.to_proto()


def vgg16(size: int = 224):
    sys.path.insert(0, HERE)
    from pycaffe_runtime import vgg16_deploy
    net = vgg16_deploy(1.0)
    net.layer[0].input_param.shape[0].dim[2:] = [size, size]
    return net


def fcn32s(size: int, tmp: str):
    """specs/fcn32s.yaml's deploy net and its initial weights (bilinear upscore)."""
    from netdsl.prototxt import read_net
    from netdsl.spec import build
    written = build(os.path.join(ROOT, "specs", "fcn32s.yaml"), os.path.join(tmp, "fcn32s"),
                    phases=["deploy"], weights=True)
    proto = [p for p in written if p.endswith("deploy.prototxt")][0]
    net = read_net(proto)
    for lp in net.layer:
        if lp.type == "Input":
            lp.input_param.shape[0].dim[2:] = [size, size]
    model = [p for p in written if p.endswith(".caffemodel")][0]
    return net, _random_convolutions(net, model)


def _random_convolutions(net, model: str) -> str:
    """The spec's initial weights are zeros but for the bilinear upscore (FCN learns
    from a transplanted VGG16): draw He-normal convolution weights and 0.01 biases
    instead, so that the outputs compared are not all zero."""
    from netdsl.weights import open_caffemodel, write_caffemodel
    rng = np.random.default_rng(0)
    with open_caffemodel(model) as cm:
        weights = cm.to_dict(copy=True)
    kinds = {lp.name: lp.type for lp in net.layer}
    for name, blobs in weights.items():
        if kinds.get(name) == "Convolution":
            w = blobs[0]
            w[...] = rng.standard_normal(w.shape) * np.sqrt(2.0 / np.prod(w.shape[1:]))
            for b in blobs[1:]:
                b[...] = 0.01
    write_caffemodel(model, weights, types=net)
    return model


def make_files(name: str, tmp: str):
    """(prototxt path, caffemodel path, input .npy path, caffemodel bytes, Caffe bytes)."""
    from netdsl.prototxt import write
    from netdsl.weights import init_weights, write_caffemodel
    size = SIZES[name]
    proto = os.path.join(tmp, name + ".prototxt")
    model = os.path.join(tmp, name + ".caffemodel")
    if name == "fcn32s":
        net, built = fcn32s(size, tmp)
        shutil.move(built, model)
    else:
        net = resnet50(size) if name == "resnet50" else vgg16(size)
        weights = init_weights(net, seed=0)
        for lp in net.layer:
            if lp.type == "BatchNorm":   # mean 0, variance 1, factor 1
                mean, var, factor = weights[lp.name]
                mean[...] = 0
                var[...] = 1
                factor[...] = 1
        write_caffemodel(model, weights, types=net)
        del weights
    write(proto, net)
    inp = os.path.join(tmp, name + ".npy")
    np.save(inp, np.random.default_rng(0).uniform(-1, 1, (1, 3, size, size)).astype(np.float32))
    return proto, model, inp, os.path.getsize(model), caffe_bytes(net)


def caffe_bytes(net) -> int:
    """What Caffe's Net holds after a forward: every blob's data, every parameter and
    each convolution's own column buffer (base_conv_layer.cpp Reshape gives every
    layer a col_buffer_ of kernel_dim x output positions, Deconvolution's over its
    input positions; SyncedMemory allocates it when first used, which a 1x1
    stride-1 unpadded convolution never does), float32."""
    from netdsl.shapes import infer_shapes
    shapes = infer_shapes(net)
    total = sum(int(np.prod(s, dtype=np.int64)) for s in shapes.blobs.values())
    for entry in shapes.layers:
        total += sum(int(np.prod(s, dtype=np.int64)) for s in (entry.param_shapes or ()))
        lp = entry.layer
        if lp.type not in ("Convolution", "Deconvolution") or not entry.param_shapes:
            continue
        w = entry.param_shapes[0]
        cp = lp.convolution_param
        if (lp.type == "Convolution" and all(k == 1 for k in w[2:])
                and all(s == 1 for s in cp.stride) and not any(cp.pad)):
            continue
        kernel = int(np.prod(w[1:], dtype=np.int64)) * cp.group   # (C/g * k) per group
        spatial = entry.top_shapes[0] if lp.type == "Convolution" else entry.bottom_shapes[0]
        total += kernel * int(np.prod(spatial[2:], dtype=np.int64))
    return 4 * total


# -- one measurement (a subprocess) --------------------------------------------------------

def _status(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _engine(engine: str, proto: str, model: str, x: np.ndarray):
    """A function that runs one forward and returns the net's first output."""
    if engine == "netdsl.forward":
        import netdsl.forward as F
        if hasattr(F, "prepare"):
            prepared = F.prepare(proto, model)
            return lambda: prepared.forward({"data": x}).output
        from netdsl.weights import open_caffemodel
        cm = open_caffemodel(model)
        return lambda: F.forward(proto, cm, {"data": x}).output
    if engine == "caffe.Net":
        from netdsl.compat.caffe import TEST, Net
        net = Net(proto, TEST, weights=model)

        def run():
            net.blobs["data"].data[...] = x
            return net.forward()
        return run
    import cv2
    if os.environ.get("OPENBLAS_NUM_THREADS"):
        cv2.setNumThreads(int(os.environ["OPENBLAS_NUM_THREADS"]))
    cvnet = cv2.dnn.readNetFromCaffe(proto, model)
    cvnet.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    cvnet.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    if engine == "OpenCV no Winograd":
        cvnet.enableWinograd(False)   # 3x3 stride-1 convolutions as plain GEMMs too

    def run():
        cvnet.setInput(x)
        return {"out": cvnet.forward()}
    return run


def child(engine: str, proto: str, model: str, inp: str, repeat: int, out: str) -> None:
    """Set up, warm up, time ``repeat`` forwards; print a JSON line, save the output."""
    import netdsl.compat  # noqa: F401  (imports counted in the baseline)
    import netdsl.forward  # noqa: F401
    if engine.startswith("OpenCV"):
        import cv2  # noqa: F401
    x = np.load(inp)
    base = _status("VmRSS")
    t0 = time.perf_counter()
    fn = _engine(engine, proto, model, x)
    setup = time.perf_counter() - t0
    set_up, hwm = _status("VmRSS"), _status("VmHWM")
    reset = _reset_peak()
    result = fn()  # warm-up
    best = (float("inf"), 0.0)
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        w1, c1 = time.perf_counter(), time.process_time()
        best = min(best, (w1 - w0, c1 - c0))
    arr = np.asarray(next(iter(result.values())), dtype=np.float32)
    np.save(out, arr)
    end = _status("VmHWM")
    print(json.dumps({"seconds": best[0], "cpu": best[1], "setup": setup,
                      "peak_bytes": max(hwm, end) - base,
                      "forward_bytes": end - set_up if reset else float("nan")}))


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux: ``5`` into /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def measure(engine: str, files, repeat: int, out: str, threads: int = 0) -> dict:
    proto, model, inp = files[:3]
    env = dict(os.environ)
    if threads:
        env["OPENBLAS_NUM_THREADS"] = env["OMP_NUM_THREADS"] = str(threads)
    r = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", engine, proto,
                        model, inp, str(repeat), out], capture_output=True, text=True, env=env)
    if r.returncode:
        return {"error": (r.stderr.strip().splitlines() or ["exit %d" % r.returncode])[-1]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def sgemm_rate() -> float:
    """FLOP/s of numpy's float32 GEMM on 2048 x 2048 matrices, best of 5."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((2048, 2048), dtype=np.float32) for _ in range(2))
    a @ b
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * 2048 ** 3 / best


def measure_sgemm(threads: int) -> float:
    env = dict(os.environ)
    if threads:
        env["OPENBLAS_NUM_THREADS"] = env["OMP_NUM_THREADS"] = str(threads)
    r = subprocess.run([sys.executable, os.path.abspath(__file__), "--sgemm"],
                       capture_output=True, text=True, env=env, check=True)
    return float(r.stdout.strip().splitlines()[-1])


def gemm_floor(proto: str, rate: float, opencv_seconds: Optional[float]) -> str:
    """The net's MACs at ``rate`` FLOP/s, beside 1.5x OpenCV's time."""
    from netdsl.cost import net_cost
    from netdsl.prototxt import read_net
    macs = net_cost(read_net(proto)).macs
    floor = 2 * macs / rate
    line = "          GEMM floor: %.2f GMACs at %.0f GFLOP/s = %.3f s" % (
        macs / 1e9, rate / 1e9, floor)
    if opencv_seconds:
        line += "; 1.5x OpenCV = %.3f s" % (1.5 * opencv_seconds)
    return line


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default="resnet50,vgg16,fcn32s")
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0,
                    help="BLAS / OpenCV threads in the measurements (default: their own)")
    ap.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    ap.add_argument("--sgemm", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.sgemm:
        print(sgemm_rate())
        return
    if args.child:
        engine, proto, model, inp, repeat, out = args.child
        child(engine, proto, model, inp, int(repeat), out)
        return
    import cv2
    print("numpy %s, OpenCV %s, %d cores; BLAS threads: OPENBLAS_NUM_THREADS=%s "
          "OMP_NUM_THREADS=%s" % (np.__version__, cv2.__version__, os.cpu_count() or 1,
                                  args.threads or os.environ.get("OPENBLAS_NUM_THREADS", "-"),
                                  args.threads or os.environ.get("OMP_NUM_THREADS", "-")))
    print("%-9s %-18s %8s %8s %8s %9s %8s %9s %9s %10s" % (
        "net", "engine", "seconds", "cpu s", "setup s", "peak MB", "fwd MB", "Caffe MB",
        "x OpenCV", "max |d|"))
    tmp = tempfile.mkdtemp(prefix="netdsl-bench-")
    rate = measure_sgemm(args.threads)
    try:
        for name in args.nets.split(","):
            files = make_files(name, tmp)
            rows = {}
            for engine in args.engines.split(","):
                out = os.path.join(tmp, "%s-%d.npy" % (name, len(rows)))
                rows[engine] = (measure(engine, files, args.repeat, out, args.threads), out)
            cv = rows.get("OpenCV dnn", ({}, None))
            ref = np.load(cv[1]) if "seconds" in cv[0] else None
            for engine, (r, out) in rows.items():
                if "error" in r:
                    print("%-9s %-18s failed: %s" % (name, engine, r["error"]))
                    continue
                ratio = r["seconds"] / cv[0]["seconds"] if ref is not None else float("nan")
                diff = (float(np.abs(np.load(out).reshape(ref.shape) - ref).max())
                        if ref is not None else float("nan"))
                print("%-9s %-18s %8.3f %8.3f %8.2f %9.1f %8.1f %9.1f %9.2f %10.3g" % (
                    name, engine, r["seconds"], r["cpu"], r["setup"], r["peak_bytes"] / 1e6,
                    r["forward_bytes"] / 1e6, files[4] / 1e6, ratio, diff))
            print(gemm_floor(files[0], rate, cv[0].get("seconds")))
            sys.stdout.flush()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
