"""netdsl.torch.convert / netdsl from-torch: PyTorch models converted to stock
Caffe layers, checked three ways.

Expected values come from PyTorch itself (CPU, float32) on the same inputs:
netdsl's numpy forward (the parity check built into every conversion) and
OpenCV dnn (cv2.dnn.readNetFromCaffe on the written files) must both be within
a relative error of 1e-4 (max abs error over the output's largest magnitude).
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

from dnn_check import opencv_forward, require

TOL = 1e-4
HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def torch():
    mod = require("torch")
    require("cv2")
    mod.set_num_threads(2)
    return mod


def rel_err(ours, ref) -> float:
    ours = np.asarray(ours, np.float64).reshape(ref.shape)
    return float(np.abs(ours - ref).max() / max(np.abs(ref).max(), 1e-30))


def check_files(tmp_path, result, model, inputs):
    """Write the conversion; BVLC's schema parses the prototxt, open_caffemodel
    reads the weights back, OpenCV's outputs match PyTorch's.  Returns the
    largest OpenCV relative error."""
    import torch
    from netdsl.prototxt import read_net
    from netdsl.weights import open_caffemodel
    out = tmp_path / "out"
    result.save(str(out))
    proto, weights = str(out / "deploy.prototxt"), str(out / "model.caffemodel")
    net = read_net(proto)                       # BVLC schema: fork fields would not parse
    assert [lp.name for lp in net.layer] == [lp.name for lp in result.net.layer]
    with open_caffemodel(weights) as cm:
        assert set(cm.names()) == set(result.weights)
        for name, blobs in result.weights.items():
            for a, b in zip(cm.arrays(name), blobs):
                assert np.array_equal(np.asarray(a).reshape(b.shape), b)
    report = json.loads((out / "parity.json").read_text())
    assert report["ok"] is True
    with torch.no_grad():
        ref = model(*inputs)
    from torch.utils import _pytree as pytree
    refs = [r.numpy() for r in pytree.tree_flatten(ref)[0]]
    got = opencv_forward(proto, weights, {n: x.numpy() for n, x in zip(result.inputs, inputs)},
                         result.outputs)
    errs = [rel_err(got[n], r) for n, r in zip(result.outputs, refs)]
    return max(errs)


def pitfall_cases():
    sys.path.insert(0, HERE)
    from torch_cases import pitfalls
    return sorted(pitfalls())


@pytest.mark.parametrize("case", pitfall_cases() if __import__("importlib").util.find_spec(
    "torch") else [])
def test_pitfall_module(tmp_path, torch, case):
    from torch_cases import pitfalls, randomise
    from netdsl.torch import convert
    model, shape = pitfalls()[case]
    torch.manual_seed(1)
    model = randomise(model)
    x = torch.randn(shape)
    result = convert(model, x, target="opencv")
    assert result.parity.ok, result.parity.table()
    assert result.parity.max_rel <= TOL
    assert check_files(tmp_path, result, model, (x,)) <= TOL


def coverage_cases():
    sys.path.insert(0, HERE)
    from torch_cases import coverage
    return sorted(coverage())


@pytest.mark.parametrize("case", coverage_cases() if __import__("importlib").util.find_spec(
    "torch") else [])
def test_op_family(tmp_path, torch, case):
    """Every converter family on small modules with many outputs each."""
    from torch_cases import coverage, randomise
    from netdsl.torch import convert
    model, shapes, target = coverage()[case]
    torch.manual_seed(2)
    model = randomise(model)
    xs = tuple(torch.randn(s) for s in shapes)
    result = convert(model, xs, target=target)
    assert result.parity.ok, result.parity.table()
    assert check_files(tmp_path, result, model, xs) <= TOL


def test_fold_bn_removes_batch_norm(torch):
    from torch_cases import UNet, randomise
    from netdsl.torch import convert
    torch.manual_seed(3)
    model = randomise(UNet())
    x = torch.randn(1, 3, 16, 16)
    plain = convert(model, x)
    folded = convert(model, x, fold_bn=True)
    types = [lp.type for lp in folded.net.layer]
    assert "BatchNorm" not in types and "BatchNorm" in [lp.type for lp in plain.net.layer]
    assert folded.parity.ok, folded.parity.table()
    assert len(folded.weights["enc1.0"]) == 2          # the convolution got the bias


def test_names_inputs_outputs(torch):
    from torch_cases import Shapes
    from netdsl.torch import convert
    result = convert(Shapes().eval(), torch.randn(1, 4, 5, 6), input_names=["img"],
                     check=False)
    assert list(result.inputs) == ["img"]
    assert result.outputs == ["output_%d" % i for i in range(11)]
    named = convert(Shapes().eval(), torch.randn(1, 4, 5, 6), check=False,
                    output_names=["a%d" % i for i in range(11)])
    assert named.outputs[0] == "a0"
    producers = {t: lp for lp in named.net.layer for t in lp.top}
    for name in named.outputs:       # each output is the single top of its own layer
        assert len(producers[name].top) == 1


def test_unsupported_op_is_located(torch):
    from netdsl.errors import NetdslError
    from netdsl.torch import convert

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1), torch.nn.Hardshrink())

        def forward(self, x):
            return self.body(x) * 2

    with pytest.raises(NetdslError) as err:
        convert(Net().eval(), torch.randn(1, 3, 4, 4))
    text = str(err.value)
    assert "aten.hardshrink" in text and "body.1" in text and "Hardshrink" in text
    assert err.value.file == __file__ and err.value.line is not None


def test_reductions_over_any_axes_are_poolings(torch, tmp_path):
    """mean/sum/amax over any axes: one run of adjacent axes at a time, a Pooling
    (or a Convolution of ones) over the (P, 1, R, S) view; no Reduction layer, so
    OpenCV runs them too.  Expected values: PyTorch's."""
    from netdsl.torch import convert

    class Net(torch.nn.Module):
        def forward(self, x):
            return (x.mean(-1), x.sum(1), x.amax((1, 3)), x.mean((0, 2)),
                    x.view(2, 3, 2, 2, 5).sum(2), x.flatten(2).transpose(1, 2).mean(1))

    x = torch.randn(2, 3, 4, 5)
    result = convert(Net().eval(), x, target="opencv")
    assert result.parity.ok, result.parity.table()
    assert "Reduction" not in {lp.type for lp in result.net.layer}
    assert check_files(tmp_path, result, Net().eval(), (x,)) <= TOL


