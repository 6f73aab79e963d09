"""Memory bounds: run/init/build estimate their peak from the shapes and refuse past a
limit; readers never allocate more than their file holds."""
from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
from google.protobuf.internal.encoder import _VarintBytes

from netdsl import NetSpec, layers as L
from netdsl.errors import NetdslError
from netdsl.forward import forward, random_inputs
from netdsl.memory import (check_npy, forward_bytes, guard_forward, init_bytes, parse_size,
                           weights_bytes)
from netdsl.prototxt import read_net, write
from netdsl.shapes import infer_shapes
from netdsl.weights import init_weights, open_caffemodel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HUGE = ('name: "huge"\nlayer { name: "data" type: "Input" top: "data"\n'
        '  input_param { shape { dim: %s } } }\n'
        'layer { name: "relu" type: "ReLU" bottom: "data" top: "out" }\n')


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "netdsl", *args], capture_output=True,
                          text=True, env=env, timeout=120)


def test_parse_size():
    # binary units: 2G = 2 * 2^30 bytes
    assert parse_size("2G") == 2 * 2 ** 30
    assert parse_size("512M") == 512 * 2 ** 20
    assert parse_size("1.5GiB") == 3 * 2 ** 29
    assert parse_size("1000") == 1000
    for bad in ("", "x", "2Q", "-1G", "0"):
        with pytest.raises(NetdslError):
            parse_size(bad)


def test_run_enormous_input_is_refused_not_allocated(tmp_path):
    """The issue's case: 100000x100000x100000x3 gave a numpy MemoryError traceback."""
    net = tmp_path / "huge.prototxt"
    net.write_text(HUGE % "100000 dim: 100000 dim: 100000 dim: 3")
    out = _cli("run", str(net), "--random-input")
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr
    # Caffe's Blob::Reshape CHECK: count <= INT_MAX
    assert "INT_MAX" in lines[0] and "layer 'data'" in lines[0]


def test_run_past_the_memory_limit(tmp_path):
    # 1x3x20000x20000 has 1.2e9 values (under INT_MAX): 4.8 GB per blob in float32
    net = tmp_path / "big.prototxt"
    net.write_text(HUGE % "1 dim: 3 dim: 20000 dim: 20000")
    out = _cli("run", str(net), "--random-input", "--max-memory", "1G")
    assert out.returncode == 2, out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("netdsl: error: %s: the forward pass needs about " % net)
    assert "more than the limit of 1.0 GiB" in line and "--max-memory" in line
    # the default limit (half the available memory) refuses it as well on this machine
    # when less than ~36 GB is free; the estimate itself is checked below
    small = tmp_path / "small.prototxt"
    small.write_text(HUGE % "1 dim: 3 dim: 8 dim: 8")
    ok = _cli("run", str(small), "--random-input", "--max-memory", "1M")
    assert ok.returncode == 0, ok.stderr
    tiny = _cli("run", str(small), "--random-input", "--max-memory", "100")
    assert tiny.returncode == 2 and "more than the limit of 100 bytes" in tiny.stderr


def test_run_limit_follows_rlimit_as(tmp_path):
    """With an address-space limit of 3 GiB the default limit is at most 1.5 GiB, so a
    4.8 GB forward is refused by the estimate, not by a MemoryError."""
    net = tmp_path / "big.prototxt"
    net.write_text(HUGE % "1 dim: 3 dim: 20000 dim: 20000")
    code = ("import resource, sys\n"
            "resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))\n"
            "from netdsl.cli import main\n"
            "sys.exit(main(['run', %r, '--random-input']))\n" % str(net))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2, out.stderr
    assert "more than the limit of" in out.stderr and "Traceback" not in out.stderr
    limit = float(out.stderr.split("more than the limit of ")[1].split(" GiB")[0])
    assert limit <= 1.5


def _peak(fn):
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("name", ["resnet_bn_deploy.prototxt", "fcn.prototxt"])
def test_estimate_bounds_the_measured_forward(name):
    """forward_bytes is an upper bound of what the forward really allocates (numpy
    reports its buffers to tracemalloc), and not absurdly above it."""
    from netdsl.forward import input_shapes
    net = read_net(os.path.join(ROOT, "tests", "data", "prototxt", name))
    declared = input_shapes(net)
    if name == "fcn.prototxt":  # keep it quick: a small image
        declared = {k: [1, 3, 64, 64] for k in declared}
    shapes = infer_shapes(net, declared)
    weights = init_weights(net, inputs=declared)
    arrays = {k: np.zeros(v, np.float32) for k, v in declared.items()}
    est = forward_bytes(shapes) + 0  # inputs already exist: no random draw
    measured = _peak(lambda: forward(net, weights, arrays))
    assert measured <= est, (measured, est)
    assert est < 40 * measured + (80 << 20), (measured, est)  # im2col budget aside


