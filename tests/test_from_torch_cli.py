"""``netdsl from-torch``: exit status 0 / 1 / 2, files written or not, the
located message for an unsupported op, and the register_converter hook.

Parity figures are PyTorch's own outputs (the check inside the command);
each command runs in its own process so plugin registrations do not leak."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from dnn_check import require

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data", "torch")
ROOT = os.path.dirname(HERE)


@pytest.fixture(scope="module", autouse=True)
def need_torch():
    require("torch")


def run(*args):
    return subprocess.run([sys.executable, "-m", "netdsl", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)


def test_exit_0_writes_three_files(tmp_path):
    out = tmp_path / "o"
    p = run("from-torch", os.path.join(DATA, "models.py") + ":small", "--input", "data=1,3,8,8",
            "-o", str(out))
    assert p.returncode == 0, p.stderr
    assert sorted(os.listdir(out)) == ["deploy.prototxt", "model.caffemodel", "parity.json"]
    report = json.loads((out / "parity.json").read_text())
    assert report["ok"] and {r["input"] for r in report["outputs"]} == {"example", "random"}
    assert all(r["rel"] <= 1e-4 for r in report["outputs"])
    assert "example" in p.stdout and "ok" in p.stdout
    # names from module paths; input from --input
    text = (out / "deploy.prototxt").read_text()
    assert 'name: "conv"' in text and 'name: "bn"' in text and 'top: "data"' in text


def test_dict_outputs_two_inputs_and_module_spec(tmp_path):
    out = tmp_path / "o"
    p = run("from-torch", os.path.join(DATA, "models.py") + ":TwoHeads", "--input",
            "a=1,3,4,5", "--input", "b=1,2,4,5", "-o", str(out), "--target", "opencv")
    assert p.returncode == 0, p.stderr
    report = json.loads((out / "parity.json").read_text())
    assert [r["output"] for r in report["outputs"][:2]] == ["sum", "up"]
    p = run("from-torch", "torch.nn:Identity", "--input", "x=1,2,3,3", "-o",
            str(tmp_path / "id"), "--no-check")
    assert p.returncode == 0, p.stderr
    assert json.loads((tmp_path / "id" / "parity.json").read_text()) == {"checked": False}


def test_unsupported_op_exit_2_located_nothing_written(tmp_path):
    out = tmp_path / "o"
    p = run("from-torch", os.path.join(DATA, "models.py") + ":Unsupported", "--input",
            "x=1,3,4,4", "-o", str(out))
    assert p.returncode == 2
    line = p.stderr.strip().splitlines()[-1]
    assert "aten.hardshrink" in line and "block.1" in line and "Hardshrink" in line
    assert "models.py:36" in line   # the Python source line: self.block(x)
    assert not out.exists()


def test_user_errors_exit_2(tmp_path):
    p = run("from-torch", "no_such_file.py:f", "--input", "x=1,3,4,4", "-o", str(tmp_path / "o"))
    assert p.returncode == 2 and "no such file" in p.stderr
    p = run("from-torch", os.path.join(DATA, "models.py") + ":small", "--input", "x=1,3,a",
            "-o", str(tmp_path / "o"))
    assert p.returncode == 2 and "NAME=N,C,H,W" in p.stderr
    assert not (tmp_path / "o").exists()


def test_parity_failure_exit_1_names_first_divergence(tmp_path):
    out = tmp_path / "o"
    p = run("from-torch", os.path.join(DATA, "models.py") + ":small", "--input", "x=1,3,6,6",
            "-o", str(out), "--plugin", os.path.join(DATA, "wrong_sigmoid.py"))
    assert p.returncode == 1, p.stderr
    report = json.loads((out / "parity.json").read_text())
    assert report["ok"] is False
    assert report["divergence"]["blob"] == "output"
    assert "sigmoid" in report["divergence"]["op"]
    assert "FAIL" in p.stdout


def test_register_converter_for_a_fork_layer(tmp_path):
    out = tmp_path / "o"
    p = run("from-torch", os.path.join(DATA, "models.py") + ":TwoHeads", "--input",
            "a=1,3,4,5", "--input", "b=1,2,4,5", "-o", str(out),
            "--proto", os.path.join(ROOT, "specs", "forks", "segnet-deeplab.proto"),
            "--plugin", os.path.join(DATA, "interp_plugin.py"))
    assert p.returncode == 0, p.stdout + p.stderr
    text = (out / "deploy.prototxt").read_text()
    assert 'type: "Interp"' in text and "height: 8" in text


def test_constructor_arguments_and_weak_parity_warnings(tmp_path):
    """--arg NAME=VALUE (Python literals) reaches the callable; outputs that do not
    change between the two inputs or are tiny next to the input are flagged in the
    report and parity.json (the check still passes)."""
    out = tmp_path / "o"
    p = run("from-torch", os.path.join(DATA, "models.py") + ":Configurable", "-A",
            "num_classes=21", "--arg", "scale=0.5", "--arg", "name=abc", "--input",
            "x=1,3,3,3", "-o", str(out))
    assert p.returncode == 0, p.stderr
    report = json.loads((out / "parity.json").read_text())
    assert report["outputs"][0]["shape"] == [1, 21, 3, 3]
    assert report["weak"] is True
    why = {w["output"]: w["why"] for w in report["warnings"]}
    assert "does not change" in why["output_1"] and "tiny" in why["output_2"]
    assert "output_0" not in why
    assert "warning: output 'output_1'" in p.stdout
    assert "training mode" not in p.stderr      # a freshly built module: not noted
    p = run("from-torch", os.path.join(DATA, "models.py") + ":Configurable", "-A", "bad=1",
            "--input", "x=1,3,3,3", "-o", str(tmp_path / "no"))
    assert p.returncode == 2 and "bad=1" in p.stderr and "unexpected keyword" in p.stderr
    assert not (tmp_path / "no").exists()


def test_a_module_left_in_training_mode_is_noted(tmp_path):
    out = tmp_path / "o"
    p = run("from-torch", os.path.join(DATA, "models.py") + ":left_in_training", "--input",
            "x=1,3,3,3", "-o", str(out))
    assert p.returncode == 0, p.stderr
    assert "left in training mode" in p.stderr
    report = json.loads((out / "parity.json").read_text())
    assert any("training mode" in w["why"] for w in report["warnings"])


def test_outputs_flag(tmp_path):
    out = tmp_path / "o"
    p = run("from-torch", os.path.join(DATA, "models.py") + ":Configurable", "--outputs",
            "conv,bn", "--input", "x=1,3,3,3", "-o", str(out))
    assert p.returncode == 0, p.stderr
    report = json.loads((out / "parity.json").read_text())
    assert [r["output"] for r in report["outputs"]][:2] == ["conv", "bn"]
    p = run("from-torch", os.path.join(DATA, "models.py") + ":Configurable", "--outputs",
            "cnov", "--input", "x=1,3,3,3", "-o", str(tmp_path / "no"))
    assert p.returncode == 2 and "did you mean `conv`" in p.stderr
