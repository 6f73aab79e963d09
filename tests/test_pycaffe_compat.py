"""`netdsl pycaffe SCRIPT`: existing NetSpec scripts run unchanged with no Caffe."""
import os
import subprocess
import sys

import pytest

from netdsl.cli import main
from netdsl.proto import caffe_pb2
from netdsl.prototxt import parse_net

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = os.path.join(HERE, "data", "scripts")


def test_caffenet_style_script(tmp_path):
    assert main(["pycaffe", os.path.join(SCRIPTS, "caffenet_style.py"), str(tmp_path)]) == 0
    train = (tmp_path / "train.prototxt").read_text()
    test = (tmp_path / "test.prototxt").read_text()
    # caffe.to_proto(loss) names everything automatically (pycaffe's rule):
    # layers in depth-first order from the loss, tops <Type><k> counted per type;
    # in-place ReLUs take the next ReLU name; the layer is named after its top.
    net = parse_net(train, upgrade=False)
    got = [(l.name, l.type, list(l.bottom), list(l.top)) for l in net.layer]
    assert got == [
        ("Data1", "Data", [], ["Data1", "Data2"]),
        ("Convolution1", "Convolution", ["Data1"], ["Convolution1"]),
        ("ReLU1", "ReLU", ["Convolution1"], ["Convolution1"]),
        ("Pooling1", "Pooling", ["Convolution1"], ["Pooling1"]),
        ("LRN1", "LRN", ["Pooling1"], ["LRN1"]),
        ("Convolution2", "Convolution", ["LRN1"], ["Convolution2"]),
        ("ReLU2", "ReLU", ["Convolution2"], ["Convolution2"]),
        ("Pooling2", "Pooling", ["Convolution2"], ["Pooling2"]),
        ("InnerProduct1", "InnerProduct", ["Pooling2"], ["InnerProduct1"]),
        ("ReLU3", "ReLU", ["InnerProduct1"], ["InnerProduct1"]),
        ("Dropout1", "Dropout", ["InnerProduct1"], ["InnerProduct1"]),
        ("InnerProduct2", "InnerProduct", ["InnerProduct1"], ["InnerProduct2"]),
        ("SoftmaxWithLoss1", "SoftmaxWithLoss", ["InnerProduct2", "Data2"], ["SoftmaxWithLoss1"]),
    ]
    assert net.layer[5].convolution_param.group == 2
    assert net.layer[5].convolution_param.pad == [2]
    # print() adds one newline after str(net), which already ends in one
    assert train.endswith("}\n\n")
    test_net = parse_net(test, upgrade=False)
    assert [l.name for l in test_net.layer][-2:] == ["SoftmaxWithLoss1", "Accuracy1"]
    assert test_net.layer[0].data_param.batch_size == 50


