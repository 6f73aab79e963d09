"""The `shapes`, `init` and `inspect` verbs."""
import json
import os

import numpy as np
import pytest

from netdsl.cli import main
from netdsl.weights import open_caffemodel

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "prototxt")
FCN = os.path.join(DATA, "fcn.prototxt")


def test_shapes_json_at_500(capsys):
    assert main(["shapes", FCN, "--input", "data=1,3,500,500", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    blobs = out["blobs"]
    # conv1_1: (500 + 2*100 - 3)/1 + 1 = 698 (conv_layer.cpp compute_output_shape)
    assert blobs["conv1_1"] == [1, 64, 698, 698]
    # pool1 k2 s2: ceil((698 - 2)/2) + 1 = 349 (pooling_layer.cpp Reshape)
    assert blobs["pool1"] == [1, 64, 349, 349]
    # Crop to the reference's spatial size (crop_layer.cpp): 500x500
    assert blobs["score"] == [1, 21, 500, 500]
    assert isinstance(out["layers"], list) and len(out["layers"]) == 11


def test_shapes_table_and_bad_input(capsys):
    assert main(["shapes", FCN]) == 0
    table = capsys.readouterr().out
    assert "conv1_1" in table and "Crop" in table
    assert main(["shapes", FCN, "--input", "data=1;3"]) == 2
    assert "bad --input 'data=1;3': expected NAME=N,C,H,W" in capsys.readouterr().err


def test_shapes_located_error(tmp_path, capsys):
    net = tmp_path / "bad.prototxt"
    net.write_text('layer { name: "data" type: "Input" top: "data" '
                   'input_param { shape { dim: 1 dim: 3 dim: 4 dim: 4 } } }\n'
                   'layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" '
                   'convolution_param { num_output: 4 kernel_size: 3 group: 2 } }\n')
    assert main(["shapes", str(net)]) == 2
    err = capsys.readouterr().err
    # base_conv_layer.cpp: CHECK_EQ(channels_ % group_, 0): 3 channels, group 2
    assert "layer 'conv'" in err and "group" in err
    assert "Traceback" not in err


SMALL = '''name: "small"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 dim: 4 dim: 4 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 2 kernel_size: 1 weight_filler { type: "constant" value: 0.5 }
                            bias_filler { type: "constant" value: 0.25 } } }
layer { name: "up" type: "Deconvolution" bottom: "conv" top: "up"
        convolution_param { num_output: 2 kernel_size: 4 stride: 2 pad: 1 bias_term: false } }
'''


def test_init_and_inspect(tmp_path, capsys):
    net = tmp_path / "small.prototxt"
    net.write_text(SMALL)
    model = tmp_path / "small.caffemodel"
    assert main(["init", str(net), "-o", str(model), "--interp", "up"]) == 0
    with open_caffemodel(str(model)) as m:
        w = m.to_dict()
    assert np.all(w["conv"][0] == 0.5) and np.all(w["conv"][1] == 0.25)
    up = w["up"][0]
    assert up.shape == (2, 2, 4, 4)
    # FCN upsample_filt(4): factor 2, center 1.5 -> 1D [.25 .75 .75 .25], outer product
    k = np.outer([.25, .75, .75, .25], [.25, .75, .75, .25])
    assert np.array_equal(up[0, 0], k) and np.array_equal(up[1, 1], k)
    assert not up[0, 1].any() and not up[1, 0].any()
    capsys.readouterr()
    assert main(["inspect", str(model), "--stats", "--format", "json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert "conv" in json.dumps(info) and "up" in json.dumps(info)


def test_init_unknown_interp_layer_writes_nothing(tmp_path, capsys):
    net = tmp_path / "small.prototxt"
    net.write_text(SMALL)
    model = tmp_path / "out.caffemodel"
    assert main(["init", str(net), "-o", str(model), "--interp", "upp"]) == 2
    assert "upp" in capsys.readouterr().err
    assert not model.exists()
    assert sorted(os.listdir(tmp_path)) == ["small.prototxt"]


def test_inspect_corrupt_file(tmp_path, capsys):
    bad = tmp_path / "bad.caffemodel"
    bad.write_bytes(b"\xa2\x06\xff\xff\xff\x0f")
    assert main(["inspect", str(bad)]) == 2
    assert "byte" in capsys.readouterr().err


def test_shapes_reports_crop_offsets_from_maps(capsys):
    # fcn.prototxt is a shortened FCN; place each top's pixel i on the input
    # (x = stride * i + offset) with coord_map.py's rules (window centre, minus pad):
    #   conv1_1 k3 p100:  x = i + 1 - 100           = i - 99
    #   pool1 k2 s2:      x = (2i + 0.5) - 99       = 2i - 98.5
    #   fc6 k7:           x = 2(i + 3) - 98.5       = 2i - 92.5   (score_fr k1: same)
    #   upscore k4 s2 p0: input i sits at output j = 2i + 1.5, so x = (j - 1.5) - 92.5 = j - 94
    # data pixel 0 is upscore pixel 94: the right offset is 94, not the file's 19
    assert main(["shapes", FCN, "--phase", "val"]) == 0
    out = capsys.readouterr().out
    assert "score: axis 2 offset 19, but the maps give axis 2 offset 94" in out


def test_init_double_data(tmp_path, capsys):
    net = tmp_path / "small.prototxt"
    net.write_text(SMALL)
    model = tmp_path / "d.caffemodel"
    assert main(["init", str(net), "-o", str(model), "--double"]) == 0
    assert "netdsl: warning: writing double_data: Caffe reads it, but OpenCV's Caffe importer" \
        in capsys.readouterr().err
    # BlobProto.double_data (field 8) instead of data (field 5): protobuf reads it back
    from netdsl.proto import caffe_pb2
    parsed = caffe_pb2.NetParameter.FromString(model.read_bytes())
    conv = [l for l in parsed.layer if l.name == "conv"][0]
    assert len(conv.blobs[0].data) == 0 and list(conv.blobs[0].double_data) == [0.5] * 4
