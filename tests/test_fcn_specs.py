"""specs/fcn*.yaml against FCN's published PASCAL VOC nets (fcn.berkeleyvision.org).

The expected nets are assembled from tests/data/fcn/: the published layers written
out one per line (VGG16 backbone, the Python data layers, the heads of each net) and
the published solver.  Train and val must equal the published train.prototxt and
val.prototxt field by field; deploy nets follow voc-fcn8s/deploy.prototxt's form
(an Input layer named "input" with top data 1x3x500x500, no Dropout, no loss).
"""
from __future__ import annotations

import os

import pytest

from netdsl.prototxt import parse_net, parse_solver, read_solver, to_text
from netdsl.spec import build, build_all, load_spec, surgery_layers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data", "fcn")
SPECS = os.path.join(ROOT, "specs")


def _lines(name):
    with open(os.path.join(DATA, name)) as fh:
        return [ln.rstrip("\n") for ln in fh if ln.startswith(("layer", "3", "1", "8"))]


def expected(net: str, split: str):
    """The published voc-fcn<net> train or val net, from the layer files."""
    data = _lines("data_layers.prototxt")[0 if split == "train" else 1]
    if net == "16s":   # voc-fcn16s's data paths are one level further up
        data = data.replace("../data/", "../../data/")
    head = []
    for line in _lines("heads.prototxt"):
        nets, _, layer = line.partition(": ")
        if net in nets.split():
            head.append(layer)
    text = "\n".join([data] + _lines("vgg16_backbone.prototxt") + head)
    return parse_net(text, "expected-%s-%s" % (net, split), upgrade=False)


def expected_deploy(net: str):
    """train's layers without the data layer, Dropout and loss, after FCN's Input layer."""
    train = expected(net, "train")
    text = ('layer { name: "input" type: "Input" top: "data" '
            'input_param { shape { dim: 1 dim: 3 dim: 500 dim: 500 } } }')
    deploy = parse_net(text, "input", upgrade=False)
    for layer in train.layer:
        if layer.type in ("Python", "Dropout", "SoftmaxWithLoss"):
            continue
        deploy.layer.add().CopyFrom(layer)
    return deploy


NETS = {"32s": "fcn32s.yaml", "16s": "fcn16s.yaml", "8s": "fcn8s.yaml",
        "8s-atonce": "fcn8s-atonce.yaml"}


@pytest.fixture(scope="module")
def built():
    return {net: build_all(load_spec(os.path.join(SPECS, f))) for net, f in NETS.items()}


def _diff(a, b):
    """First differing layer, for a readable failure."""
    for i, (la, lb) in enumerate(zip(a.layer, b.layer)):
        if la != lb:
            return "layer %d:\n%s\nexpected:\n%s" % (i, to_text(la), to_text(lb))
    return "layer counts %d vs %d" % (len(a.layer), len(b.layer))


@pytest.mark.parametrize("net", list(NETS))
@pytest.mark.parametrize("split", ["train", "val"])
def test_train_val_equal_published(built, net, split):
    got = built[net].nets[split]
    want = expected(net, split)
    assert [l.name for l in got.layer] == [l.name for l in want.layer]
    assert got == want, _diff(got, want)


@pytest.mark.parametrize("net", list(NETS))
def test_deploy(built, net):
    got = built[net].nets["deploy"]
    want = expected_deploy(net)
    assert got == want, _diff(got, want)


def test_fcn8s_deploy_equals_published_deploy_layers(built):
    # voc-fcn8s/deploy.prototxt: Input "input" (data 1x3x500x500), conv1_1 ... fc7 without
    # Dropout, the head without the loss -- 47 layers
    names = [l.name for l in built["8s"].nets["deploy"].layer]
    assert len(names) == 47
    assert names[:3] == ["input", "conv1_1", "relu1_1"]
    assert "drop6" not in names and "drop7" not in names and "loss" not in names
    assert names[-6:] == ["upscore_pool4", "score_pool3", "score_pool3c", "fuse_pool3",
                          "upscore8", "score"]


def test_surgery_layers(built):
    # FCN's solve.py runs interp on every layer with 'up' in its name
    assert built["32s"].surgery == {"interp": ["upscore"], "nearest": []}
    assert built["16s"].surgery["interp"] == ["upscore2", "upscore16"]
    assert built["8s"].surgery["interp"] == ["upscore2", "upscore_pool4", "upscore8"]
    for net in NETS:
        interp, nearest = surgery_layers(built[net].nets["train"])
        assert interp == built[net].surgery["interp"] and nearest == []


@pytest.mark.parametrize("net,base_lr,max_iter", [("32s", 1e-10, 100000), ("16s", 1e-12, 100000),
                                                  ("8s", 1e-14, 100000),
                                                  ("8s-atonce", 1e-10, 300000)])
def test_solver(built, net, base_lr, max_iter):
    want = read_solver(os.path.join(DATA, "solver.prototxt"), upgrade=False)
    want.base_lr = base_lr
    want.max_iter = max_iter
    assert built[net].solver == want


def test_build_writes_the_files(tmp_path):
    out = tmp_path / "out"
    written = build(os.path.join(SPECS, "fcn32s.yaml"), str(out))
    assert sorted(os.path.basename(p) for p in written) == [
        "deploy.prototxt", "solver.prototxt", "train.prototxt", "val.prototxt"]
    for split in ("train", "val"):
        text = (out / ("%s.prototxt" % split)).read_text()
        assert parse_net(text, split, upgrade=False) == expected("32s", split)
    assert parse_solver((out / "solver.prototxt").read_text(), "s", upgrade=False).base_lr == pytest.approx(1e-10)


def test_num_classes_override():
    # -D num_classes=59 (PASCAL-Context): every scoring/upsampling layer follows
    spec = load_spec(os.path.join(SPECS, "fcn8s.yaml"), {"num_classes": "59"})
    net = build_all(spec, ["deploy"]).nets["deploy"]
    outs = {l.name: l.convolution_param.num_output for l in net.layer
            if l.type in ("Convolution", "Deconvolution") and l.name.startswith(("score", "up"))}
    assert len(outs) == 6
    assert set(outs.values()) == {59}, outs
