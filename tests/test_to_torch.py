"""netdsl.export.to_torch / netdsl to-torch: Caffe nets exported as PyTorch code.

The reference is netdsl's numpy forward (tests/test_forward.py and the OpenCV
cross-checks pin it to Caffe's layer code).  Each test builds a small net with
the parameter forms that change the PyTorch code (the small nets' builders and
the random weights come from tests/test_to_onnx.py), exports it, and checks the
export's own parity report; ``fresh_check`` also imports the written module in
the test and runs it on an input of its own.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from dnn_check import require
from test_to_onnx import (NEURONS, PUBLISHED, _caffe_pooled, _fork_net, _fork_weights,  # noqa: F401
                          _small_net, data, random_weights, rel_err, schemas)

from netdsl import layers as L, params as P
from netdsl.errors import NetdslError
from netdsl.forward import forward

TOL = 1e-4
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


@pytest.fixture(scope="module", autouse=True)
def backends():
    require("torch")


@pytest.fixture(autouse=True)
def bvlc_schema_after():
    """A fork net's test selects its schema (and pack); the next test starts on BVLC's."""
    yield
    from netdsl.netspec import use_schema
    use_schema(None)


def fresh_check(net, weights=None, inputs=None, tmp=None, seed=7, **kw):
    """Export, assert the parity report holds, then load the written module afresh
    and compare it with netdsl's forward on another seeded input."""
    import tempfile
    from netdsl.export.parity import reference_net
    from netdsl.export.torch_check import load_model
    from netdsl.export.torch_export import to_torch
    import torch
    res = to_torch(net, weights, inputs=inputs, **kw)
    assert res.parity is not None and res.parity.ok, res.parity.table() + res.source
    assert len(res.parity.rows) == 2 * len(res.outputs)
    work = tmp or tempfile.mkdtemp()
    res.save(str(work))
    model = load_model(str(work))
    rng = np.random.default_rng(seed)
    feeds = {k: rng.standard_normal(s).astype(np.float32) for k, s in res.inputs.items()}
    ref = forward(reference_net(res.walk), weights, feeds)
    with torch.no_grad():
        got = model(*[torch.from_numpy(v) for v in feeds.values()])
    assert list(got) == res.outputs
    for name in res.outputs:
        assert rel_err(got[name].numpy(), ref[name]) <= TOL, (name, res.source)
    _one_image_more(model, res, weights, feeds)
    return res


def _one_image_more(model, res, weights, feeds):
    """The written module on one image more than the net was shaped for (the check's
    images, then its first again, so pooling masks meet the values they met): a
    PyTorch module takes any batch, so no rule may write the batch into its code (a
    net whose own layers fix the batch, which netdsl's forward then refuses, is left
    out)."""
    import torch
    from netdsl.errors import NetdslError
    from netdsl.export.parity import reference_net
    feeds = {k: np.concatenate([v, v[:1]]) for k, v in feeds.items()}
    try:
        ref = forward(reference_net(res.walk), weights, feeds)
    except NetdslError:
        return
    with torch.no_grad():
        got = model(*[torch.from_numpy(v) for v in feeds.values()])
    for name in res.outputs:
        assert tuple(got[name].shape) == ref[name].shape, (name, res.source)
        assert rel_err(got[name].numpy(), ref[name]) <= TOL, (name, res.source)


@pytest.mark.parametrize("kw", [
    dict(num_output=6, kernel_size=3, pad=1),
    dict(num_output=6, kernel_size=3, stride=2, group=3, bias_term=False),
    dict(num_output=4, kernel_h=3, kernel_w=2, pad_h=2, pad_w=0, stride_h=1, stride_w=2,
         dilation=2),
])
def test_convolution(kw):
    n = data((2, 6, 11, 10))
    n.conv = L.Convolution(n.data, **kw)
    net = n.to_proto()
    res = fresh_check(net, random_weights(net))
    assert "nn.Conv2d(6, " in res.source


@pytest.mark.parametrize("kw", [
    dict(num_output=4, kernel_size=4, stride=2, pad=1),
    dict(num_output=6, kernel_size=4, stride=2, group=6, bias_term=False),
    dict(num_output=4, kernel_size=3, stride=3, pad=2, dilation=2),
])
def test_deconvolution(kw):
    n = data((1, 6, 5, 7))
    n.up = L.Deconvolution(n.data, convolution_param=kw)
    net = n.to_proto()
    res = fresh_check(net, random_weights(net))
    assert "nn.ConvTranspose2d(" in res.source


@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize("size,k,s,p", [(7, 3, 2, 0), (6, 3, 2, 1), (5, 2, 2, 1), (8, 3, 3, 1),
                                        (9, 2, 2, 0), (9, 3, 2, 2), (10, 1, 3, 0)])
