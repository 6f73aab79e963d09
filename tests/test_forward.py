"""Numpy forward: every layer type against values worked out by hand from the
formulas in BVLC Caffe's src/caffe/layers/*.cpp (each test names its rule)."""
from __future__ import annotations

import os

import numpy as np
import pytest

from netdsl import NetSpec, NetdslError, layers as L, params as P
from netdsl.cli import main
from netdsl.forward import forward
from netdsl.prototxt import write
from netdsl.weights import bilinear_kernel, write_caffemodel

X44 = np.arange(1, 17, dtype=np.float32).reshape(1, 1, 4, 4)  # the seed article's 1..16


def run1(top_fn, x, weights=None, name="out", **kw):
    """Forward a one-input net ``out = top_fn(data)``; returns the ``out`` blob."""
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=list(x.shape)))
    setattr(n, name, top_fn(n.data))
    return forward(n.to_proto(), weights, {"data": x}, **kw)[name]


# -- the seed article's tables ---------------------------------------------------

# 1-D bilinear kernel of size 4 (Caffe's BilinearFiller): f = ceil(4/2) = 2,
# c = (4-1)/(2*2) = 0.75, w[x] = 1 - |x/2 - 0.75| = 0.25, 0.75, 0.75, 0.25;
# the 2-D kernel is the outer product (0.0625, 0.1875, 0.5625 ...).
# Deconvolution k4 s2 p1 on a length-4 signal: out[y] = sum_i x[i] w[y + 1 - 2i]
# (y + 1: the pad), so out = U @ x with
#   y=0: 0.75 x0            y=1: 0.75 x0 + 0.25 x1   y=2: 0.25 x0 + 0.75 x1
#   y=3: 0.75 x1 + 0.25 x2  y=4: 0.25 x1 + 0.75 x2   y=5: 0.75 x2 + 0.25 x3
#   y=6: 0.25 x2 + 0.75 x3  y=7: 0.75 x3
# and in 2-D the output is U X U^T.  Row 0 of U X is 0.75 * (1, 2, 3, 4) =
# (0.75, 1.5, 2.25, 3); times U^T: 0.75*0.75 = 0.5625, 0.75*0.75 + 0.25*1.5 =
# 0.9375, 0.25*0.75 + 0.75*1.5 = 1.3125, ... 0.75*3 = 2.25 -- the article's row.
BILINEAR_TABLE = np.array([
    [0.5625, 0.9375, 1.3125, 1.6875, 2.0625, 2.4375, 2.8125, 2.25],
    [1.5, 2.25, 2.75, 3.25, 3.75, 4.25, 4.75, 3.75],
    [3.0, 4.25, 4.75, 5.25, 5.75, 6.25, 6.75, 5.25],
    [4.5, 6.25, 6.75, 7.25, 7.75, 8.25, 8.75, 6.75],
    [6.0, 8.25, 8.75, 9.25, 9.75, 10.25, 10.75, 8.25],
    [7.5, 10.25, 10.75, 11.25, 11.75, 12.25, 12.75, 9.75],
    [9.0, 12.25, 12.75, 13.25, 13.75, 14.25, 14.75, 11.25],
    [7.3125, 9.9375, 10.3125, 10.6875, 11.0625, 11.4375, 11.8125, 9.0]], dtype=np.float32)

U = np.array([[.75, 0, 0, 0], [.75, .25, 0, 0], [.25, .75, 0, 0], [0, .75, .25, 0],
              [0, .25, .75, 0], [0, 0, .75, .25], [0, 0, .25, .75], [0, 0, 0, .75]])


def test_seed_bilinear_table():
    assert np.array_equal(U @ X44[0, 0] @ U.T, BILINEAR_TABLE)  # the hand rule gives the table
    up = run1(lambda d: L.Deconvolution(d, num_output=1, kernel_size=4, stride=2, pad=1,
                                        bias_term=False),
              X44, {"out": [bilinear_kernel(4).reshape(1, 1, 4, 4)]})
    assert up.shape == (1, 1, 8, 8)
    assert np.array_equal(up[0, 0], BILINEAR_TABLE)