def test_python_m_netdsl_runs_the_same(tmp_path):
    out = subprocess.run([sys.executable, "-m", "netdsl", "pycaffe",
                          os.path.join(SCRIPTS, "caffenet_style.py"), str(tmp_path)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "train.prototxt").exists()


def test_training_says_caffe_is_needed(tmp_path, capsys):
    script = tmp_path / "solve.py"
    script.write_text("import caffe\ncaffe.set_mode_gpu()\ncaffe.set_device(0)\n"
                      "solver = caffe.SGDSolver('solver.prototxt')\n")
    assert main(["pycaffe", str(script)]) == 2
    err = capsys.readouterr().err
    assert "caffe.SGDSolver: training needs Caffe" in err
    script.write_text("import caffe\nnet = caffe.Net('deploy.prototxt', caffe.TEST)\n")
    assert main(["pycaffe", str(script)]) == 2
    assert "deploy.prototxt: no such net prototxt" in capsys.readouterr().err


def test_proto_module_and_phases(tmp_path):
    script = tmp_path / "s.py"
    script.write_text(
        "import caffe\nfrom caffe.proto import caffe_pb2\nimport caffe.proto.caffe_pb2 as pb\n"
        "assert pb is caffe_pb2\nassert caffe.TRAIN == 0 and caffe.TEST == 1\n"
        "s = caffe_pb2.SolverParameter(base_lr=0.01)\n"
        "open(%r, 'w').write(str(s))\n" % str(tmp_path / "solver.prototxt"))
    assert main(["pycaffe", str(script)]) == 0
    assert (tmp_path / "solver.prototxt").read_text() == "base_lr: 0.01\n"
    assert caffe_pb2.TRAIN == 0


def test_missing_script_is_user_error(tmp_path, capsys):
    assert main(["pycaffe", str(tmp_path / "nope.py")]) == 2
    assert "no such script" in capsys.readouterr().err


def test_builder_error_in_script_points_at_script_line(tmp_path, capsys):
    script = tmp_path / "bad.py"
    script.write_text("import caffe\nfrom caffe import layers as L\n"
                      "n = caffe.NetSpec()\nn.data = L.Input(shape=dict(dim=[1, 3, 4, 4]))\n"
                      "n.conv = L.Convolution(n.data, kernal_size=3)\nprint(n.to_proto())\n")
    assert main(["pycaffe", str(script)]) == 2
    err = capsys.readouterr().err
    assert "%s:5: layer 'conv': unknown parameter `kernal_size`" % script in err


def test_fcn32s_style_script_with_coord_map_crop(tmp_path):
    assert main(["pycaffe", os.path.join(SCRIPTS, "fcn32s_net.py"), str(tmp_path)]) == 0
    net = parse_net((tmp_path / "train.prototxt").read_text(), upgrade=False)
    names = [l.name for l in net.layer]
    # FCN voc-fcn32s/train.prototxt layer order
    body = []
    for stage, convs in enumerate([2, 2, 3, 3, 3], start=1):
        for k in range(1, convs + 1):
            body += ["conv%d_%d" % (stage, k), "relu%d_%d" % (stage, k)]
        body.append("pool%d" % stage)
    assert names == (["data"] + body + ["fc6", "relu6", "drop6", "fc7", "relu7", "drop7",
                                         "score_fr", "upscore", "score", "loss"])
    score = net.layer[names.index("score")]
    # FCN's published voc-fcn32s crop: axis 2, offset 19 (crop_param of layer "score")
    assert score.type == "Crop" and list(score.bottom) == ["upscore", "data"]
    assert score.crop_param.axis == 2 and list(score.crop_param.offset) == [19]
    text = (tmp_path / "train.prototxt").read_text()
    assert 'crop_param {\n    axis: 2\n    offset: 19\n  }' in text
    val = (tmp_path / "val.prototxt").read_text()
    assert "seg11valid" in val and "seg11valid" not in text


def test_netspec_keys_vals_update_delitem():
    """The SSD fork's python/caffe/net_spec.py (weiliu89/caffe ssd 4817bf8b) adds
    NetSpec.keys(), vals(), update(name, params) and __delitem__, which its
    model_libs.py (VGGNetBody, CreateMultiBoxHead) calls."""
    from netdsl.netspec import NetSpec, layers as L
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 8, 8]))
    n.conv = L.Convolution(n.data, num_output=2, kernel_size=3)
    n.relu = L.ReLU(n.conv, in_place=True)
    assert n.keys() == ["data", "conv", "relu"]
    assert n.vals() == [n.data, n.conv, n.relu]
    n.update("conv", {"pad": 1})
    del n["relu"]
    net = n.to_proto()
    assert [lp.name for lp in net.layer] == ["data", "conv"]
    assert list(net.layer[1].convolution_param.pad) == [1]
    with pytest.raises(KeyError):
        del n["relu"]


def test_script_that_changes_directory_reports_no_false_writes(tmp_path, capsys):
    """A script may os.chdir (SSD's example scripts go to the repository root);
    the files it did not write are not reported as written."""
    sub = tmp_path / "sub"
    sub.mkdir()
    (tmp_path / "old.txt").write_text("x")
    script = sub / "s.py"
    script.write_text("import os\nos.chdir(os.path.dirname(os.path.abspath(__file__)) + '/..')\n"
                      "open('new.txt', 'w').write('y')\n")
    cwd = os.getcwd()
    os.chdir(str(sub))
    try:
        assert main(["pycaffe", "s.py"]) == 0
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    assert "old.txt" not in err
