"""Prototxt reading/writing and the `fmt` / `upgrade` verbs."""
import os

import pytest

from netdsl import NetdslError
from netdsl.cli import main
from netdsl.prototxt import parse_net, read_net, to_text

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "prototxt")


def test_malformed_prototxt_reports_line_and_column():
    text = 'name: "x"\nlayer {\n  name: "a"\n  typo: "ReLU"\n}\n'
    with pytest.raises(NetdslError) as exc:
        parse_net(text, "net.prototxt")
    err = exc.value
    # protobuf's text parser stops at the unknown field name: line 4, column 3
    assert (err.file, err.line, err.column) == ("net.prototxt", 4, 3)
    assert "unknown field `typo` in LayerParameter; did you mean `type`?" in str(err)


def test_unclosed_brace():
    with pytest.raises(NetdslError) as exc:
        parse_net('layer {\n  name: "a"\n', "n.prototxt")
    assert exc.value.line is not None and str(exc.value).startswith("n.prototxt:")


def test_fmt_canonical_form(tmp_path, capsys):
    src = tmp_path / "net.prototxt"
    src.write_text('layer { name: "r" type: "ReLU" bottom: "x" top: "x" }\n'
                   'name: "n"  # comment\n')
    assert main(["fmt", str(src)]) == 0
    # text_format prints fields in field-number order (name = 1, layer = 100),
    # two-space indentation, comments dropped
    assert capsys.readouterr().out == ('name: "n"\nlayer {\n  name: "r"\n  type: "ReLU"\n'
                                       '  bottom: "x"\n  top: "x"\n}\n')
    assert main(["fmt", "--check", str(src)]) == 1
    assert main(["fmt", "-i", str(src)]) == 0
    assert main(["fmt", "--check", str(src)]) == 0
    capsys.readouterr()


def test_fmt_error_exit_2_and_file_untouched(tmp_path, capsys):
    src = tmp_path / "bad.prototxt"
    original = 'layer {\n  name: "a"\n  bad_field: 1\n}\n'
    src.write_text(original)
    assert main(["fmt", "-i", str(src)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("netdsl: error: %s:3:3: unknown field `bad_field`" % src)
    assert "Traceback" not in err
    assert src.read_text() == original
    assert os.listdir(tmp_path) == ["bad.prototxt"]


def test_upgrade_cli_v1_to_current(tmp_path):
    out = tmp_path / "new.prototxt"
    assert main(["upgrade", os.path.join(DATA, "v1_imagenet.prototxt"), "-o", str(out)]) == 0
    net = read_net(str(out), upgrade=False)
    # upgrade_proto.cpp: V1 `layers` become `layer`, enum types become strings,
    # data_param's crop_size/mirror/mean_file move to transform_param
    assert len(net.layers) == 0 and net.layer[0].type == "Data"
    assert net.layer[0].transform_param.crop_size == 227
    assert not net.layer[0].data_param.HasField("crop_size")
    expected = read_net(os.path.join(DATA, "expected", "v1_imagenet.prototxt"), upgrade=False)
    assert net == expected


def test_upgrade_keeps_existing_output_on_error(tmp_path, capsys):
    out = tmp_path / "new.prototxt"
    out.write_text("keep me\n")
    bad = tmp_path / "old.prototxt"
    bad.write_text('layers { name: "a" type: NOT_A_TYPE }\n')
    assert main(["upgrade", str(bad), "-o", str(out)]) == 2
    assert out.read_text() == "keep me\n"
    assert sorted(os.listdir(tmp_path)) == ["new.prototxt", "old.prototxt"]
    assert "netdsl: error:" in capsys.readouterr().err


def test_solver_upgrade_cli(tmp_path):
    out = tmp_path / "solver.prototxt"
    assert main(["upgrade", os.path.join(DATA, "solver_nesterov.prototxt"), "-o", str(out)]) == 0
    # upgrade_proto.cpp UpgradeSolverType: solver_type NESTEROV -> type "Nesterov"
    assert 'type: "Nesterov"' in out.read_text()
    assert "solver_type" not in out.read_text()


def test_to_text_round_trip_every_file():
    for name in sorted(os.listdir(DATA)):
        if not name.endswith(".prototxt") or name.startswith("solver"):
            continue
        net = read_net(os.path.join(DATA, name))
        assert parse_net(to_text(net), upgrade=False) == net, name
