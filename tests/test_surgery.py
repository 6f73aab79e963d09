"""FCN-style surgery (interp, nearest, transplant, expand_score) and init_weights.

Expected kernels are worked out by hand from FCN's upsample_filt / Caffe's
BilinearFiller formula (see test_fillers.py for the derivations)."""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from dnn_check import require
from netdsl.errors import NetdslError
from netdsl.proto import caffe_pb2
from netdsl.weights import (expand_score, fill, init_weights, interp, layer_fillers, nearest,
                            open_caffemodel, transplant, write_caffemodel)

K4 = np.array([[.0625, .1875, .1875, .0625],
               [.1875, .5625, .5625, .1875],
               [.1875, .5625, .5625, .1875],
               [.0625, .1875, .1875, .0625]], np.float32)


def test_interp_grouped():
    w = np.full((3, 1, 4, 4), 7, np.float32)
    assert interp([w]) is w
    for c in range(3):
        np.testing.assert_array_equal(w[c, 0], K4)


def test_interp_dense_16():
    w = np.random.default_rng(0).standard_normal((2, 2, 16, 16)).astype(np.float32)
    interp(w)
    # off the diagonal: zeros
    assert not w[0, 1].any() and not w[1, 0].any()
    # on it: 1/256, 3/256, 5/256 ... (k = 16: f = 8, c = 15/16)
    for c in range(2):
        np.testing.assert_array_equal(w[c, c, 0, :3], [0.00390625, 0.01171875, 0.01953125])
        np.testing.assert_array_equal(w[c, c], w[c, c].T)


def _fcn_upsample_filt(k):
    # FCN's upsample_filt formula: factor = (k + 1) // 2, centre factor - 1 for odd
    # k and factor - 0.5 for even k, weight (1 - |x - centre| / factor) per axis
    factor = (k + 1) // 2
    centre = factor - 1 if k % 2 == 1 else factor - 0.5
    x = np.arange(k)
    w = 1 - np.abs(x - centre) / factor
    return np.outer(w, w)


def test_bilinear_filler_equals_grouped_interp():
    for k in (2, 3, 4, 5, 6, 16, 64):
        filled = fill({"type": "bilinear"}, (5, 1, k, k))
        w = interp(np.zeros((5, 1, k, k), np.float32))
        np.testing.assert_array_equal(filled, w)
        for c in range(5):  # and both equal FCN's kernel (to float32 rounding)
            np.testing.assert_allclose(w[c, 0], _fcn_upsample_filt(k), rtol=1e-6, atol=1e-7)


def test_interp_refusals():
    with pytest.raises(NetdslError, match="square"):
        interp(np.zeros((2, 1, 4, 3), np.float32))
    with pytest.raises(NetdslError, match=r"grouped \(C, 1, k, k\) or dense"):
        interp(np.zeros((2, 3, 4, 4), np.float32))
    with pytest.raises(NetdslError, match="4-D"):
        interp(np.zeros((2, 4, 4), np.float32))
    ro = np.zeros((2, 1, 4, 4), np.float32)
    ro.flags.writeable = False
    with pytest.raises(NetdslError, match="read-only"):
        interp(ro)
    with pytest.raises(NetdslError):
        interp("upscore")


def test_nearest():
    w = np.full((3, 1, 2, 2), 5, np.float32)
    nearest(w)
    assert (w == 1).all()
    d = np.full((2, 2, 3, 2), 5, np.float32)  # non-square is fine: stride (3, 2)
    nearest([d])
    assert (d[0, 0] == 1).all() and (d[1, 1] == 1).all()
    assert not d[0, 1].any() and not d[1, 0].any()
    with pytest.raises(NetdslError):
        nearest(np.zeros((2, 3, 2, 2), np.float32))


def _source(tmp_path):
    rng = np.random.default_rng(1)
    src = {
        "conv1": [rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
                  rng.standard_normal(4).astype(np.float32)],
        # an InnerProduct over a 2 x 3 x 3 input: 8 x 18, like VGG's fc6 4096 x 25088
        "fc6": [rng.standard_normal((8, 18)).astype(np.float32),
                rng.standard_normal(8).astype(np.float32)],
        "fc7": [rng.standard_normal((5, 8)).astype(np.float32),
                rng.standard_normal(5).astype(np.float32)],
        "fc8": [rng.standard_normal((1000, 5)).astype(np.float32)],
        "extra": [np.ones(2, np.float32)],
    }
    path = str(tmp_path / "src.caffemodel")
    write_caffemodel(path, src)
    return src, path


