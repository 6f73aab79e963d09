"""Fork schemas used as published, and the layer packs of netdsl.packs.

The schemas are built by tests/fork_schemas.py (the forks' own field numbers,
including those that reuse BVLC's); the nets by tests/fork_nets.py.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from dnn_check import require

from netdsl.errors import NetdslError
from netdsl.forward import forward
from netdsl.netspec import use_schema
from netdsl.proto import load_schema
from netdsl.prototxt import parse_net
from netdsl.shapes import infer_shapes

import fork_nets
import fork_schemas


@pytest.fixture(scope="module")
def schemas(tmp_path_factory):
    d = tmp_path_factory.mktemp("forks")
    return {f: fork_schemas.write_fork_schema(f, str(d)) for f in fork_schemas.FORKS}


def _net(text, pb2, path="net.prototxt"):
    use_schema(pb2)
    return parse_net(text, path, schema=pb2)


def _weights(net, seed=0, inputs=None):
    """Random blobs of the shapes netdsl infers; BatchNorm/BN variances positive."""
    rng = np.random.default_rng(seed)
    out = {}
    for ls in infer_shapes(net, inputs).layers:
        blobs = []
        for i, s in enumerate(ls.param_shapes):
            s = tuple(s)
            if ls.type == "BatchNorm":
                b = [rng.normal(0, .1, s), rng.uniform(.5, 1.5, s), np.ones(s)][i]
            elif ls.type == "BN" and len(ls.param_shapes) == 4:
                b = rng.uniform(.5, 1.5, s) if i in (0, 3) else rng.normal(0, .1, s)
            elif len(s) == 4 and ls.type in ("Convolution", "Deconvolution"):
                b = rng.normal(0, math.sqrt(2.0 / max(1, s[1] * s[2] * s[3])), s)
            else:
                b = rng.uniform(.5, 1.5, s) if i == 0 else rng.normal(0, .1, s)
            blobs.append(np.asarray(b, np.float32))
        if blobs:
            out[ls.name] = blobs
    return out


# -- schemas as published ---------------------------------------------------------

@pytest.mark.parametrize("fork, field", [("segnet", "upsample_param"), ("enet", "upsample_param"),
                                         ("pspnet", "interp_param"), ("ssd", "eval_type")])
def test_fork_schema_loads_as_given(schemas, fork, field):
    pb2 = load_schema(schemas[fork])            # no flag
    assert any(f[1] == field for f in pb2.CONFLICT_FIELDS)


def test_strict_proto_is_the_located_error_without_renumbering_advice(schemas):
    with pytest.raises(NetdslError) as exc:
        load_schema(schemas["segnet"], strict=True)
    text = exc.value.explain()
    assert "segnet.proto:" in text and "takes BVLC's number" in text
    assert "an existing fork keeps its numbers" in text
    # the former opt-in still loads it
    assert load_schema(schemas["segnet"], allow_conflicts=True).UpsampleParameter


def test_cli_warns_once_when_writing_a_conflicting_field(schemas, tmp_path, capsys):
    from netdsl.cli import main
    net = tmp_path / "n.prototxt"
    net.write_text('input: "data" input_shape { dim: 1 dim: 2 dim: 4 dim: 4 }\n'
                   'layer { name: "u" type: "Upsample" bottom: "data" top: "u" '
                   'upsample_param { scale: 2 } }\n')
    assert main(["fmt", "--proto", schemas["segnet"], str(net), "-o", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "upsample_param (137 is BVLC's embed_param)" in err[0]
    # an SSD net sets none of SSD's conflicting (solver) fields: no warning
    ssd = tmp_path / "s.prototxt"
    ssd.write_text('input: "data" input_shape { dim: 1 dim: 2 dim: 4 dim: 4 }\n'
                   'layer { name: "p" type: "Permute" bottom: "data" top: "p" '
                   'permute_param { order: 0 order: 2 order: 3 order: 1 } }\n')
    assert main(["fmt", "--proto", schemas["ssd"], str(ssd)]) == 0
    assert capsys.readouterr().err == ""
    assert main(["fmt", "--strict-proto", "--proto", schemas["segnet"], str(net)]) == 2


# -- SSD ---------------------------------------------------------------------------

def test_mobilenet_ssd_shapes(schemas):
    pb2 = load_schema(schemas["ssd"])
    res = infer_shapes(_net(fork_nets.mobilenet_ssd(1, normalize=False), pb2))
    b = res.blobs
    # PriorBox Reshape: (1, 2, H * W * num_priors * 4); num_priors = 3 on conv11 (ar 1, 2,
    # 1/2), 6 elsewhere (ar 1, 2, 1/2, 3, 1/3 and the max_size prior):
    # 19*19*3 + (10*10 + 5*5 + 3*3 + 2*2 + 1) * 6 = 1917 priors
    assert tuple(b["mbox_priorbox"]) == (1, 2, 1917 * 4)
    assert tuple(b["mbox_conf_flatten"]) == (1, 1917 * 21)
    assert tuple(b["conv11_mbox_loc_perm"]) == (1, 19, 19, 12)
    assert tuple(b["detection_out"]) == (1, 1, 1, 7)     # DetectionOutput::Reshape


def test_prior_box_values_by_hand(schemas):
    pb2 = load_schema(schemas["ssd"])
    net = _net('input: "f" input_shape { dim: 1 dim: 1 dim: 19 dim: 19 }\n'
               'input: "data" input_shape { dim: 1 dim: 3 dim: 300 dim: 300 }\n'
               'layer { name: "p" type: "PriorBox" bottom: "f" bottom: "data" top: "p" '
               'prior_box_param { min_size: 60 max_size: 150 aspect_ratio: 2 flip: true '
               'variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2 } }\n', pb2)
    r = forward(net, None, {"f": np.zeros((1, 1, 19, 19), np.float32),
                            "data": np.zeros((1, 3, 300, 300), np.float32)})["p"]
    # prior_box_layer.cpp: step = 300/19, cell (0, 0) centre 0.5*step; priors: min 60,
    # sqrt(60*150), 60*sqrt(2) x 60/sqrt(2), 60/sqrt(2) x 60*sqrt(2)
    c = 0.5 * 300 / 19
    boxes = r[0, 0, :16].reshape(4, 4)
    r2 = math.sqrt(2)
    for (w, h), got in zip([(60, 60), (math.sqrt(9000),) * 2, (60 * r2, 60 / r2),
                            (60 / r2, 60 * r2)], boxes):
        want = [(c - w / 2) / 300, (c - h / 2) / 300, (c + w / 2) / 300, (c + h / 2) / 300]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(r[0, 1, :8], [.1, .1, .2, .2] * 2, rtol=1e-7)


def test_mobilenet_ssd_forward_equals_opencv(schemas, tmp_path):
    cv2 = require("cv2")
    from netdsl.weights import write_caffemodel
    pb2 = load_schema(schemas["ssd"])
    text = fork_nets.mobilenet_ssd(8)
    path = tmp_path / "mssd.prototxt"
    path.write_text(text)
    net = _net(text, pb2, str(path))
    w = _weights(net)
    write_caffemodel(str(tmp_path / "m.caffemodel"), w, types=net, pb2=pb2)
    x = np.random.default_rng(1).uniform(-1, 1, (1, 3, 300, 300)).astype(np.float32)
    ours = forward(net, str(tmp_path / "m.caffemodel"), {"data": x})
    cv = cv2.dnn.readNetFromCaffe(str(path), str(tmp_path / "m.caffemodel"))
    cv.setInput(x)
    names = ["conv11_norm", "conv11_mbox_loc_perm", "mbox_loc", "mbox_conf_flatten",
             "mbox_priorbox", "detection_out"]
    for name, theirs in zip(names, cv.forward(names)):
        mine = ours[name]
        if name == "detection_out":
            # same detections; Caffe writes them by label, OpenCV by score
            assert mine.shape == theirs.shape and mine.shape[2] > 10
            order = lambda a: a[0, 0][np.lexsort((-a[0, 0, :, 2], a[0, 0, :, 1]))]  # noqa: E731
            np.testing.assert_array_equal(order(mine)[:, :2], order(theirs)[:, :2])
            np.testing.assert_allclose(order(mine), order(theirs), rtol=1e-5, atol=1e-6)
            assert (np.diff(mine[0, 0, :, 1]) >= 0).all()     # by label, as Caffe's map
            continue
        theirs = theirs.reshape(mine.shape)
        rel = np.abs(mine - theirs).max() / np.abs(theirs).max()
        assert rel <= 1e-5, (name, rel)


def test_detection_output_by_hand(schemas):
    pb2 = load_schema(schemas["ssd"])
    # two priors overlapping by IoU 0.6, one far away; zero offsets decode to the priors
    priors = np.array([[0, 0, .5, .5], [0, .1, .5, .6], [.6, .6, 1, 1]], np.float32)
    prior_blob = np.stack([priors.ravel(), np.full(12, .1, np.float32)])[None]
    conf = np.array([[.1, .9, 0], [.2, .7, .1], [.3, .2, .5]], np.float32)
    net = _net('input: "loc" input_shape { dim: 1 dim: 12 }\n'
               'input: "conf" input_shape { dim: 1 dim: 9 }\n'
               'input: "prior" input_shape { dim: 1 dim: 2 dim: 12 }\n'
               'layer { name: "d" type: "DetectionOutput" bottom: "loc" bottom: "conf" '
               'bottom: "prior" top: "d" detection_output_param { num_classes: 3 '
               'nms_param { nms_threshold: 0.45 } code_type: CENTER_SIZE keep_top_k: 2 '
               'confidence_threshold: 0.15 } }\n', pb2)
    d = forward(net, None, {"loc": np.zeros((1, 12), np.float32), "conf": conf.reshape(1, 9),
                            "prior": prior_blob})["d"]
    # class 1: 0.9 (prior 0) kept, 0.7 (prior 1, IoU .2/.3... = 0.6 > 0.45) suppressed,
    # 0.2 (prior 2) kept; class 2: 0.5 (prior 2) kept.  keep_top_k 2 keeps 0.9 and 0.5,
    # written by label: [label 1: 0.9], [label 2: 0.5]
    np.testing.assert_allclose(d[0, 0], [[0, 1, .9, 0, 0, .5, .5], [0, 2, .5, .6, .6, 1, 1]],
                               rtol=1e-6, atol=1e-7)


# -- DeepLab / PSPNet --------------------------------------------------------------

def test_interp_equals_opencv_and_pinned_cases(schemas, tmp_path):
    cv2 = require("cv2")
    pb2 = load_schema(schemas["pspnet"])
    x = np.random.default_rng(2).uniform(-1, 1, (1, 3, 60, 60)).astype(np.float32)
    for params, size in (("zoom_factor: 8", 473), ("height: 473 width: 473", 473)):
        text = ('input: "data" input_dim: 1 input_dim: 3 input_dim: 60 input_dim: 60\n'
                'layer { name: "a" type: "Interp" bottom: "data" top: "a" '
                'interp_param { %s } }\n' % params)
        path = tmp_path / "i.prototxt"
        path.write_text(text)
        mine = forward(_net(text, pb2, str(path)), None, {"data": x})["a"]
        cv = cv2.dnn.readNetFromCaffe(str(path))
        cv.setInput(x)
        theirs = cv.forward("a")
        assert mine.shape == theirs.shape == (1, 3, size, size)
        assert np.abs(mine - theirs).max() / np.abs(theirs).max() <= 1e-5
    # OpenCV ignores shrink_factor with zoom_factor and pad_beg/pad_end; DeepLab's
    # interp_layer.cpp: crop by -pad, shrink (h - 1) / s + 1, zoom h + (h - 1) * (z - 1)
    text = ('input: "data" input_dim: 1 input_dim: 1 input_dim: 7 input_dim: 7\n'
            'layer { name: "a" type: "Interp" bottom: "data" top: "a" interp_param { '
            'shrink_factor: 2 zoom_factor: 3 pad_beg: -1 pad_end: -1 } }\n')
    x = np.arange(49, dtype=np.float32).reshape(1, 1, 7, 7)
    a = forward(_net(text, pb2), None, {"data": x})["a"]
    # 5 x 5 window at (1, 1); shrink: (5 - 1) / 2 + 1 = 3; zoom: 3 + 2 * 2 = 7
    assert a.shape == (1, 1, 7, 7)
    # align corners: output 0 and 6 are the window's corners (values 8 and 40), output
    # (3, 3) its centre 24; output (0, 1) lies 4/6 of a column in: 8 + 4/6
    assert a[0, 0, 0, 0] == 8 and a[0, 0, 6, 6] == 40 and a[0, 0, 3, 3] == 24
    assert a[0, 0, 0, 1] == pytest.approx(8 + 4 / 6, rel=1e-6)


def test_pspnet_bn_and_net_with_interp(schemas):
    pb2 = load_schema(schemas["pspnet"])
    net = _net(fork_nets.pspnet_like(), pb2)
    shapes = infer_shapes(net).blobs
    assert tuple(shapes["conv5_3_pool1_interp"]) == (1, 64, 60, 60)
    assert tuple(shapes["conv6_interp"]) == (1, 150, 473, 473)
    w = _weights(net)
    x = np.random.default_rng(3).uniform(-1, 1, (1, 3, 473, 473)).astype(np.float32)
    r = forward(net, w, {"data": x})
    assert r["conv6_interp"].shape == (1, 150, 473, 473) and np.isfinite(r["conv6_interp"]).all()
    # PSPNet bn_layer.cpp (TEST): (x - mean) / sqrt(var + eps) * slope + bias
    s, b, m, v = (a.reshape(-1) for a in w["conv1_1_3x3_s2/bn"])
    xin = r["conv1_1_3x3_s2_pre"][0, :, 5, 7]
    want = (xin - m) / np.sqrt(v + 1e-5) * s + b
    np.testing.assert_allclose(r["conv1_1_3x3_s2"][0, :, 5, 7], np.maximum(want, 0), rtol=1e-5,
                               atol=1e-6)


# -- SegNet / ENet -----------------------------------------------------------------

def test_segnet_inference_shapes_and_forward(schemas):
    pb2 = load_schema(schemas["segnet"])
    net = _net(fork_nets.segnet(div=16, bayesian=True), pb2)
    shapes = infer_shapes(net, {"data": (1, 3, 360, 480), "label": (1, 1, 360, 480)}).blobs
    # pooling k2 s2: 360x480 -> 180x240 -> 90x120 -> 45x60 -> 23x30 -> 12x15; Upsample
    # upsample_h/w give them back; the decoder ends at 360x480
    assert tuple(shapes["pool5"]) == (1, 32, 12, 15)
    assert tuple(shapes["upsample5"]) == (1, 32, 23, 30)
    assert tuple(shapes["prob"]) == (1, 11, 360, 480)
    w = _weights(net, inputs={"data": (1, 3, 360, 480), "label": (1, 1, 360, 480)})
    x = np.random.default_rng(4).uniform(-1, 1, (1, 3, 360, 480)).astype(np.float32)
    r = forward(net, w, {"data": x, "label": np.zeros((1, 1, 360, 480), np.float32)})
    np.testing.assert_allclose(r["prob"].sum(axis=1), 1, rtol=1e-5)
    # Bayesian SegNet's Dropout samples at test time (sample_weights_test, caffe-segnet
    # dropout_layer.cpp): about half of pool5 is zeroed, the rest doubled
    kept = r["pool5"] != 0
    assert 0.3 < kept.mean() < 0.7
    # Upsample (upsample_layer.cpp): each value at the index its mask names, zeros elsewhere
    up, val, mask = r["upsample1"], r["conv1_2_D_in"], r["pool1_mask"]
    n_nonzero = np.count_nonzero(up)
    assert n_nonzero <= val.size
    c, i, j = 3, 10, 20
    k = int(mask[0, c, i, j])
    assert up[0, c, k // 480, k % 480] == val[0, c, i, j]
    # BN INFERENCE (caffe-segnet bn_layer.cpp): x * scale + shift
    sc, sh = (a.reshape(-1) for a in w["conv1_1_bn"])
    np.testing.assert_allclose(r["conv1_1_bn_out"][0, :, 3, 4],      # then ReLU in place
                               np.maximum(r["conv1_1"][0, :, 3, 4] * sc + sh, 0), rtol=1e-6)


def test_enet_bn_learn_mode_uses_batch_statistics(schemas):
    pb2 = load_schema(schemas["enet"])
    net = _net('input: "x" input_shape { dim: 2 dim: 3 dim: 4 dim: 5 }\n'
               'layer { name: "bn" type: "BN" bottom: "x" top: "y" bn_param { '
               'scale_filler { type: "constant" value: 1 } '
               'shift_filler { type: "constant" value: 0.5 } } }\n', pb2)
    x = np.random.default_rng(5).normal(2, 3, (2, 3, 4, 5)).astype(np.float32)
    y = forward(net, None, {"x": x})["y"]     # constant fillers: Caffe's setup gives the blobs
    # caffe-enet bn_layer.cpp LEARN: mean and E(x^2) - mean^2 over N, H, W; + 1e-9
    m = x.astype(np.float64).mean(axis=(0, 2, 3), keepdims=True)
    v = (x.astype(np.float64) ** 2).mean(axis=(0, 2, 3), keepdims=True) - m ** 2
    np.testing.assert_allclose(y, (x - m) / np.sqrt(v + 1e-9) + 0.5, rtol=1e-4, atol=1e-5)


def test_init_round_trips_with_a_fork_schema(schemas, tmp_path):
    from netdsl.cli import main
    from netdsl.weights import open_caffemodel
    net = tmp_path / "n.prototxt"
    net.write_text('input: "data" input_dim: 1 input_dim: 3 input_dim: 16 input_dim: 16\n'
                   'layer { name: "c" type: "Convolution" bottom: "data" top: "c" '
                   'convolution_param { num_output: 4 kernel_size: 3 '
                   'weight_filler { type: "msra" } } }\n'
                   'layer { name: "bn" type: "BN" bottom: "c" top: "c" bn_param { '
                   'slope_filler { type: "constant" value: 2 } } }\n'
                   'layer { name: "i" type: "Interp" bottom: "c" top: "i" '
                   'interp_param { zoom_factor: 2 } }\n')
    out = tmp_path / "n.caffemodel"
    assert main(["init", "--proto", fork_schemas.write_fork_schema("pspnet", str(tmp_path)),
                 str(net), "-o", str(out)]) == 0
    pb2 = load_schema(str(tmp_path / "pspnet.proto"))
    with open_caffemodel(str(out), pb2=pb2) as m:
        blobs = m.to_dict(copy=True)
    assert [b.shape for b in blobs["bn"]] == [(1, 4, 1, 1)] * 4
    np.testing.assert_array_equal(blobs["bn"][0], 2)          # slope_filler
    np.testing.assert_array_equal(blobs["bn"][3], 0)          # moving variance: 0 unless frozen
    msg = pb2.NetParameter()
    msg.ParseFromString(out.read_bytes())
    assert [lp.name for lp in msg.layer] == ["c", "bn"]


# -- DeconvNet (V1) ----------------------------------------------------------------

def test_v1_only_schema_is_completed_with_bvlc(tmp_path):
    """A 2014 schema (V1 layers only, as HyeonwooNoh/caffe d9e8494a publishes it)
    loads as given: its LayerParameter is V1LayerParameter, its numbers kept
    (UNPOOLING = 42, unpooling_param = 44, bn_param = 45 in the published
    caffe.proto), and the current LayerParameter gains the fork's parameter
    fields so UpgradeV1Net has a place for them."""
    pb2 = load_schema(fork_schemas.write_v1_only_schema("deconvnet", str(tmp_path)))
    assert pb2.V1_ONLY and pb2.CONFLICTS == []
    assert pb2.V1LayerParameter.LayerType.Value("UNPOOLING") == 42
    assert pb2.V1LayerParameter.LayerType.Value("BN") == 43
    assert pb2.V1LayerParameter.LayerType.Value("POOLING") == 17     # BVLC's, unchanged
    v1 = pb2.V1LayerParameter.DESCRIPTOR.fields_by_name
    v2 = pb2.LayerParameter.DESCRIPTOR.fields_by_name
    assert v1["unpooling_param"].number == 44 and v1["bn_param"].number == 45
    assert dict(pb2.ADDED_V2_FIELDS) == {"unpooling_param": 44, "bn_param": 45}
    assert v2["unpooling_param"].number == 44 and v2["pooling_param"].number == 121
    assert pb2.NetParameter.DESCRIPTOR.fields_by_name["layers"].number == 2
    assert pb2.NetParameter.DESCRIPTOR.fields_by_name["layer"].number == 100
    # the fork's optional kernel_size reads the same bytes as BVLC's repeated one
    conv = pb2.ConvolutionParameter()
    conv.ParseFromString(b"\x20\x03")          # field 4 (kernel_size), varint 3
    assert list(conv.kernel_size) == [3]


def test_v1_only_schema_fork_number_wins(tmp_path):
    """Where a 2014 fork gave one of BVLC's later numbers to its own field, the
    fork's field holds it (its files were written with it) and the clash is
    reported like any fork's."""
    text = fork_schemas.v1_only_schema_text("deconvnet")
    start = text.index("message ConvolutionParameter {")
    end = text.index("\n}\n", start)
    block = fork_schemas._drop_number(text[start:end], 16)    # 2014: no `axis` yet
    text = text[:start] + block.replace(
        "message ConvolutionParameter {",
        "message ConvolutionParameter {\n  optional float fork_gain = 16 [default = 2];") \
        + text[end:]
    path = tmp_path / "clash.proto"
    path.write_text(text)
    pb2 = load_schema(str(path))
    fields = pb2.ConvolutionParameter.DESCRIPTOR.fields_by_name
    assert fields["fork_gain"].number == 16 and "axis" not in fields   # BVLC: axis = 16
    assert any("fork_gain" in c for c in pb2.CONFLICTS)


