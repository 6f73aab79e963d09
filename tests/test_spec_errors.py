"""A catalogue of malformed specs (tests/data/bad_specs): each gives one located error
(file:line:column, the layer where there is one, what is wrong, a suggestion where
one is close), `netdsl build` exits 2 and writes nothing -- not even over a previous
good build in the same directory.

Lines and columns are those of the offending text in each file (1-based), read off
the files themselves; templates report the template's own line (no column).
"""
from __future__ import annotations

import os
import shutil

import pytest

from netdsl.cli import main
from netdsl.errors import NetdslError
from netdsl.spec import build, build_all, load_spec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BAD = os.path.join("tests", "data", "bad_specs")

# file -> (file the error names, line, column or None, [message fragments])
CATALOGUE = {
    "yaml_syntax.yaml": (None, 6, 4, ["YAML syntax error"]),
    "unknown_type.yaml": (None, 4, 5, ["unknown layer type `Convolutoin`",
                                       "did you mean `Convolution`"]),
    "unknown_field.yaml": (None, 5, 5, ["layer 'conv1'", "unknown parameter `num_ouput`",
                                         "did you mean `num_output`?"]),
    "wrong_value_type.yaml": (None, 5, 17, ["layer 'conv1'", "`num_output`",
                                            "expects an integer, got 'eight'"]),
    "bad_enum.yaml": (None, 5, 11, ["`MAXX` is not a value of `pool`", "did you mean `MAX`?"]),
    "nested_wrong_type.yaml": (None, 9, 12, ["`std` in weight_filler expects a number"]),
    "undefined_bottom.yaml": (None, 8, 13, ["undefined bottom `conv9`",
                                            "did you mean `conv1`?"]),
    "duplicate_top.yaml": (None, 7, 5, ["duplicate top `conv1`", "duplicate_top.yaml:4:5"]),
    "top_reuse_default_bottom.yaml": (None, 7, 5, ["duplicate top `conv1`",
                                                   "write `in_place: true`"]),
    "cycle.yaml": (None, 5, 13, ["cycle: `b` is made by the layer at", "cycle.yaml:6:5"]),
    "later_bottom.yaml": (None, 5, 13, ["bottom `c` is produced only later",
                                        "move this layer after it"]),
    "unknown_variable.yaml": (None, 7, 19, ["unknown variable `num_clases`",
                                            "did you mean `num_classes`?"]),
    "bad_expression.yaml": (None, 8, 20, ["bad expression `${k +}`"]),
    "include_missing.yaml": (None, 4, 14, ["cannot include `lib/nothere.yaml`: no such file"]),
    # the user's own include line first, then where the chain went (each step once)
    "include_cycle.yaml": (None, 4, 5, [
        "include cycle:", "include_cycle.yaml -> ", "cycle_b.yaml -> ",
        "(via include `lib/cycle_b.yaml` at tests/data/bad_specs/lib/cycle_b.yaml:2:14)"]),
    "template_syntax.yaml.j2": (None, 5, None, ["template syntax error"]),
    "template_undefined.yaml.j2": (None, 8, None, ["unknown variable `widht` in template",
                                                   "did you mean `width`?"]),
    "template_fail.yaml": (None, 7, 5, [
        "stride must be 32, 16 or 8, not 12",
        "(via include `../../../templates/fcn-head.yaml.j2` at templates/fcn-head.yaml.j2:16)"]),
    "duplicate_key.yaml": (None, 7, 5, ["duplicate key `num_output` (first at line 5, column 5)"]),
    "unknown_top_key.yaml": (None, 3, 1, ["unknown key `layer` in the spec",
                                          "did you mean `layers`?"]),
    "unknown_block_arg.yaml": (None, 12, 5, ["block `cr` has no argument `nuot`",
                                             "did you mean `nout`?"]),
    "missing_block_arg.yaml": (None, 11, 5, ["block `cr` needs argument `nout`"]),
    "block_cycle.yaml": (None, 9, 5, ["block cycle: a -> b -> a",
                                      "(via block `a` at tests/data/bad_specs/block_cycle.yaml:"
                                      "3:7, then block `b` at tests/data/bad_specs/"
                                      "block_cycle.yaml:5:7)"]),
    "duplicate_block.yaml": (None, 3, 3, ["block `relu` is defined twice", "lib/blocks.yaml:2:3"]),
    "unknown_phase.yaml": (None, 5, 13, ["unknown phase 'trian'", "did you mean `train`?"]),
    "per_phase_unknown.yaml": (None, 6, 7, ["unknown phase `tran` in per_phase",
                                            "did you mean `train`?"]),
    "upsample_bad_mode.yaml": (None, 7, 11, ["upsample: `mode` is one of bilinear, nearest, "
                                             "got 'bicubic'"]),
    "upsample_missing_factor.yaml": (None, 4, 5, ["upsample: needs `factor`"]),
    "crop_no_reference.yaml": (None, 7, 5, ["crop: needs `reference`"]),
    "crop_unalignable.yaml": (None, 9, 16, ["layer 'cc'", "cannot compute the crop offset",
                                            "scale mismatch", "'p' and 'data'",
                                            # the fix, not a bare `offset:`
                                            "'p' downsamples by 2 (stride 2)"]),
    "layer_not_mapping.yaml": (None, 4, 5, ["a layer is a mapping like `- Convolution: conv1`",
                                            "got 'conv1'"]),
    "unknown_item.yaml": (None, 7, 5, ["`conv_rlu` is not a layer type, block or op",
                                       "did you mean `conv_relu`?"]),
    "unknown_layer_key_type.yaml": (None, 8, 11, ["unknown layer type `Relu`",
                                                  "did you mean `ReLU`?"]),
    "in_place_name_clash.yaml": (None, 7, 5, ["in-place layer `conv1` has the name of blob "
                                              "`conv1`"]),
    "repeat_bad_count.yaml": (None, 4, 13, ["`repeat` takes a count or a list, got 'three'"]),
    "bad_input_shape.yaml": (None, 2, 9, ["the shape of input `data` is a list of sizes"]),
    "solver_unknown_field.yaml": (None, 6, 3, ["unknown field `base_rl` in solver",
                                               "did you mean `base_lr`?"]),
    "shape_mismatch.yaml": (None, 7, 5, ["layer 'e'", "train net:", "Eltwise",
                                         "(1, 3, 8, 8)", "(1, 4, 8, 8)"]),
    "top_twice.yaml": (None, 5, 10, ["the top is given twice: after `ReLU:` and in `top`"]),
    "bad_tag.yaml": (None, 4, 11, ["unsupported YAML tag"]),
    "include_unknown_with.yaml": (None, 5, 12, ["`stagez` is not a variable of",
                                                "did you mean `stages`?"]),
    "when_not_bool.yaml": (None, 5, 11, ["`when` takes true or false"]),
    "bottom_not_name.yaml": (None, 5, 13, ["`bottom` takes a blob name or a list of names, got 3"]),
    "empty.yaml": (None, 1, 1, ["the spec is empty"]),
}