def test_seed_nearest_table():
    # k2 s2 with a kernel of ones: out[2i + a, 2j + b] = x[i, j] for a, b in {0, 1}
    up = run1(lambda d: L.Deconvolution(d, num_output=1, kernel_size=2, stride=2,
                                        bias_term=False),
              X44, {"out": [np.ones((1, 1, 2, 2), np.float32)]})
    expected = np.array([[1, 1, 2, 2, 3, 3, 4, 4], [1, 1, 2, 2, 3, 3, 4, 4],
                         [5, 5, 6, 6, 7, 7, 8, 8], [5, 5, 6, 6, 7, 7, 8, 8],
                         [9, 9, 10, 10, 11, 11, 12, 12], [9, 9, 10, 10, 11, 11, 12, 12],
                         [13, 13, 14, 14, 15, 15, 16, 16], [13, 13, 14, 14, 15, 15, 16, 16]])
    assert np.array_equal(up[0, 0], expected)


# -- convolution ------------------------------------------------------------------

def test_convolution_group_dilation_pad_stride():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 7, 6)).astype(np.float32)
    w = rng.standard_normal((6, 2, 2, 3)).astype(np.float32)  # group 2: 2 inputs per output
    b = np.array([1, 2, 3, 4, 5, 6], np.float32)
    out = run1(lambda d: L.Convolution(d, num_output=6, kernel_h=2, kernel_w=3, stride=[2, 1],
                                       pad=[1, 0], dilation=2, group=2),
               x, {"out": [w, b]})
    # Caffe: out = (H + 2p - (d(k-1)+1)) / s + 1 -> H: (7+2-3)/2+1 = 4, W: (6-5)/1+1 = 2;
    # out[o, i, j] = b[o] + sum_{c,u,v} w[o,c,u,v] xpad[g(o)*2 + c, 2i + 2u, j + 2v]
    assert out.shape == (2, 6, 4, 2)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (0, 0)))
    exp = np.zeros((2, 6, 4, 2))
    for o in range(6):
        g = o // 3
        for c in range(2):
            for u in range(2):
                for v in range(3):
                    exp[:, o] += w[o, c, u, v] * xp[:, g * 2 + c, 2 * u:2 * u + 7:2, 2 * v:2 * v + 2]
        exp[:, o] += b[o]
    np.testing.assert_allclose(out, exp, rtol=1e-5, atol=1e-5)


def test_deconvolution_group_stride_pad_dilation():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 2, 3, 4)).astype(np.float32)
    w = rng.standard_normal((2, 3, 3, 2)).astype(np.float32)  # (C_in, C_out/group, kh, kw)
    out = run1(lambda d: L.Deconvolution(d, num_output=6, kernel_h=3, kernel_w=2, stride=2,
                                         pad=1, dilation=[1, 2], group=2, bias_term=False),
               x, {"out": [w]})
    # Caffe: out = s(H-1) + d(k-1) + 1 - 2p -> H: 4 + 3 - 2 = 5, W: 6 + 3 - 2 = 7;
    # full[g*3 + o, s i + d_h u, s j + d_w v] += w[c, o, u, v] x[c, i, j], then drop pad 1
    assert out.shape == (1, 6, 5, 7)
    full = np.zeros((6, 7, 9))
    for c in range(2):
        for o in range(3):
            for i in range(3):
                for j in range(4):
                    for u in range(3):
                        for v in range(2):
                            full[c * 3 + o, 2 * i + u, 2 * j + 2 * v] += w[c, o, u, v] * x[0, c, i, j]
    np.testing.assert_allclose(out[0], full[:, 1:6, 1:8], rtol=1e-5, atol=1e-5)


def test_inner_product_axis_and_transpose():
    x = np.arange(12, dtype=np.float32).reshape(2, 3, 2)
    w = np.array([[1, 0], [0, 1], [1, 1]], np.float32)  # (N=3, K=2)
    out = run1(lambda d: L.InnerProduct(d, num_output=3, axis=2, bias_term=False), x,
               {"out": [w]})
    # axis 2: each length-2 row (a, b) -> (a, b, a + b)
    rows = x.reshape(-1, 2)
    exp = np.stack([rows[:, 0], rows[:, 1], rows.sum(1)], 1).reshape(2, 3, 3)
    assert np.array_equal(out, exp)
    out_t = run1(lambda d: L.InnerProduct(d, num_output=3, axis=2, bias_term=True,
                                          transpose=True), x,
                 {"out": [w.T.copy(), np.array([10, 20, 30], np.float32)]})
    assert np.array_equal(out_t, exp + np.array([10, 20, 30]))


