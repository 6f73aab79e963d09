"""`netdsl draw` and netdsl.draw: the SVG is parsed, not looked at."""
import os
import re
import sys
import xml.etree.ElementTree as ET

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fcn_nets  # noqa: E402
import zoo_nets  # noqa: E402
from netdsl.cli import load_net, main  # noqa: E402
from netdsl.draw import block_key, layer_params, net_dot  # noqa: E402
from netdsl.prototxt import to_text  # noqa: E402
from netdsl.shapes import infer_shapes  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FCN8S = os.path.join(ROOT, "specs", "fcn8s.yaml")
SVG = "{http://www.w3.org/2000/svg}"


def _dims(shape) -> str:
    # the edge label of a blob: its dims joined by a multiplication sign
    return "×".join(str(d) for d in shape) if shape else "scalar"


def _groups(svg_path, cls):
    """{title: [text, ...]} for the <g class=cls> elements of an SVG."""
    root = ET.parse(str(svg_path)).getroot()
    out = {}
    for g in root.iter(SVG + "g"):
        if g.get("class") != cls:
            continue
        title = g.find(SVG + "title").text
        out[title] = [t.text or "" for t in g.iter(SVG + "text")]
    return out


def _has_token(texts, name) -> bool:
    pat = re.compile(r"(^|[^\w/.-])%s($|[^\w/.-])" % re.escape(name))
    return any(pat.search(t) for t in texts)


def _write(tmp_path, net, name="net.prototxt"):
    path = tmp_path / name
    path.write_text(to_text(net))
    return str(path)


# -- FCN-8s -----------------------------------------------------------------------------