def test_pooling_ceil_and_clip(method, size, k, s, p):
    n = data((2, 3, size, size + 1))
    n.pool = L.Pooling(n.data, pool=getattr(P.Pooling, method), kernel_size=k, stride=s, pad=p)
    res = fresh_check(n.to_proto())
    assert res.walk.shapes["pool"][2:] == (_caffe_pooled(size, k, s, p),
                                           _caffe_pooled(size + 1, k, s, p))
    # PyTorch's own pooling only where its windows are Caffe's (pad <= k/2, and no
    # stride past the kernel without padding); the helper otherwise
    own = p <= k // 2 and (p > 0 or s <= k)
    assert ("ceil_mode=True" in res.source) == own
    assert ("caffe_%s_pool2d" % method.lower().replace("ave", "avg") in res.source) != own


def test_global_pooling_and_mask():
    n = data((1, 4, 5, 6))
    n.gmax = L.Pooling(n.data, pool=P.Pooling.MAX, global_pooling=True)
    n.gave = L.Pooling(n.data, pool=P.Pooling.AVE, global_pooling=True)
    n.pool, n.mask = L.Pooling(n.data, pool=P.Pooling.MAX, kernel_size=3, stride=2, pad=1,
                               ntop=2)
    fresh_check(n.to_proto())


@pytest.mark.parametrize("kw,shape", [
    (dict(num_output=7), (3, 4, 2, 2)),
    (dict(num_output=5, transpose=True), (3, 6)),
    (dict(num_output=5, axis=2, bias_term=False), (2, 3, 4, 2)),
])
def test_inner_product(kw, shape):
    n = data(shape)
    n.ip = L.InnerProduct(n.data, **kw)
    net = n.to_proto()
    fresh_check(net, random_weights(net))


@pytest.mark.parametrize("kind,kw", NEURONS, ids=["%s%d" % (k, i) for i, (k, _) in
                                                  enumerate(NEURONS)])
def test_neuron(kind, kw):
    n = data((2, 3, 4, 5))
    setattr(n, "y", getattr(L, kind)(n.data, **kw))
    res = fresh_check(n.to_proto())
    if kind == "Dropout":
        assert "nn.Dropout(0.3)" in res.source     # the float32 0.3, shortest


@pytest.mark.parametrize("shared", [False, True])
def test_prelu(shared):
    n = data((2, 3, 4, 5))
    n.y = L.PReLU(n.data, channel_shared=shared)
    net = n.to_proto()
    fresh_check(net, random_weights(net))


def test_in_place_chain_keeps_blob_names():
    n = data((1, 3, 6, 6))
    n.conv = L.Convolution(n.data, num_output=4, kernel_size=3)
    n.relu = L.ReLU(n.conv, in_place=True)
    n.scale = L.Power(n.conv, scale=2.0, in_place=True)
    n.out = L.Eltwise(n.conv, n.conv, operation=P.Eltwise.SUM, coeff=[1.0, -0.5])
    net = n.to_proto()
    res = fresh_check(net, random_weights(net), outputs=["conv"])
    assert res.outputs == ["conv", "out"]
    body = res.source.split("def forward")[1]
    assert "conv = torch.relu(conv)  # relu (ReLU)" in body
    assert "out = conv - 0.5 * conv  # out (Eltwise)" in body


def _bn_weights(net, c):
    w = random_weights(net)
    w["bn"][1] = np.abs(w["bn"][1]) + 0.5
    w["bn"][2] = np.array([4.0], np.float32)            # the moving-average factor
    return w


def test_batch_norm_scale_becomes_one_batchnorm2d():
    n = data((2, 4, 3, 5))
    n.bn = L.BatchNorm(n.data, batch_norm_param=dict(eps=1e-3), in_place=False)
    n.sc = L.Scale(n.bn, bias_term=True)
    n.bi = L.Bias(n.sc, axis=1, num_axes=2)
    net = n.to_proto()
    w = _bn_weights(net, 4)
    res = fresh_check(net, w)
    assert "self.bn = nn.BatchNorm2d(4, eps=0.001, momentum=0.0009999871)" in res.source
    assert "'bn': ['bn', 'sc']" in res.source
    # the statistics divided by the stored factor (batch_norm_layer.cpp)
    np.testing.assert_allclose(res.state["bn.running_mean"], w["bn"][0] / 4.0, rtol=1e-6)
    np.testing.assert_allclose(res.state["bn.running_var"], w["bn"][1] / 4.0, rtol=1e-6)
    np.testing.assert_array_equal(res.state["bn.weight"], w["sc"][0])


def test_batch_norm_alone_factor_zero_and_batch_stats():
    n = data((3, 4, 3, 5))
    n.bn = L.BatchNorm(n.data)
    n.bs = L.BatchNorm(n.data, batch_norm_param=dict(use_global_stats=False))
    net = n.to_proto()
    w = {"bn": [np.ones(4, np.float32), np.ones(4, np.float32), np.zeros(1, np.float32)],
         "bs": [np.zeros(4, np.float32)] * 2 + [np.ones(1, np.float32)]}
    res = fresh_check(net, w)
    assert "affine=False" in res.source


def test_scale_two_bottoms_and_axis():
    n = data((2, 3, 4, 5))
    n.s = L.Input(shape=dict(dim=[2, 3]))
    n.y = L.Scale(n.data, n.s, axis=0)
    n.z = L.Scale(n.data, axis=2, num_axes=-1)
    n.w = L.Scale(n.data, n.s, axis=0, bias_term=True)
    n.b = L.Bias(n.data, n.s, axis=0)
    net = n.to_proto()
    fresh_check(net, random_weights(net))