# -- pooling ----------------------------------------------------------------------

def test_pooling_max_ceil_rounding_clips_last_window():
    x = np.arange(36, dtype=np.float32).reshape(1, 1, 6, 6)
    out = run1(lambda d: L.Pooling(d, pool=P.Pooling.MAX, kernel_size=3, stride=2), x)
    # ceil((6-3)/2)+1 = 3 (floor would give 2); windows rows/cols [0,3), [2,5), [4,6) clipped;
    # the max of a window is its bottom-right value 6*r + c
    assert out.shape == (1, 1, 3, 3)
    assert np.array_equal(out[0, 0], [[14, 16, 17], [26, 28, 29], [32, 34, 35]])


def test_pooling_ave_divides_by_window_clipped_to_h_plus_pad():
    x = np.ones((1, 1, 4, 4), np.float32)
    out = run1(lambda d: L.Pooling(d, pool=P.Pooling.AVE, kernel_size=3, stride=2, pad=1), x)
    # out = ceil((4+2-3)/2)+1 = 3; (3-1)*2 = 4 < 4+1 so no drop.  Window starts -1, 1, 3;
    # hend = min(start+3, H+pad=5) = 2, 4, 5 -> pool sizes 3, 3, 2; clipped to the image
    # [0,2), [1,4), [3,4) hold 2, 3, 1 ones -> 1-D averages 2/3, 1, 1/2
    a = np.array([2 / 3, 1, 1 / 2])
    np.testing.assert_allclose(out[0, 0], np.outer(a, a), rtol=1e-6)


def test_pooling_drops_window_starting_in_padding():
    x = np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5)
    out = run1(lambda d: L.Pooling(d, pool=P.Pooling.MAX, kernel_size=2, stride=2, pad=1), x)
    # ceil((5+2-2)/2)+1 = 4, but (4-1)*2 = 6 >= 5+1: the last window would start in the
    # padding and is dropped -> 3.  Windows [-1,1), [1,3), [3,5) -> maxima at rows 0, 2, 4
    assert out.shape == (1, 1, 3, 3)
    assert np.array_equal(out[0, 0], [[0, 2, 4], [10, 12, 14], [20, 22, 24]])


def test_pooling_floor_round_mode_global_and_mask():
    x = np.arange(36, dtype=np.float32).reshape(1, 1, 6, 6)
    out = run1(lambda d: L.Pooling(d, pool=P.Pooling.MAX, kernel_size=3, stride=2,
                                   round_mode=P.Pooling.FLOOR), x)
    assert np.array_equal(out[0, 0], [[14, 16], [26, 28]])  # floor((6-3)/2)+1 = 2
    g = run1(lambda d: L.Pooling(d, pool=P.Pooling.AVE, global_pooling=True), x)
    assert g.shape == (1, 1, 1, 1) and g[0, 0, 0, 0] == 17.5  # mean of 0..35
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 6, 6]))
    n.pool, n.mask = L.Pooling(n.data, pool=P.Pooling.MAX, kernel_size=3, stride=2, ntop=2)
    r = forward(n.to_proto(), None, {"data": -x})
    # on -x the maximum is a window's top-left value; the mask is its flat index h*W + w
    assert np.array_equal(r["mask"][0, 0], [[0, 2, 4], [12, 14, 16], [24, 26, 28]])


# -- neurons ----------------------------------------------------------------------

