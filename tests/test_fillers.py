"""Caffe's fillers: exact values for the deterministic ones (worked out by hand
from filler.hpp's formulas), distributions and parameters for the random ones."""
from __future__ import annotations

import math

import numpy as np
import pytest

from netdsl.errors import NetdslError
from netdsl.proto import caffe_pb2
from netdsl.weights import bilinear_kernel, fill, filler_params

# BilinearFiller, k = 4: f = ceil(4 / 2) = 2, c = (4 - 1) / (2 * 2) = 0.75.
# Per axis 1 - |x / 2 - 0.75| for x = 0..3: 0.25, 0.75, 0.75, 0.25; the kernel is
# their outer product: 0.0625, 0.1875, 0.5625.
K4 = [[.0625, .1875, .1875, .0625],
      [.1875, .5625, .5625, .1875],
      [.1875, .5625, .5625, .1875],
      [.0625, .1875, .1875, .0625]]


def test_bilinear_4x4():
    np.testing.assert_array_equal(bilinear_kernel(4), np.array(K4, np.float32))
    out = fill({"type": "bilinear"}, (3, 2, 4, 4))
    assert out.dtype == np.float32 and out.shape == (3, 2, 4, 4)
    for i in range(3):
        for j in range(2):  # the same kernel in every (i, j) slice
            np.testing.assert_array_equal(out[i, j], K4)


def test_bilinear_16x16_first_row():
    # k = 16: f = 8, c = 15 / 16.  Row y = 0 has factor 1 - |0 - 15/16| = 1/16;
    # columns x = 0, 1, 2: 1 - |x/8 - 15/16| = 1/16, 3/16, 5/16.
    # Products: 1/256 = 0.00390625, 3/256 = 0.01171875, 5/256 = 0.01953125.
    k = fill({"type": "bilinear"}, (1, 1, 16, 16))[0, 0]
    np.testing.assert_array_equal(k[0, :3], [0.00390625, 0.01171875, 0.01953125])
    # the peak: x = y = 7 or 8, 1 - |7/8 - 15/16| = 15/16 -> 225/256
    assert k[7, 7] == k[8, 8] == 225 / 256
    assert k.shape == (16, 16) and np.array_equal(k, k.T) and np.array_equal(k, k[::-1, ::-1])


def test_bilinear_odd_size():
    # k = 3: f = 2, c = (3 - 1) / 4 = 0.5; per axis 1 - |x/2 - 0.5| = 0.5, 1, 0.5.
    # (FCN's upsample_filt: factor 2, centre 1, 1 - |x - 1| / 2: the same.)
    np.testing.assert_array_equal(bilinear_kernel(3),
                                  [[.25, .5, .25], [.5, 1, .5], [.25, .5, .25]])
    # k = 6 (upsampling by 3): f = 3, c = 5/6; per axis 1 - |x/3 - 5/6|:
    # 1/6, 1/2, 5/6, 5/6, 1/2, 1/6 -> symmetric
    row = bilinear_kernel(6)[2] / np.float32(5 / 6)
    np.testing.assert_allclose(row, [1 / 6, 1 / 2, 5 / 6, 5 / 6, 1 / 2, 1 / 6], rtol=1e-6)


def test_bilinear_needs_4d_square():
    with pytest.raises(NetdslError, match="4-D"):
        fill({"type": "bilinear"}, (4, 4))
    with pytest.raises(NetdslError, match="square"):
        fill({"type": "bilinear"}, (1, 1, 4, 3))


def test_constant_and_defaults():
    np.testing.assert_array_equal(fill({"type": "constant", "value": 0.25}, (2, 3)),
                                  np.full((2, 3), 0.25))
    # an unset FillerParameter is constant 0 (caffe.proto defaults)
    np.testing.assert_array_equal(fill(None, (4,)), np.zeros(4))
    np.testing.assert_array_equal(fill(caffe_pb2.FillerParameter(), (4,)), np.zeros(4))
    p = filler_params(caffe_pb2.FillerParameter(type="xavier",
                                                variance_norm=caffe_pb2.FillerParameter.AVERAGE))
    assert p["type"] == "xavier" and p["variance_norm"] == "AVERAGE" and p["std"] == 1.0