@pytest.mark.parametrize("region", ["ACROSS_CHANNELS", "WITHIN_CHANNEL"])
def test_lrn(region):
    n = data((2, 7, 6, 5))
    n.y = L.LRN(n.data, local_size=5, alpha=0.3, beta=0.75, k=2.0,
                norm_region=getattr(P.LRN, region))
    fresh_check(n.to_proto())


@pytest.mark.parametrize("kw", [dict(), dict(normalize_variance=False),
                                dict(across_channels=True, eps=1e-3)])
def test_mvn(kw):
    n = data((2, 3, 4, 5))
    n.y = L.MVN(n.data, **kw)
    fresh_check(n.to_proto())


@pytest.mark.parametrize("axis", [1, -1, 2])
def test_softmax(axis):
    n = data((2, 3, 4, 5))
    n.y = L.Softmax(n.data, axis=axis)
    fresh_check(n.to_proto())


def test_concat_slice_split():
    n = data((2, 6, 4, 5))
    n.a, n.b, n.c = L.Slice(n.data, slice_point=[1, 4], ntop=3)
    n.d, n.e = L.Slice(n.data, axis=3, ntop=2, slice_point=[2])
    n.s1, n.s2 = L.Split(n.a, ntop=2)
    n.cat = L.Concat(n.c, n.s1, n.b, n.s2)
    n.cat3 = L.Concat(n.d, n.e, axis=-1)
    fresh_check(n.to_proto())


@pytest.mark.parametrize("op,coeff", [("SUM", []), ("SUM", [0.5, -2.0, 1.0]), ("PROD", []),
                                      ("MAX", [])])
def test_eltwise(op, coeff):
    n = data((2, 3, 4, 5))
    n.b = L.TanH(n.data)
    n.c = L.Sigmoid(n.data)
    n.y = L.Eltwise(n.data, n.b, n.c, operation=getattr(P.Eltwise, op), coeff=coeff)
    fresh_check(n.to_proto())


@pytest.mark.parametrize("kw", [dict(axis=2, offset=[3]), dict(axis=2, offset=[1, 4]),
                                dict(axis=1, offset=[1, 2, 0])])
def test_crop(kw):
    n = data((1, 4, 10, 12))
    n.ref = L.Input(shape=dict(dim=[1, 3, 6, 7]))
    n.y = L.Crop(n.data, n.ref, **kw)
    res = fresh_check(n.to_proto())
    offs = kw["offset"]
    want = tuple(offs * (4 - kw["axis"]) if len(offs) == 1 else offs)   # crop_layer.cpp
    assert "caffe_crop(data, ref, %d, %r)" % (kw["axis"], want) in res.source


@pytest.mark.parametrize("shape_kw", [
    dict(shape=dict(dim=[0, -1])), dict(shape=dict(dim=[0, 2, -1, 5])),
    dict(shape=dict(dim=[-1, 4]), axis=1, num_axes=2),
])
def test_reshape_and_flatten(shape_kw):
    n = data((2, 4, 3, 5))
    n.r = L.Reshape(n.data, reshape_param=shape_kw)
    n.f = L.Flatten(n.data, axis=1, end_axis=2)
    fresh_check(n.to_proto())


def test_tile_reduction_argmax():
    n = data((2, 3, 4, 5))
    n.t = L.Tile(n.data, axis=2, tiles=3)
    n.r1 = L.Reduction(n.data, operation=P.Reduction.ASUM, axis=2, coeff=0.5)
    n.r2 = L.Reduction(n.data, operation=P.Reduction.SUMSQ, axis=1)
    n.r3 = L.Reduction(n.data, operation=P.Reduction.MEAN, axis=0)
    n.r4 = L.Reduction(n.data, operation=P.Reduction.SUM, axis=-1)
    n.a1 = L.ArgMax(n.data, axis=1, top_k=2)
    n.a2 = L.ArgMax(n.data, axis=3, out_max_val=True)
    n.a3 = L.ArgMax(n.data, top_k=3, out_max_val=True)
    n.a4 = L.ArgMax(n.data)
    fresh_check(n.to_proto())


@pytest.mark.parametrize("kw", [dict(kernel_size=3), dict(kernel_h=2, kernel_w=3, stride=2, pad=1),
                                dict(kernel_size=3, dilation=2, pad=2)])
def test_im2col(kw):
    # im2col_layer.cpp's column order is F.unfold's (channel major, raster offsets)
    n = data((2, 3, 9, 10))
    n.col = L.Im2col(n.data, **kw)
    res = fresh_check(n.to_proto(), None)
    assert "F.unfold(" in res.source


