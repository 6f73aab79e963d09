"""What a new user trips on (issue 17), tried from the command line in a temporary directory."""
from __future__ import annotations

import os

import pytest

from netdsl.cli import main

# a 2x downsampling convolution, a 2x upsampling Deconvolution and a crop back to `data`.
# By hand (pycaffe's coord_map rules): the convolution (kernel 2, stride 2, pad 0) maps
# y = x/2 + (0 - (2-1)/2)/2 = x/2 - 1/4; the upsample (kernel 2*2 - 0 = 4, stride 2, pad 0)
# maps z = 2y + (4-1)/2 = 2y + 3/2; so z = x + 1: the crop offset is 1.
SMALL = """\
name: small
inputs:
  data: [1, 2, 8, 8]
layers:
  - Convolution: score
    num_output: 2
    kernel_size: 2
    stride: 2
  - upsample: up
    factor: {factor}
    channels: 2
    dense: true
  - crop: out
    reference: data
{extra}"""


def spec(tmp_path, factor=2, extra="", name="s.yaml"):
    path = tmp_path / name
    path.write_text(SMALL.format(factor=factor, extra=extra))
    return path


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    """Run ``netdsl ARGS`` in tmp_path: (exit status, stdout, stderr)."""
    monkeypatch.chdir(tmp_path)

    def run(*args):
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err
    return run


# -- explicit crop offsets against the coordinate maps -------------------------------------

WRONG = "    offset: 2\n"   # the maps give 1 (above); 2 is still within bounds (10 - 2 >= 8)


def test_build_warns_about_a_wrong_explicit_offset(tmp_path, cli):
    spec(tmp_path, extra=WRONG)
    code, out, err = cli("build", "s.yaml", "-o", "o")
    assert code == 0
    warnings = [l for l in err.splitlines() if "warning" in l]
    assert len(warnings) == 1, err     # one line, although three nets share the layer
    w = warnings[0]
    assert w.startswith("netdsl: warning: s.yaml:15:13: layer 'out': crop offset 2 ")
    assert "which give offset 1 on axis 2" in w
    assert "drop `offset:`" in w


def test_build_is_quiet_when_the_offset_agrees(tmp_path, cli):
    spec(tmp_path, extra="    offset: 1\n")
    code, out, err = cli("build", "s.yaml", "-o", "o")
    assert code == 0 and "warning" not in err


def test_strict_flag_and_spec_key_make_it_an_error(tmp_path, cli):
    spec(tmp_path, extra=WRONG)
    code, out, err = cli("build", "s.yaml", "-o", "o", "--strict")
    assert code == 2
    assert err.count("\n") == 1 and "s.yaml:15:13: layer 'out': crop offset 2" in err
    assert not (tmp_path / "o").exists()
    spec(tmp_path, extra=WRONG + "strict: true\n")
    code, out, err = cli("build", "s.yaml", "-o", "o")
    assert code == 2 and "crop offset 2 disagrees" in err
    code, out, err = cli("shapes", "s.yaml")
    assert code == 2 and "crop offset 2 disagrees" in err


def test_shapes_warns_for_specs_and_prototxt(tmp_path, cli):
    spec(tmp_path, extra=WRONG)
    code, out, err = cli("shapes", "s.yaml")
    assert code == 0 and "warning: s.yaml:15:13: layer 'out': crop offset 2" in err
    assert cli("build", "s.yaml", "-o", "o")[0] == 0
    code, out, err = cli("shapes", "o/deploy.prototxt")
    assert code == 0
    assert "warning: o/deploy.prototxt: layer 'out': crop offset 2" in err
    assert "set crop_param { axis: 2 offset: 1 }" in err
    code, out, err = cli("shapes", "o/deploy.prototxt", "--strict")
    assert code == 2 and "error: o/deploy.prototxt: layer 'out': crop offset 2" in err


def test_the_builder_api_warns_too(tmp_path):
    from netdsl.crop_check import CropOffsetWarning
    from netdsl.spec import build, build_nets, load_spec
    path = spec(tmp_path, extra=WRONG)
    with pytest.warns(CropOffsetWarning, match="crop offset 2 disagrees"):
        build_nets(load_spec(str(path)))
    with pytest.warns(CropOffsetWarning):
        build(str(path), str(tmp_path / "o"))
    from netdsl.errors import NetdslError
    with pytest.raises(NetdslError, match="crop offset 2 disagrees"):
        build_nets(load_spec(str(path)), strict=True)


def test_scale_mismatch_hint_names_the_layer_and_the_fix(tmp_path, cli):
    spec(tmp_path, factor=4)
    code, out, err = cli("build", "s.yaml", "-o", "o")
    assert code == 2
    # the upsample doubles what the convolution halved only with factor 2
    assert "'up' upsamples by 4 (stride 4)" in err
    assert "upsample by 2 instead" in err
    assert "give `offset:`" not in err


def test_negative_offset_hint_says_how_much_padding(tmp_path, cli):
    # a 3x3 convolution without pad maps y = x + (0 - 1) = x - 1: its output starts one pixel
    # inside `data`, so pad 1 makes it cover `data`
    (tmp_path / "c.yaml").write_text(
        "inputs:\n  data: [1, 2, 8, 8]\nlayers:\n  - Convolution: score\n"
        "    num_output: 2\n    kernel_size: 3\n  - crop: out\n    reference: data\n")
    code, out, err = cli("build", "c.yaml", "-o", "o")
    assert code == 2
    assert "pad 'score' (the first layer after 'data') by 1 more pixel(s)" in err
    assert "give `offset:`" not in err


# -- shipped templates and specs -----------------------------------------------------------

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

INCLUDES_VGG = """\
include: [vgg16.yaml, fcn.yaml]
inputs:
  data: [1, 3, 64, 64]
layers:
  - vgg16:
  - score: score_fr
    channels: 5
"""


def test_render_list_and_bare_names_in_a_checkout(tmp_path, cli):
    code, out, err = cli("render", "--list")
    assert code == 0
    for name in ("vgg16.yaml", "vgg16.yaml.j2", "fcn.yaml", "solver.prototxt.j2", "fcn8s.yaml"):
        assert "  %s\n" % name in out
    code, out, err = cli("render", "vgg16.yaml.j2")
    assert code == 0 and "- Convolution: conv1_1" in out
    (tmp_path / "net.yaml").write_text(INCLUDES_VGG)
    code, out, err = cli("shapes", "net.yaml")
    # VGG16 conv1_1 has pad 100 in FCN's template: 64 + 2*100 - 3 + 1 = 262 (Caffe's formula)
    assert code == 0 and "conv1_1 (1,64,262,262)" in out
    assert "score_fr (1,5," in out


def test_a_file_beside_the_spec_wins_over_a_shipped_one(tmp_path, cli):
    (tmp_path / "vgg16.yaml").write_text(
        "blocks:\n  vgg16:\n    layers:\n      - Convolution: mine\n        num_output: 3\n"
        "        kernel_size: 1\n")
    (tmp_path / "net.yaml").write_text("include: [vgg16.yaml]\ninputs:\n  data: [1, 3, 8, 8]\n"
                                       "layers:\n  - vgg16:\n")
    code, out, err = cli("shapes", "net.yaml")
    assert code == 0 and "mine" in out and "conv1_1" not in out


def test_unknown_template_name_suggests_a_shipped_one(tmp_path, cli):
    (tmp_path / "net.yaml").write_text("include: [vgg61.yaml]\nlayers: []\n")
    code, out, err = cli("build", "net.yaml")
    assert code == 2 and "did you mean `vgg16.yaml`" in err