@pytest.mark.parametrize("pool", ["avg", "max"])
@pytest.mark.parametrize("size,out", [((7, 7), 3), ((2, 2), 7), ((5, 5), 3), ((2, 8), 4),
                                      ((9, 6), (4, 5)), ((1, 1), 7)])
def test_adaptive_pooling_any_sizes(torch, tmp_path, pool, size, out):
    """PyTorch's windows [floor(i*H/o), ceil((i+1)*H/o)) per axis: one size at one
    step is a Pooling (7 -> 3: kernel 3, stride 2), a repeated pixel a
    Deconvolution of ones, and windows of different sizes (5 -> 3, 2 -> 7)
    Slice + Pooling each + Concat.  Expected values: PyTorch's."""
    from netdsl.torch import convert
    mod = (torch.nn.AdaptiveAvgPool2d if pool == "avg" else torch.nn.AdaptiveMaxPool2d)(out)
    x = torch.randn((1, 3) + size)
    result = convert(mod.eval(), x, target="opencv")
    assert result.parity.ok, result.parity.table()
    assert check_files(tmp_path, result, mod.eval(), (x,)) <= TOL


def test_training_mode_is_refused(torch):
    from netdsl.errors import NetdslError
    from netdsl.torch import convert
    with pytest.raises(NetdslError, match="eval"):
        convert(torch.nn.BatchNorm2d(2), torch.randn(1, 2, 3, 3))


def test_saved_models_load(tmp_path, torch):
    """torch.save(model) and torch.export.save files are MODEL arguments too."""
    from torch_cases import SE
    from netdsl.torch.cli import load_model
    from netdsl.torch import convert
    model = SE().eval()
    x = torch.randn(1, 8, 6, 6)
    torch.save(model, str(tmp_path / "m.pt"))
    torch.export.save(torch.export.export(model, (x,)), str(tmp_path / "m.pt2"))
    for f in ("m.pt", "m.pt2"):
        loaded = load_model(str(tmp_path / f))
        result = convert(loaded, x)
        assert result.parity.ok, result.parity.table()