def test_spatial_dropout_python_layer(schemas):
    """ENet's SpatialDropoutLayer (caffe-enet python/spatial_dropout.py) at TEST is
    x * float32(1 / (1 - p)), exactly; its TRAIN phase is refused."""
    drop = ('layer { name: "drop" type: "Python" bottom: "c" top: "y" python_param { '
            'module: "spatial_dropout" layer: "SpatialDropoutLayer" '
            'param_str: "{\'phase\': \'%s\', \'p\': \'0.01\'}" } }\n')
    head = ('input: "x" input_shape { dim: 1 dim: 2 dim: 3 dim: 3 }\n'
            'layer { name: "c" type: "Convolution" bottom: "x" top: "c" '
            'convolution_param { num_output: 2 kernel_size: 1 } }\n')
    from netdsl.export.torch_export import to_torch
    net = _fork_net(head + drop % "TEST", schemas["enet"])
    w = random_weights(net)
    res = fresh_check(net, w, outputs=["c"])
    assert "* 1.010101" in res.source             # float32(1 / 0.99), its shortest literal
    net = _fork_net(head + drop % "TRAIN", schemas["enet"])
    with pytest.raises(NetdslError) as exc:
        to_torch(net, w, check=False)
    assert "--outputs c" in exc.value.explain()


def test_embed():
    n = data((2, 3))
    n.e = L.Embed(n.data, num_output=4, input_dim=5)
    net = n.to_proto()
    from netdsl.export.torch_export import to_torch
    w = random_weights(net)
    res = to_torch(net, w, check=False)
    import tempfile
    from netdsl.export.torch_check import load_model
    import torch
    work = tempfile.mkdtemp()
    res.save(work)
    idx = np.array([[0, 4, 2], [1, 1, 3]], np.float32)
    got = load_model(work)(torch.from_numpy(idx))["e"].detach().numpy()
    # embed_layer.cpp: top[n, i] = weight[int(x[n, i])] + bias
    want = w["e"][0][idx.astype(int)] + w["e"][1]
    np.testing.assert_allclose(got, want, rtol=1e-6)


# -- seed 000: Caffe's bilinear Deconvolution k4 s2 p1 on a 4x4 arange ----------------

# The 8x8 output Caffe printed for arange(1, 17) through the bilinear-filled
# Deconvolution (num_output 1, kernel 4, stride 2, pad 1), its kernel the
# bilinear filler's (filler.hpp BilinearFiller: f = ceil(k / 2), c = (2f - 1 - f % 2)
# / (2f), w = (1 - |x / f - c|) (1 - |y / f - c|)): 0.0625 0.1875 0.1875 0.0625 ...
SEED000_KERNEL = [[0.0625, 0.1875, 0.1875, 0.0625], [0.1875, 0.5625, 0.5625, 0.1875],
                  [0.1875, 0.5625, 0.5625, 0.1875], [0.0625, 0.1875, 0.1875, 0.0625]]
SEED000_OUT = [
    [0.5625, 0.9375, 1.3125, 1.6875, 2.0625, 2.4375, 2.8125, 2.25],
    [1.5, 2.25, 2.75, 3.25, 3.75, 4.25, 4.75, 3.75],
    [3.0, 4.25, 4.75, 5.25, 5.75, 6.25, 6.75, 5.25],
    [4.5, 6.25, 6.75, 7.25, 7.75, 8.25, 8.75, 6.75],
    [6.0, 8.25, 8.75, 9.25, 9.75, 10.25, 10.75, 8.25],
    [7.5, 10.25, 10.75, 11.25, 11.75, 12.25, 12.75, 9.75],
    [9.0, 12.25, 12.75, 13.25, 13.75, 14.25, 14.75, 11.25],
    [7.3125, 9.9375, 10.3125, 10.6875, 11.0625, 11.4375, 11.8125, 9.0],
]


def test_seed000_bilinear_deconvolution(tmp_path):
    import torch
    from netdsl.export.torch_check import load_model
    from netdsl.export.torch_export import to_torch
    n = data((1, 1, 4, 4))
    n.up = L.Deconvolution(n.data, convolution_param=dict(
        num_output=1, kernel_size=4, stride=2, pad=1, bias_term=False, group=1,
        weight_filler=dict(type="bilinear")), param=dict(lr_mult=0, decay_mult=0))
    res = to_torch(n.to_proto(), None)       # no caffemodel: Caffe's filler makes the kernel
    assert res.parity.ok
    res.save(str(tmp_path))
    model = load_model(str(tmp_path))
    assert "self.up = nn.ConvTranspose2d(1, 1, 4, stride=2, padding=1, bias=False)" \
        in res.source
    np.testing.assert_array_equal(model.up.weight.detach().numpy()[0, 0], SEED000_KERNEL)
    x = torch.arange(1, 17, dtype=torch.float32).reshape(1, 1, 4, 4)
    with torch.no_grad():
        out = model(x)["up"].numpy()[0, 0]
    np.testing.assert_allclose(out, SEED000_OUT, rtol=0, atol=1e-6)


# -- the generated file, the verb, refusals --------------------------------------------

