"""The forward engine: each convolution path against PyTorch's (an independent
implementation of the same sum, Caffe's conv_layer.cpp / deconv_layer.cpp
formulas), prepared nets, in-place computation, freed blobs and the report of
the first inf or NaN (BVLC batch_norm_layer.cpp's statistics rule)."""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

from netdsl import NetSpec, NetdslError, layers as L, params as P
from netdsl.cli import main
from netdsl.forward import NonFiniteWarning, forward, prepare
from netdsl.layers.conv import conv2d, deconv2d
from netdsl.prototxt import write
from netdsl.weights import write_caffemodel

torch = pytest.importorskip("torch")
F = torch.nn.functional

RNG = np.random.default_rng(7)


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


# -- convolution paths against torch.nn.functional.conv2d / conv_transpose2d ------------

# (n, c, h, w, o, k, stride, pad, dilation, group): each picks one code path
CONV_CASES = [
    (1, 8, 9, 7, 6, (1, 1), (1, 1), (0, 0), (1, 1), 1),    # 1x1 stride 1: a plain GEMM
    (2, 8, 9, 7, 6, (1, 1), (1, 1), (0, 0), (1, 1), 1),    # ... batch 2 in one matmul
    (1, 5, 11, 21, 4, (3, 3), (1, 1), (1, 1), (1, 1), 1),  # stride 1: shifted runs
    (1, 6, 12, 30, 4, (3, 2), (1, 1), (2, 0), (2, 3), 2),  # ... dilation, groups, pad h only
    # stride 1 on narrow maps: im2col (shifted runs would drop 2 of 15 and 3 of 10 columns)
    (1, 5, 11, 13, 4, (3, 3), (1, 1), (1, 1), (1, 1), 1),
    (1, 6, 12, 10, 4, (3, 2), (1, 1), (2, 0), (2, 3), 2),
    (1, 3, 20, 20, 4, (7, 7), (1, 1), (100, 100), (1, 1), 1),  # FCN's pad 100
    (2, 5, 11, 13, 4, (3, 3), (1, 1), (1, 1), (1, 1), 1),  # batch 2: im2col
    (1, 5, 11, 13, 4, (3, 3), (2, 2), (1, 1), (1, 1), 1),  # stride 2: im2col
    (1, 4, 15, 16, 8, (7, 5), (2, 3), (3, 2), (1, 2), 2),  # im2col, groups, dilation
    (1, 6, 10, 9, 6, (3, 3), (1, 1), (1, 1), (1, 1), 6),   # depthwise
    (2, 6, 10, 9, 6, (3, 3), (2, 1), (1, 0), (2, 1), 6),   # depthwise strided, dilated
    (1, 4, 9, 9, 4, (1, 1), (2, 2), (0, 0), (1, 1), 1),    # 1x1 stride 2: im2col
]


