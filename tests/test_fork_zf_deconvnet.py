"""piergiaj/caffe-deconvnet (commit a71d409): PoolingSwitches, SliceHalf, InvPooling
and the Zeiler-Fergus visualisation workflow, with only the fork's published schema
(tests/data/fork_schemas/zf_deconvnet.proto).

Expected values come from plain transcriptions of the fork's loops, written here
from caffe/src/caffe/layers/pooling_switches_layer.cpp, slice_half_layer.cpp and
inv_pooling_layer.cpp (Forward_cpu, MAX), independent of the pack's numpy; shapes
from the same files' Reshape, by hand.
"""
from __future__ import annotations

import math
import os
from fractions import Fraction

import numpy as np
import pytest

import published_zf_deconvnet as published
from netdsl.cli import main
from netdsl.coord_map import layer_coord_map
from netdsl.errors import NetdslError
from netdsl.forward import forward
from netdsl.netspec import use_schema
from netdsl.proto import load_schema
from netdsl.prototxt import parse_net
from netdsl.shapes import infer_shapes
from test_fork_packs import _weights

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA = os.path.join(HERE, "data", "fork_schemas", "zf_deconvnet.proto")
SCRIPT = os.path.join(HERE, "..", "specs", "forks", "zf_deconvnet_visualise.py")
FLT_MAX = np.float32(np.finfo(np.float32).max)


# -- the fork's loops, transcribed ------------------------------------------------------

def fork_pooling_switches(bottom, k, s, p):
    """pooling_switches_layer.cpp: Reshape (BVLC pooling's size, ceil, the last
    window starting inside the padded input) and Forward_cpu's MAX loop."""
    n_, c_, h_, w_ = bottom.shape
    ph_ = int(math.ceil(float(h_ + 2 * p - k) / s)) + 1
    pw_ = int(math.ceil(float(w_ + 2 * p - k) / s)) + 1
    if p:
        if (ph_ - 1) * s >= h_ + p:
            ph_ -= 1
        if (pw_ - 1) * s >= w_ + p:
            pw_ -= 1
    top = np.full((2 * n_, c_, ph_, pw_), -FLT_MAX, dtype=np.float32)
    for n in range(n_):
        for c in range(c_):
            for ph in range(ph_):
                for pw in range(pw_):
                    hstart, wstart = ph * s - p, pw * s - p
                    hend, wend = min(hstart + k, h_), min(wstart + k, w_)
                    hstart, wstart = max(hstart, 0), max(wstart, 0)
                    for h in range(hstart, hend):
                        for w in range(wstart, wend):
                            if bottom[n, c, h, w] > top[n, c, ph, pw]:
                                top[n, c, ph, pw] = bottom[n, c, h, w]
                                top[n_ + n, c, ph, pw] = np.float32(h * w_ + w)
    return top


def fork_slice_half(bottom, axis):
    """slice_half_layer.cpp: one slice point, bottom->num() / 2, on ``axis``."""
    point = bottom.shape[0] // 2
    index = [slice(None)] * bottom.ndim
    first, second = list(index), list(index)
    first[axis], second[axis] = slice(0, point), slice(point, None)
    return bottom[tuple(first)], bottom[tuple(second)]