# name -> (builder keyword arguments, input shape); small inputs keep CI fast
TORCHVISION = {
    "resnet18": ({}, (1, 3, 64, 64)),
    "resnet50": ({}, (1, 3, 64, 64)),
    "vgg16_bn": ({}, (1, 3, 32, 32)),
    "mobilenet_v2": ({}, (1, 3, 64, 64)),
    "mobilenet_v3_large": ({}, (1, 3, 64, 64)),
    "squeezenet1_1": ({}, (1, 3, 64, 64)),
    "shufflenet_v2_x1_0": ({}, (1, 3, 64, 64)),
    "efficientnet_b0": ({}, (1, 3, 64, 64)),
    "regnet_y_400mf": ({}, (1, 3, 64, 64)),
    "densenet121": ({}, (1, 3, 64, 64)),
    "fcn_resnet50": ({"weights": None, "weights_backbone": None}, (1, 3, 64, 64)),
    "deeplabv3_mobilenet_v3_large": ({"weights": None, "weights_backbone": None},
                                     (1, 3, 64, 64)),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_torchvision_model(tmp_path, torch, name):
    tv = require("torchvision")
    from torch_cases import randomise
    from netdsl.torch import convert
    kwargs, shape = TORCHVISION[name]
    torch.manual_seed(0)
    builder = getattr(tv.models.segmentation, name, None) or getattr(tv.models, name)
    model = randomise(builder(**kwargs))
    x = torch.randn(shape)
    result = convert(model, x, input_names=["data"])
    assert result.parity.ok, result.parity.table()
    assert result.parity.max_rel <= TOL
    if "fcn" in name or "deeplab" in name:
        assert result.outputs == ["out"]
    assert check_files(tmp_path, result, model, (x,)) <= TOL


def _convert_with_wrong_tanh(model, x):
    """Convert with a deliberately wrong converter for tanh (a Sigmoid)."""
    from netdsl.torch import Blob, convert, lookup, register_converter
    from netdsl.convert.table import CONVERTERS
    stock = lookup("aten.tanh")
    try:
        register_converter("aten.tanh")(lambda cx, op: Blob(cx.L.Sigmoid(op["input"].top),
                                                           op.out_shape))
        return convert(model, x)
    finally:
        CONVERTERS["aten.tanh"] = stock


def test_divergence_names_the_first_wrong_blob(torch):
    """A converter that is wrong in the middle of the net: the report points at
    its blob (not at the output, where the error has propagated)."""
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(3, 4, 3)
            self.act = torch.nn.Tanh()
            self.conv2 = torch.nn.Conv2d(4, 2, 3)

        def forward(self, x):
            return self.conv2(self.act(self.conv1(x)))

    result = _convert_with_wrong_tanh(Net().eval(), torch.randn(1, 3, 8, 8))
    assert not result.parity.ok
    d = result.parity.divergence
    assert d["blob"] == "act" and "tanh" in d["op"] and d["module"] == "act"
    assert d["source"].startswith(__file__)
    assert "first divergence: blob 'act'" in result.parity.table()


def test_divergence_after_an_in_place_op_names_the_wrong_blob(torch):
    """A blob overwritten later by an in-place op (conv, then relu_) is compared
    with its own value, not the overwritten one: the report names the wrong
    layer after it, not the conv."""
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(3, 4, 3)
            self.act = torch.nn.ReLU(inplace=True)
            self.soft = torch.nn.Tanh()

        def forward(self, x):
            return self.soft(self.act(self.conv1(x)))

    result = _convert_with_wrong_tanh(Net().eval(), torch.randn(1, 3, 8, 8))
    assert not result.parity.ok
    assert result.parity.divergence["module"] == "soft", result.parity.divergence


@pytest.mark.parametrize("kwargs,size", [
    ({"scale_factor": 2, "mode": "bilinear", "align_corners": True}, (40, 40)),
    ({"size": (101, 67), "mode": "bilinear", "align_corners": False}, (35, 29)),
    ({"size": (90, 41), "mode": "nearest"}, (35, 29))])
def test_large_resize_is_separable(torch, tmp_path, kwargs, size):
    """A resize whose dense interpolation matrix would pass 2**20 values goes one
    axis at a time (InnerProduct along W, a channel-grouped Convolution along H):
    the same values as PyTorch's F.interpolate, with Wo*W + C*Ho*H weights."""
    from netdsl.torch import convert

    class Net(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.interpolate(x, **kwargs)

    x = torch.randn((1, 3) + size)
    result = convert(Net().eval(), x, target="opencv")
    assert result.parity.ok, result.parity.table()
    assert sum(a.size for v in result.weights.values() for a in v) < 1 << 20
    assert check_files(tmp_path, result, Net().eval(), (x,)) <= TOL


def test_large_nchw_nhwc_permutes(torch, tmp_path):
    """Permutations past the 4096-value permutation matrix that swap two groups of
    axes (NCHW <-> NHWC, as LayerNorm2d in ConvNeXt does): Slice / Reshape / Concat
    copies.  Expected values: PyTorch's."""
    from netdsl.torch import convert

    class Net(torch.nn.Module):
        def forward(self, x):
            y = x.permute(0, 2, 3, 1)
            return y, torch.relu(y).permute(0, 3, 1, 2), x.flatten(2).transpose(1, 2)

    x = torch.randn(1, 96, 8, 8)
    result = convert(Net().eval(), x, target="opencv")
    assert result.parity.ok and result.parity.max_rel == 0, result.parity.table()
    assert check_files(tmp_path, result, Net().eval(), (x,)) <= TOL


@pytest.mark.parametrize("size", [(1, 1), (1, 5), (4, 1)])
def test_depthwise_on_one_pixel_maps_for_opencv(torch, tmp_path, size):
    """OpenCV dnn computes a 3x3 depthwise Convolution on a map one pixel high or
    wide wrongly; for target="opencv" the kernel is cut to the one tap that meets
    the input (the others only multiply padding), which gives the same values.
    Expected: PyTorch's, in netdsl's forward and in OpenCV."""
    from netdsl.torch import convert
    model = torch.nn.Sequential(torch.nn.Conv2d(16, 16, 3, padding=1, groups=16),
                                torch.nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16))
    x = torch.randn((1, 16) + size)
    result = convert(model.eval(), x, target="opencv")
    assert result.parity.ok, result.parity.table()
    assert check_files(tmp_path, result, model.eval(), (x,)) <= TOL
    for lp in result.net.layer:
        if lp.type == "Convolution":
            cp = lp.convolution_param
            assert (cp.kernel_h == 1) == (size[0] == 1) and (cp.kernel_w == 1) == (size[1] == 1)


def test_a_shared_prelu_slope_loads_in_caffe_and_opencv(torch, tmp_path):
    """nn.PReLU() has one slope: Caffe's channel_shared PReLU, whose slope is a
    0-axis Blob (prelu_layer.cpp).  The caffemodel stores it as num/channels/height/
    width 1,1,1,1, which Blob::ShapeEquals (blob.cpp) accepts for a 0-axis blob and
    OpenCV loads; the save checks every blob against the net as Caffe's loader would."""
    from netdsl.proto import caffe_pb2
    from netdsl.torch import convert
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.PReLU(init=0.3)).eval()
    x = torch.randn(1, 3, 6, 6)
    res = convert(model, x)
    out = tmp_path / "out"
    res.save(str(out))
    saved = caffe_pb2.NetParameter.FromString((out / "model.caffemodel").read_bytes())
    prelu = [l for l in saved.layer if l.type == "PReLU"]
    assert len(prelu) == 1 and len(prelu[0].blobs) == 1
    blob = prelu[0].blobs[0]
    assert (blob.num, blob.channels, blob.height, blob.width) == (1, 1, 1, 1)
    assert not blob.HasField("shape") and np.float32(blob.data[0]) == np.float32(0.3)
    want = model(x).detach().numpy()                 # PyTorch's own PReLU
    got = opencv_forward(str(out / "deploy.prototxt"), str(out / "model.caffemodel"),
                         {list(res.inputs)[0]: x.numpy()}, res.outputs)
    np.testing.assert_allclose(got[res.outputs[0]], want, rtol=1e-5, atol=1e-6)