def test_estimate_counts_random_draw():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 4, 256, 256]))
    n.out = L.ReLU(n.data)
    net = n.to_proto()
    shapes = infer_shapes(net)
    est = forward_bytes(shapes, {"data": [1, 4, 256, 256]})
    measured = _peak(lambda: forward(net, None, random_inputs(net)))
    assert measured <= est, (measured, est)
    need = guard_forward(net, {}, ["data"], limit=est)
    assert need == est
    with pytest.raises(NetdslError, match="more than the limit"):
        guard_forward(net, {}, ["data"], limit=est - 1)


def test_init_is_refused_past_the_limit(tmp_path):
    # fc 100000 x 20000 = 2e9 weights (each blob under INT_MAX): 8 GB
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 20000]))
    n.fc = L.InnerProduct(n.data, num_output=100000)
    path = str(tmp_path / "fc.prototxt")
    write(path, n.to_proto())
    shapes = infer_shapes(read_net(path))
    assert weights_bytes(shapes) == 4 * (100000 * 20000 + 100000)
    assert init_bytes(shapes) == weights_bytes(shapes) + 8 * 100000 * 20000
    out = _cli("init", path, "-o", str(tmp_path / "fc.caffemodel"), "--max-memory", "1G")
    assert out.returncode == 2, out.stderr
    assert "initialising the weights needs about" in out.stderr
    assert not (tmp_path / "fc.caffemodel").exists()


def test_build_weights_is_refused_past_the_limit(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("name: s\ninputs:\n  data: [1, 20000]\nlayers:\n"
                    "  - InnerProduct: fc\n    num_output: 100000\n")
    out = _cli("build", str(spec), "-o", str(tmp_path / "o"), "--weights", "--max-memory", "1G")
    assert out.returncode == 2, out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert "initialising the weights needs about" in line and str(spec) in line


def test_caffemodel_lying_lengths_allocate_no_more_than_the_file(tmp_path):
    """A blob claiming 2^40 x 2^20 values, a layer claiming 2^60 bytes, a packed field
    claiming more than the file: the reader's Python allocations stay below the file's
    own size plus a fixed overhead (the file itself is mapped, not read)."""
    path = str(tmp_path / "lie.caffemodel")
    cases = []
    cases.append(b"\xa2\x06" + _VarintBytes(2 ** 60) + b"\x0a\x01x")
    blob = b"\x2a" + _VarintBytes(2 ** 62) + b"\x00" * 64
    layer = b"\x0a\x01x" + b"\x3a" + _VarintBytes(len(blob)) + blob
    cases.append(b"\xa2\x06" + _VarintBytes(len(layer)) + layer)
    shape = b"\x0a" + _VarintBytes(12) + b"\x08" + _VarintBytes(2 ** 40) + b"\x08" + \
        _VarintBytes(2 ** 20)
    blob = shape + b"\x2d" + b"\x00\x00\x80\x3f"  # one unpacked float
    layer = b"\x0a\x01x" + b"\x3a" + _VarintBytes(len(blob)) + blob
    cases.append(b"\xa2\x06" + _VarintBytes(len(layer)) + layer)
    # a million unpacked floats claimed by a shape, two stored
    shape = b"\x0a" + _VarintBytes(4) + b"\x08" + _VarintBytes(10 ** 6)
    blob = shape + (b"\x2d" + b"\x00\x00\x80\x3f") * 2
    layer = b"\x0a\x01y" + b"\x3a" + _VarintBytes(len(blob)) + blob
    cases.append(b"\xa2\x06" + _VarintBytes(len(layer)) + layer)
    for data in cases:
        with open(path, "wb") as fh:
            fh.write(data)

        def read():
            try:
                with open_caffemodel(path) as m:
                    for e in m.layers:
                        m.arrays(e)
            except NetdslError:
                pass
        assert _peak(read) <= len(data) + (64 << 10)


def test_npy_header_claiming_more_than_the_file(tmp_path):
    import io
    import zipfile
    path = tmp_path / "lie.npy"
    header = np.lib.format
    buf = io.BytesIO()
    header.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False,
                                        "shape": (100000, 100000, 100)})
    path.write_bytes(buf.getvalue() + b"\x00" * 16)
    with pytest.raises(NetdslError, match="header claims 3.6 TiB of data but the file "
                       "holds"):
        check_npy(str(path))
    z = tmp_path / "lie.npz"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("x.npy", buf.getvalue() + b"\x00" * 16)
    with pytest.raises(NetdslError, match="x.npy in the .npz claims"):
        check_npy(str(z))
    net = tmp_path / "n.prototxt"
    net.write_text(HUGE % "1 dim: 1")
    for p in (path, z):
        out = _cli("run", str(net), "--input", "data=%s" % p)
        assert out.returncode == 2 and "claims" in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1
    good = tmp_path / "good.npy"
    np.save(good, np.ones((1, 1), np.float32))
    check_npy(str(good))