def fork_inv_pooling(bottom, k, s, p):
    """inv_pooling_layer.cpp: top (N/2, C, H*s - s - 2p + k, ...) set to zero, then
    top_data[int(switch)] = value over the bottom's positions in order."""
    n_, c_, h_, w_ = bottom.shape
    oh, ow = h_ * s - s - 2 * p + k, w_ * s - s - 2 * p + k
    top = np.zeros((n_ // 2, c_, oh, ow), dtype=np.float32)
    for n in range(n_ // 2):
        for c in range(c_):
            plane = top[n, c].reshape(-1)
            for ph in range(h_):
                for pw in range(w_):
                    plane[int(bottom[n, c, ph, pw])] = bottom[n_ // 2 + n, c, ph, pw]
    return top


# -- small nets ---------------------------------------------------------------------------

@pytest.fixture()
def pb2():
    mod = load_schema(SCHEMA)
    use_schema(mod)
    yield mod
    use_schema(None)


def _net(pb2, text):
    return parse_net(text, "net.prototxt", schema=pb2)


def _pool_text(k, s, p, ntop=1, kind="PoolingSwitches"):
    tops = "".join(' top: "t%d"' % i for i in range(ntop))
    return ('input: "x" input_dim: 2 input_dim: 3 input_dim: 7 input_dim: 8\n'
            'layer { name: "ps" type: "%s" bottom: "x"%s\n'
            '  pooling_param { pool: MAX kernel_size: %d stride: %d pad: %d } }\n'
            % (kind, tops, k, s, p))


def test_schema_enables_the_pack(pb2):
    from netdsl.packs import enable_for_schema
    assert "zf_deconvnet" in enable_for_schema(pb2)
    assert not pb2.V1_ONLY and pb2.CONFLICTS == []


@pytest.mark.parametrize("k, s, p", [(3, 2, 0), (3, 2, 1), (2, 2, 0), (3, 1, 1), (4, 3, 2)])
def test_pooling_switches_equals_the_fork_loops(pb2, k, s, p):
    rng = np.random.default_rng(k * 100 + s * 10 + p)
    x = rng.integers(-3, 4, (2, 3, 7, 8)).astype(np.float32)     # many ties
    x[0, 0, :3, :3] = -np.inf       # a window with nothing above -FLT_MAX
    x[1, 2, 2, 2] = np.nan          # NaN is never greater
    net = _net(pb2, _pool_text(k, s, p))
    want = fork_pooling_switches(x, k, s, p)
    assert infer_shapes(net).blobs["t0"] == want.shape
    got = forward(net, None, {"x": x})["t0"]
    np.testing.assert_array_equal(got, want)


def test_pooling_switches_mask_top(pb2):
    """A second top: the positions in both halves (top_mask), -1 where none."""
    x = np.arange(2 * 3 * 7 * 8, dtype=np.float32).reshape(2, 3, 7, 8)[:, :, ::-1].copy()
    x[0, 0, :2, :2] = -np.inf
    out = forward(_net(pb2, _pool_text(2, 2, 0, ntop=2)), None, {"x": x})
    want = fork_pooling_switches(x, 2, 2, 0)[2:]
    mask = np.where(want == -FLT_MAX, np.float32(-1), want)
    np.testing.assert_array_equal(out["t1"], np.concatenate([mask, mask]))


def test_pooling_switches_refuses_ave_forward(pb2):
    text = _pool_text(3, 2, 0).replace("pool: MAX", "pool: AVE")
    net = _net(pb2, text)
    assert infer_shapes(net).blobs["t0"] == (4, 3, 3, 4)
    with pytest.raises(NetdslError, match="only MAX"):
        forward(net, None, {"x": np.zeros((2, 3, 7, 8), np.float32)})


@pytest.mark.parametrize("axis_text, axis, shape", [
    ("axis: 0", 0, (6, 4, 3, 3)),
    ("", 1, (6, 4, 3, 3)),                       # default axis 1: cut channels at num/2 = 3
    ("axis: 1 slice_point: 1", 1, (6, 4, 3, 3)),   # slice_point is ignored
    ("slice_dim: 2", 2, (4, 2, 5, 3)),
    ("axis: -1", 3, (2, 1, 1, 4)),
])
def test_slice_half(pb2, axis_text, axis, shape):
    net = _net(pb2, 'input: "x" %s\nlayer { name: "h" type: "SliceHalf" bottom: "x" '
               'top: "a" top: "b" slice_param { %s } }\n'
               % (" ".join("input_dim: %d" % d for d in shape), axis_text))
    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    a, b = fork_slice_half(x, axis)
    blobs = infer_shapes(net).blobs
    assert (blobs["a"], blobs["b"]) == (a.shape, b.shape)
    out = forward(net, None, {"x": x})
    np.testing.assert_array_equal(out["a"], a)
    np.testing.assert_array_equal(out["b"], b)


def test_slice_half_refuses_a_cut_outside_the_axis(pb2):
    net = _net(pb2, 'input: "x" input_dim: 8 input_dim: 3 input_dim: 2 input_dim: 2\n'
               'layer { name: "h" type: "SliceHalf" bottom: "x" top: "a" top: "b" }\n')
    with pytest.raises(NetdslError, match="num/2 = 4"):
        infer_shapes(net)


@pytest.mark.parametrize("k, s, p", [(3, 2, 0), (2, 2, 0), (3, 2, 1), (5, 3, 1)])
def test_inv_pooling_equals_the_fork_loops(pb2, k, s, p):
    rng = np.random.default_rng(7 + k + s + p)
    n, c, h, w = 3, 2, 4, 5
    oh, ow = h * s - s - 2 * p + k, w * s - s - 2 * p + k
    switches = rng.integers(0, oh * ow, (n, c, h, w)).astype(np.float32)
    switches[0, 0, 0, :3] = [7, 7, 7]            # three writes to one place: the last stays
    switches[0, 1, 1, 1] = 2.9                   # truncated to 2
    values = rng.normal(0, 1, (n, c, h, w)).astype(np.float32)
    x = np.concatenate([switches, values])       # [switches; values], N = 6
    net = _net(pb2, 'input: "x" input_dim: 6 input_dim: 2 input_dim: 4 input_dim: 5\n'
               'layer { name: "ip" type: "InvPooling" bottom: "x" top: "y"\n'
               '  pooling_param { pool: MAX kernel_size: %d stride: %d pad: %d } }\n'
               % (k, s, p))
    want = fork_inv_pooling(x, k, s, p)
    assert infer_shapes(net).blobs["y"] == want.shape == (3, 2, oh, ow)
    np.testing.assert_array_equal(forward(net, None, {"x": x})["y"], want)


def test_inv_pooling_undoes_pooling_switches(pb2):
    """PoolingSwitches, SliceHalf (axis 0), Concat [switches; values], InvPooling:
    each maximum back at its place, zeros elsewhere (the seed's unpooling)."""
    net = _net(pb2, 'input: "x" input_dim: 2 input_dim: 3 input_dim: 7 input_dim: 7\n'
               'layer { name: "p" type: "PoolingSwitches" bottom: "x" top: "ps"\n'
               '  pooling_param { pool: MAX kernel_size: 3 stride: 2 } }\n'
               'layer { name: "h" type: "SliceHalf" bottom: "ps" top: "v" top: "s"\n'
               '  slice_param { axis: 0 } }\n'
               'layer { name: "c" type: "Concat" bottom: "s" bottom: "v" top: "sv"\n'
               '  concat_param { axis: 0 } }\n'
               'layer { name: "u" type: "InvPooling" bottom: "sv" top: "y"\n'
               '  pooling_param { pool: MAX kernel_size: 3 stride: 2 } }\n')
    x = np.random.default_rng(3).normal(0, 1, (2, 3, 7, 7)).astype(np.float32)
    y = forward(net, None, {"x": x})["y"]
    assert y.shape == x.shape                    # 3 * 2 - 2 + 3 = 7
    kept = y != 0
    np.testing.assert_array_equal(y[kept], x[kept])
    assert kept.sum() <= 2 * 3 * 9
    # each pooled maximum is somewhere in y
    pooled = fork_pooling_switches(x, 3, 2, 0)[:2]
    assert np.isin(pooled, y).all()


def test_coordinate_maps(pb2):
    """PoolingSwitches maps as BVLC Pooling (y = x/s + (p - (k-1)/2)/s); InvPooling
    as the inverse (y = s x + (k-1)/2 - p), so the two compose to the identity."""
    net = _net(pb2, _pool_text(3, 2, 1) + 'layer { name: "ip" type: "InvPooling" '
               'bottom: "t0" top: "y" pooling_param { pool: MAX kernel_size: 3 stride: 2 '
               'pad: 1 } }\n')
    _, scale, shift = layer_coord_map(net.layer[0])
    assert (scale, shift) == ((Fraction(1, 2),), (Fraction(0),))
    _, scale, shift = layer_coord_map(net.layer[1])
    assert (scale, shift) == ((2,), (0,))


def test_shapes_cost_and_every_verb_on_the_published_nets(tmp_path, capsys):
    """shapes (with --cost), draw, fmt, upgrade, init, inspect, run with the fork's
    schema as published and its two nets as published."""
    for name in ("zf_deploy", "zf_invdeploy"):
        (tmp_path / (name + ".prototxt")).write_text(getattr(published, name)())
    proto = ["--proto", SCHEMA]
    d, inv = str(tmp_path / "zf_deploy.prototxt"), str(tmp_path / "zf_invdeploy.prototxt")
    assert main(["shapes", d, "--cost"] + proto) == 0
    cost = capsys.readouterr().out
    # pooling_switches_layer.cpp: each of the 10 x 96 x 27 x 27 maxima reads a 3 x 3 window
    assert "PoolingSwitches              -            -   6,298,560" in cost
    assert main(["shapes", d] + proto) == 0
    out = capsys.readouterr().out
    # 55 -> 27 (3/2): (20, 96, 27, 27) then two halves of (10, 96, 27, 27)
    assert "poolswitches1 (20,96,27,27)" in out
    assert "pool1 (10,96,27,27), switches1 (10,96,27,27)" in out
    assert main(["shapes", inv] + proto) == 0
    out = capsys.readouterr().out
    assert "ipooled5 (10,256,13,13)" in out and "conv1 (10,3,227,227)" in out
    assert main(["draw", inv, "-o", str(tmp_path / "inv.dot")] + proto) == 0
    assert main(["fmt", inv] + proto) == 0
    assert main(["upgrade", d, "-o", str(tmp_path / "up.prototxt")] + proto) == 0
    weights = str(tmp_path / "inv.caffemodel")
    assert main(["init", inv, "-o", weights] + proto) == 0
    assert main(["inspect", weights] + proto) == 0
    assert main(["run", inv, weights, "--random-input", "-o", str(tmp_path / "o.npz")]
                + proto) == 0


# -- the seed's workflow under `netdsl pycaffe` -----------------------------------------

def _deprocess(x, mean):
    """caffe.io.Transformer.deprocess as python/caffe/io.py has it: add the mean,
    divide by raw_scale, undo the channel swap (2, 1, 0) and the transpose (2, 0, 1)."""
    y = (x + mean[:, None, None]) / 255.0
    return y[[2, 1, 0]].transpose(1, 2, 0)


@pytest.fixture(scope="module")
def workflow(tmp_path_factory):
    """The fork's files, a random-weight CaffeNet caffemodel, a mean file and an
    image; the script run with ``netdsl pycaffe --proto``; the same steps in process."""
    import cv2
    from netdsl.compat import caffe
    from netdsl.weights import write_caffemodel
    tmp = tmp_path_factory.mktemp("zf")
    pb2 = load_schema(SCHEMA)
    paths = {}
    for name in ("zf_deploy", "zf_invdeploy"):
        paths[name] = str(tmp / (name + ".prototxt"))
        with open(paths[name], "w") as fh:
            fh.write(getattr(published, name)())
    use_schema(pb2)
    try:
        net = parse_net(published.zf_deploy(), "deploy.prototxt", schema=pb2)
        weights = _weights(net, 4)
        model = str(tmp / "caffenet.caffemodel")
        write_caffemodel(model, weights, types=net)
    finally:
        use_schema(None)
    rng = np.random.default_rng(5)
    mean = rng.uniform(90, 130, (3, 256, 256)).astype(np.float32)
    np.save(str(tmp / "mean.npy"), mean)
    yy, xx = np.mgrid[0:227, 0:227]   # the input size: no resize (pycaffe needs scikit-image)
    image = np.stack([(xx * 255 // 226), (yy * 255 // 226), (xx + yy) % 256], -1)
    image = np.clip(image + rng.integers(-20, 21, image.shape), 0, 255).astype(np.uint8)
    cv2.imwrite(str(tmp / "image.png"), image)
    out = str(tmp / "out.npz")
    args = [paths["zf_deploy"], paths["zf_invdeploy"], model, str(tmp / "mean.npy"),
            str(tmp / "image.png"), out]
    assert main(["pycaffe", "--proto", SCHEMA, SCRIPT] + args) == 0
    use_schema(pb2)
    try:
        cnet = caffe.Net(paths["zf_deploy"], model, caffe.TEST)
        inv = caffe.Net(paths["zf_invdeploy"], caffe.TEST)
        t = caffe.io.Transformer({"data": cnet.blobs["data"].data.shape})
        t.set_transpose("data", (2, 0, 1))
        t.set_mean("data", mean.mean(1).mean(1))
        t.set_raw_scale("data", 255)
        t.set_channel_swap("data", (2, 1, 0))
        cnet.blobs["data"].data[...] = t.preprocess("data", caffe.io.load_image(args[4]))
        cnet.forward()
        blobs = {k: v.data.copy() for k, v in cnet.blobs.items()}
        for name in inv.params:
            inv.params[name][0].data[...] = \
                cnet.params[name][0].data.reshape(inv.params[name][0].data.shape)
        pooled = blobs["pool5"].copy()
        pooled[0][pooled[0] < 0] = 0
        inv.blobs["pooled"].data[...] = pooled
        for s in ("switches5", "switches2", "switches1"):
            inv.blobs[s].data[...] = blobs[s]
        inv.forward()
        inv_blobs = {k: v.data.copy() for k, v in inv.blobs.items()}
        conv_w = {k: cnet.params[k][0].data.copy() for k in inv.params}
        inv_w = {k: inv.params[k][0].data.copy() for k in inv.params}
    finally:
        use_schema(None)
    with np.load(out) as z:
        result = dict(z)
    return dict(result=result, blobs=blobs, inv=inv_blobs, pooled=pooled, mean=mean,
                conv_w=conv_w, inv_w=inv_w)


def test_workflow_script_output(workflow):
    r, inv = workflow["result"], workflow["inv"]
    np.testing.assert_array_equal(r["pool5"], workflow["pooled"])
    assert (r["pool5"] >= 0).all() and (r["pool5"] > 0).any()   # maxima of relu5's output
    np.testing.assert_array_equal(r["conv1"], inv["conv1"][0])
    x = inv["conv1"][0].astype(np.float32)
    x = (x - x.min()) / (x - x.min()).max() * 255.0
    np.testing.assert_allclose(r["image"], _deprocess(x, workflow["mean"].mean(1).mean(1)),
                               rtol=1e-6, atol=1e-4)
    assert r["image"].shape == (227, 227, 3)


def test_workflow_shares_the_convnet_filters(workflow):
    """invnet.params: conv5 ... conv1, each the convnet's weights (same shapes: a
    Deconvolution's weights are (in, out / group, k, k), the Convolution's (out, in / group,
    k, k), and the inverse runs the other way)."""
    assert list(workflow["inv_w"]) == ["conv5", "conv4", "conv3", "conv2", "conv1"]
    for name, w in workflow["inv_w"].items():
        np.testing.assert_array_equal(w, workflow["conv_w"][name])


def test_workflow_convnet_blobs_equal_the_fork_loops(workflow):
    """Every image is the same (one image broadcast into the batch of 10); image 0's
    PoolingSwitches tops and SliceHalf halves against the transcribed loops."""
    b = workflow["blobs"]
    assert (b["data"] == b["data"][:1]).all()
    for stage, conv in ((1, "conv1"), (2, "conv2"), (5, "conv5")):
        want = fork_pooling_switches(b[conv][:1], 3, 2, 0)          # (2, C, PH, PW)
        ps = b["poolswitches%d" % stage]
        assert ps.shape[0] == 20
        np.testing.assert_array_equal(ps[0], want[0])
        np.testing.assert_array_equal(ps[10], want[1])
        np.testing.assert_array_equal(b["pool%d" % stage], ps[:10])
        np.testing.assert_array_equal(b["switches%d" % stage], ps[10:])


def test_workflow_inverse_blobs_equal_the_fork_loops(workflow):
    """The inverse net's Concat [switches; values] and InvPooling, image 0, against
    the transcribed loop; the switches really are the convnet's."""
    b, inv = workflow["blobs"], workflow["inv"]
    np.testing.assert_array_equal(inv["switches5"], b["switches5"])
    for cat, top, stage in (("cat1", "ipooled5", 5), ("cat2", "poolswitches2", 2),
                            ("cat3", "poolswitches1", 1)):
        sv = inv[cat]
        np.testing.assert_array_equal(sv[:10], b["switches%d" % stage])
        want = fork_inv_pooling(sv[[0, 10]], 3, 2, 0)                # image 0 only
        np.testing.assert_array_equal(inv[top][0], want[0])
    assert 0 < (inv["ipooled5"][0] != 0).sum() <= 256 * 36


SPEC = """name: zf-small
proto: %s
inputs:
  data: [2, 3, 15, 15]
layers:
  - Convolution: conv1
    num_output: 4
    kernel_size: 3
    weight_filler: {type: gaussian, std: 0.1}
  - ReLU: relu1
    in_place: true
  - PoolingSwitches: poolswitches1
    pooling_param: {pool: MAX, kernel_size: 3, stride: 2}
  - SliceHalf: [pool1, switches1]
    slice_param: {axis: 0}
  - Concat: cat1
    bottom: [switches1, pool1]
    axis: 0
  - InvPooling: unpooled
    pooling_param: {pool: MAX, kernel_size: 3, stride: 2}
"""


def test_build_with_the_fork_schema(tmp_path, capsys):
    """A spec's inputs under a schema older than the Input layer become the net's
    ``input`` + ``input_shape``, as that Caffe's nets had them; build, --weights
    and shapes work: 15 -> 13 (conv 3) -> 6 (3/2, ceil) -> 6*2 - 2 + 3 = 13."""
    spec = tmp_path / "zf.yaml"
    spec.write_text(SPEC % SCHEMA)
    out = tmp_path / "out"
    assert main(["build", str(spec), "-o", str(out), "--weights"]) == 0
    pb2 = load_schema(SCHEMA)
    net = parse_net((out / "deploy.prototxt").read_text(), "deploy.prototxt", schema=pb2)
    assert list(net.input) == ["data"] and [list(s.dim) for s in net.input_shape] == \
        [[2, 3, 15, 15]]
    assert [lp.type for lp in net.layer][:3] == ["Convolution", "ReLU", "PoolingSwitches"]
    capsys.readouterr()
    assert main(["shapes", str(out / "deploy.prototxt"), "--proto", SCHEMA]) == 0
    assert "unpooled (2,4,13,13)" in capsys.readouterr().out


def test_build_without_input_shape_writes_input_dim(tmp_path):
    """A schema with neither input_param nor input_shape (Caffe before N-D blobs):
    four input_dim values per input."""
    from test_fork_missing_fields import without
    text = without("LayerParameter", {"input_param"})
    text = text.replace("  repeated BlobShape input_shape = 8;\n", "")
    schema = tmp_path / "old.proto"
    schema.write_text(text)
    spec = tmp_path / "s.yaml"
    spec.write_text("name: s\nproto: %s\ninputs:\n  data: [1, 2, 5, 5]\nlayers:\n"
                    "  - ReLU: r\n" % schema)
    assert main(["build", str(spec), "-o", str(tmp_path / "o")]) == 0
    net = parse_net((tmp_path / "o" / "deploy.prototxt").read_text(), "d",
                    schema=load_schema(str(schema)))
    assert list(net.input) == ["data"] and list(net.input_dim) == [1, 2, 5, 5]


def test_pooling_switches_always_rounds_up():
    """The fork predates round_mode: with the pack enabled under BVLC's schema, a
    FLOOR is not the fork's rule; 8 wide, 3/2: ceil(5 / 2) + 1 = 4 (FLOOR would give 3)."""
    import netdsl.packs
    netdsl.packs.enable("zf_deconvnet")
    from netdsl.proto import caffe_pb2
    net = parse_net(_pool_text(3, 2, 0).replace("pool: MAX", "pool: MAX round_mode: FLOOR"),
                    "net.prototxt", schema=caffe_pb2)
    assert infer_shapes(net).blobs["t0"] == (4, 3, 3, 4)


def test_inv_pooling_global_has_no_coordinate_map(pb2):
    net = _net(pb2, 'input: "x" input_dim: 2 input_dim: 1 input_dim: 3 input_dim: 3\n'
               'layer { name: "ip" type: "InvPooling" bottom: "x" top: "y"\n'
               '  pooling_param { pool: MAX global_pooling: true } }\n')
    assert infer_shapes(net).blobs["y"] == (1, 1, 5, 5)     # 3 - 1 - 0 + 3
    assert layer_coord_map(net.layer[0]) is None