@pytest.mark.parametrize("n,c,h,w,o,k,s,p,d,g", CONV_CASES)
def test_conv_paths_match_torch(n, c, h, w, o, k, s, p, d, g):
    x, wt, b = rand(n, c, h, w), rand(o, c // g, *k), rand(o)
    work = {}
    ours = conv2d(x, wt, b, s, p, d, g, work)
    ref = F.conv2d(t(x), t(wt), t(b), stride=s, padding=p, dilation=d, groups=g).numpy()
    assert ours.shape == ref.shape and ours.dtype == np.float32
    # float32 sums of c/g * kh * kw products: only the order of the additions differs
    assert np.allclose(ours, ref, rtol=1e-5, atol=1e-5)
    again = conv2d(x, wt, b, s, p, d, g, work)   # the kept buffers give the same result
    assert np.array_equal(again, ours)


@pytest.mark.parametrize("n,c,h,w,o,k,s,p,d,g", [
    (1, 4, 5, 6, 3, (4, 4), (2, 2), (1, 1), (1, 1), 1),     # stride divides the kernel
    (2, 4, 5, 6, 6, (64, 64), (32, 32), (0, 0), (1, 1), 2),  # FCN-32s's upscore shape
    (1, 4, 5, 6, 3, (3, 5), (2, 2), (1, 2), (1, 1), 1),     # it does not: tap by tap
    (1, 4, 5, 6, 3, (3, 3), (2, 1), (0, 0), (2, 2), 1),     # dilated: tap by tap
])
def test_deconv_paths_match_torch(n, c, h, w, o, k, s, p, d, g):
    x, wt, b = rand(n, c, h, w), rand(c, o // g, *k), rand(o)
    ours = deconv2d(x, wt, b, s, p, d, g)
    ref = F.conv_transpose2d(t(x), t(wt), t(b), stride=s, padding=p, dilation=d,
                             groups=g).numpy()
    assert ours.shape == ref.shape
    assert np.allclose(ours, ref, rtol=1e-5, atol=1e-5)


def test_col2im_adds_taps_in_caffes_order():
    # im2col.cpp col2im adds a pixel's taps in (kernel row, kernel column) order: with
    # values whose float32 sum depends on the order, the result equals that order's sum
    x = np.ones((1, 1, 2, 2), dtype=np.float32)
    wt = np.zeros((1, 1, 4, 4), dtype=np.float32)
    wt[0, 0, 0, 0], wt[0, 0, 2, 0], wt[0, 0, 0, 2], wt[0, 0, 2, 2] = 1e8, 1.0, -1e8, 1.0
    out = deconv2d(x, wt, None, (2, 2), (0, 0), (1, 1), 1)
    # pixel (2, 2) gets taps (0,0) of input (1,1), (0,2) of (1,0), (2,0) of (0,1), (2,2)
    # of (0,0): ((1e8 + -1e8) + 1) + 1 = 2 in that order (1e8 + 1 would round to 1e8)
    want = np.float32(0)
    for v in (1e8, -1e8, 1.0, 1.0):
        want = np.float32(want + np.float32(v))
    assert out[0, 0, 2, 2] == want == 2


# -- a small net with every in-place kind ---------------------------------------------

def _net(branch: bool = True):
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[2, 3, 10, 10]))
    n.conv = L.Convolution(n.data, num_output=4, kernel_size=3, pad=1)
    n.bn = L.BatchNorm(n.conv, in_place=True)
    n.sc = L.Scale(n.conv, in_place=True, bias_term=True)
    n.relu = L.ReLU(n.conv, in_place=True)
    n.flat = L.Flatten(n.conv)
    if branch:   # flat read twice: by drop, then in place by relu2
        n.drop = L.Dropout(n.flat, dropout_ratio=0.5)
    n.relu2 = L.ReLU(n.flat, in_place=True, negative_slope=0.5)
    n.pool = L.Pooling(n.conv, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    n.ip = L.InnerProduct(n.pool, num_output=5)
    return n.to_proto()


def _weights(factor=1.0, var=1.0):
    return {"conv": [rand(4, 3, 3, 3), rand(4)],
            "bn": [rand(4), np.full(4, var, np.float32) * np.abs(rand(4)),
                   np.array([factor], np.float32)],
            "sc": [rand(4), rand(4)], "ip": [rand(5, 100), rand(5)]}


def _reference(x, wts):
    """The same net step by step, each blob a fresh array (no in-place writes)."""
    conv = F.conv2d(t(x), t(wts["conv"][0]), t(wts["conv"][1]), padding=1).numpy()
    f = np.float32(1) / wts["bn"][2][0]
    mean, var = (f * wts["bn"][0]).reshape(1, 4, 1, 1), (f * wts["bn"][1]).reshape(1, 4, 1, 1)
    y = (conv - mean) / np.sqrt(var + np.float32(1e-5))
    y = y * wts["sc"][0].reshape(1, 4, 1, 1) + wts["sc"][1].reshape(1, 4, 1, 1)
    y = np.maximum(y, 0)
    flat = y.reshape(2, -1)
    return y, flat


def test_in_place_layers_and_shared_blobs_keep_caffes_values():
    x, wts = rand(2, 3, 10, 10), _weights()
    keep = x.copy()
    r = forward(_net(), wts, {"data": x})
    y, flat = _reference(keep, wts)
    assert np.array_equal(x, keep)                # the input array is never written
    assert np.allclose(r["conv"], y, rtol=1e-5, atol=1e-5)
    # Dropout's top (TEST: the identity of flat) keeps flat's value from before relu2
    assert np.allclose(r["drop"], flat, rtol=1e-5, atol=1e-5)
    relu2 = np.maximum(flat, 0) + np.float32(0.5) * np.minimum(flat, 0)
    assert np.allclose(r["flat"], relu2, rtol=1e-5, atol=1e-5)
    assert not np.shares_memory(r["drop"], r["flat"])


def test_prepared_net_reads_weights_once(tmp_path):
    proto, model = str(tmp_path / "n.prototxt"), str(tmp_path / "n.caffemodel")
    net = _net()
    write(proto, net)
    write_caffemodel(model, _weights(), types=net)
    prep = prepare(proto, model)
    os.remove(model)                              # nothing is read from the file any more
    x = rand(2, 3, 10, 10)
    a, b = prep.forward({"data": x}), prep.forward({"data": x})
    one = forward(proto, _weights_from(prep), {"data": x})
    for k in a:
        assert np.array_equal(a[k], b[k]) and np.array_equal(a[k], one[k])
    assert a.outputs == one.outputs == ["drop", "flat", "ip"]   # relu2 re-makes flat


def _weights_from(prep):
    return {n: prep._weights.get(n) for n in prep._weights.names()}


def test_keep_frees_the_other_blobs():
    x, wts = rand(2, 3, 10, 10), _weights()
    full = forward(_net(), wts, {"data": x})
    some = forward(_net(), wts, {"data": x}, keep=["pool"])
    assert set(some) == {"pool", "drop", "flat", "ip"}   # kept, plus the outputs
    for k in some:
        assert np.array_equal(some[k], full[k])


# -- inf and NaN ---------------------------------------------------------------------

def _deep_bn(depth=12, factor=0.0):
    """Convolution + BatchNorm pairs: a factor-0 BatchNorm divides by sqrt(eps)."""
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 2, 4, 4]))
    x = n.data
    wts = {}
    for i in range(depth):
        c = L.Convolution(x, num_output=2, kernel_size=1, bias_term=False)
        setattr(n, "conv%d" % i, c)
        x = L.BatchNorm(c, in_place=True)
        setattr(n, "bn%d" % i, x)
        wts["conv%d" % i] = [np.eye(2, dtype=np.float32).reshape(2, 2, 1, 1) * 8]
        wts["bn%d" % i] = [np.zeros(2, np.float32), np.zeros(2, np.float32),
                           np.array([factor], np.float32)]
    return n.to_proto(), wts