def _target():
    return {
        "conv1": [np.zeros((4, 3, 3, 3), np.float32), np.zeros(4, np.float32)],
        "fc6": [np.zeros((8, 2, 3, 3), np.float32), np.zeros(8, np.float32)],
        "fc7": [np.zeros((5, 8, 1, 1), np.float32)],  # no bias here
        "fc8": [np.zeros((21, 5, 1, 1), np.float32), np.zeros(21, np.float32)],
    }


@pytest.mark.parametrize("kind", ["path", "model", "dict"])
def test_transplant(tmp_path, kind):
    src, path = _source(tmp_path)
    dst = _target()
    if kind == "path":
        rep = transplant(dst, path)
    elif kind == "model":
        with open_caffemodel(path) as m:
            rep = transplant(dst, m)
    else:
        rep = transplant(dst, src)
    assert rep.copied == [("conv1", 0), ("conv1", 1), ("fc6", 1)]
    assert rep.reshaped == [("fc6", 0, (8, 18), (8, 2, 3, 3)), ("fc7", 0, (5, 8), (5, 8, 1, 1))]
    reasons = {(n, i): why for n, i, why in rep.skipped}
    assert set(reasons) == {("fc7", 1), ("fc8", 0), ("extra", None)}
    assert "only 1 blob" in reasons[("fc7", 1)]
    assert "1000x5 (5000 values) cannot fill 21x5x1x1 (105 values)" == reasons[("fc8", 0)]
    assert "no layer 'extra'" in reasons[("extra", None)]
    np.testing.assert_array_equal(dst["conv1"][0], src["conv1"][0])
    np.testing.assert_array_equal(dst["fc6"][0], src["fc6"][0].reshape(8, 2, 3, 3))
    assert not dst["fc8"][0].any()  # skipped: untouched
    text = str(rep)
    assert "reshaped  fc6[0] 8x18 -> 8x2x3x3" in text and "skipped   extra" in text


def test_transplant_suffix_and_readonly(tmp_path):
    src, path = _source(tmp_path)
    dst = {"conv1-new": [np.zeros((4, 3, 3, 3), np.float32)]}
    rep = transplant(dst, src, suffix="-new")
    assert rep.copied == [("conv1", 0)]
    with open_caffemodel(path) as m:
        with pytest.raises(NetdslError, match="read-only"):
            transplant(m.to_dict(), src)


def test_expand_score(tmp_path):
    rng = np.random.default_rng(2)
    old_w = rng.standard_normal((2, 6, 1, 1)).astype(np.float32)
    old_b = rng.standard_normal((1, 1, 1, 2)).astype(np.float32)  # legacy 4-D bias
    new = {"score_new": [np.full((5, 6, 1, 1), 9, np.float32), np.full(5, 9, np.float32)]}
    expand_score(new, "score_new", {"score": [old_w, old_b]}, "score")
    np.testing.assert_array_equal(new["score_new"][0][:2], old_w)
    assert (new["score_new"][0][2:] == 9).all()
    np.testing.assert_array_equal(new["score_new"][1], [*old_b.ravel(), 9, 9, 9])
    with pytest.raises(NetdslError, match="more than"):
        expand_score({"s": [np.zeros((1, 6, 1, 1), np.float32)]}, "s", {"score": [old_w]},
                     "score")
    with pytest.raises(NetdslError, match="no layer 'nope'"):
        expand_score(new, "score_new", {"score": [old_w]}, "nope")


# ---------------------------------------------------------------- init_weights


def _layer(text):
    from google.protobuf import text_format
    return text_format.Parse(text, caffe_pb2.LayerParameter())