def test_model_py_imports_only_torch_and_math(tmp_path):
    from netdsl.export.torch_export import to_torch
    n = data((1, 3, 9, 9))
    n.conv = L.Convolution(n.data, num_output=4, kernel_size=3, pad=1)
    n.pool = L.Pooling(n.conv, pool=P.Pooling.MAX, kernel_size=2, stride=2, pad=1)
    n.lrn = L.LRN(n.pool, local_size=3, norm_region=P.LRN.WITHIN_CHANNEL)
    net = n.to_proto()
    res = to_torch(net, random_weights(net))
    res.save(str(tmp_path))
    tree = ast.parse((tmp_path / "model.py").read_text())
    mods = {a.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
            for a in node.names}
    mods |= {node.module.split(".")[0] for node in ast.walk(tree)
             if isinstance(node, ast.ImportFrom)}
    assert mods <= {"torch", "math"}, mods
    # and it runs where netdsl and numpy cannot be imported
    code = ("import sys; sys.modules['netdsl'] = None; sys.modules['numpy'] = None\n"
            "import importlib.util, torch\n"
            "spec = importlib.util.spec_from_file_location('m', %r)\n"
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
            "model = m.Model(); model.load_state_dict(torch.load(%r)); model.eval()\n"
            "print(tuple(model(torch.zeros(1, 3, 9, 9))['lrn'].shape))\n"
            % (str(tmp_path / "model.py"), str(tmp_path / "weights.pt")))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(1, 4, 5, 5)"


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "netdsl"] + list(args), capture_output=True,
                          text=True, env=env)


def test_cli(tmp_path):
    from dnn_check import save_net
    net = _small_net()
    proto, weights = save_net(tmp_path, net, random_weights(net))
    out = tmp_path / "out"
    r = _cli("to-torch", str(proto), str(weights), "-o", str(out), "--outputs", "conv")
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(out)) == ["model.py", "parity.json", "weights.pt"]
    report = json.loads((out / "parity.json").read_text())
    assert report["ok"] and report["model_outputs"] == ["conv", "prob"]
    assert len(report["outputs"]) == 4           # two seeded inputs x two outputs
    r = _cli("to-torch", str(proto), str(weights), "-o", str(tmp_path / "nc"), "--no-check")
    assert r.returncode == 0 and json.loads((tmp_path / "nc" / "parity.json").read_text()) == \
        {"checked": False, "inputs": {"data": [1, 3, 8, 8]}, "model_outputs": ["prob"]}
    bad = tmp_path / "bad"
    r = _cli("to-torch", str(proto), str(weights), "-o", str(bad), "--outputs", "convv")
    assert r.returncode == 2 and "did you mean" in r.stderr and "Traceback" not in r.stderr
    assert not bad.exists()


def test_cli_refuses_a_type_without_a_rule_writing_nothing(tmp_path):
    n = data((1, 3, 8, 8))
    n.conv = L.Convolution(n.data, num_output=4, kernel_size=3)
    # a type with no export rule (BatchReindex: no TEST-phase forward here either)
    n.perm = L.Input(shape=dict(dim=[2]))
    n.sel = L.BatchReindex(n.conv, n.perm)
    proto = tmp_path / "net.prototxt"
    proto.write_text(str(n.to_proto()))
    out = tmp_path / "out"
    r = _cli("to-torch", str(proto), "-o", str(out), "--no-check")
    assert r.returncode == 2
    assert "sel" in r.stderr and "BatchReindex" in r.stderr and "--outputs conv" in r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists()


# -- FCN from the shipped specs, round trips of from-torch ------------------------------

@pytest.mark.parametrize("spec", ["fcn32s.yaml", "fcn8s.yaml"])
def test_fcn_from_specs(spec):
    from netdsl.spec import build_all, load_spec
    net = build_all(load_spec(os.path.join(ROOT, "specs", spec))).nets["deploy"]
    inputs = {"data": (1, 3, 40, 48)}
    from netdsl.export.torch_export import to_torch
    res = to_torch(net, random_weights(net, inputs), inputs=inputs)
    assert res.parity.ok, res.parity.table()
    assert res.outputs == ["score"] and res.walk.shapes["score"] == (1, 21, 40, 48)
    assert "caffe_crop(" in res.source and "nn.ConvTranspose2d(21, 21, " in res.source


def _round_trip(model, x):
    import torch
    from netdsl.export.torch_export import to_torch
    from netdsl.netspec import use_schema
    from netdsl.torch import convert
    conv = convert(model, x, input_names=["data"], check=False)
    res = to_torch(conv.net, conv.weights)
    use_schema(None)
    assert res.parity.ok, res.parity.table()
    import tempfile
    from netdsl.export.torch_check import load_model
    work = tempfile.mkdtemp()
    res.save(work)
    with torch.no_grad():
        want = model(x).numpy()
        got = load_model(work)(x)[conv.outputs[0]].numpy()
    assert rel_err(got, want) <= TOL


@pytest.mark.parametrize("name", ["resnet18", "squeezenet1_1"])
def test_round_trip_from_torch(name):
    torch = require("torch")
    tv = require("torchvision")
    from torch_cases import randomise
    torch.manual_seed(0)
    model = randomise(getattr(tv.models, name)()).eval()
    _round_trip(model, torch.randn(1, 3, 64, 64))


def test_round_trip_fcn_style_bilinear():
    torch = require("torch")
    from torch import nn

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.pool = nn.MaxPool2d(2, 2)
            self.score = nn.Conv2d(4, 3, 1)

        def forward(self, x):
            y = self.score(self.pool(torch.relu(self.conv(x))))
            return nn.functional.interpolate(y, scale_factor=2, mode="bilinear",
                                             align_corners=False)

    torch.manual_seed(0)
    _round_trip(Tiny().eval(), torch.randn(1, 3, 16, 16))