def test_v1_only_schema_init_writes_v1_layers_and_upgrade(tmp_path):
    """With a V1-only schema, caffemodels are written in the V1 form (the fork's
    Caffe skips NetParameter field 100, so would load nothing) and read back
    exactly; `upgrade` gives the current form with the fork's parameters."""
    from netdsl.cli import main
    from netdsl.weights import open_caffemodel
    schema = fork_schemas.write_v1_only_schema("deconvnet", str(tmp_path))
    net = tmp_path / "net.prototxt"
    net.write_text(fork_nets.deconvnet(div=16))
    out = tmp_path / "w.caffemodel"
    assert main(["init", "--proto", schema, str(net), "-o", str(out)]) == 0
    data = out.read_bytes()
    first = 2 + data[1] if data[0] == 0x0A else 0      # after the net's name (field 1)
    assert data[first] == 0x12                         # field 2 (layers), wire type 2
    pb2 = load_schema(schema)
    msg = pb2.NetParameter()
    msg.ParseFromString(data)
    assert len(msg.layer) == 0 and len(msg.layers) > 0
    bn = [lp for lp in msg.layers if lp.name == "bn_conv1_1"][0]
    assert bn.type == 43 and len(bn.blobs) > 0           # BN's own V1 enum value
    with open_caffemodel(str(out), pb2=pb2) as cm:
        conv = cm.layer("conv1_1")
        assert conv.type == "Convolution"
        a = cm.arrays(conv)
        assert a[0].shape == (4, 3, 3, 3)
        i = [lp.name for lp in msg.layers].index("conv1_1")
        np.testing.assert_array_equal(a[0].ravel(), np.asarray(msg.layers[i].blobs[0].data,
                                                               np.float32))
    up = tmp_path / "up.prototxt"
    assert main(["upgrade", "--proto", schema, str(net), "-o", str(up)]) == 0
    text = up.read_text()
    assert 'type: "Unpooling"' in text and "unpooling_param {" in text and "layers {" not in text