def test_layer_fillers_rules():
    conv = _layer('name: "c" type: "Convolution" convolution_param { num_output: 2 '
                  'weight_filler { type: "xavier" } }')
    w, b = layer_fillers(conv, 2)
    assert w.type == "xavier" and b.type == "constant" and b.value == 0
    scale = _layer('name: "s" type: "Scale" bottom: "x" scale_param { bias_term: true }')
    f, b = layer_fillers(scale, 2)
    assert f == {"type": "constant", "value": 1.0} and b.type == "constant"
    scale2 = _layer('name: "s" type: "Scale" bottom: "x" bottom: "y" '
                    'scale_param { bias_term: true bias_filler { value: 3 } }')
    (b,) = layer_fillers(scale2, 1)
    assert b.value == 3
    prelu = _layer('name: "p" type: "PReLU"')
    assert layer_fillers(prelu, 1) == [{"type": "constant", "value": 0.25}]
    bn = _layer('name: "bn" type: "BatchNorm"')
    assert all(f["value"] == 0 for f in layer_fillers(bn, 3))


def _fake_shapes(monkeypatch, param_shapes):
    """A stand-in for netdsl.shapes with infer_shapes's documented result form."""
    mod = types.ModuleType("netdsl.shapes")

    def infer_shapes(net, inputs=None):
        layers = [types.SimpleNamespace(name=lp.name, type=lp.type, layer=lp,
                                        param_shapes=param_shapes.get(lp.name, []))
                  for lp in net.layer]
        return types.SimpleNamespace(layers=layers)

    mod.infer_shapes = infer_shapes
    monkeypatch.setitem(sys.modules, "netdsl.shapes", mod)


NET = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "gaussian" std: 0.01 }
                            bias_filler { type: "constant" value: 0.5 } } }
layer { name: "bn" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "sc" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "prelu" type: "PReLU" bottom: "conv1" top: "conv1" }
layer { name: "fc6" type: "Convolution" bottom: "conv1" top: "fc6"
        convolution_param { num_output: 8 kernel_size: 3 } }
layer { name: "up" type: "Deconvolution" bottom: "fc6" top: "up"
        convolution_param { num_output: 8 group: 8 kernel_size: 4 stride: 2 bias_term: false } }
layer { name: "up2" type: "Deconvolution" bottom: "up" top: "up2"
        convolution_param { num_output: 8 kernel_size: 2 stride: 2 bias_term: false } }
"""

PARAM_SHAPES = {
    "conv1": [(4, 3, 3, 3), (4,)], "bn": [(4,), (4,), (1,)], "sc": [(4,), (4,)],
    "prelu": [(4,)], "fc6": [(8, 4, 3, 3), (8,)], "up": [(8, 1, 4, 4)], "up2": [(8, 8, 2, 2)],
}


def test_init_weights_with_stand_in_shapes(monkeypatch, tmp_path):
    from google.protobuf import text_format
    _fake_shapes(monkeypatch, PARAM_SHAPES)
    net = text_format.Parse(NET, caffe_pb2.NetParameter())
    src = {"fc6": [np.arange(8 * 36, dtype=np.float32).reshape(8, 36), np.ones(8, np.float32)]}
    reports = []
    w = init_weights(net, seed=3, source=src, interp_layers=["up"], nearest_layers=["up2"],
                     report=reports)
    assert list(w) == list(PARAM_SHAPES)
    for name, shapes in PARAM_SHAPES.items():
        assert [a.shape for a in w[name]] == shapes
        assert all(a.dtype == np.float32 for a in w[name])
    assert abs(w["conv1"][0].std() - 0.01) < 0.005 and (w["conv1"][1] == 0.5).all()
    assert all(not a.any() for a in w["bn"])
    assert (w["sc"][0] == 1).all() and not w["sc"][1].any()
    assert (w["prelu"][0] == 0.25).all()
    np.testing.assert_array_equal(w["fc6"][0].reshape(8, 36), src["fc6"][0])
    assert reports[0].reshaped == [("fc6", 0, (8, 36), (8, 4, 3, 3))]
    np.testing.assert_array_equal(w["up"][0][5, 0], K4)
    assert (w["up2"][0][3, 3] == 1).all() and not w["up2"][0][3, 2].any()
    # reproducible, and seeded
    again = init_weights(net, seed=3)
    np.testing.assert_array_equal(again["conv1"][0], w["conv1"][0])
    assert not np.array_equal(init_weights(net, seed=4)["conv1"][0], w["conv1"][0])
    with pytest.raises(NetdslError, match="no layer 'upp'"):
        init_weights(net, interp_layers=["upp"])
    # the result writes as a caffemodel directly
    path = str(tmp_path / "init.caffemodel")
    write_caffemodel(path, w, types=net)
    with open_caffemodel(path) as m:
        assert m.layer("up").type == "Deconvolution"
        np.testing.assert_array_equal(m.arrays("sc")[0], np.ones(4))


def test_init_weights_with_real_shape_inference():
    from google.protobuf import text_format
    net = text_format.Parse(NET, caffe_pb2.NetParameter())
    # PARAM_SHAPES are worked out by hand from Caffe's layer set-up: conv1
    # (num_output 4, 3 input channels, 3x3), BatchNorm (C, C, 1), Scale with bias
    # (C, C), PReLU (C), fc6 (8, 4, 3, 3), grouped deconv (C_in, C_out / group,
    # k, k) = (8, 1, 4, 4), dense deconv (8, 8, 2, 2)
    w = init_weights(net, seed=0, interp_layers=["up"])
    assert {k: [a.shape for a in v] for k, v in w.items()} == PARAM_SHAPES
    np.testing.assert_array_equal(w["up"][0][0, 0], K4)


TINY_FCN = """
name: "tinyfcn"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 1 dim: 3 dim: 12 dim: 12 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1
                            weight_filler { type: "msra" } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "fc6" type: "Convolution" bottom: "conv1" top: "fc6"
        convolution_param { num_output: 6 kernel_size: 3 } }
