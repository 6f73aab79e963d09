"""PyTorch-parity recipes (netdsl.ops.pytorch) against PyTorch itself, run both by
the numpy forward and by OpenCV dnn on the written prototxt + caffemodel.

Expected values come from PyTorch (CPU, float32) on the same random inputs;
the bound is a max abs error of 1e-5."""
from __future__ import annotations

import numpy as np
import pytest

from dnn_check import max_err, opencv_forward, require, save_net
from netdsl import NetSpec, layers as L
from netdsl.forward import forward
from netdsl.ops import pytorch as T

TOL = 1e-5


@pytest.fixture(scope="module")
def torch():
    mod = require("torch")
    require("cv2")
    mod.set_num_threads(1)
    return mod


def check(tmp_path, torch, x, build, expected, tol=TOL):
    """Build ``out = build(data, shape, weights)``; compare numpy and OpenCV with ``expected``."""
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=list(x.shape)))
    weights = {}
    n.out = build(n.data, x.shape, weights)
    net = n.to_proto()
    proto, model = save_net(tmp_path, net, weights)
    expected = expected.detach().numpy() if hasattr(expected, "detach") else expected
    ours = forward(net, weights, {"data": x})["out"]
    assert ours.shape == expected.shape
    assert max_err(ours, expected) <= tol, "numpy forward"
    theirs = opencv_forward(proto, model, {"data": x}, ["out"])["out"]
    assert tuple(theirs.shape) == expected.shape
    assert max_err(theirs, expected) <= tol, "OpenCV dnn"
    return net


def rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("f", [2, 3, 4, 5, 8])
@pytest.mark.parametrize("hw", [(1, 1), (2, 3), (5, 4), (7, 9)])
def test_bilinear_align_corners_false(tmp_path, torch, f, hw):
    rng = np.random.default_rng(f * 100 + hw[0] * 10 + hw[1])
    x = rand(rng, 2, 3, *hw)
    want = torch.nn.functional.interpolate(torch.from_numpy(x), scale_factor=f, mode="bilinear",
                                           align_corners=False)
    net = check(tmp_path, torch, x,
                lambda d, s, w: T.interpolate(d, s, scale_factor=f, mode="bilinear"), want)
    assert "Deconvolution" in [lp.type for lp in net.layer]  # not the matrix fallback


@pytest.mark.parametrize("f", [2, 3, 4, 7])
def test_nearest_integer_scale(tmp_path, torch, f):
    rng = np.random.default_rng(f)
    x = rand(rng, 1, 4, 5, 6)
    want = torch.nn.functional.interpolate(torch.from_numpy(x), scale_factor=f, mode="nearest")
    check(tmp_path, torch, x, lambda d, s, w: T.interpolate(d, s, scale_factor=f, mode="nearest"),
          want)


@pytest.mark.parametrize("kwargs", [
    dict(scale_factor=2, align_corners=True),
    dict(size=(7, 5), align_corners=True),
    dict(size=(9, 11), align_corners=False),
    dict(size=(3, 2), align_corners=False),  # downsampling
    dict(scale_factor=1.5, align_corners=False),
    dict(size=(10, 7), mode="nearest"),
])
def test_resize_by_matrix(tmp_path, torch, kwargs):
    rng = np.random.default_rng(len(str(kwargs)))
    x = rand(rng, 2, 3, 4, 5)
    kw = dict(kwargs)
    mode = kw.pop("mode", "bilinear")
    want = torch.nn.functional.interpolate(torch.from_numpy(x), mode=mode, **kw)
    net = check(tmp_path, torch, x,
                lambda d, s, w: T.interpolate(d, s, mode=mode, name="resize", weights=w, **kw),
                want)
    assert "InnerProduct" in [lp.type for lp in net.layer]


def test_resize_matrix_goes_one_axis_at_a_time_when_large(torch):
    """128 x 128 from 64 x 64 would be a 16384 x 4096 matrix: instead an
    InnerProduct along W (128 x 64) and a channel-grouped Convolution along H
    (C*128 kernels of 64 x 1); values: test_from_torch's separable test."""
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 2, 64, 64]))
    weights = {}
    n.up = T.resize_matrix(n.data, (1, 2, 64, 64), (128, 128), align_corners=True,
                           name="up", weights=weights)
    net = n.to_proto()
    assert [lp.type for lp in net.layer] == ["Input", "InnerProduct", "Convolution", "Reshape"]
    assert weights["up/cols"][0].shape == (128, 64)
    assert weights["up"][0].shape == (256, 1, 64, 1)