def test_deconvnet_v1_net_upgrades_shapes_and_runs(tmp_path):
    path = fork_schemas.write_v1_only_schema("deconvnet", str(tmp_path))
    pb2 = load_schema(path)
    net = _net(fork_nets.deconvnet(), pb2)       # parse_net upgrades the V1 layers
    assert [lp.type for lp in net.layer if lp.name.startswith("unpool")] == ["Unpooling"] * 5
    shapes = infer_shapes(net).blobs
    # pool5 7x7 -> fc6 (7x7 kernel) 1x1 -> fc6-deconv (7x7) 7x7 -> unpool_size 14 ... 224
    assert tuple(shapes["fc6"])[2:] == (1, 1) and tuple(shapes["fc6-deconv"])[2:] == (7, 7)
    assert tuple(shapes["unpool5"])[2:] == (14, 14)
    assert tuple(shapes["seg-score"]) == (1, 21, 224, 224)
    w = _weights(net)
    x = np.random.default_rng(6).uniform(-1, 1, (1, 3, 224, 224)).astype(np.float32)
    r = forward(net, w, {"data": x})
    assert r["seg-score"].shape == (1, 21, 224, 224)
    # unpooling_layer.cpp (MAX, with mask): top[mask[i]] = bottom[i], zeros elsewhere
    up, val, mask = r["unpool5"], r["fc6-deconv"], r["pool5_mask"]
    for (ch, i, j) in ((0, 0, 0), (3, 6, 2)):
        k = int(mask[0, ch, i, j])
        assert up[0, ch, k // 14, k % 14] == val[0, ch, i, j]
    assert np.count_nonzero(up[0, 0]) <= 49


def test_unpooling_size_without_unpool_size(tmp_path):
    pb2 = load_schema(fork_schemas.write_v1_only_schema("deconvnet", str(tmp_path)))
    net = _net('input: "x" input_shape { dim: 1 dim: 1 dim: 2 dim: 3 }\n'
               'layer { name: "u" type: "Unpooling" bottom: "x" top: "u" '
               'unpooling_param { kernel_size: 3 stride: 2 } }\n', pb2)
    # unpooling_layer.cpp Reshape: max((H - 1) * s + k - 2p, H * s - p + 1):
    # H 2: max(5, 5) = 5; W 3: max(7, 7) = 7; without a mask value (ph, pw) goes to (2ph, 2pw)
    x = np.arange(1, 7, dtype=np.float32).reshape(1, 1, 2, 3)
    u = forward(net, None, {"x": x})["u"]
    assert u.shape == (1, 1, 5, 7)
    assert u[0, 0, 2, 4] == 6 and u[0, 0, 0, 2] == 2 and u.sum() == 21


# -- Faster R-CNN --------------------------------------------------------------------

def test_roi_pooling_by_hand():
    from netdsl.packs import faster_rcnn  # noqa: F401  (--plugin netdsl.packs.faster_rcnn)
    from netdsl.layers import lookup
    from netdsl.layers.runtime import Context
    pb2 = load_schema(None)
    lt = lookup("ROIPooling")
    # a LayerParameter carrying roi_pooling_param needs the fork's schema; the rule
    # itself is checked on a stand-in with the fork's fields (pooled_h, pooled_w,
    # spatial_scale: caffe-fast-rcnn caffe.proto)
    class P:
        pooled_h, pooled_w, spatial_scale = 2, 2, 0.5
    class Layer:
        type = "ROIPooling"
        roi_pooling_param = P()
        class DESCRIPTOR:
            fields_by_name = {"roi_pooling_param": None}
    assert pb2 is not None
    x = np.arange(2 * 1 * 6 * 6, dtype=np.float32).reshape(2, 1, 6, 6)
    rois = np.array([[1, 2, 2, 9, 7], [0, 0, 0, 1, 1]], np.float32)
    assert lt.top_shapes(Layer(), [(2, 1, 6, 6), (2, 5)], 1) == [(2, 1, 2, 2)]
    out = lt.run(Layer(), [x, rois], [], Context(phase=1, ntop=1, rng=None, inputs={}))[0]
    # roi_pooling_layer.cpp: ROI 0 on image 1: x 2*.5 = 1 .. round(4.5) = 5, y 1 .. round(3.5) = 4;
    # 4 rows x 5 columns, bins 2 x 2.5: rows [1, 3) [3, 5), columns [1, 4) [3, 6);
    # the max of each bin is its bottom-right value: image 1 starts at 36
    assert out[0, 0].tolist() == [[36 + 2 * 6 + 3, 36 + 2 * 6 + 5],
                                  [36 + 4 * 6 + 3, 36 + 4 * 6 + 5]]
    # ROI 1: x, y 0 .. round(0.5) = 1 (half away from zero): 2 x 2, one value per bin
    assert out[1, 0].tolist() == [[0, 1], [6, 7]]


def test_proposal_layer_rows_bounded_by_post_nms_top_n():
    from netdsl.packs import faster_rcnn  # noqa: F401
    # py-faster-rcnn's test.prototxt: rpn_cls_prob_reshape, rpn_bbox_pred, im_info -> rois;
    # cfg.TEST.RPN_POST_NMS_TOP_N = 300 bounds the rows of rois (x1..y2 plus batch index)
    net = parse_net('input: "a" input_shape { dim: 1 dim: 18 dim: 38 dim: 50 }\n'
                    'input: "b" input_shape { dim: 1 dim: 36 dim: 38 dim: 50 }\n'
                    'input: "im_info" input_shape { dim: 1 dim: 3 }\n'
                    'layer { name: "proposal" type: "Python" bottom: "a" bottom: "b" '
                    'bottom: "im_info" top: "rois" python_param { module: "rpn.proposal_layer" '
                    'layer: "ProposalLayer" param_str: "\'feat_stride\': 16" } }\n', "p.prototxt")
    assert tuple(infer_shapes(net).blobs["rois"]) == (300, 5)
    # proposal_layer.py reads cfg[str(self.phase)]: TRAIN.RPN_POST_NMS_TOP_N = 2000
    [lp for lp in net.layer if lp.name == "proposal"][0].phase = 0
    assert tuple(infer_shapes(net).blobs["rois"]) == (2000, 5)


def test_deeplab_v2_aspp_net_equals_opencv(schemas, tmp_path):
    cv2 = require("cv2")
    from netdsl.weights import write_caffemodel
    pb2 = load_schema(schemas["pspnet"])      # DeepLab v2's Interp at the same number
    text = fork_nets.deeplab_v2_aspp()
    path = tmp_path / "deeplab.prototxt"
    path.write_text(text)
    net = _net(text, pb2, str(path))
    assert tuple(infer_shapes(net).blobs["fc8_interp"]) == (1, 21, 321, 321)
    w = _weights(net)
    model = str(tmp_path / "d.caffemodel")
    write_caffemodel(model, w, types=net, pb2=pb2)
    x = np.random.default_rng(7).uniform(-1, 1, (1, 3, 321, 321)).astype(np.float32)
    ours = forward(net, model, {"data": x})
    cv = cv2.dnn.readNetFromCaffe(str(path), model)
    cv.setInput(x)
    names = ["pool3", "fc8_1", "fc8_4", "fc8", "fc8_interp"]   # (fc6_k: ReLU in place)
    for name, theirs in zip(names, cv.forward(names)):
        rel = np.abs(ours[name] - theirs).max() / np.abs(theirs).max()
        assert ours[name].shape == theirs.shape and rel <= 1e-5, (name, rel)


def test_enet_blocks_at_real_size(schemas):
    pb2 = load_schema(schemas["enet"])
    net = _net(fork_nets.enet_like(), pb2)
    shapes = infer_shapes(net).blobs
    # initial block: 13 conv channels + 3 pooled = 16 at 256x512; mask pooling 128x256;
    # Upsample scale 2: 256x512; Deconvolution k2 s2: 512x1024 (deconv_layer.cpp)
    assert tuple(shapes["concat0_1"]) == (1, 16, 256, 512)
    assert tuple(shapes["upsample5_0_4"]) == (1, 16, 256, 512)
    assert tuple(shapes["deconv6_0_0"]) == (1, 19, 512, 1024)
    w = _weights(net)
    x = np.random.default_rng(8).uniform(-1, 1, (1, 3, 512, 1024)).astype(np.float32)
    r = forward(net, w, {"data": x})
    # BN without bn_mode is LEARN (caffe-enet bn_layer.cpp): the batch's own statistics;
    # bn0_1 is followed by PReLU in place, so the rule is applied to concat0_1 again:
    # each channel's mean is the shift and its standard deviation the scale
    from netdsl.packs.bn import bn_forward
    from netdsl.layers.runtime import Context
    bn_layer = [lp for lp in net.layer if lp.name == "bn0_1"][0]
    y = bn_forward(bn_layer, [r["concat0_1"]], w["bn0_1"], Context(1, 1, None, {}))[0]
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), w["bn0_1"][1].reshape(-1), atol=2e-4)
    centred = y - y.mean(axis=(0, 2, 3), keepdims=True)
    np.testing.assert_allclose((centred ** 2).mean(axis=(0, 2, 3)),
                               w["bn0_1"][0].reshape(-1) ** 2, rtol=2e-3)
    assert r["deconv6_0_0"].shape == (1, 19, 512, 1024)