def test_fcn8s_svg_has_every_layer_and_blob_shape(tmp_path, graphviz_dot, capsys):
    out = tmp_path / "fcn8s.svg"
    assert main(["draw", FCN8S, "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().err
    nodes = _groups(out, "node")
    edges = _groups(out, "edge")
    texts = [t for ts in list(nodes.values()) + list(edges.values()) for t in ts]
    net = load_net(FCN8S)
    for layer in net.layer:
        assert _has_token(texts, layer.name), layer.name
    shapes = infer_shapes(net)
    assert len(shapes.blobs) == 32
    for blob, shape in shapes.blobs.items():
        # some edge is labelled with the blob's name and, on the next line, its shape
        assert any(ts[:2] == [blob, _dims(shape)] for ts in edges.values()), blob
    # independent spot checks (Caffe's formulas): conv1_1 (500 + 2*100 - 3)/1 + 1 = 698;
    # the final Crop takes data's 500x500
    assert any(ts[:2] == ["conv1_1", "1×64×698×698"] for ts in edges.values())
    assert any(ts[:2] == ["score", "1×21×500×500"] for ts in edges.values())


def test_fcn8s_crop_alignment_and_folding(tmp_path, graphviz_dot):
    out = tmp_path / "fcn8s.svg"
    assert main(["draw", FCN8S, "-o", str(out)]) == 0
    nodes = _groups(out, "node")
    by_name = {ts[0]: ts for ts in nodes.values() if ts}
    # the published voc-fcn8s offsets (fcn_nets.PUBLISHED): 5, 9 and 31
    assert fcn_nets.PUBLISHED["fcn8s"] == {"score_pool4c": 5, "score_pool3c": 9, "score": 31}
    text = " ".join(by_name["score"])
    assert "crops upscore8 to data: axis 2 offset 31 (coordinate maps agree)" in text
    assert "crops score_pool4 to upscore2: axis 2 offset 5" in " ".join(by_name["score_pool4c"])
    assert "crops score_pool3 to upscore_pool4: axis 2 offset 9" in " ".join(
        by_name["score_pool3c"])
    # the reference bottom's edge says so
    edges = _groups(out, "edge")
    assert any(ts == ["data", "1×3×500×500", "(crop reference)"] for ts in edges.values())
    # in-place ReLUs are folded into the convolution that made their blob
    assert "+ relu1_1 (ReLU)" in by_name["conv1_1"]
    assert "relu1_1" not in by_name
    # parameters from the layer's own parameter message
    assert "num_output 64 · kernel_size 3" in by_name["conv1_1"]
    assert any("pad 100" in t for t in by_name["conv1_1"])
    assert "kernel_size 2 · stride 2" in by_name["pool1"]


def test_fcn8s_val_styles_data_and_loss(tmp_path, graphviz_dot):
    out = tmp_path / "val.svg"
    assert main(["draw", FCN8S, "--phase", "val", "--input", "data=1,3,500,500",
                 "--input", "label=1,1,500,500", "-o", str(out)]) == 0
    root = ET.parse(str(out)).getroot()
    fills = {}
    for g in root.iter(SVG + "g"):
        if g.get("class") == "node":
            texts = [t.text for t in g.iter(SVG + "text")]
            if texts and _node_outline(g) is not None:
                fills[texts[0]] = _node_outline(g).get("fill")
    assert fills["loss"] != fills["conv1_1"] and fills["data"] != fills["conv1_1"]
    assert fills["data"] != fills["loss"]
    assert fills["pool1"] != fills["conv1_1"]     # no learnable blobs
    edges = _groups(out, "edge")
    assert any(ts[:2] == ["loss", "scalar"] for ts in edges.values())   # Caffe: a 0-axis top


def test_png_pdf_and_dot_outputs(tmp_path, graphviz_dot):
    for suffix, magic in ((".png", b"\x89PNG"), (".pdf", b"%PDF"), (".dot", b"digraph")):
        out = tmp_path / ("fcn8s" + suffix)
        assert main(["draw", FCN8S, "-o", str(out), "--rankdir", "LR"]) == 0
        assert out.read_bytes().startswith(magic), suffix
    assert "rankdir=LR;" in (tmp_path / "fcn8s.dot").read_text()


def test_bad_suffix(tmp_path, capsys):
    assert main(["draw", FCN8S, "-o", str(tmp_path / "x.jpeg")]) == 2
    err = capsys.readouterr().err
    assert "use a name ending in .svg, .png, .pdf, .dot" in err
    assert not os.listdir(str(tmp_path))


# -- without Graphviz ------------------------------------------------------------------------

def test_missing_dot_says_how_to_install(tmp_path, monkeypatch, capsys):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    old = tmp_path / "net.svg"
    old.write_text("old picture")
    assert main(["draw", FCN8S, "-o", str(old)]) == 2
    err = capsys.readouterr().err
    assert "Graphviz `dot` program is not installed" in err
    assert "apt-get install graphviz" in err and "Traceback" not in err
    assert old.read_text() == "old picture"        # not clobbered
    dot = tmp_path / "net.dot"
    assert main(["draw", FCN8S, "-o", str(dot)]) == 0
    assert dot.read_text().startswith('digraph "fcn8s" {')


# -- bad input: draw what can be drawn -----------------------------------------------------

BAD = '''name: "bad"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 1 dim: 3 dim: 32 dim: 32 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 8 kernel_size: 3 } }
layer { name: "foo" type: "Foo" bottom: "conv1" top: "foo" }
layer { name: "conv2" type: "Convolution" bottom: "foo" top: "conv2"
        convolution_param { num_output: 8 kernel_size: 3 } }
layer { name: "side" type: "Pooling" bottom: "conv1" top: "side"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "grouped" type: "Convolution" bottom: "side" top: "grouped"
        convolution_param { num_output: 4 kernel_size: 1 group: 3 } }
'''


def _node_outline(g):
    """The first path or polygon of a node (its outline, filled)."""
    for el in g:
        if el.tag in (SVG + "path", SVG + "polygon"):
            return el
    return None


def test_unknown_type_and_shape_error_drawn_in_red(tmp_path, graphviz_dot, capsys):
    net = tmp_path / "bad.prototxt"
    net.write_text(BAD)
    out = tmp_path / "bad.svg"
    assert main(["draw", str(net), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "wrote %s, with layer 'foo', 'grouped' marked in red" % out in err
    assert "netdsl: error: layer 'foo': no shape rule for layer type `Foo`" in err
    assert "Traceback" not in err
    root = ET.parse(str(out)).getroot()
    strokes = {}
    for g in root.iter(SVG + "g"):
        if g.get("class") == "node":
            texts = [t.text for t in g.iter(SVG + "text")]
            if texts and _node_outline(g) is not None:
                strokes[texts[0]] = (_node_outline(g).get("stroke"), texts)
    assert strokes["foo"][0] == "#d00000" and strokes["grouped"][0] == "#d00000"
    assert strokes["conv1"][0] != "#d00000" and strokes["side"][0] != "#d00000"
    assert "shapes unknown" in strokes["conv2"][1]         # fed by the failing layer
    legend = " ".join(t for g in root.iter(SVG + "g") if g.get("class") == "node"
                      for t in [x.text or "" for x in g.iter(SVG + "text")])
    assert "no shape rule for layer type `Foo`" in legend
    # base_conv_layer.cpp: CHECK_EQ(channels_ % group_, 0): 8 channels, group 3
    assert "group 3 does not divide the 8 input channels" in legend
    edges = _groups(out, "edge")
    # the branch that does not depend on foo is shaped: conv1 (32 - 3)/1 + 1 = 30,
    # side ceil((30 - 2)/2) + 1 = 15
    assert any(ts[:2] == ["conv1", "1×8×30×30"] for ts in edges.values())
    assert any(ts[:2] == ["side", "1×8×15×15"] for ts in edges.values())
    assert any(ts[:2] == ["foo", "?"] for ts in edges.values())


def test_spec_shape_error_still_draws(tmp_path, graphviz_dot, capsys):
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: badspec\ncustom_types: [Foo]\ninputs:\n  data: [1, 3, 16, 16]\n"
                    "layers:\n  - Convolution: conv1\n    num_output: 4\n    kernel_size: 3\n"
                    "  - Foo: foo\n  - Convolution: conv2\n    num_output: 4\n"
                    "    kernel_size: 3\n")
    out = tmp_path / "bad.svg"
    assert main(["draw", str(spec), "-o", str(out)]) == 2
    assert "layer 'foo'" in capsys.readouterr().err
    texts = [t for ts in _groups(out, "node").values() for t in ts]
    assert _has_token(texts, "foo") and _has_token(texts, "conv2")
    assert "shape error (see legend)" in texts and "shapes unknown" in texts


def test_error_without_layer_draws_unshaped(tmp_path, capsys):
    out = tmp_path / "net.dot"
    net = _write(tmp_path, zoo_nets.alexnet())
    assert main(["draw", net, "--input", "nodata=1,3,227,227", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "without shapes" in err and "no net input named 'nodata'" in err
    dot = out.read_text()
    assert "shapes unknown" in dot and "no net input named" in dot


# -- deep nets ---------------------------------------------------------------------------

def test_500_layer_net(tmp_path, graphviz_dot):
    net = zoo_nets.chain(500)
    assert len(net.layer) == 500
    out = tmp_path / "deep.svg"
    assert main(["draw", _write(tmp_path, net), "-o", str(out)]) == 0
    nodes = _groups(out, "node")
    edges = _groups(out, "edge")
    texts = [t for ts in list(nodes.values()) + list(edges.values()) for t in ts]
    for layer in net.layer:
        assert _has_token(texts, layer.name), layer.name
    for blob, shape in infer_shapes(net).blobs.items():
        assert any(ts[:2] == [blob, _dims(shape)] for ts in edges.values()), blob


def test_resnet152_clusters_by_block():
    net = zoo_nets.resnet(152)
    dot = net_dot(net).dot
    assert 'label="block 4"' in dot
    for block in ("4a", "4b1", "4b35", "5c"):
        assert 'label="%s"' % block in dot
    # one node per layer not computed in place: convolutions, Eltwise, pooling, fc,
    # softmax and the input; BatchNorm, Scale and ReLU are folded
    layer_nodes = re.findall(r"^\s*L\d+ \[", dot, re.M)
    folded = sum(1 for l in net.layer if l.type in ("BatchNorm", "Scale", "ReLU"))
    assert len(layer_nodes) == len(net.layer) - folded


def test_block_key():
    assert block_key("conv3_1") == ("3", "3")
    assert block_key("res4b22_branch2a") == ("4", "4b22")
    assert block_key("bn4b22_branch2a") == ("4", "4b22")
    assert block_key("scale_conv1") == ("1", "1")
    assert block_key("score_fr") is None


def test_layer_params_generic():
    net = zoo_nets.alexnet()
    by_name = {l.name: l for l in net.layer}
    assert layer_params(by_name["conv2"]) == ["num_output 256", "kernel_size 5", "pad 2",
                                              "group 2"]
    # pool: MAX is the default, so it is not shown
    assert layer_params(by_name["pool1"]) == ["kernel_size 3", "stride 2"]
    assert layer_params(by_name["relu1"]) == []


def test_phase_filtering_of_prototxt(tmp_path):
    # caffenet.prototxt has a data layer per phase and an Accuracy layer in TEST only
    caffenet = os.path.join(ROOT, "tests", "data", "prototxt", "caffenet.prototxt")
    train, test = tmp_path / "train.dot", tmp_path / "test.dot"
    assert main(["draw", caffenet, "--phase", "train", "-o", str(train)]) == 0
    assert main(["draw", caffenet, "-o", str(test)]) == 0
    assert "<B>accuracy</B>" in test.read_text()
    assert "<B>accuracy</B>" not in train.read_text()
    # one data layer each; batch 256 in TRAIN and 50 in TEST, crop 227 (the prototxt)
    assert 'label="data\\n256×3×227×227"' in train.read_text()
    assert 'label="data\\n50×3×227×227"' in test.read_text()


@pytest.mark.parametrize("rankdir", ["XY"])
def test_bad_rankdir(rankdir, capsys):
    with pytest.raises(SystemExit):
        main(["draw", FCN8S, "-o", "x.dot", "--rankdir", rankdir])


def test_readme_test_command_is_ci_command():
    # CI runs exactly the README's test command, which provides Graphviz's dot
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        readme = fh.read()
    block = readme.split("Install with the test extras", 1)[1].split("```sh\n", 1)[1]
    command = block.split("\n", 1)[0]
    assert command.startswith("(command -v dot >/dev/null || (apt-get update && apt-get "
                              "install -y graphviz)) && ")
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as fh:
        assert fh.read().rstrip("\n").splitlines()[-1] == command
