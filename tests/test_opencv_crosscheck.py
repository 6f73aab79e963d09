"""The numpy forward against OpenCV dnn on the same netdsl-written prototxt and
caffemodel: FCN-style nets (bilinear and nearest upsampling, crops, pooling with
Caffe's rounding, grouped and dilated convolutions), the other layer types, and
the real open_nsfw ResNet-50 through ``netdsl run``."""
from __future__ import annotations

import numpy as np
import pytest

from dnn_check import max_err, opencv_forward, require, save_net
from netdsl import NetSpec, layers as L, params as P
from netdsl.cli import main
from netdsl.forward import forward
from netdsl.weights import bilinear_kernel


@pytest.fixture(autouse=True)
def _cv2():
    require("cv2")


def _rand(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def fcn_net(h, w, classes=3):
    """conv (pad 5) -> MAX pool k3 s2 -> grouped dilated conv -> AVE pool k3 s2 p1
    -> 1x1 score -> bilinear x4 (grouped Deconvolution) and nearest x2 -> crops."""
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, h, w]))
    n.conv1 = L.Convolution(n.data, num_output=8, kernel_size=3, pad=5)
    n.relu1 = L.ReLU(n.conv1)
    n.pool1 = L.Pooling(n.relu1, pool=P.Pooling.MAX, kernel_size=3, stride=2)
    n.conv2 = L.Convolution(n.pool1, num_output=8, kernel_size=3, dilation=2, group=4, pad=1)
    n.pool2 = L.Pooling(n.conv2, pool=P.Pooling.AVE, kernel_size=3, stride=2, pad=1)
    n.score = L.Convolution(n.pool2, num_output=classes, kernel_size=1)
    n.upscore = L.Deconvolution(n.score, num_output=classes, kernel_size=8, stride=4,
                                group=classes, bias_term=False)
    n.crop = L.Crop(n.upscore, n.data, offset=2)
    n.near = L.Deconvolution(n.score, num_output=classes, kernel_size=2, stride=2,
                             group=classes, bias_term=False)
    n.up2 = L.Deconvolution(n.near, num_output=classes, kernel_size=4, stride=2, pad=1,
                            group=classes, bias_term=False)
    n.near_crop = L.Crop(n.up2, n.data, axis=2, offset=[0, 1])
    return n.to_proto()


def fcn_weights(rng, classes=3):
    up = np.empty((classes, 1, 8, 8), np.float32)
    up[:] = bilinear_kernel(8)
    up2 = np.empty((classes, 1, 4, 4), np.float32)
    up2[:] = bilinear_kernel(4)
    return {
        "conv1": [_rand(rng, 8, 3, 3, 3, scale=0.3), _rand(rng, 8)],
        "conv2": [_rand(rng, 8, 2, 3, 3, scale=0.3), _rand(rng, 8)],
        "score": [_rand(rng, classes, 8, 1, 1), _rand(rng, classes)],
        "upscore": [up],
        "near": [np.ones((classes, 1, 2, 2), np.float32)],
        "up2": [up2],
    }


@pytest.mark.parametrize("h,w", [(21, 21), (24, 19), (30, 27)])
def test_fcn_style_net_matches_opencv(tmp_path, h, w):
    rng = np.random.default_rng(h * 100 + w)
    net = fcn_net(h, w)
    weights = fcn_weights(rng)
    proto, model = save_net(tmp_path, net, weights)
    x = _rand(rng, 1, 3, h, w)
    ours = forward(proto, model, {"data": x})
    names = ["pool1", "conv2", "pool2", "score", "upscore", "crop", "near", "up2", "near_crop"]
    theirs = opencv_forward(proto, model, {"data": x}, names)
    for name in names:
        assert ours[name].shape == tuple(theirs[name].shape), name
        assert max_err(ours[name], theirs[name]) <= 1e-4 * max(1.0, np.abs(theirs[name]).max()), name


