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