@pytest.mark.slow
def test_templates_and_specs_ship_in_a_non_editable_install(tmp_path):
    """``pip install .`` (not editable) into a fresh venv, then the CLI from another directory."""
    import shutil
    import subprocess
    import sys
    import sysconfig
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy(os.path.join(ROOT, name), src / name)
    for name in ("netdsl", "templates", "specs"):
        shutil.copytree(os.path.join(ROOT, name), src / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "_data"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    vpy = str(bindir / "python")
    purelib = subprocess.run([vpy, "-c", "import sysconfig; print(sysconfig.get_paths()"
                              "['purelib'])"], check=True, stdout=subprocess.PIPE,
                             universal_newlines=True).stdout.strip()
    # the dependencies (numpy, protobuf, ...) come from this interpreter's site-packages, added
    # after the venv's own (a path line in a .pth file: no editable finder of it runs); netdsl
    # itself is installed from the copied sources
    with open(os.path.join(purelib, "_deps.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    run = subprocess.run([vpy, "-m", "pip", "install", "--no-deps", "-q", str(src)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         universal_newlines=True, timeout=600)
    assert run.returncode == 0, run.stdout
    work = tmp_path / "elsewhere"
    work.mkdir()
    (work / "net.yaml").write_text(INCLUDES_VGG)

    def netdsl(*args):
        return subprocess.run([vpy, "-m", "netdsl"] + list(args), cwd=str(work),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, timeout=300)
    where = subprocess.run([vpy, "-c", "import netdsl; print(netdsl.__file__)"], cwd=str(work),
                           stdout=subprocess.PIPE, universal_newlines=True).stdout
    assert where.startswith(purelib), where     # the installed copy, not the sources
    listed = netdsl("render", "--list")
    assert listed.returncode == 0, listed.stderr
    assert "  vgg16.yaml.j2\n" in listed.stdout and "  fcn32s.yaml\n" in listed.stdout
    assert os.path.join("netdsl", "_data", "templates") in listed.stdout
    rendered = netdsl("render", "vgg16.yaml.j2")
    assert rendered.returncode == 0 and "- Convolution: conv1_1" in rendered.stdout
    shapes = netdsl("shapes", "net.yaml")
    assert shapes.returncode == 0, shapes.stderr
    assert "conv1_1 (1,64,262,262)" in shapes.stdout
    built = netdsl("build", "fcn32s.yaml", "-o", "out")
    assert built.returncode == 0, built.stderr
    assert (work / "out" / "deploy.prototxt").is_file()


# -- what init.caffemodel holds --------------------------------------------------------------

WEIGHTED = """\
inputs:
  data: [1, 2, 8, 8]
layers:
  - Convolution: conv1
    num_output: 2
    kernel_size: 1
    weight_filler: {type: gaussian, std: 0.01}
  - Convolution: score
    num_output: 2
    kernel_size: 2
    stride: 2
  - upsample: up
    factor: 2
    channels: 2
    dense: true
  - crop: out
    reference: data
"""


def _source(path):
    """A trained model: an InnerProduct-shaped `score` (2 x 8, as fc6 is to FCN's conv fc6)
    and a layer the new net does not have."""
    import numpy as np
    from netdsl.weights import write_caffemodel
    write_caffemodel(str(path), {"score": [np.arange(16, dtype=np.float32).reshape(2, 8),
                                           np.ones(2, np.float32)],
                                 "fc8": [np.zeros((3, 4), np.float32)]})


def _report(err):
    return [l for l in err.splitlines() if not l.startswith("wrote ")]


def test_build_weights_reports_as_init_does(tmp_path, cli):
    (tmp_path / "w.yaml").write_text(WEIGHTED)
    _source(tmp_path / "src.caffemodel")
    code, out, err = cli("build", "w.yaml", "-o", "o", "--weights", "--from", "src.caffemodel")
    assert code == 0
    built = _report(err)
    # the score weights have 16 values either way: reshaped 2x8 -> 2x2x2x2 (2 outputs,
    # 2 channels, 2x2 kernel); conv1's bias has no filler: caffe.proto's default, constant 0
    assert "reshaped  score[0] 2x8 -> 2x2x2x2" in built
    assert "copied    score[1]" in built
    assert "skipped   fc8: no layer 'fc8' in the target" in built
    assert "interp    up[0] 2x2x4x4: bilinear kernels (FCN's interp)" in built
    assert "filler    gaussian std 0.01: conv1[0]" in built
    assert ("filler    constant 0: conv1[1] (Caffe's default filler: these blobs start at "
            "zero)") in built
    assert "2 parameter blob(s) left at their fillers' values" in built
    code, out, err = cli("init", "o/deploy.prototxt", "-o", "m.caffemodel",
                         "--from", "src.caffemodel", "--interp", "up")
    assert code == 0
    assert _report(err) == built     # the same lines, then init's own summary
    assert err.splitlines()[-1].startswith("wrote m.caffemodel: 3 layers with parameters")


def test_build_weights_without_source_names_zero_filled_layers(tmp_path, cli):
    (tmp_path / "w.yaml").write_text(WEIGHTED)
    code, out, err = cli("build", "w.yaml", "-o", "o", "--weights")
    assert code == 0
    assert ("filler    constant 0: conv1[1], score[0], score[1] (Caffe's default filler: "
            "these blobs start at zero)") in err


def test_a_stale_init_caffemodel_is_a_warning(tmp_path, cli):
    (tmp_path / "w.yaml").write_text(WEIGHTED)
    assert cli("build", "w.yaml", "-o", "o", "--weights")[0] == 0
    code, out, err = cli("build", "w.yaml", "-o", "o")     # same net: the model still fits
    assert code == 0 and "warning" not in err
    (tmp_path / "w.yaml").write_text(WEIGHTED.replace("num_output: 2\n    kernel_size: 2",
                                                      "num_output: 3\n    kernel_size: 2"))
    code, out, err = cli("build", "w.yaml", "-o", "o")
    assert code == 0
    assert ("warning: o/init.caffemodel is left from an earlier build and does not fit this "
            "net: it has layer 'score' with blobs 2x2x2x2, 2, the net needs 3x2x2x2, 3") in err
    assert (tmp_path / "o" / "init.caffemodel").is_file()   # kept: it may be the user's


# -- where errors point ------------------------------------------------------------------------

def test_an_error_in_a_block_starts_at_the_users_line(tmp_path, cli):
    (tmp_path / "lib.yaml").write_text(
        "blocks:\n"
        "  head:\n"
        "    args: [up]\n"
        "    layers:\n"
        "      - Convolution: side\n"
        "        bottom: pool\n"
        "        num_output: 2\n"
        "        kernel_size: 1\n"
        "      - crop: sidec\n"
        "        reference: ${up}\n")
    (tmp_path / "net.yaml").write_text(
        "include: [lib.yaml]\n"
        "inputs:\n  data: [1, 2, 16, 16]\n"
        "layers:\n"
        "  - Pooling: pool\n    pool: MAX\n    kernel_size: 2\n    stride: 2\n"
        "  - head:\n"
        "    up: data\n")
    code, out, err = cli("build", "net.yaml", "-o", "o")
    assert code == 2
    assert err.startswith("netdsl: error: net.yaml:9:5: layer 'sidec': ")
    assert err.count("(via block `head` at lib.yaml:10:20)") == 1
    assert "'pool' downsamples by 2 (stride 2)" in err


def test_an_unknown_op_key_points_at_the_key_and_names_the_layer(tmp_path, cli):
    text = SMALL.format(factor=2, extra="").replace("    dense: true\n",
                                                     "    dense: true\n    fator: 2\n")
    (tmp_path / "s.yaml").write_text(text)
    code, out, err = cli("build", "s.yaml", "-o", "o")
    assert code == 2
    assert err.startswith("netdsl: error: s.yaml:13:5: layer 'up': upsample: unknown key "
                          "`fator`; did you mean `factor`?")


def test_yaml_indentation_errors_say_so_with_a_caret(tmp_path, cli):
    text = SMALL.format(factor=2, extra="").replace("    factor: 2", "      factor: 2")
    (tmp_path / "s.yaml").write_text(text)
    code, out, err = cli("build", "s.yaml", "-o", "o")
    assert code == 2
    lines = err.splitlines()
    assert lines[0].startswith("netdsl: error: s.yaml:10:13: YAML syntax error: ")
    assert "indented more than the keys it belongs with" in lines[0]
    assert "mapping values are not allowed" in lines[0]   # PyYAML's words, kept in brackets
    # the line itself, and a caret under the column PyYAML stopped at (13)
    assert lines[1] == "          factor: 2"
    assert lines[2] == "    " + " " * 12 + "^"
    text = SMALL.format(factor=2, extra="").replace("    channels: 2", "  channels: 2")
    (tmp_path / "s.yaml").write_text(text)
    code, out, err = cli("build", "s.yaml", "-o", "o")
    assert code == 2 and "indented less than the list item it belongs to" in err
    assert err.splitlines()[1] == "      channels: 2"


def test_a_field_whose_fields_are_not_indented(tmp_path, cli):
    (tmp_path / "z.yaml").write_text(
        "inputs:\n  data: [1, 3, 8, 8]\nlayers:\n  - Pooling: pool\n    pooling_param:\n"
        "    pool: MAX\n    kernel_size: 2\n")
    code, out, err = cli("build", "z.yaml", "-o", "o")
    assert code == 2
    lines = err.splitlines()
    assert lines[0] == ("netdsl: error: z.yaml:5:5: `pooling_param:` has no value; if the "
                        "lines below it are its fields, indent them under it by two more "
                        "spaces")
    assert lines[1:] == ["        pooling_param:", "        ^"]
    assert "takes a dict, got None" not in err


# -- the smaller things ----------------------------------------------------------------------

def test_shapes_explains_its_offset_column_and_ends_lines(tmp_path, cli):
    spec(tmp_path)
    code, out, err = cli("shapes", "s.yaml")
    assert code == 0 and out.endswith("\n")
    assert "stride, offset: top pixel x is centred on input pixel stride * x + offset" in out
    # the 2x2 stride-2 convolution: top pixel x covers input pixels 2x and 2x+1, centred
    # on 2x + 0.5
    row = next(l for l in out.splitlines() if l.startswith("score "))
    assert row.split()[3:5] == ["2", "0.5"]
    for extra in (["--cost"], ["--format", "json"], ["--cost", "--format", "json"]):
        assert cli("shapes", "s.yaml", *extra)[1].endswith("\n")
    assert cli("shapes", "s.yaml", "-o", "t.txt")[0] == 0
    assert (tmp_path / "t.txt").read_text().endswith("\n")


def test_shapes_of_a_python_data_layer_suggests_declare(tmp_path, cli):
    (tmp_path / "p.prototxt").write_text(
        'layer { name: "data" type: "Python" top: "data" top: "label"\n'
        '  python_param { module: "voc_layers" layer: "VOCSegDataLayer" } }\n'
        'layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"\n'
        '  convolution_param { num_output: 2 kernel_size: 1 } }\n')
    code, out, err = cli("shapes", "p.prototxt")
    assert code == 2
    assert "--declare data=N,C,H,W --declare label=N,C,H,W" in err
    assert "declared={" not in err   # the command line's words, not Python's
    code, out, err = cli("shapes", "p.prototxt", "--declare", "data=1,3,8,8",
                         "--declare", "label=1,1,8,8")
    assert code == 0 and "conv (1,2,8,8)" in out


def test_run_phase_in_lowercase_and_the_init_hint(tmp_path, cli):
    import numpy as np
    (tmp_path / "w.yaml").write_text(WEIGHTED)
    assert cli("build", "w.yaml", "-o", "o")[0] == 0
    code, out, err = cli("run", "o/deploy.prototxt", "--random-input")
    assert code == 2
    assert "`netdsl init o/deploy.prototxt -o init.caffemodel`" in err
    assert cli("init", "o/deploy.prototxt", "-o", "o/init.caffemodel")[0] == 0
    code, out, err = cli("run", "o/deploy.prototxt", "--random-input")
    assert code == 2 and "`netdsl run o/deploy.prototxt o/init.caffemodel`" in err
    results = {}
    for phase in ("train", "TRAIN", "test", "TEST", "val", "deploy"):
        code, out, err = cli("run", "o/deploy.prototxt", "o/init.caffemodel", "--random-input",
                             "--phase", phase, "-o", "%s.npz" % phase)
        assert code == 0, err
        results[phase] = np.load(str(tmp_path / ("%s.npz" % phase)))["out"]
    # no Dropout here: every phase gives the same output
    for phase in results:
        np.testing.assert_array_equal(results[phase], results["test"])


def test_pycaffe_says_what_the_script_wrote(tmp_path, cli):
    (tmp_path / "net.py").write_text(
        "import sys\n"
        "import caffe\n"
        "from caffe import layers as L\n"
        "n = caffe.NetSpec()\n"
        "n.data = L.Input(shape=dict(dim=[1, 3, 8, 8]))\n"
        "with open('train.prototxt', 'w') as f:\n"
        "    f.write(str(n.to_proto()))\n"
        "with open(sys.argv[1], 'w') as f:\n"
        "    f.write(str(n.to_proto()))\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "untouched.txt").write_text("x")
    code, out, err = cli("pycaffe", "net.py", os.path.join("sub", "deploy.prototxt"))
    assert code == 0
    assert err.splitlines() == ["wrote sub/deploy.prototxt", "wrote train.prototxt"]


def test_pycaffe_warns_about_a_wrong_offset_in_a_net_it_wrote(tmp_path, cli):
    # a 3x3 convolution with pad 5 maps y = x + 5 - (3 - 1)/2 = x + 4: the crop offset is 4
    (tmp_path / "net.py").write_text(
        "import caffe\n"
        "from caffe import layers as L\n"
        "n = caffe.NetSpec()\n"
        "n.data = L.Input(shape=dict(dim=[1, 3, 16, 16]))\n"
        "n.conv = L.Convolution(n.data, num_output=2, kernel_size=3, pad=5)\n"
        "n.crop = L.Crop(n.conv, n.data, crop_param=dict(axis=2, offset=%d))\n"
        "with open('deploy.prototxt', 'w') as f:\n"
        "    f.write(str(n.to_proto()))\n" % 19)
    code, out, err = cli("pycaffe", "net.py")
    assert code == 0
    assert err.splitlines() == [
        "wrote deploy.prototxt",
        "netdsl: warning: deploy.prototxt: layer 'crop': crop offset 19 disagrees with the "
        "coordinate maps, which give offset 4 on axis 2; 'conv' and 'data' would be "
        "misaligned; set crop_param { axis: 2 offset: 4 }"]


def test_shapes_of_a_spec_uses_its_inputs_for_a_python_data_layer(tmp_path, cli):
    (tmp_path / "p.yaml").write_text(
        "inputs:\n  data: [1, 3, 8, 8]\n  label: [1, 1, 8, 8]\n"
        "layers:\n"
        "  - Python: [data, label]\n    module: voc_layers\n    layer: VOCSegDataLayer\n"
        "  - Convolution: conv\n    bottom: data\n    num_output: 2\n    kernel_size: 1\n")
    code, out, err = cli("shapes", "p.yaml", "--phase", "train")
    assert code == 0, err
    assert "conv (1,2,8,8)" in out
    code, out, err = cli("shapes", "p.yaml", "--phase", "train", "--input", "data=1,3,4,4")
    assert code == 0 and "conv (1,2,4,4)" in out


def test_half_pixel_offset_hint(tmp_path, cli):
    # kernel 2, pad 1, stride 1: y = x + 1 - (2 - 1)/2 = x + 1/2, so the crop offset would be
    # 1/2; kernel 3 (y = x) or 1 (y = x + 1) makes it whole
    (tmp_path / "f.yaml").write_text(
        "inputs:\n  data: [1, 2, 8, 8]\nlayers:\n  - Convolution: c\n    num_output: 2\n"
        "    kernel_size: 2\n    pad: 1\n  - crop: out\n    reference: data\n")
    code, out, err = cli("build", "f.yaml", "-o", "o")
    assert code == 2 and "the offset 1/2 is not a whole number" in err
    assert "'c' is the last layer before the crop that shifts coordinates (shift 1/2)" in err
    assert "a kernel_size one larger or smaller there" in err


def test_a_missing_template_or_spec_points_at_the_shipped_ones(tmp_path, cli):
    code, out, err = cli("render", "vgg61.yaml.j2")
    assert code == 2 and "did you mean `vgg16.yaml.j2`?" in err
    code, out, err = cli("build", "fcn23s.yaml")
    assert code == 2 and "did you mean `fcn32s.yaml`?" in err
    code, out, err = cli("render", "nosuch.j2")
    assert code == 2 and "`netdsl render --list`" in err


# -- SPP and Im2col forward (issue 21, item 7) ---------------------------------------------

import numpy as np  # noqa: E402

from netdsl import NetSpec, layers as L, params as P  # noqa: E402
from netdsl.forward import forward  # noqa: E402
from netdsl.shapes import infer_shapes  # noqa: E402


def _caffe_pool(x, kh, kw, ph, pw, ave):
    """pooling_layer.cpp Forward_cpu as its loops, with stride = kernel (as SPP sets it):
    pooled size ceil((H + 2p - k) / s) + 1, minus one when the last window starts at or past
    H + p (with padding); MAX over the window clipped to the image; AVE sums the clipped
    window and divides by the window clipped to H + pad (before clipping to the image)."""
    n, c, h, w = x.shape
    oh = -(-(h + 2 * ph - kh) // kh) + 1
    ow = -(-(w + 2 * pw - kw) // kw) + 1
    if ph or pw:
        oh -= (oh - 1) * kh >= h + ph
        ow -= (ow - 1) * kw >= w + pw
    out = np.zeros((n, c, oh, ow), np.float32)
    for i in range(oh):
        for j in range(ow):
            hs, ws = i * kh - ph, j * kw - pw
            he, we = min(hs + kh, h + ph), min(ws + kw, w + pw)
            size = (he - hs) * (we - ws)
            win = x[:, :, max(hs, 0):min(he, h), max(ws, 0):min(we, w)]
            out[:, :, i, j] = (win.sum(axis=(2, 3)) / np.float32(size) if ave
                               else win.max(axis=(2, 3)))
    return out


def _caffe_spp(x, height, ave):
    """spp_layer.cpp: level l has 2^l bins; kernel ceil(H / bins), pad (kernel*bins - H + 1)/2
    (C++ integer division), stride = kernel; one level is the pooling's own 4-D top, more are
    flattened per item and concatenated."""
    n, _, h, w = x.shape
    levels = []
    for lvl in range(height):
        bins = 2 ** lvl
        kh, kw = -(-h // bins), -(-w // bins)
        ph, pw = (kh * bins - h + 1) // 2, (kw * bins - w + 1) // 2
        levels.append(_caffe_pool(x, kh, kw, ph, pw, ave))
    if height == 1:
        return levels[0]
    return np.concatenate([lv.reshape(n, -1) for lv in levels], axis=1)


def _spp_net(shape, height, pool):
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=list(shape)))
    n.spp = L.SPP(n.data, spp_param=dict(pyramid_height=height, pool=pool))
    return n.to_proto()


def test_spp_forward_by_hand_on_5x5():
    # 0..24 in a 5x5 map, pyramid_height 2 (spp_layer.cpp GetPoolingParam):
    # level 0: 1 bin, kernel 5, pad (5 - 5 + 1)/2 = 0 -> 1x1: max 24, mean 300/25 = 12;
    # level 1: 2 bins, kernel ceil(5/2) = 3, pad (6 - 5 + 1)/2 = 1, stride 3 -> ceil((5+2-3)/3)+1
    # = 3, and (3-1)*3 = 6 >= 5 + 1 drops the last window: 2x2.  Windows rows/cols [-1, 2) and
    # [2, 5): MAX 6, 9, 21, 24; AVE divides by 3*3 = 9 (hend = min(-1+3, 5+1)): the sums are
    # 0+1+5+6 = 12, 2+3+4+7+8+9 = 33, 10+11+15+16+20+21 = 93, 12+13+14+17+18+19+22+23+24 = 162.
    x = np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5)
    mx = forward(_spp_net(x.shape, 2, P.SPP.MAX), None, {"data": x})["spp"]
    assert mx.tolist() == [[24, 6, 9, 21, 24]]
    ave = forward(_spp_net(x.shape, 2, P.SPP.AVE), None, {"data": x})["spp"]
    want = np.array([[12, 12 / 9, 33 / 9, 93 / 9, 162 / 9]], np.float32)
    np.testing.assert_allclose(ave, want, rtol=1e-6)


@pytest.mark.parametrize("shape,height", [((2, 3, 13, 13), 3), ((1, 2, 7, 9), 2),
                                          ((1, 4, 6, 11), 1), ((2, 2, 15, 20), 4)])
@pytest.mark.parametrize("pool", ["MAX", "AVE"])
def test_spp_forward_against_a_pyramid_of_caffe_poolings(shape, height, pool):
    x = np.random.default_rng(7).standard_normal(shape).astype(np.float32)
    net = _spp_net(shape, height, getattr(P.SPP, pool))
    got = forward(net, None, {"data": x})["spp"]
    want = _caffe_spp(x, height, pool == "AVE")
    assert got.shape == want.shape == infer_shapes(net).blobs["spp"]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    if height == 1:
        assert got.ndim == 4        # the single level is the pooling's own (N, C, 1, 1) top


def test_opencv_dnn_has_no_spp_or_im2col():
    # OpenCV dnn's Caffe importer has no layer of either type, so there is nothing to compare
    # against; when it gains one this fails and the comparison belongs here.
    cv2 = pytest.importorskip("cv2")
    import tempfile
    for body in ('type: "SPP" spp_param { pyramid_height: 2 }',
                 'type: "Im2col" convolution_param { kernel_size: 2 }'):
        with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as f:
            f.write('input: "data" input_shape { dim: 1 dim: 2 dim: 5 dim: 5 }\n'
                    'layer { name: "l" bottom: "data" top: "l" %s }\n' % body)
        try:
            net = cv2.dnn.readNetFromCaffe(f.name)
            net.setInput(np.ones((1, 2, 5, 5), np.float32))
            with pytest.raises(cv2.error, match="Can't create layer"):
                net.forward()
        finally:
            os.unlink(f.name)


def _caffe_im2col_2d(x, kh, kw, ph, pw, sh, sw, dh, dw):
    """im2col.cpp im2col_cpu as its loops: for each channel, kernel row, kernel column (in that
    order, one column row each), each output (row, col) reads the input at
    (out_row*stride - pad + kernel_row*dilation, ...), zero outside the image."""
    c, h, w = x.shape
    oh = (h + 2 * ph - (dh * (kh - 1) + 1)) // sh + 1
    ow = (w + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1
    col = np.zeros((c * kh * kw, oh, ow), np.float32)
    r = 0
    for ch in range(c):
        for ki in range(kh):
            for kj in range(kw):
                for i in range(oh):
                    for j in range(ow):
                        y, z = i * sh - ph + ki * dh, j * sw - pw + kj * dw
                        if 0 <= y < h and 0 <= z < w:
                            col[r, i, j] = x[ch, y, z]
                r += 1
    return col


@pytest.mark.parametrize("conv,geo", [
    (dict(kernel_size=3), (3, 3, 0, 0, 1, 1, 1, 1)),
    (dict(kernel_h=2, kernel_w=3, pad_h=1, pad_w=0, stride_h=2, stride_w=1),
     (2, 3, 1, 0, 2, 1, 1, 1)),
    (dict(kernel_size=[3], pad=[2], stride=[2], dilation=[2]), (3, 3, 2, 2, 2, 2, 2, 2)),
    (dict(kernel_size=[2, 3], dilation=[1, 2], force_nd_im2col=True), (2, 3, 0, 0, 1, 1, 1, 2)),
])
def test_im2col_forward_against_caffe_loops(conv, geo):
    x = np.random.default_rng(3).standard_normal((2, 3, 7, 8)).astype(np.float32)
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=list(x.shape)))
    n.col = L.Im2col(n.data, convolution_param=conv)
    net = n.to_proto()
    got = forward(net, None, {"data": x})["col"]
    want = np.stack([_caffe_im2col_2d(x[i], *geo) for i in range(2)])
    assert got.shape == want.shape == infer_shapes(net).blobs["col"]
    assert np.array_equal(got, want)


def test_im2col_forward_with_axis_and_one_spatial_axis():
    # axis 2 on (2, 3, 4, 9): num = 2*3 = 6 items of 4 channels with 1 spatial axis (im2col_nd);
    # kernel 3, stride 2, pad 1: out (9 + 2 - 3)/2 + 1 = 5 positions, rows c*3 + k
    x = np.random.default_rng(5).standard_normal((2, 3, 4, 9)).astype(np.float32)
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=list(x.shape)))
    n.col = L.Im2col(n.data, convolution_param=dict(axis=2, kernel_size=[3], stride=[2],
                                                    pad=[1]))
    net = n.to_proto()
    got = forward(net, None, {"data": x})["col"]
    want = np.zeros((2, 3, 12, 5), np.float32)
    for a in range(2):
        for b in range(3):
            for ch in range(4):
                for k in range(3):
                    for o in range(5):
                        z = o * 2 - 1 + k
                        if 0 <= z < 9:
                            want[a, b, ch * 3 + k, o] = x[a, b, ch, z]
    assert got.shape == infer_shapes(net).blobs["col"] == (2, 3, 12, 5)
    assert np.array_equal(got, want)


# -- small frictions (issue 21, item 6) ----------------------------------------------------

def test_inspect_of_an_empty_file_is_a_located_error(tmp_path, cli):
    (tmp_path / "empty.caffemodel").write_bytes(b"")
    code, out, err = cli("inspect", "empty.caffemodel")
    assert code == 2 and out == ""
    assert err.startswith("netdsl: error: empty.caffemodel: empty file (0 bytes)")
    assert err.count("\n") == 1
    assert cli("inspect", "empty.caffemodel", "--format", "json")[0] == 2


K0 = """\
name: "k0"
input: "data"
input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }
layer { name: "c" type: "Convolution" bottom: "data" top: "c"
  convolution_param { num_output: 2 kernel_size: %s } }
"""


@pytest.mark.parametrize("verb", [("shapes",), ("draw", "-o", "k.dot"),
                                  ("init", "-o", "k.caffemodel")])
def test_kernel_size_zero_is_located_like_a_negative_one(tmp_path, cli, verb):
    # caffe.proto's kernel_size is uint32: -1 fails to parse, 0 parses and fails in
    # BaseConvolutionLayer::LayerSetUp ("Filter dimensions must be nonzero"); both point at
    # line 5, column 50 (the value after `kernel_size: `)
    (tmp_path / "neg.prototxt").write_text(K0 % "-1")
    (tmp_path / "zero.prototxt").write_text(K0 % "0")
    code, _, neg = cli(verb[0], "neg.prototxt", *verb[1:])
    assert code == 2 and neg.startswith("netdsl: error: neg.prototxt:5:50: layer 'c': ")
    code, _, zero = cli(verb[0], "zero.prototxt", *verb[1:])
    assert code == 2
    assert "netdsl: error: zero.prototxt:5:50: layer 'c': Filter dimensions must be nonzero" \
        in zero
    assert not (tmp_path / "k.caffemodel").exists()


def test_kernel_size_zero_in_a_spec_points_at_its_value(tmp_path, cli):
    (tmp_path / "k.yaml").write_text("inputs:\n  data: [1, 3, 8, 8]\nlayers:\n"
                                     "  - Convolution: c\n    num_output: 2\n"
                                     "    kernel_size: 0\n")
    code, _, err = cli("shapes", "k.yaml")
    assert code == 2 and "k.yaml:6:18: layer 'c': Filter dimensions must be nonzero" in err


def test_shapes_footer_separates_batchnorm_statistics(tmp_path, cli):
    import sys
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import zoo_nets
    from netdsl.prototxt import write
    write(str(tmp_path / "r50.prototxt"), zoo_nets.resnet(50))
    code, out, _ = cli("shapes", "r50.prototxt")
    assert code == 0
    # learned: 25,557,032 (torchvision's ResNet-50 count: convolutions, BatchNorm's affine
    # part -- Caffe's Scale layers -- and fc1000).  Statistics: 53 BatchNorm layers, each
    # mean and variance per channel plus one factor; their channels sum to
    # 64 (conv1) + 3*6*64 + 256 + 4*6*128 + 512 + 6*6*256 + 1024 + 3*6*512 + 2048 = 26,560
    # (per bottleneck c + c + 4c, plus each stage's projection 4c): 2*26,560 + 53 = 53,173.
    footer = [l for l in out.splitlines() if " blobs, " in l]
    assert footer == ["229 layers, 74 blobs, 25,557,032 learnable parameters "
                      "+ 53,173 BatchNorm statistics (not learned)"]


def test_a_net_without_batchnorm_keeps_its_footer(tmp_path, cli):
    (tmp_path / "k.prototxt").write_text(K0 % "3")
    code, out, _ = cli("shapes", "k.prototxt")
    # 2*3*3*3 weights + 2 biases = 56
    assert code == 0 and "2 layers, 2 blobs, 56 learnable parameters\n" in out


def test_draw_shows_only_non_default_parameters_and_a_crop_offset_once(tmp_path, cli):
    (tmp_path / "c.prototxt").write_text(
        'input: "data"\ninput_shape { dim: 1 dim: 3 dim: 8 dim: 8 }\n'
        'layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"\n'
        '  convolution_param { num_output: 2 kernel_size: 3 pad: 2 stride: 1 dilation: 1\n'
        '                      group: 1 bias_term: true } }\n'
        'layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool"\n'
        '  pooling_param { pool: MAX kernel_size: 2 stride: 1 pad: 0 } }\n'
        'layer { name: "crop" type: "Crop" bottom: "conv" bottom: "data" top: "crop"\n'
        '  crop_param { axis: 2 offset: 1 } }\n')
    assert cli("draw", "c.prototxt", "-o", "c.dot")[0] == 0
    dot = (tmp_path / "c.dot").read_text()
    conv = next(l for l in dot.splitlines() if "<B>conv</B>" in l)
    # stride 1, dilation 1, group 1 and bias_term true are Caffe's defaults (caffe.proto)
    assert "num_output 2 · kernel_size 3" in conv and "pad 2" in conv
    assert "stride" not in conv and "dilation" not in conv and "group" not in conv
    pool = next(l for l in dot.splitlines() if "<B>pool</B>" in l)
    assert "kernel_size 2" in pool and "stride" not in pool and "MAX" not in pool
    crop = next(l for l in dot.splitlines() if "<B>crop</B>" in l)
    # conv (kernel 3, pad 2) puts data pixel x at conv pixel x + pad - (k - 1)/2 = x + 1, so
    # offset 1 agrees; the crop note states it, the parameter line does not repeat it
    assert crop.count("offset") == 1 and "axis 2 offset 1 (coordinate maps agree)" in crop


# -- inputs of data layers with several tops; --declare on every verb (issue 21, item 5) --

import sys  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fork_schemas  # noqa: E402
import published_segnet_deconvnet  # noqa: E402


def _segnet_files(tmp_path):
    schema = fork_schemas.write_fork_schema("segnet", str(tmp_path))
    (tmp_path / "segnet_inference.prototxt").write_text(
        published_segnet_deconvnet.segnet_inference())
    return os.path.basename(schema)


def test_segnet_inference_shapes_with_its_data_top_only(tmp_path, cli):
    proto = _segnet_files(tmp_path)
    code, out, err = cli("shapes", "--proto", proto, "segnet_inference.prototxt",
                         "--input", "data=1,3,360,480")
    assert code == 0, err
    # SegNet-Tutorial's inference net: 11 CamVid classes at the input's size
    assert "-> prob (1,11,360,480)" in out
    data = next(l for l in out.splitlines() if l.startswith("data "))
    assert "-> data (1,3,360,480)" in data
    assert "'label': not shaped, feeds nothing in this phase" in data
    code, out, err = cli("draw", "--proto", proto, "segnet_inference.prototxt",
                         "--input", "data=1,3,360,480", "-o", "s.dot")
    assert code == 0, err


DENSE = """\
layer { name: "data" type: "DenseImageData" top: "data" top: "label"
  dense_image_data_param { source: "list.txt" batch_size: 1 } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "score"
  convolution_param { num_output: 2 kernel_size: 1
                      weight_filler { type: "constant" value: 1 } } }
"""
LOSS = """\
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "label" top: "loss" }
"""


def test_a_needed_data_top_is_named_with_its_flag(tmp_path, cli):
    proto = _segnet_files(tmp_path)
    (tmp_path / "train.prototxt").write_text(DENSE + LOSS)
    code, out, err = cli("shapes", "--proto", proto, "train.prototxt",
                         "--input", "data=1,3,4,4")
    assert code == 2
    assert "'label' feeds layer 'loss'" in err
    assert "--input label=N,C,H,W" in err and "--input data=" not in err
    code, out, err = cli("shapes", "--proto", proto, "train.prototxt",
                         "--input", "data=1,3,4,4", "--input", "label=1,1,4,4")
    assert code == 0 and "-> loss ()" in out
    # nothing given: both tops are named
    code, out, err = cli("shapes", "--proto", proto, "train.prototxt")
    assert code == 2 and "--input data=N,C,H,W --input label=N,C,H,W" in err


def test_run_with_the_data_top_only(tmp_path, cli):
    import numpy as np
    proto = _segnet_files(tmp_path)
    (tmp_path / "deploy.prototxt").write_text(DENSE)
    x = np.arange(48, dtype=np.float32).reshape(1, 3, 4, 4)
    np.save(str(tmp_path / "x.npy"), x)
    code, out, err = cli("run", "--proto", proto, "deploy.prototxt", "--input", "data=x.npy",
                         "-o", "o.npz")
    assert code == 0, err
    got = np.load(str(tmp_path / "o.npz"))
    # a 1x1 convolution with all-ones weights and zero bias sums the 3 channels
    assert sorted(got.keys()) == ["score"]
    assert np.array_equal(got["score"], np.repeat(x.sum(axis=1, keepdims=True), 2, axis=1))
    (tmp_path / "train.prototxt").write_text(DENSE + LOSS)
    code, out, err = cli("run", "--proto", proto, "train.prototxt", "--input", "data=x.npy")
    assert code == 2
    assert "'label' feeds layer 'loss'" in err and "--input label=label.npy" in err
    assert "N,C,H,W" not in err


PYLAYER = """\
name: "py"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 dim: 4 dim: 4 } } }
layer { name: "mystery" type: "MyFork" bottom: "data" top: "feat" }
layer { name: "conv" type: "Convolution" bottom: "feat" top: "conv"
  convolution_param { num_output: 3 kernel_size: 1 } }
"""


def test_declare_on_init(tmp_path, cli):
    (tmp_path / "f.prototxt").write_text(PYLAYER)
    code, out, err = cli("init", "f.prototxt", "-o", "f.caffemodel")
    assert code == 2 and "--declare TOP=N,C,H,W" in err
    assert not (tmp_path / "f.caffemodel").exists()
    code, out, err = cli("init", "f.prototxt", "-o", "f.caffemodel", "--declare",
                         "feat=1,5,4,4")
    assert code == 0, err
    code, out, err = cli("inspect", "f.caffemodel", "--format", "json")
    import json
    blobs = json.loads(out)["layers"][0]["blobs"]
    # conv weights (num_output, channels of 'feat', 1, 1) = (3, 5, 1, 1), bias (3,)
    assert [b["shape"] for b in blobs] == [[3, 5, 1, 1], [3]]
    code, out, err = cli("init", "f.prototxt", "-o", "g.caffemodel", "--declare",
                         "feat=1,5,4,4", "--declare", "faet=1,5,4,4")
    assert code == 0
    assert "warning: --declare faet: no layer or top of that name in the net(s) shaped" in err


def test_declare_on_pycaffe_and_run(tmp_path, cli):
    (tmp_path / "f.prototxt").write_text(PYLAYER)
    (tmp_path / "s.py").write_text(
        "import caffe\nnet = caffe.Net('f.prototxt', caffe.TEST)\n"
        "print(net.blobs['conv'].data.shape, net.params['conv'][0].data.shape)\n")
    code, out, err = cli("pycaffe", "s.py")
    assert code == 2 and "MyFork" in err
    code, out, err = cli("pycaffe", "--declare", "feat=1,5,4,4", "s.py")
    assert code == 0, err
    # pycaffe prints from the script itself
    # (captured by capsys through sys.stdout)
    assert "(1, 3, 4, 4) (3, 5, 1, 1)" in out
    # run: the shapes are known, so the next complaint is the missing forward, not the shapes
    code, out, err = cli("run", "f.prototxt", "--random-input", "--declare", "feat=1,5,4,4")
    assert code == 2 and "no numpy forward for layer type 'MyFork'" in err


def test_declare_on_build(tmp_path, cli):
    (tmp_path / "s.yaml").write_text(
        "custom_types: [MyFork]\ninputs:\n  data: [1, 2, 4, 4]\nlayers:\n  - MyFork: feat\n"
        "  - Convolution: conv\n    num_output: 3\n    kernel_size: 1\n")
    code, out, err = cli("build", "s.yaml", "-o", "o", "--weights")
    assert code == 2 and "MyFork" in err
    code, out, err = cli("build", "s.yaml", "-o", "o", "--weights", "--declare", "feat=1,5,4,4")
    assert code == 0, err
    code, out, err = cli("inspect", "o/init.caffemodel")
    assert "3x5x1x1" in out


# -- BatchNorm statistics for a usable fresh TEST forward (issue 21, item 6) ---------------

BN_NET = """\
name: "bn"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 dim: 4 dim: 4 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 3 kernel_size: 1 weight_filler { type: "constant" value: 1 } } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" }
"""


@pytest.mark.parametrize("stats,eps", [("zero", 1e-5), ("unit", 1 + 1e-5)])
def test_init_bn_stats(tmp_path, cli, stats, eps):
    import numpy as np
    (tmp_path / "bn.prototxt").write_text(BN_NET)
    args = ["init", "bn.prototxt", "-o", "bn.caffemodel"]
    if stats == "unit":
        args += ["--bn-stats", "unit"]
    code, out, err = cli(*args)
    assert code == 0, err
    if stats == "unit":
        assert "start at mean 0, variance 1, moving-average factor 1" in err
    else:
        assert "start at Caffe's zeros" in err and "--bn-stats unit" in err
    from netdsl.weights import open_caffemodel
    with open_caffemodel(str(tmp_path / "bn.caffemodel")) as m:
        arrays = m.arrays(next(e for e in m.layers if e.name == "bn"))
        mean, var, factor = (np.asarray(a).ravel().tolist() for a in arrays)
    assert (mean, var, factor) == (([0.0] * 3, [1.0] * 3, [1.0]) if stats == "unit"
                                   else ([0.0] * 3, [0.0] * 3, [0.0]))
    x = np.arange(32, dtype=np.float32).reshape(1, 2, 4, 4)
    np.save(str(tmp_path / "x.npy"), x)
    assert cli("run", "bn.prototxt", "bn.caffemodel", "--input", "data=x.npy",
               "-o", "o.npz")[0] == 0
    got = np.load(str(tmp_path / "o.npz"))["conv"]
    # batch_norm_layer.cpp, TEST: scale = 1/factor (0 when the factor is 0), mean*scale and
    # var*scale, then (x - mean) / sqrt(var + eps), eps 1e-5.  The 1x1 all-ones conv sums the
    # two channels: 2k + 16 at pixel k.  Zeros: (2k + 16) / sqrt(1e-5) (16 -> 5059.6);
    # unit: (2k + 16) / sqrt(1 + 1e-5).
    s = x.sum(axis=1, keepdims=True)
    want = np.repeat(s, 3, axis=1) / np.sqrt(np.float32(eps))
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_build_weights_bn_stats_unit(tmp_path, cli):
    (tmp_path / "s.yaml").write_text(
        "inputs:\n  data: [1, 2, 4, 4]\nlayers:\n  - Convolution: conv\n    num_output: 3\n"
        "    kernel_size: 1\n  - BatchNorm: bn\n")
    code, out, err = cli("build", "s.yaml", "-o", "o", "--weights", "--bn-stats", "unit")
    assert code == 0, err
    assert "statistics 1 layer(s) (bn, ...) start at mean 0, variance 1" in err
    from netdsl.weights import open_caffemodel
    with open_caffemodel(str(tmp_path / "o" / "init.caffemodel")) as m:
        arrays = m.arrays(next(e for e in m.layers if e.name == "bn"))
        assert [float(a.ravel()[0]) for a in arrays] == [0.0, 1.0, 1.0]


# -- crop offsets the maps cannot confirm; same-size advice (issue 21, item 6) -------------

UNCONFIRMED = """\
custom_types: [MyFork]
inputs:
  data: [1, 2, 8, 8]
  feat: [1, 2, 10, 10]
layers:
  - MyFork: feat
  - crop: out
    bottom: feat
    reference: data
    offset: 1
"""
# MyFork has no coordinate map: nothing relates 'feat' to 'data', so offset 1 is unchecked


def test_an_unconfirmed_offset_is_reported_alike_by_build_shapes_and_the_builder(tmp_path,
                                                                                cli):
    (tmp_path / "u.yaml").write_text(UNCONFIRMED)
    want = ("u.yaml:10:13: layer 'out': crop offset 1 on axis 2 cannot be checked against "
            "the coordinate maps: no coordinate map between 'feat' and 'data'")
    code, out, err = cli("build", "u.yaml", "-o", "o")
    assert code == 0 and "netdsl: warning: " + want in err
    assert err.count("cannot be checked") == 1       # once for the three nets
    code, out, err = cli("shapes", "u.yaml")
    assert code == 0 and "netdsl: warning: " + want in err
    code, out, err = cli("shapes", "o/deploy.prototxt", "--declare", "feat=1,2,10,10")
    assert code == 0
    assert ("netdsl: warning: o/deploy.prototxt: layer 'out': crop offset 1 on axis 2 cannot "
            "be checked") in err
    for args in (("build", "u.yaml", "-o", "o2", "--strict"), ("shapes", "u.yaml", "--strict"),
                 ("shapes", "o/deploy.prototxt", "--strict", "--declare", "feat=1,2,10,10")):
        code, out, err = cli(*args)
        assert code == 2 and "cannot be checked against the coordinate maps" in err, args
        assert "drop `offset:`" not in err
    assert not (tmp_path / "o2").exists()
    from netdsl.crop_check import CropOffsetWarning
    from netdsl.spec import build_nets, load_spec
    with pytest.warns(CropOffsetWarning, match="crop offset 1 on axis 2 cannot be checked"):
        build_nets(load_spec(str(tmp_path / "u.yaml")))


SAME_SIZE = """\
inputs:
  data: [1, 2, 8, 8]
layers:
  - Convolution: score
    num_output: 2
    kernel_size: 2
    stride: 2
  - Deconvolution: up
    num_output: 2
    kernel_size: 4
    stride: 2
  - crop: ref
    reference: data
    offset: 0
  - crop: out
    bottom: data
    reference: ref
"""


def test_no_crop_the_larger_advice_for_blobs_of_the_same_size(tmp_path, cli):
    # By hand (coord_map rules): score y = x/2 - 1/4; up (k 4, s 2, p 0) z = 2y + 3/2, so
    # up pixel z is data pixel z - 1 and up is 2*(4-1) + 4 = 10 wide.  'ref' crops it at 0
    # (the maps want 1): 8 wide, and ref pixel r is data pixel r - 1, so 'data' starts one
    # pixel inside 'ref' and the two are the same size: cropping one to the other cannot help.
    (tmp_path / "s.yaml").write_text(SAME_SIZE)
    code, out, err = cli("build", "s.yaml", "-o", "o")
    assert code == 2
    assert "'data' starts 1 pixel(s) inside 'ref' and both have the same size" in err
    assert "crop the larger blob" not in err
    # a larger reference keeps the advice: crop 'data' to 'up' (10 wide)
    (tmp_path / "l.yaml").write_text(SAME_SIZE.replace("reference: ref", "reference: up"))
    code, out, err = cli("build", "l.yaml", "-o", "o")
    assert code == 2 and "crop the larger blob to the smaller one instead" in err


# -- weights that do not fit the net (issue 21, item 6) ------------------------------------

FIT = """\
name: "fit"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 4 dim: 3 dim: 3 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 3 kernel_size: 1 } }
layer { name: "fc" type: "InnerProduct" bottom: "conv" top: "fc" inner_product_param { num_output: 2 } }
"""
# the net's blobs (base_conv_layer.cpp, inner_product_layer.cpp): conv (3, 4, 1, 1), (3,);
# fc (2, 3*3*3 = 27), (2,)


def _fit_net():
    from netdsl.prototxt import parse_net
    return parse_net(FIT)


def test_write_caffemodel_refuses_a_layer_the_net_lacks(tmp_path):
    from netdsl.errors import NetdslError
    from netdsl.weights import write_caffemodel
    path = tmp_path / "m.caffemodel"
    with pytest.raises(NetdslError, match=r"no layer 'cnov' in the net.*Ignoring source layer "
                                          r"cnov.*did you mean `conv`"):
        write_caffemodel(str(path), {"cnov": [np.zeros((3, 4, 1, 1)), np.zeros(3)]},
                         types=_fit_net())
    assert not path.exists()
    # a plain mapping of types (no net) keeps writing any name
    write_caffemodel(str(path), {"cnov": [np.zeros(3)]}, types={"cnov": "Convolution"})
    assert path.exists()


def test_write_caffemodel_refuses_a_shape_blob_shapeequals_rejects(tmp_path):
    from netdsl.errors import NetdslError
    from netdsl.weights import write_caffemodel
    path = tmp_path / "m.caffemodel"
    # 12 values either way, but (3, 4) is not (3, 4, 1, 1): net.cpp's message, with
    # Blob::shape_string ("3 4 (12)")
    with pytest.raises(NetdslError) as e:
        write_caffemodel(str(path), {"conv": [np.zeros((3, 4)), np.zeros(3)]}, types=_fit_net())
    assert e.value.message == (
        "Cannot copy param 0 weights from layer 'conv'; shape mismatch.  Source param shape "
        "is 3 4 (12); target param shape is 3 4 1 1 (12). To learn this layer's parameters "
        "from scratch rather than copying from a saved net, rename the layer.")
    with pytest.raises(NetdslError, match="Incompatible number of blobs for layer conv"):
        write_caffemodel(str(path), {"conv": [np.zeros((3, 4, 1, 1))]}, types=_fit_net())
    assert not path.exists()
    write_caffemodel(str(path), {"conv": [np.zeros((3, 4, 1, 1)), np.zeros(3)],
                                 "fc": [np.zeros((2, 27)), np.zeros(2)]}, types=_fit_net())
    # the V1 form stores num/channels/height/width: (2, 27) is written 1 1 2 27, which
    # Blob::ShapeEquals matches against (2, 27) by LegacyShape (leading 1s)
    write_caffemodel(str(path), {"fc": [np.zeros((2, 27)), np.zeros(2)]}, types=_fit_net(),
                     v1=True)


def test_run_refuses_a_blob_of_the_right_count_and_wrong_shape(tmp_path, cli):
    from netdsl.weights import write_caffemodel
    (tmp_path / "n.prototxt").write_text(FIT)
    # written without the net, so the writer cannot check it: fc's weights as (27, 2)
    write_caffemodel(str(tmp_path / "bad.caffemodel"),
                     {"conv": [np.ones((3, 4, 1, 1)), np.zeros(3)],
                      "fc": [np.ones((27, 2)), np.zeros(2)]})
    np.save(str(tmp_path / "x.npy"), np.ones((1, 4, 3, 3), np.float32))
    code, out, err = cli("run", "n.prototxt", "bad.caffemodel", "--input", "data=x.npy")
    assert code == 2
    assert ("layer 'fc': Cannot copy param 0 weights from layer 'fc'; shape mismatch.  Source "
            "param shape is 27 2 (54); target param shape is 2 27 (54).") in err
    # legacy 4-D dims (V1 form): 1 1 2 27 loads into (2, 27), as in Caffe
    write_caffemodel(str(tmp_path / "v1.caffemodel"),
                     {"conv": [np.ones((3, 4, 1, 1)), np.zeros(3)],
                      "fc": [np.ones((2, 27)), np.zeros(2)]}, v1=True)
    code, out, err = cli("run", "n.prototxt", "v1.caffemodel", "--input", "data=x.npy")
    # conv: 4 ones summed = 4 per pixel; fc: 27 * 4 = 108
    assert code == 0 and "fc 1x2 min 108 mean 108 max 108" in out


# -- the odd bilinear kernel and FCN on a ResNet trunk (issue 21, item 6) ------------------

def test_upsample_odd_kernel_geometry_and_weights(tmp_path):
    from netdsl.ops.upsample import geometry
    # kernel 2f - 1, stride f, pad 0; FCN's even kernel stays the default
    assert geometry("bilinear", 2, kernel="odd") == {"kernel_size": 3, "stride": 2, "pad": 0}
    assert geometry("bilinear", 8, kernel="odd") == {"kernel_size": 15, "stride": 8, "pad": 0}
    assert geometry("bilinear", 8) == {"kernel_size": 16, "stride": 8, "pad": 4}
    for f in (2, 3, 4):
        (tmp_path / "u.yaml").write_text(
            "inputs:\n  data: [1, 1, 1, 6]\nlayers:\n  - upsample: up\n    factor: %d\n"
            "    kernel: odd\n    channels: 1\n" % f)
        from netdsl.spec import build_nets, load_spec
        net = build_nets(load_spec(str(tmp_path / "u.yaml")))["deploy"]
        # a ramp x[i] = i upsampled: BilinearFiller's triangle 1 - |t - (f-1)|/f over taps
        # t = 0 .. 2f-2 interpolates linearly, so full-output pixel z (pad 0) holds
        # (z - (f - 1)) / f wherever two inputs contribute: z from f - 1 to 5f + f - 1
        x = np.arange(6, dtype=np.float32).reshape(1, 1, 1, 6)
        out = forward(net, None, {"data": x})["up"][0, 0]
        # the one input row lands on output row f - 1, the kernel's centre (weight 1)
        assert out.shape == (2 * f - 1, f * 5 + 2 * f - 1)   # deconv_out: f(H-1) + 2f - 1
        up = out[f - 1]
        z = np.arange(f - 1, 5 * f + f)
        np.testing.assert_allclose(up[z], (z - (f - 1)) / f, rtol=1e-6, atol=1e-6)


def test_upsample_odd_kernel_is_bilinear_only(tmp_path, cli):
    (tmp_path / "u.yaml").write_text(
        "inputs:\n  data: [1, 1, 4, 4]\nlayers:\n  - upsample: up\n    factor: 2\n"
        "    kernel: odd\n    mode: nearest\n    channels: 1\n")
    code, out, err = cli("build", "u.yaml", "-o", "o")
    assert code == 2 and "u.yaml:6:13" in err and "`kernel: odd` is a bilinear kernel" in err


def test_fcn8s_resnet50_crop_offsets_by_hand(tmp_path, cli):
    # pycaffe's coord_map rules (caffe/python/caffe/coord_map.py): a Convolution or Pooling
    # maps y = x/s + (p - (k-1)/2)/s, a Deconvolution y = s*x + (k-1)/2 - p, and element-wise
    # layers keep the map; a crop offset is the shift between the two bottoms' maps.
    # In input (data) coordinates x:
    #   conv1 7x7/2 pad 3:          c1 = x/2 + (3 - 3)/2              = x/2
    #   pool1 3x3/2 pad 0:          p1 = c1/2 + (0 - 1)/2             = x/4 - 1/2
    #   res2 (stride 1, 1x1 pad 0 and 3x3 pad 1: shift 0):             x/4 - 1/2
    #   res3 first unit 1x1/2 pad 0 (branch1 and branch2a alike): r3 = x/8 - 1/4
    #   res4:                        r4 = r3/2 = x/16 - 1/8
    #   res5:                        r5 = r4/2 = x/32 - 1/16
    #   upscore2 (kernel 3, stride 2, pad 0): u2 = 2*r5 + 1        = x/16 + 7/8
    #     crop onto score_res4 (= r4): offset u2 - r4 = 1
    #   upscore_res4 (3/2/0) on fuse_res4 (= r4): u4 = 2*r4 + 1    = x/8 + 3/4
    #     crop onto score_res3 (= r3): offset u4 - r3 = 1
    #   upscore8 (kernel 15, stride 8, pad 0) on fuse_res3 (= r3): u8 = 8*r3 + 7 = x + 5
    #     crop onto data: offset 5
    # With FCN's even kernel 4 (pad 1 grouped) u2 = 2*r5 + 1/2: offset 1/2, not a pixel.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = os.path.join(root, "specs", "resnet", "fcn8s-resnet50.yaml")
    code, out, err = cli("build", spec, "-o", "o")
    assert code == 0, err
    from netdsl.coord_map import offsets_for
    from netdsl.prototxt import read_net
    net = read_net(str(tmp_path / "o" / "deploy.prototxt"))
    crops = {l.name: (l.crop_param.axis, list(l.crop_param.offset)) for l in net.layer
             if l.type == "Crop"}
    assert crops == {"upscore2c": (2, [1]), "upscore_res4c": (2, [1]), "score": (2, [5])}
    assert all(r.matches for r in offsets_for(net).values())
    # sizes (conv_layer.cpp floor, pooling_layer.cpp ceil) for 500x500: conv1 250, pool1
    # ceil(247/2) + 1 = 125, res3 (125 - 1)/2 + 1 = 63, res4 32, res5 16; deconv_out
    # 2*15 + 3 = 33 >= 1 + 32, 2*31 + 3 = 65 >= 1 + 63, 8*62 + 15 = 511 >= 5 + 500
    code, out, err = cli("shapes", "o/deploy.prototxt")
    assert "-> upscore2 (1,21,33,33)" in out and "-> upscore_res4 (1,21,65,65)" in out
    assert "-> upscore8 (1,21,511,511)" in out and "-> score (1,21,500,500)" in out
    # KaimingHe's ResNet-50 without fc1000: 25,557,032 - 2048*1000 - 1000 = 23,508,032,
    # + conv1's bias (64, bias_term in the published net) + 3 scores (2048, 1024 and 512 in,
    # 21 out, with bias) + 3 grouped deconvolutions (21 kernels of 3x3, 3x3, 15x15)
    head = 2049 * 21 + 1025 * 21 + 513 * 21 + 21 * 9 * 2 + 21 * 225
    assert ("%s learnable parameters" % "{:,}".format(23508032 + 64 + head)) in out
    # the even kernel cannot align the crops: half a pixel
    even = open(spec).read().replace("    kernel: odd\n", "")
    (tmp_path / "even.yaml").write_text(even)
    code, out, err = cli("build", "even.yaml", "-o", "e")
    assert code == 2 and "the offset 1/2 is not a whole number of pixels" in err
    assert "'upscore2' is the last layer before the crop" in err and "`kernel: odd`" in err


def test_render_list_shows_the_resnet_spec(cli):
    code, out, err = cli("render", "--list")
    assert code == 0 and "  resnet/fcn8s-resnet50.yaml" in out


def test_the_resnet_spec_validates_against_the_json_schema(tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    import json
    from netdsl.spec.load import load_file, plain
    out = tmp_path / "schema.json"
    assert main(["schema", "-o", str(out)]) == 0
    validator = jsonschema.Draft202012Validator(json.loads(out.read_text()))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    doc = plain(load_file(os.path.join(root, "specs", "resnet", "fcn8s-resnet50.yaml")))
    assert [e.message for e in validator.iter_errors(doc)] == []
    bad = {"layers": [{"upsample": "u", "factor": 2, "channels": 1, "kernel": "odd-ish"}]}
    assert any("odd-ish" in e.message for e in validator.iter_errors(bad))


def test_shapes_json_counts_learnable_and_statistics(tmp_path, cli):
    import json
    (tmp_path / "bn.prototxt").write_text(BN_NET)
    code, out, err = cli("shapes", "bn.prototxt", "--format", "json")
    # conv 3*2*1*1 + 3 = 9 learned; BatchNorm over 3 channels: 3 + 3 + 1 = 7 statistics
    doc = json.loads(out)
    assert (doc["learnable_count"], doc["statistics_count"]) == (9, 7)