# -- layer packs: the forks' nets (tests/fork_nets.py) with their schemas ---------------

def test_mobilenet_ssd_to_its_heads(schemas):
    """Permute, Normalize, PriorBox (a buffer), Flatten, Concat; DetectionOutput has no
    rule: --outputs stops before it."""
    import fork_nets
    from netdsl.export.torch_export import to_torch
    net = _fork_net(fork_nets.mobilenet_ssd(8, normalize=True), schemas["ssd"])
    with pytest.raises(NetdslError) as exc:
        to_torch(net, None, check=False)
    assert "DetectionOutput" in exc.value.explain() and "--outputs mbox_loc," in \
        exc.value.explain()
    heads = ["mbox_loc", "mbox_conf_flatten", "mbox_priorbox"]
    res = fresh_check(net, _fork_weights(net, outputs=heads), outputs=heads)
    assert "detection_out" in res.walk.dropped
    assert "caffe_normalize(" in res.source and ".permute(0, 2, 3, 1)" in res.source


def test_segnet_upsample_with_masks_and_bn(schemas):
    import fork_nets
    net = _fork_net(fork_nets.segnet(div=16), schemas["segnet"])
    inputs = {"data": (1, 3, 360, 480)}
    res = fresh_check(net, _fork_weights(net, inputs), inputs)
    assert "caffe_scatter(" in res.source and "mask=True" in res.source


def test_pspnet_bn_and_interp(schemas):
    import fork_nets
    net = _fork_net(fork_nets.pspnet_like(), schemas["pspnet"])
    res = fresh_check(net, _fork_weights(net))
    assert "align_corners=True" in res.source


def test_interp_size_parameters(schemas):
    """Every size form of interp_layer.cpp, pads (cropping) included."""
    text = 'input: "data" input_shape { dim: 1 dim: 2 dim: 9 dim: 11 }\n'
    for i, params in enumerate(["zoom_factor: 3", "shrink_factor: 2", "height: 5 width: 17",
                                "shrink_factor: 2 zoom_factor: 3 pad_beg: -1 pad_end: -1",
                                "zoom_factor: 1", "height: 1 width: 4"]):
        text += ('layer { name: "i%d" type: "Interp" bottom: "data" top: "i%d" '
                 'interp_param { %s } }\n' % (i, i, params))
    fresh_check(_fork_net(text, schemas["pspnet"]), None)


def test_deeplab_aspp(schemas):
    import fork_nets
    net = _fork_net(fork_nets.deeplab_v2_aspp(), schemas["deeplab"])
    fresh_check(net, _fork_weights(net))


def test_enet_blocks(schemas):
    """BN on the batch's statistics, PReLU, pooling masks and Upsample by them.  The
    BN's float32 rounding differs from netdsl's by ~1e-7, which may move a pooling
    mask where two window values are within that of each other (and so the
    values the Upsample writes): every mask difference must be such a near-tie,
    and the net's output equal elsewhere (the normal input's row)."""
    import torch
    import fork_nets
    from netdsl.export.parity import reference_net, seeded_inputs
    from netdsl.export.torch_export import to_torch
    net = _fork_net(fork_nets.enet_like(), schemas["enet"])
    w = _fork_weights(net)
    outs = ["bn0_1", "pool1_0_4_mask"]
    res = to_torch(net, w, outputs=outs)
    rows = {(r["input"], r["output"]): r for r in res.parity.rows}
    assert rows[("normal", "deconv6_0_0")]["ok"] and rows[("uniform", "bn0_1")]["ok"]
    feeds = seeded_inputs(res.inputs, 0)[0][1]
    ref = forward(reference_net(res.walk), w, feeds)
    import tempfile
    from netdsl.export.torch_check import load_model
    work = tempfile.mkdtemp()
    res.save(work)
    with torch.no_grad():
        got = load_model(work)(*[torch.from_numpy(v) for v in feeds.values()])
    mine, theirs = ref["pool1_0_4_mask"], got["pool1_0_4_mask"].numpy()
    x = ref["bn0_1"]
    for n, c, i, j in np.argwhere(mine != theirs):
        plane = x[n, c].reshape(-1)
        a, b = plane[int(mine[n, c, i, j])], plane[int(theirs[n, c, i, j])]
        assert abs(a - b) <= 1e-5 * np.abs(plane).max()


def test_deconvnet_unpooling(tmp_path):
    import fork_nets
    import fork_schemas
    net = _fork_net(fork_nets.deconvnet(), fork_schemas.write_v1_only_schema(
        "deconvnet", str(tmp_path)))
    fresh_check(net, _fork_weights(net))


def test_unpooling_without_mask(tmp_path):
    import fork_schemas
    net = _fork_net('input: "x" input_shape { dim: 1 dim: 2 dim: 4 dim: 3 }\n'
                    'layer { name: "u" type: "Unpooling" bottom: "x" top: "u" '
                    'unpooling_param { kernel_size: 3 stride: 2 } }\n',
                    fork_schemas.write_v1_only_schema("deconvnet", str(tmp_path)))
    fresh_check(net, None)