layer { name: "score_fr" type: "Convolution" bottom: "fc6" top: "score_fr"
        convolution_param { num_output: 2 kernel_size: 1 } }
layer { name: "upscore" type: "Deconvolution" bottom: "score_fr" top: "upscore"
        convolution_param { num_output: 2 group: 2 kernel_size: 4 stride: 2
                            bias_term: false } }
"""


def test_init_transplant_interp_end_to_end_in_opencv(tmp_path):
    # init (real shape inference) -> transplant an InnerProduct fc6 -> interp ->
    # write -> OpenCV loads the same blobs and upsamples bilinearly
    cv2 = require("cv2")
    from google.protobuf import text_format
    net = text_format.Parse(TINY_FCN, caffe_pb2.NetParameter())
    rng = np.random.default_rng(4)
    src_path = str(tmp_path / "classifier.caffemodel")
    fc6 = rng.standard_normal((6, 36)).astype(np.float32)  # 6 x (4 * 3 * 3)
    write_caffemodel(src_path, [("fc6", "InnerProduct", [fc6, np.ones(6, np.float32)])])
    reports = []
    w = init_weights(net, seed=1, source=src_path, interp_layers=["upscore"], report=reports)
    assert reports[0].reshaped == [("fc6", 0, (6, 36), (6, 4, 3, 3))]
    assert reports[0].copied == [("fc6", 1)]
    model = str(tmp_path / "fcn.caffemodel")
    write_caffemodel(model, w, types=net)
    proto = tmp_path / "fcn.prototxt"
    proto.write_text(TINY_FCN)
    cvnet = cv2.dnn.readNetFromCaffe(str(proto), model)
    for name, arrays in w.items():
        for i, a in enumerate(arrays):
            np.testing.assert_array_equal(cvnet.getParam(name, i).reshape(a.shape), a)
    # a constant score map upsampled by the k = 4, stride 2 bilinear kernel is
    # constant away from the border: per output pixel the kernel taps sum to
    # 0.25 + 0.75 = 1 along each axis
    s = np.float32(2.5)
    w["score_fr"][0][...] = 0
    w["score_fr"][1][...] = s
    write_caffemodel(model, w, types=net)
    cvnet = cv2.dnn.readNetFromCaffe(str(proto), model)
    cvnet.setInput(rng.standard_normal((1, 3, 12, 12)).astype(np.float32))
    out = cvnet.forward()
    # 12 -> conv1 (pad 1) 12 -> fc6 (k3) 10 -> upscore (10 - 1) * 2 + 4 = 22
    assert out.shape == (1, 2, 22, 22)
    np.testing.assert_allclose(out[0, :, 2:-2, 2:-2], s, rtol=1e-6)