def misc_net():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[2, 6, 5, 7]))
    n.bn = L.BatchNorm(n.data, eps=1e-3)
    n.sc = L.Scale(n.bn, bias_term=True)
    n.pr = L.PReLU(n.sc)
    n.elu = L.ELU(n.data, alpha=0.7)
    n.pw = L.Power(n.data, power=2, scale=0.5, shift=3)
    n.sum = L.Eltwise(n.pr, n.elu, n.pw, coeff=[1, -2, 0.5])
    n.prod = L.Eltwise(n.pr, n.elu, operation=P.Eltwise.PROD)
    n.max = L.Eltwise(n.pr, n.elu, operation=P.Eltwise.MAX)
    n.a, n.b = L.Slice(n.sum, slice_point=[2], ntop=2)
    n.cat = L.Concat(n.b, n.prod, n.a, axis=1)
    # k stays at its default 1: OpenCV's Caffe importer does not read `k` (its LRN
    # takes a `bias` parameter), so any other k differs there but not in Caffe
    n.lrn = L.LRN(n.cat, local_size=5, alpha=0.3, beta=0.75)
    n.lrnw = L.LRN(n.max, local_size=3, alpha=0.2, beta=0.6, norm_region=P.LRN.WITHIN_CHANNEL)
    n.sig = L.Sigmoid(n.lrnw)
    n.th = L.TanH(n.lrn)
    n.abs = L.AbsVal(n.th)
    n.relu = L.ReLU(n.th, negative_slope=0.2)
    n.flat = L.Flatten(n.relu)
    n.fc = L.InnerProduct(n.flat, num_output=10)
    n.prob = L.Softmax(n.fc)
    n.resh = L.Reshape(n.sig, shape=dict(dim=[0, 0, -1]))
    n.sm2 = L.Softmax(n.resh, axis=2)
    return n.to_proto()


def test_misc_layers_match_opencv(tmp_path):
    rng = np.random.default_rng(7)
    weights = {
        "bn": [_rand(rng, 6), np.abs(_rand(rng, 6)) + 0.5, np.array([2.0], np.float32)],
        "sc": [_rand(rng, 6), _rand(rng, 6)],
        "pr": [np.abs(_rand(rng, 6, scale=0.3))],
        "fc": [_rand(rng, 10, 12 * 35, scale=0.05), _rand(rng, 10)],
    }
    proto, model = save_net(tmp_path, misc_net(), weights)
    x = _rand(rng, 2, 6, 5, 7)
    ours = forward(proto, model, {"data": x})
    names = ["sum", "prod", "max", "cat", "lrn", "lrnw", "sig", "abs", "relu", "fc", "prob",
             "sm2"]
    theirs = opencv_forward(proto, model, {"data": x}, names)
    for name in names:
        assert max_err(ours[name], theirs[name]) <= 1e-4 * max(1.0, np.abs(theirs[name]).max()), name


def test_nsfw_resnet50_run_matches_opencv(nsfw_model, tmp_path, capsys):
    """Yahoo's open_nsfw ResNet-50 (caffemodel written by Caffe) through ``netdsl run``."""
    proto, model = nsfw_model
    rng = np.random.default_rng(3)
    # a mean-subtracted BGR image, as the model's users feed it
    x = (rng.uniform(0, 255, (1, 3, 224, 224)) - np.array([104, 117, 123]).reshape(1, 3, 1, 1)
         ).astype(np.float32)
    np.save(str(tmp_path / "x.npy"), x)
    out = str(tmp_path / "out.npz")
    assert main(["run", proto, model, "--input", "data=%s" % (tmp_path / "x.npy"), "-o", out,
                 "--blobs", "pool,fc_nsfw,prob"]) == 0
    names = ["pool", "fc_nsfw", "prob"]
    theirs = opencv_forward(proto, model, {"data": x}, names)
    with np.load(out) as z:
        assert z["prob"].shape == (1, 2)
        for name in names:
            assert max_err(z[name], theirs[name]) <= 1e-4 * max(1.0, np.abs(theirs[name]).max()), name
        assert abs(float(z["prob"].sum()) - 1) < 1e-5


def test_seed_tables_in_opencv(tmp_path):
    """The seed article's bilinear (k4 s2 p1) and nearest (k2 s2) tables, in OpenCV too."""
    from test_forward import BILINEAR_TABLE, X44
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 4, 4]))
    n.up = L.Deconvolution(n.data, num_output=1, kernel_size=4, stride=2, pad=1, bias_term=False,
                           weight_filler=dict(type="bilinear"))
    n.near = L.Deconvolution(n.data, num_output=1, kernel_size=2, stride=2, bias_term=False,
                             weight_filler=dict(type="constant", value=1))
    proto, model = save_net(tmp_path, n.to_proto(), {})
    theirs = opencv_forward(proto, model, {"data": X44}, ["up", "near"])
    assert np.array_equal(theirs["up"][0, 0], BILINEAR_TABLE)
    # nearest: pixel (i, j) copied to rows 2i, 2i+1 and columns 2j, 2j+1
    assert np.array_equal(theirs["near"][0, 0], np.kron(X44[0, 0], np.ones((2, 2))))