@pytest.mark.parametrize("cfg", [
    dict(stride=2, padding=1, output_padding=1, kernel=3),
    dict(stride=2, padding=0, output_padding=1, kernel=3),      # output_padding > padding
    dict(stride=3, padding=1, output_padding=2, kernel=4),      # extends by zero rows
    dict(stride=2, padding=2, output_padding=0, kernel=5, dilation=2),
    dict(stride=(2, 1), padding=(1, 0), output_padding=(1, 0), kernel=(4, 3), groups=2),
    dict(stride=1, padding=1, output_padding=0, kernel=3, dilation=3, groups=2),
    dict(stride=2, padding=0, output_padding=1, kernel=2, dilation=2),  # op < dilation
])
def test_conv_transpose2d(tmp_path, torch, cfg):
    rng = np.random.default_rng(len(str(cfg)))
    groups = cfg.get("groups", 1)
    x = rand(rng, 2, 4, 5, 6)
    k = cfg["kernel"]
    kh, kw = (k, k) if isinstance(k, int) else k
    mod = torch.nn.ConvTranspose2d(4, 6, (kh, kw), stride=cfg["stride"], padding=cfg["padding"],
                                   output_padding=cfg["output_padding"], groups=groups,
                                   dilation=cfg.get("dilation", 1))
    with torch.no_grad():
        mod.weight.copy_(torch.from_numpy(rand(rng, *mod.weight.shape)))
        mod.bias.copy_(torch.from_numpy(rand(rng, 6)))
        want = mod(torch.from_numpy(x))
    wt, b = mod.weight.detach().numpy(), mod.bias.detach().numpy()
    check(tmp_path, torch, x, lambda d, s, w: T.conv_transpose2d(
        d, s, wt, b, stride=cfg["stride"], padding=cfg["padding"],
        output_padding=cfg["output_padding"], groups=groups, dilation=cfg.get("dilation", 1),
        name="deconv", weights=w), want, tol=2e-5 if groups == 1 else TOL)


POOLS = [
    dict(k=3, s=2, p=0), dict(k=3, s=2, p=1), dict(k=2, s=2, p=1), dict(k=3, s=3, p=1),
    dict(k=(3, 2), s=(2, 1), p=(1, 0)), dict(k=5, s=3, p=2),
]


@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("cfg", POOLS)
@pytest.mark.parametrize("hw", [(7, 8), (10, 13)])
def test_max_pool2d(tmp_path, torch, cfg, ceil_mode, hw):
    rng = np.random.default_rng(hw[0] + hw[1])
    x = rand(rng, 1, 3, *hw)
    want = torch.nn.functional.max_pool2d(torch.from_numpy(x), cfg["k"], cfg["s"], cfg["p"],
                                          ceil_mode=ceil_mode)
    check(tmp_path, torch, x, lambda d, s, w: T.max_pool2d(d, s, cfg["k"], cfg["s"], cfg["p"],
                                                          ceil_mode=ceil_mode), want)


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("cfg", POOLS)
@pytest.mark.parametrize("hw", [(7, 8), (10, 13)])
def test_avg_pool2d(tmp_path, torch, cfg, ceil_mode, count_include_pad, hw):
    rng = np.random.default_rng(hw[0] * hw[1])
    x = rand(rng, 1, 3, *hw)
    want = torch.nn.functional.avg_pool2d(torch.from_numpy(x), cfg["k"], cfg["s"], cfg["p"],
                                          ceil_mode=ceil_mode,
                                          count_include_pad=count_include_pad)
    check(tmp_path, torch, x, lambda d, s, w: T.avg_pool2d(
        d, s, cfg["k"], cfg["s"], cfg["p"], ceil_mode=ceil_mode,
        count_include_pad=count_include_pad), want)


@pytest.mark.parametrize("pads,stride", [
    ((0, 1, 0, 1), 2),   # TensorFlow-style SAME padding of a stride-2 conv
    ((2, 0, 1, 3), 1),
    ((1, 2, 2, 1), 2),
    ((0, 0, 3, 0), 1),
])
def test_asymmetric_pad_then_conv(tmp_path, torch, pads, stride):
    rng = np.random.default_rng(sum(pads) + stride)
    x = rand(rng, 2, 3, 6, 7)
    wt, b = rand(rng, 5, 3, 3, 3), rand(rng, 5)
    F = torch.nn.functional
    want = F.conv2d(F.pad(torch.from_numpy(x), pads), torch.from_numpy(wt), torch.from_numpy(b),
                     stride=stride)
    check(tmp_path, torch, x, lambda d, s, w: T.pad_conv2d(d, s, pads, wt, b, stride=stride,
                                                           name="conv", weights=w), want)