@pytest.mark.parametrize("levels,method", [(1, "MAX"), (3, "MAX"), (2, "AVE")])
def test_spp_by_hand(levels, method):
    """spp_layer.cpp: level l pools with 2^l bins a side (kernel ceil(in / bins),
    stride the kernel, pad (kernel * bins - in + 1) / 2), each flattened, concatenated;
    each level computed here with the Pooling layer's own forward."""
    import tempfile
    import torch
    from netdsl.export.torch_check import load_model
    from netdsl.export.torch_export import to_torch
    n = data((2, 3, 9, 7))
    n.spp = L.SPP(n.data, pyramid_height=levels, pool=getattr(P.SPP, method))
    res = to_torch(n.to_proto(), None, check=False)
    work = tempfile.mkdtemp()
    res.save(work)
    x = np.random.default_rng(3).standard_normal((2, 3, 9, 7)).astype(np.float32)
    parts = []
    for lvl in range(levels):
        bins = 2 ** lvl
        kh, kw = -(-9 // bins), -(-7 // bins)
        m = data((2, 3, 9, 7))
        m.p = L.Pooling(m.data, pool=getattr(P.Pooling, method), kernel_h=kh, kernel_w=kw,
                        stride_h=kh, stride_w=kw, pad_h=(kh * bins - 9 + 1) // 2,
                        pad_w=(kw * bins - 7 + 1) // 2)
        parts.append(forward(m.to_proto(), None, {"data": x})["p"])
    want = parts[0] if levels == 1 else np.concatenate([p.reshape(2, -1) for p in parts], 1)
    with torch.no_grad():
        got = load_model(work)(torch.from_numpy(x))["spp"].numpy()
    assert rel_err(got, want) <= TOL


def test_roi_pooling():
    """ROIs that name real images (the check's seeded inputs cannot make an ROI blob):
    the generated module against netdsl's forward of roi_pooling_layer.cpp."""
    import tempfile
    import torch
    from netdsl.export.torch_check import load_model
    from netdsl.export.torch_export import to_torch
    net = _fork_net('input: "x" input_shape { dim: 2 dim: 3 dim: 12 dim: 10 }\n'
                    'input: "rois" input_shape { dim: 4 dim: 5 }\n'
                    'layer { name: "p" type: "ROIPooling" bottom: "x" bottom: "rois" top: "p" '
                    'roi_pooling_param { pooled_h: 3 pooled_w: 2 spatial_scale: 0.5 } }\n',
                    os.path.join(HERE, "data", "fork_schemas", "faster_rcnn.proto"))
    res = to_torch(net, None, check=False)
    work = tempfile.mkdtemp()
    res.save(work)
    x = np.random.default_rng(0).standard_normal((2, 3, 12, 10)).astype(np.float32)
    # a half-pixel corner (rounded away from zero), one ROI past the map, one pixel
    rois = np.array([[1, 3, 5, 15, 21], [0, 0, 0, 19, 23], [1, 9, 1, 30, 40],
                     [0, 4, 4, 4, 4]], np.float32)
    want = forward(net, None, {"x": x, "rois": rois})["p"]
    with torch.no_grad():
        got = load_model(work)(torch.from_numpy(x), torch.from_numpy(rois))["p"].numpy()
    assert rel_err(got, want) <= TOL


def test_grouped_bilinear_deconvolution_from_fillers():
    """A grouped bilinear Deconvolution needs no caffemodel entry: Caffe's setup fills it."""
    n = data((1, 3, 6, 6))
    n.up = L.Deconvolution(n.data, convolution_param=dict(
        num_output=3, group=3, kernel_size=4, stride=2, bias_term=False,
        weight_filler=dict(type="bilinear")))
    res = fresh_check(n.to_proto(), None)
    assert "nn.ConvTranspose2d(3, 3, 4, stride=2, groups=3, bias=False)" in res.source


def test_plugin_type_declares_its_torch_rule():
    """register_layer(..., torch=rule): a plugin's type exports like a built-in one."""
    from netdsl.layers import use_layers
    from netdsl.plugins import register_layer

    def up2_torch(layer, ctx):
        return "%s.repeat_interleave(2, 2).repeat_interleave(2, 3)" % ctx.x[0]

    with use_layers():
        register_layer("Upsample2x", shape=["N", "C", "2*H", "2*W"],
                       forward=lambda layer, b, blobs, ctx: [
                           b[0].repeat(2, axis=2).repeat(2, axis=3)],
                       torch=up2_torch)
        n = data((1, 2, 3, 4))
        n.up = L.Upsample2x(n.data)
        res = fresh_check(n.to_proto())
        assert "up = data.repeat_interleave(2, 2)" in res.source


def test_first_divergence_is_named(tmp_path):
    """A wrong module is caught, at the layer whose top first differs."""
    from netdsl.export.torch_check import check_parity
    from netdsl.export.torch_export import to_torch
    net = _small_net()
    res = to_torch(net, random_weights(net), check=False, outputs=["conv"])
    res.write_to(str(tmp_path))
    text = (tmp_path / "model.py").read_text()
    # pooling without Caffe's ceil rule: one window fewer, so 'pool' differs
    (tmp_path / "model.py").write_text(text.replace("ceil_mode=True", "ceil_mode=False"))
    rep = check_parity(res, directory=str(tmp_path))
    assert not rep.ok and rep.divergence["blob"] == "pool"
    assert [r["ok"] for r in rep.rows if r["output"] == "conv"] == [True, True]


def test_trainable_where_caffe_is(tmp_path):
    """BatchNorm + Scale train as one nn.BatchNorm2d, Dropout is active in train(),
    every Caffe parameter blob is a parameter."""
    import torch
    from netdsl.export.torch_check import load_model
    from netdsl.export.torch_export import to_torch
    n = data((2, 3, 6, 6))
    n.conv = L.Convolution(n.data, num_output=4, kernel_size=3)
    n.bn = L.BatchNorm(n.conv, in_place=True)
    n.sc = L.Scale(n.conv, bias_term=True, in_place=True)
    n.drop = L.Dropout(n.conv, dropout_ratio=0.5, in_place=True)
    n.ip = L.InnerProduct(n.conv, num_output=3)
    net = n.to_proto()
    w = _bn_weights(net, 4)
    res = to_torch(net, w)
    assert res.parity.ok
    res.save(str(tmp_path))
    model = load_model(str(tmp_path))
    names = {k for k, _ in model.named_parameters()}
    assert names == {"conv.weight", "conv.bias", "bn.weight", "bn.bias", "ip.weight", "ip.bias"}
    assert isinstance(model.bn, torch.nn.BatchNorm2d) and isinstance(model.drop, torch.nn.Dropout)
    model.train()
    x = torch.randn(2, 3, 6, 6)
    torch.manual_seed(0)
    a = model(x)["ip"]
    a.sum().backward()
    assert model.bn.weight.grad is not None
    with torch.no_grad():
        model.eval()
        b1, b2 = model(x)["ip"], model(x)["ip"]
    assert torch.equal(b1, b2)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_fork_nets_full_size(name):
    """Random weights (as tests/test_fork_packs.py makes them); the export's own
    parity check on two inputs.  Where pooling masks are unpooled, a mask may move
    between window values equal to within float rounding (the first divergence is
    then a mask)."""
    import test_fork_published as pub
    from test_fork_packs import _weights
    from netdsl.export.torch_export import to_torch
    from netdsl.netspec import use_schema
    from netdsl.prototxt import parse_net
    module, spec, inputs = pub.NETS[name][:3]
    pb2 = pub._schema(spec, None)
    use_schema(pb2)
    net = parse_net(getattr(module, name)(), name + ".prototxt", schema=pb2)
    weights = _weights(net, 0, inputs)
    inputs = {"data": inputs["data"]} if inputs else None      # the labels are not read
    res = to_torch(net, weights, inputs=inputs, outputs=PUBLISHED[name] or ())
    if not res.parity.ok:
        assert res.parity.divergence["blob"].endswith("_mask") or \
            "Upsample" in res.parity.divergence["layer_type"] or \
            "Unpooling" in res.parity.divergence["layer_type"], res.parity.table()
    assert len(res.parity.rows) == 2 * len(res.outputs)


def test_zf_deconvnet_switches_and_inverse_pooling():
    """piergiaj/caffe-deconvnet: PoolingSwitches (values over switches on axis 0, and
    the mask top), SliceHalf, a Concat [switches; values] and InvPooling back."""
    schema = os.path.join(HERE, "data", "fork_schemas", "zf_deconvnet.proto")
    text = ('input: "x" input_dim: 2 input_dim: 3 input_dim: 7 input_dim: 8\n'
            'layer { name: "ps" type: "PoolingSwitches" bottom: "x" top: "ps" top: "mask"\n'
            '  pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 } }\n'
            'layer { name: "half" type: "SliceHalf" bottom: "ps" top: "vals" top: "sw"\n'
            '  slice_param { axis: 0 } }\n'
            'layer { name: "back" type: "Concat" bottom: "sw" bottom: "vals" top: "both"\n'
            '  concat_param { axis: 0 } }\n'
            'layer { name: "inv" type: "InvPooling" bottom: "both" top: "inv"\n'
            '  pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 } }\n')
    res = fresh_check(_fork_net(text, schema), None, outputs=["ps", "mask"])
    assert "caffe_pooling_switches(" in res.source and "caffe_inv_pooling(" in res.source


def test_every_type_with_an_onnx_rule_has_a_torch_rule():
    """The same coverage as to-onnx: BVLC's types and every pack's."""
    from netdsl.layers.registry import BUILTIN, PACKS
    from netdsl.packs import TRIGGERS, enable
    for pack in TRIGGERS:
        enable(pack)
    missing = [name for reg in (BUILTIN, PACKS) for name, lt in reg.own().items()
               if lt.onnx is not None and lt.torch is None]
    assert missing == []
    assert {"Convolution", "Pooling", "BatchNorm", "Upsample", "Interp", "PriorBox"} <= {
        name for reg in (BUILTIN, PACKS) for name, lt in reg.own().items()
        if lt.torch is not None}
