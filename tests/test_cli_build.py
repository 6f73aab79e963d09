"""The build, render and schema verbs."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from netdsl.cli import main
from netdsl.prototxt import parse_net

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SMALL = """\
name: small
inputs:
  data: [1, 2, 8, 8]
layers:
  - Convolution: score
    num_output: 2
    kernel_size: 2
    stride: 2
    weight_filler: {type: constant, value: 0.5}
  - upsample: up
    factor: 2
    channels: 2
    dense: true
  - crop: out
    reference: data
"""


@pytest.fixture
def small(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text(SMALL)
    return path


def test_build_default_dir_and_phase(tmp_path, small, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["build", str(small)]) == 0
    out = tmp_path / "out" / "small"
    assert sorted(p.name for p in out.iterdir()) == ["deploy.prototxt", "train.prototxt",
                                                    "val.prototxt"]
    assert "wrote out/small/train.prototxt" in capsys.readouterr().err
    assert main(["build", str(small), "-o", "d", "--phase", "deploy"]) == 0
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["deploy.prototxt"]
    assert main(["build", str(small), "-o", "d", "--phase", "deplyo"]) == 2
    assert "did you mean `deploy`?" in capsys.readouterr().err


def test_build_defines(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["build", os.path.join(ROOT, "specs", "fcn32s.yaml"), "-o", str(out),
                 "-D", "num_classes=59", "--phase", "deploy"]) == 0
    net = parse_net((out / "deploy.prototxt").read_text(), "d", upgrade=False)
    assert net.layer[-2].convolution_param.num_output == 59
    assert main(["build", os.path.join(ROOT, "specs", "fcn32s.yaml"), "-o", str(out),
                 "-D", "=3"]) == 2
    assert "bad -D '=3': expected NAME=VALUE" in capsys.readouterr().err
    assert main(["build", os.path.join(ROOT, "specs", "fcn32s.yaml"), "-o", str(out),
                 "-D", "num_classes=[1,"]) == 2
    assert "bad -D 'num_classes=[1,': the value is not valid YAML" in capsys.readouterr().err


def _bilinear(k):
    # FCN's surgery.upsample_filt / Caffe's BilinearFiller for an even size k:
    # f = k / 2, c = (f - 0.5) / f... by hand for k = 4: [0.25, 0.75, 0.75, 0.25]
    assert k == 4
    v = np.array([0.25, 0.75, 0.75, 0.25], dtype=np.float32)
    return np.outer(v, v)


def test_build_weights_interp_and_transplant(tmp_path, small, capsys):
    from netdsl.weights import open_caffemodel, write_caffemodel
    src = tmp_path / "src.caffemodel"
    trained = np.arange(2 * 2 * 2 * 2, dtype=np.float32).reshape(2, 2, 2, 2)
    write_caffemodel(str(src), {"score": [trained, np.array([1, 2], np.float32)]},
                     types={"score": "Convolution"})
    out = tmp_path / "o"
    assert main(["build", str(small), "-o", str(out), "--weights"]) == 0
    model = open_caffemodel(str(out / "init.caffemodel"))
    w = {e.name: model.arrays(e) for e in model.layers}
    assert np.all(w["score"][0] == 0.5)     # the constant filler
    up = w["up"][0]
    assert up.shape == (2, 2, 4, 4)         # dense: C x C x (2f - f mod 2)^2
    # interp: a bilinear kernel on the diagonal (channel i -> i), zero elsewhere
    assert np.allclose(up[0, 0], _bilinear(4)) and np.allclose(up[1, 1], _bilinear(4))
    assert np.all(up[0, 1] == 0) and np.all(up[1, 0] == 0)
    assert main(["build", str(small), "-o", str(out), "--weights", "--from", str(src)]) == 0
    model = open_caffemodel(str(out / "init.caffemodel"))
    w = {e.name: model.arrays(e) for e in model.layers}
    assert np.array_equal(w["score"][0], trained)
    assert list(w["score"][1]) == [1, 2]


def test_render_verb(tmp_path, capsys):
    tpl = os.path.join(ROOT, "templates", "solver.prototxt.j2")
    assert main(["render", tpl, "-D", "base_lr=1e-14", "-D", "max_iter=5"]) == 0
    out = capsys.readouterr().out
    assert out.startswith('train_net: "train.prototxt"\n')
    assert "base_lr: 1e-14\n" in out and "max_iter: 5\n" in out
    target = tmp_path / "solver.prototxt"
    assert main(["render", tpl, "-o", str(target)]) == 0
    from netdsl.prototxt import parse_solver
    solver = parse_solver(target.read_text(), "s", upgrade=False)
    assert solver.test_iter == [736] and solver.momentum == pytest.approx(0.99)
    assert main(["render", tpl, "-D", "base_rl=1"]) == 2
    assert "did you mean `base_lr`?" in capsys.readouterr().err
    head = os.path.join(ROOT, "templates", "fcn-head.yaml.j2")
    assert main(["render", head, "-D", "stride=7"]) == 2
    assert "fcn-head.yaml.j2:16: stride must be 32, 16 or 8, not 7" in capsys.readouterr().err


def test_schema_verb(tmp_path):
    target = tmp_path / "spec.schema.json"
    assert main(["schema", "-o", str(target)]) == 0
    schema = json.loads(target.read_text())
    assert schema["title"] == "netdsl spec"
    assert "layer.Deconvolution" in schema["$defs"]


def test_all_shipped_specs_build(tmp_path):
    specs = sorted(f for f in os.listdir(os.path.join(ROOT, "specs")) if f.endswith(".yaml"))
    assert specs == ["fcn16s.yaml", "fcn32s-bilinear-group.yaml", "fcn32s.yaml",
                     "fcn8s-atonce.yaml", "fcn8s.yaml", "nearest-decoder.yaml"]
    for f in specs:
        assert main(["build", os.path.join(ROOT, "specs", f), "-o", str(tmp_path / f)]) == 0


# deploy layer lists of every shipped spec (names in order), pinned
VGG = ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1", "conv2_1", "relu2_1", "conv2_2",
       "relu2_2", "pool2", "conv3_1", "relu3_1", "conv3_2", "relu3_2", "conv3_3", "relu3_3",
       "pool3", "conv4_1", "relu4_1", "conv4_2", "relu4_2", "conv4_3", "relu4_3", "pool4",
       "conv5_1", "relu5_1", "conv5_2", "relu5_2", "conv5_3", "relu5_3", "pool5",
       "fc6", "relu6", "fc7", "relu7"]
DEPLOY = {
    "fcn32s.yaml": ["input"] + VGG + ["score_fr", "upscore", "score"],
    "fcn32s-bilinear-group.yaml": ["input"] + VGG + ["score_fr", "upscore", "score"],
    "fcn16s.yaml": ["input"] + VGG + ["score_fr", "upscore2", "score_pool4", "score_pool4c",
                                      "fuse_pool4", "upscore16", "score"],
    "fcn8s.yaml": ["input"] + VGG + ["score_fr", "upscore2", "score_pool4", "score_pool4c",
                                     "fuse_pool4", "upscore_pool4", "score_pool3",
                                     "score_pool3c", "fuse_pool3", "upscore8", "score"],
    "fcn8s-atonce.yaml": ["input"] + VGG + ["score_fr", "upscore2", "scale_pool4",
                                            "score_pool4", "score_pool4c", "fuse_pool4",
                                            "upscore_pool4", "scale_pool3", "score_pool3",
                                            "score_pool3c", "fuse_pool3", "upscore8", "score"],
    "nearest-decoder.yaml": ["input"] + VGG[:17] + ["up1", "dec1", "dec1_relu", "up2", "dec2",
                                                    "dec2_relu", "up3", "dec3", "dec3_relu",
                                                    "score"],
}


@pytest.mark.parametrize("spec", sorted(DEPLOY))
def test_deploy_layer_lists(spec, tmp_path):
    out = tmp_path / "o"
    assert main(["build", os.path.join(ROOT, "specs", spec), "-o", str(out),
                 "--phase", "deploy"]) == 0
    net = parse_net((out / "deploy.prototxt").read_text(), spec, upgrade=False)
    assert [l.name for l in net.layer] == DEPLOY[spec]


def test_subprocess_exit_code(tmp_path):
    bad = os.path.join(ROOT, "tests", "data", "bad_specs", "unknown_type.yaml")
    run = subprocess.run([sys.executable, "-m", "netdsl", "build", bad, "-o", str(tmp_path / "o")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    assert run.returncode == 2
    assert b"unknown_type.yaml:4:5: unknown layer type `Convolutoin`" in run.stderr
    assert not (tmp_path / "o").exists()