def test_uniform():
    out = fill({"type": "uniform", "min": -2, "max": 3}, (200, 500), rng=1)
    assert out.dtype == np.float32
    assert out.min() >= -2 and out.max() < 3
    # U[a, b): mean (a + b) / 2 = 0.5, variance (b - a)^2 / 12 = 25 / 12
    assert abs(out.mean() - 0.5) < 0.02
    assert abs(out.var() - 25 / 12) < 0.03
    np.testing.assert_array_equal(out, fill({"type": "uniform", "min": -2, "max": 3},
                                            (200, 500), rng=1))
    assert not np.array_equal(out, fill({"type": "uniform", "min": -2, "max": 3},
                                        (200, 500), rng=2))


def test_gaussian_and_sparse():
    out = fill({"type": "gaussian", "mean": 1.0, "std": 0.5}, (400, 500),
               rng=np.random.default_rng(3))
    assert abs(out.mean() - 1.0) < 0.005 and abs(out.std() - 0.5) < 0.005
    # sparse = 3 over shape[0] = 10 outputs: each value kept with p = 0.3
    out = fill({"type": "gaussian", "std": 1.0, "sparse": 3}, (10, 20000), rng=4)
    assert abs(np.count_nonzero(out) / out.size - 0.3) < 0.01
    kept = out[out != 0]
    assert abs(kept.std() - 1.0) < 0.02
    # sparse = 0 keeps nothing; sparse = num_outputs keeps everything
    assert not fill({"type": "gaussian", "sparse": 0}, (5, 7)).any()
    assert fill({"type": "gaussian", "sparse": 5}, (5, 7)).all()


def test_positive_unitball():
    out = fill({"type": "positive_unitball"}, (6, 4, 5), rng=5)
    assert out.min() >= 0 and out.max() <= 1
    # each of the shape[0] rows sums to 1
    np.testing.assert_allclose(out.reshape(6, -1).sum(axis=1), np.ones(6), rtol=1e-5)


@pytest.mark.parametrize("norm,n", [
    # shape (64, 32, 3, 3): count 18432, fan_in = count / 64 = 288,
    # fan_out = count / 32 = 576, average (288 + 576) / 2 = 432
    ("FAN_IN", 288), ("FAN_OUT", 576), ("AVERAGE", 432), (None, 288)])
def test_xavier_and_msra(norm, n):
    spec = {"type": "xavier"} if norm is None else {"type": "xavier", "variance_norm": norm}
    out = fill(spec, (64, 32, 3, 3), rng=6)
    scale = math.sqrt(3 / n)  # U[-scale, scale): variance scale^2 / 3 = 1 / n
    assert out.min() >= -scale and out.max() < scale and out.max() > 0.99 * scale
    assert abs(out.var() * n - 1) < 0.03
    spec["type"] = "msra"
    out = fill(spec, (64, 32, 3, 3), rng=7)
    assert abs(out.mean()) < 0.05 * math.sqrt(2 / n)
    assert abs(out.std() / math.sqrt(2 / n) - 1) < 0.02  # N(0, 2 / n)


def test_xavier_1d_and_enum_numbers():
    # 1-D: fan_in = count / shape[0] = 1, fan_out = count = 4000
    out = fill({"type": "xavier", "variance_norm": 1}, (4000,), rng=8)  # FAN_OUT
    assert np.abs(out).max() < math.sqrt(3 / 4000)
    out = fill({"type": "xavier"}, (4000,), rng=8)  # FAN_IN: n = 1, scale sqrt(3)
    assert np.abs(out).max() > 1.5


def test_errors():
    with pytest.raises(NetdslError, match="unknown filler type 'gausian'.*gaussian"):
        fill({"type": "gausian"}, (3,))
    with pytest.raises(NetdslError, match="sparse"):
        fill({"type": "xavier", "sparse": 2}, (3, 3))
    with pytest.raises(NetdslError, match="std > 0"):
        fill({"type": "gaussian", "std": 0}, (3,))
    with pytest.raises(NetdslError, match="min <= max"):
        fill({"type": "uniform", "min": 2, "max": 1}, (3,))
    with pytest.raises(NetdslError, match="empty"):
        fill({"type": "constant"}, (0, 3))
    with pytest.raises(NetdslError, match=r"probability"):
        fill({"type": "gaussian", "sparse": 4}, (2, 3))
    with pytest.raises(NetdslError, match="variance_norm"):
        fill({"type": "msra", "variance_norm": "FAN"}, (2, 3))
    with pytest.raises(NetdslError, match="unknown FillerParameter field `stdd`"):
        fill({"type": "gaussian", "stdd": 1}, (2, 3))