@pytest.mark.parametrize("pads,value", [((1, 2, 0, 3), 0.0), ((0, 0, 2, 1), 1.5),
                                        ((-1, 2, 1, -2), 0.0)])
def test_pad_constant(tmp_path, torch, pads, value):
    rng = np.random.default_rng(3)
    x = rand(rng, 1, 2, 4, 5)
    want = torch.nn.functional.pad(torch.from_numpy(x), pads, value=value)
    check(tmp_path, torch, x, lambda d, s, w: T.pad(d, s, pads, value), want)


@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("shape", [(1, 3, 5, 6), (2, 4, 8, 8), (3, 2, 1, 7)])
def test_instance_norm(tmp_path, torch, affine, shape):
    rng = np.random.default_rng(shape[0] * 7 + affine)
    x = (rand(rng, *shape) * 3 + 1).astype(np.float32)
    mod = torch.nn.InstanceNorm2d(shape[1], eps=1e-5, affine=affine)
    if affine:
        with torch.no_grad():
            mod.weight.copy_(torch.from_numpy(rand(rng, shape[1])))
            mod.bias.copy_(torch.from_numpy(rand(rng, shape[1])))
    want = mod(torch.from_numpy(x))
    g = mod.weight.detach().numpy() if affine else None
    b = mod.bias.detach().numpy() if affine else None
    check(tmp_path, torch, x, lambda d, s, w: T.instance_norm(
        d, s, 1e-5, g, b, affine=affine, name="inorm", weights=w), want)


def test_constants(tmp_path, torch):
    rng = np.random.default_rng(5)
    x = rand(rng, 2, 3, 4)
    t = torch.from_numpy(x)
    check(tmp_path, torch, x, lambda d, s, w: T.add_constant(d, 0.37), t + 0.37)
    check(tmp_path, torch, x, lambda d, s, w: T.mul_constant(d, -1.7), t * -1.7)
    check(tmp_path, torch, x, lambda d, s, w: T.mul_constant(d, 2.5, 0.25), t * 2.5 + 0.25)


# -- the recipes as spec ops ------------------------------------------------------

def _expand_and_compile(op, top, args, shape):
    from netdsl import NetdslError
    from netdsl.ops.base import OpCall
    from netdsl.spec.compile import compile_records

    def err(node, message, hint=None, trace=(), field=None):
        return NetdslError(message, hint=hint, field=field)
    call = OpCall(op, top, dict(args, bottom="data", shape=list(shape)), {}, None, (), err)
    return compile_records(T.SPEC_OPS[op](call), {"data": list(shape)}).net


def test_spec_ops_compile_to_the_same_recipes(torch):
    rng = np.random.default_rng(11)
    x = rand(rng, 1, 3, 5, 4)
    F = torch.nn.functional
    net = _expand_and_compile("torch_interpolate", "up", {"scale_factor": 2}, x.shape)
    want = F.interpolate(torch.from_numpy(x), scale_factor=2, mode="bilinear").numpy()
    assert max_err(forward(net, None, {"data": x})["up"], want) <= TOL
    net = _expand_and_compile("torch_avg_pool2d", "pool", {
        "kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False}, x.shape)
    want = F.avg_pool2d(torch.from_numpy(x), 3, 2, 1, count_include_pad=False).numpy()
    assert max_err(forward(net, None, {"data": x})["pool"], want) <= TOL
    wt, b = rand(rng, 3, 2, 3, 3), rand(rng, 2)
    net = _expand_and_compile("torch_conv_transpose2d", "dec", {
        "out_channels": 2, "kernel_size": 3, "stride": 2, "padding": 1, "output_padding": 1,
        "bias_term": True, "name": "dec_w"}, x.shape)
    want = F.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(wt), torch.from_numpy(b),
                              stride=2, padding=1, output_padding=1).numpy()
    assert max_err(forward(net, {"dec_w": [wt, b]}, {"data": x})["dec"], want) <= TOL


def test_spec_op_refuses_matrix_resize():
    from netdsl import NetdslError
    with pytest.raises(NetdslError, match="interpolation matrix"):
        _expand_and_compile("torch_interpolate", "up", {"size": [7, 7], "align_corners": True},
                            (1, 1, 3, 3))