def test_first_nonfinite_layer_is_named_with_the_batchnorm_cause():
    net, wts = _deep_bn()
    x = np.full((1, 2, 4, 4), 1e3, np.float32)
    with pytest.warns(NonFiniteWarning) as rec:
        r = forward(net, wts, {"data": x})
    # each conv multiplies by 8, each bn by 1/sqrt(0 + eps) (batch_norm_layer.cpp: factor
    # 0 gives scale_factor 0, so mean = variance = 0): follow one value in float32 to
    # the first layer whose result is inf
    v, first = np.float32(1e3), None
    with np.errstate(over="ignore"):
        for i in range(12):
            v = np.float32(v * np.float32(8))
            if np.isinf(v):
                first = "conv%d" % i
                break
            v = np.float32(v / np.sqrt(np.float32(0) + np.float32(1e-5)))
            if np.isinf(v):
                first = "bn%d" % i
                break
    bad = r.nonfinite
    assert (bad.layer, bad.top, bad.what) == (first, first.replace("bn", "conv"), "inf")
    msg = next(str(w.message) for w in rec if issubclass(w.category, NonFiniteWarning))
    assert "layer '%s'" % bad.layer in msg and "moving-average factor 0" in msg
    assert "1/sqrt(eps) = 316.2" in msg
    assert not np.isfinite(r["conv11"]).any()


def test_finite_forward_says_nothing():
    net, wts = _deep_bn(depth=3, factor=1.0)
    for name in wts:
        if name.startswith("bn"):
            wts[name][1][...] = 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", NonFiniteWarning)
        r = forward(net, wts, {"data": np.ones((1, 2, 4, 4), np.float32)})
    assert r.nonfinite is None


def test_nan_from_weights_is_named():
    net, wts = _deep_bn(depth=2, factor=1.0)
    wts["conv1"][0][0, 0, 0, 0] = np.nan
    with pytest.warns(NonFiniteWarning):
        r = forward(net, wts, {"data": np.ones((1, 2, 4, 4), np.float32)})
    assert (r.nonfinite.layer, r.nonfinite.what) == ("conv1", "NaN")
    assert "weights hold inf or NaN (blob 0)" in r.nonfinite.reason


def test_run_strict_exits_2_and_writes_nothing(tmp_path, capsys):
    net, wts = _deep_bn(depth=20)
    proto, model = str(tmp_path / "n.prototxt"), str(tmp_path / "n.caffemodel")
    write(proto, net)
    write_caffemodel(model, wts, types=net)
    np.save(str(tmp_path / "x.npy"), np.full((1, 2, 4, 4), 1e3, np.float32))
    out = str(tmp_path / "o.npz")
    args = ["run", proto, model, "--input", "data=%s" % (tmp_path / "x.npy"), "-o", out]
    assert main(args + ["--strict"]) == 2
    err = capsys.readouterr().err
    assert "error" in err and "BatchNorm" in err and "Traceback" not in err
    assert "encountered" not in err               # one message, not numpy's overflow warnings
    assert not os.path.exists(out)
    assert main(args) == 0                        # without --strict: a warning, and the file
    assert "warning" in capsys.readouterr().err
    assert os.path.exists(out)


def test_run_blobs_unknown_name_is_an_error(tmp_path):
    net, wts = _deep_bn(depth=2, factor=1.0)
    proto = str(tmp_path / "n.prototxt")
    write(proto, net)
    with pytest.raises(NetdslError, match="no blob 'conv9'"):
        from netdsl.forward import run
        run(proto, None, {}, blobs=["conv9"], random_input=True)


def test_caffe_net_forward_equals_the_forward_api(tmp_path):
    from netdsl.compat.caffe import TEST, Net
    proto, model = str(tmp_path / "n.prototxt"), str(tmp_path / "n.caffemodel")
    net = _net(branch=False)
    write(proto, net)
    write_caffemodel(model, _weights(), types=net)
    x = rand(2, 3, 10, 10)
    want = forward(proto, model, {"data": x})
    cn = Net(proto, TEST, weights=model)
    for _ in range(2):   # the kept buffers and geometry give the same values again
        cn.blobs["data"].data[...] = x
        cn.forward()
        for name in ("conv", "flat", "pool", "ip"):
            assert np.array_equal(cn.blobs[name].data, want[name]), name
    assert np.array_equal(cn.blobs["data"].data, x)