def test_neurons():
    x = np.array([-2, -0.5, 0, 0.5, 2], np.float32).reshape(1, 5)
    # max(x, 0) + 0.1 min(x, 0), in float32
    np.testing.assert_allclose(run1(lambda d: L.ReLU(d, negative_slope=0.1), x),
                               [[-0.2, -0.05, 0, 0.5, 2]], rtol=1e-7)
    np.testing.assert_allclose(run1(lambda d: L.ELU(d, alpha=2.0), x),
                               [[2 * (np.exp(-2) - 1), 2 * (np.exp(-.5) - 1), 0, .5, 2]],
                               rtol=1e-6)
    np.testing.assert_allclose(run1(L.Sigmoid, x), 1 / (1 + np.exp(-x)), rtol=1e-6)
    np.testing.assert_allclose(run1(L.TanH, x), np.tanh(x), rtol=1e-6)
    assert np.array_equal(run1(L.AbsVal, x), np.abs(x))
    # Power: (shift + scale x)^power = (1 + 2x)^2
    np.testing.assert_allclose(run1(lambda d: L.Power(d, power=2, scale=2, shift=1), x),
                               (1 + 2 * x) ** 2)
    # power*scale == 0: constant shift^power without reading x
    assert np.array_equal(run1(lambda d: L.Power(d, scale=0, shift=3, power=2), x),
                          np.full((1, 5), 9))
    # Exp base 2: 2^(1 + x) ; Log base 10 of (3 + x)
    np.testing.assert_allclose(run1(lambda d: L.Exp(d, base=2, shift=1), x), 2 ** (1 + x),
                               rtol=1e-6)
    np.testing.assert_allclose(run1(lambda d: L.Log(d, base=10, shift=3), x),
                               np.log10(3 + x), rtol=1e-6)
    assert np.array_equal(run1(lambda d: L.Dropout(d, dropout_ratio=0.3), x), x)  # TEST


def test_prelu_per_channel():
    x = np.array([-1, 1, -2, 2, -3, 3], np.float32).reshape(1, 3, 2)
    out = run1(L.PReLU, x, {"out": [np.array([0.1, 0.2, 0.3], np.float32)]})
    assert np.allclose(out, [[[-0.1, 1], [-0.4, 2], [-0.9, 3]]])


def test_batch_norm_moving_average_factor():
    x = np.array([1, 2, 3, 4], np.float32).reshape(1, 2, 2, 1)
    blobs = [np.array([2, 6], np.float32), np.array([8, 0.5], np.float32),
             np.array([2], np.float32)]
    out = run1(lambda d: L.BatchNorm(d, eps=0.0), x, {"out": blobs})
    # scale = 1/blob2 = 0.5: mean (1, 3), var (4, 0.25); y = (x - mean) / sqrt(var + eps)
    assert np.allclose(out.ravel(), [0, 0.5, 0, 2])
    zero = [blobs[0], blobs[1], np.zeros(1, np.float32)]
    out0 = run1(lambda d: L.BatchNorm(d, eps=0.25), x, {"out": zero})
    # blob2 == 0 -> scale 0: mean = var = 0 and y = x / sqrt(0.25) = 2x
    assert np.allclose(out0.ravel(), [2, 4, 6, 8])
    # use_global_stats false: the batch's own statistics, per channel over N, H, W
    outb = run1(lambda d: L.BatchNorm(d, use_global_stats=False, eps=0.0), x, {"out": zero})
    assert np.allclose(outb.ravel(), [-1, 1, -1, 1])


def test_scale_and_bias():
    x = np.arange(12, dtype=np.float32).reshape(1, 2, 2, 3)
    s = np.array([2, 3], np.float32)
    out = run1(lambda d: L.Scale(d, bias_term=True), x,
               {"out": [s, np.array([1, -1], np.float32)]})
    assert np.array_equal(out[0, 0], x[0, 0] * 2 + 1) and np.array_equal(out[0, 1], x[0, 1] * 3 - 1)
    # axis 2, num_axes -1: one factor per (h, w)
    sw = np.arange(6, dtype=np.float32).reshape(2, 3)
    out2 = run1(lambda d: L.Scale(d, axis=2, num_axes=-1), x, {"out": [sw]})
    assert np.array_equal(out2, x * sw)
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 2, 2, 3]))
    n.f = L.Input(shape=dict(dim=[1, 2]))
    n.prod = L.Scale(n.data, n.f, axis=0)
    n.sum = L.Bias(n.data, n.f, axis=0)
    r = forward(n.to_proto(), None, {"data": x, "f": s.reshape(1, 2)})
    assert np.array_equal(r["prod"], x * s.reshape(1, 2, 1, 1))
    assert np.array_equal(r["sum"], x + s.reshape(1, 2, 1, 1))
    outb = run1(lambda d: L.Bias(d), x, {"out": [np.array([5, 7], np.float32)]})
    assert np.array_equal(outb, x + np.array([5, 7], np.float32).reshape(1, 2, 1, 1))