def test_catalogue_is_complete():
    files = sorted(f for f in os.listdir(os.path.join(ROOT, BAD))
                   if f.endswith((".yaml", ".j2")))
    assert sorted(CATALOGUE) == files
    assert len(CATALOGUE) >= 30


def _expected_file(name, named):
    return os.path.normpath(os.path.join(BAD, named if named else name))


@pytest.fixture(autouse=True)
def _cwd(monkeypatch):
    monkeypatch.chdir(ROOT)


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_located_error(name):
    named, line, col, fragments = CATALOGUE[name]
    with pytest.raises(NetdslError) as info:
        spec = load_spec(os.path.join(BAD, name))
        build_all(spec)
    err = info.value
    assert os.path.normpath(err.file) == _expected_file(name, named), str(err)
    assert (err.line, err.column) == (line, col), str(err)
    text = str(err)
    for frag in fragments:
        assert frag in text, text
    where = "%s:%d" % (err.file, line) + (":%d" % col if col else "")
    assert text.startswith(where + ": ")


@pytest.fixture(scope="module")
def good_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("good") / "out"
    build(os.path.join(ROOT, "specs", "fcn32s.yaml"), str(out))
    return out


def _snapshot(d):
    return {p.name: p.read_bytes() for p in d.iterdir()}


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_cli_exit_2_writes_nothing(name, tmp_path, capsys, good_build):
    out = tmp_path / "out"
    assert main(["build", os.path.join(BAD, name), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("netdsl: error: ") and CATALOGUE[name][3][0] in err
    assert not out.exists()
    # over a previous good build: nothing replaced, nothing added
    prev = tmp_path / "prev"
    shutil.copytree(str(good_build), str(prev))
    before = _snapshot(prev)
    assert main(["build", os.path.join(BAD, name), "-o", str(prev), "--weights"]) == 2
    assert _snapshot(prev) == before


def test_failed_build_keeps_previous_good_build(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["build", "specs/fcn32s.yaml", "-o", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(before) == ["deploy.prototxt", "solver.prototxt", "train.prototxt",
                              "val.prototxt"]
    # a spec of the same name that fails late: at the shape check of its last layer
    bad = tmp_path / "fcn32s.yaml"
    shutil.copy(os.path.join(BAD, "shape_mismatch.yaml"), bad)
    for spec in (str(bad), os.path.join(BAD, "unknown_field.yaml"),
                 os.path.join(BAD, "template_fail.yaml")):
        assert main(["build", spec, "-o", str(out)]) == 2
        after = {p.name: p.read_bytes() for p in out.iterdir()}
        assert after == before     # nothing replaced, no temporary files left
    # -D errors too
    assert main(["build", "specs/fcn32s.yaml", "-o", str(out), "-D", "num_classes"]) == 2
    assert main(["build", "specs/fcn32s.yaml", "-o", str(out), "-D", "nm_classes=3"]) == 2
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_error_inside_a_block_names_the_use(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "blocks:\n"
        "  cr:\n"
        "    args: [name]\n"
        "    layers:\n"
        "      - Convolution: ${name}\n"
        "        num_output: 8\n"
        "        kernel_sise: 3\n"
        "inputs:\n"
        "  data: [1, 3, 8, 8]\n"
        "layers:\n"
        "  - cr: c1\n")
    with pytest.raises(NetdslError) as info:
        build_all(load_spec(str(spec)))
    # the user's own line (the block use) first, then the field in the block body, once
    assert (info.value.line, info.value.column) == (11, 5)
    assert "did you mean `kernel_size`?" in str(info.value)
    assert str(info.value).count("(via block `cr` at ") == 1
    assert ":7:9)" in str(info.value)


def test_build_api_writes_nothing_on_error(tmp_path):
    out = tmp_path / "o"
    with pytest.raises(NetdslError):
        build(os.path.join(BAD, "shape_mismatch.yaml"), str(out))
    assert not out.exists()