def test_eltwise():
    n = NetSpec()
    n.a = L.Input(shape=dict(dim=[1, 3]))
    n.b = L.Input(shape=dict(dim=[1, 3]))
    n.s = L.Eltwise(n.a, n.b, coeff=[2, -1])
    n.p = L.Eltwise(n.a, n.b, operation=P.Eltwise.PROD)
    n.m = L.Eltwise(n.a, n.b, operation=P.Eltwise.MAX)
    a, b = np.array([[1, 5, -2]], np.float32), np.array([[3, 1, -1]], np.float32)
    r = forward(n.to_proto(), None, {"a": a, "b": b})
    assert np.array_equal(r["s"], [[-1, 9, -3]])
    assert np.array_equal(r["p"], [[3, 5, 2]])
    assert np.array_equal(r["m"], [[3, 5, -1]])


def test_blob_rearranging_layers():
    x = np.arange(24, dtype=np.float32).reshape(1, 4, 2, 3)
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 4, 2, 3]))
    n.a, n.b, n.c = L.Slice(n.data, slice_point=[1, 3], ntop=3)
    n.cat = L.Concat(n.c, n.a, axis=1)
    n.h0, n.h1 = L.Slice(n.data, axis=2, ntop=2)  # equal parts
    n.flat = L.Flatten(n.data, axis=2)
    n.resh = L.Reshape(n.data, shape=dict(dim=[0, -1, 3]))
    n.ref = L.Input(shape=dict(dim=[1, 2, 1, 2]))
    n.crop = L.Crop(n.data, n.ref, axis=1, offset=[1, 1, 0])
    n.s1, n.s2 = L.Split(n.data, ntop=2)
    L.Silence(n.s2, ntop=0)
    r = forward(n.to_proto(), None, {"data": x, "ref": np.zeros((1, 2, 1, 2), np.float32)})
    assert np.array_equal(r["cat"], np.concatenate([x[:, 3:], x[:, :1]], 1))
    assert np.array_equal(r["b"], x[:, 1:3]) and np.array_equal(r["h1"], x[:, :, 1:])
    assert r["flat"].shape == (1, 4, 6) and r["resh"].shape == (1, 8, 3)
    assert np.array_equal(r["crop"], x[:, 1:3, 1:2, 0:2])
    assert np.array_equal(r["s1"], x)


def test_softmax_argmax():
    x = np.array([[1, 3, 3, 0], [4, 2, 1, 5]], np.float32)
    sm = run1(L.Softmax, x)
    e = np.exp(x - x.max(1, keepdims=True))
    np.testing.assert_allclose(sm, e / e.sum(1, keepdims=True), rtol=1e-6)
    # ties: Caffe sorts (value, index) pairs descending, so index 2 comes before 1
    am = run1(lambda d: L.ArgMax(d, top_k=2), x)
    assert am.shape == (2, 1, 2) and np.array_equal(am[:, 0], [[2, 1], [3, 0]])
    amv = run1(lambda d: L.ArgMax(d, top_k=2, out_max_val=True), x)
    assert np.array_equal(amv, [[[2, 1], [3, 3]], [[3, 0], [5, 4]]])  # indices, then values
    ax = run1(lambda d: L.ArgMax(d, axis=0), x)
    assert np.array_equal(ax, [[1, 0, 0, 1]])
    axv = run1(lambda d: L.ArgMax(d, axis=1, out_max_val=True), x)
    assert np.array_equal(axv, [[3], [5]])


def test_lrn_both_regions():
    x = np.arange(1, 5, dtype=np.float32).reshape(1, 4, 1, 1)
    out = run1(lambda d: L.LRN(d, local_size=3, alpha=3.0, beta=0.5, k=2.0), x)
    # ACROSS_CHANNELS: scale_c = k + alpha/n * sum of x^2 over c-1..c+1 (zero padded)
    sums = np.array([1 + 4, 1 + 4 + 9, 4 + 9 + 16, 9 + 16])
    np.testing.assert_allclose(out.ravel(), x.ravel() * (2 + sums) ** -0.5, rtol=1e-6)
    y = np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3)
    out2 = run1(lambda d: L.LRN(d, local_size=3, alpha=9.0, beta=1.0,
                                norm_region=P.LRN.WITHIN_CHANNEL), y)
    # WITHIN_CHANNEL: AVE pool of x^2 over 3x3 (pad 1, divisor 9 everywhere), then
    # x * (1 + alpha * avg)^-beta; centre: sum of squares 0..8 = 204 -> 4 / (1 + 204)
    assert np.isclose(out2[0, 0, 1, 1], 4 / 205)
    # corner (0, 0): 0^2 + 1^2 + 3^2 + 4^2 = 26 -> 0; corner (2, 2): 16+25+49+64 = 154
    assert np.isclose(out2[0, 0, 2, 2], 8 / (1 + 154))


def test_dummy_data_and_in_place_final_values():
    n = NetSpec()
    n.c = L.DummyData(shape=dict(dim=[1, 2]), data_filler=dict(type="constant", value=-3))
    n.r = L.ReLU(n.c)
    n.p = L.Power(n.c, shift=1, in_place=True)
    r = forward(n.to_proto())
    assert np.array_equal(r["r"], [[0, 0]])
    assert np.array_equal(r["c"], [[-2, -2]])  # the in-place Power's value
    assert r.outputs == ["c", "r"]


# -- errors and the CLI -----------------------------------------------------------

def test_errors_name_type_and_layer():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 2]))
    n.odd = L.Frobnicate(n.data)
    with pytest.raises(NetdslError) as e:
        forward(n.to_proto(), None, {"data": np.zeros((1, 2))})
    assert "Frobnicate" in str(e.value) and "odd" in str(e.value)
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 2]))
    n.fc = L.InnerProduct(n.data, num_output=2)
    with pytest.raises(NetdslError, match="no weights"):
        forward(n.to_proto(), None, {"data": np.zeros((1, 2))})
    with pytest.raises(NetdslError, match="no array given for input 'data'"):
        forward(n.to_proto(), {"fc": [np.zeros((2, 2)), np.zeros(2)]})


def _small_net(tmp_path):
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 4, 4]))
    n.up = L.Deconvolution(n.data, num_output=1, kernel_size=4, stride=2, pad=1,
                           bias_term=False)
    n.pool = L.Pooling(n.up, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    proto = str(tmp_path / "net.prototxt")
    model = str(tmp_path / "net.caffemodel")
    write(proto, n.to_proto())
    write_caffemodel(model, {"up": [bilinear_kernel(4).reshape(1, 1, 4, 4)]})
    return proto, model


def test_cli_run_writes_npz(tmp_path, capsys):
    proto, model = _small_net(tmp_path)
    np.save(str(tmp_path / "x.npy"), X44)
    out = str(tmp_path / "out.npz")
    assert main(["run", proto, model, "--input", "data=%s" % (tmp_path / "x.npy"),
                 "-o", out, "--blobs", "up,pool"]) == 0
    with np.load(out) as z:
        assert sorted(z.files) == ["pool", "up"]
        assert np.array_equal(z["up"][0, 0], BILINEAR_TABLE)
        # 2x2 max of the table: each block's bottom-right value, e.g. rows 0-1 cols 0-1 -> 2.25
        assert z["pool"][0, 0, 0, 0] == 2.25
    assert "up 1x1x8x8" in capsys.readouterr().out


def test_cli_run_missing_input_is_an_error(tmp_path, capsys):
    proto, model = _small_net(tmp_path)
    out = str(tmp_path / "out.npz")
    assert main(["run", proto, model, "-o", out]) == 2
    assert "--random-input" in capsys.readouterr().err
    assert not os.path.exists(out)
    assert main(["run", proto, model, "--random-input", "-o", out]) == 0
    with np.load(out) as z:
        assert z.files == ["pool"]  # default: the net's outputs
