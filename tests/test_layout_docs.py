"""The README's layout section and docs/architecture.md name the modules that exist,
and every module of the package is named there."""
from __future__ import annotations

import os
import re

import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def _read(*parts):
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as fh:
        return fh.read()


def _layout_block():
    readme = _read("README.md")
    section = readme[readme.index("## Layout"):]
    return section[section.index("```") + 3:section.index("```", section.index("```") + 3)]


def test_readme_layout_names_existing_paths():
    for path in re.findall(r"netdsl/[\w/.]+", _layout_block()):
        assert os.path.exists(os.path.join(ROOT, path.rstrip("/"))), path


def test_readme_layout_names_every_module_and_package():
    block = _layout_block()
    pkg = os.path.join(ROOT, "netdsl")
    for name in sorted(os.listdir(pkg)):
        full = os.path.join(pkg, name)
        if name.startswith("_") or name == "__pycache__":
            continue
        if name.endswith(".py") or (os.path.isdir(full) and
                                    os.path.exists(os.path.join(full, "__init__.py"))):
            label = "netdsl/" + (name if name.endswith(".py") else name + "/")
            assert label in block, "%s is not in the README's layout" % label


def test_architecture_doc_names_existing_modules():
    doc = _read("docs", "architecture.md")
    for mod in re.findall(r"`((?:layers|spec|weights|forward|compat)/[\w/]*\.py|[\w]+\.py)`", doc):
        candidates = [os.path.join(ROOT, "netdsl", mod), os.path.join(ROOT, "netdsl", "layers", mod),
                      os.path.join(ROOT, "netdsl", "proto", mod),
                      os.path.join(ROOT, "netdsl", "compat", "caffe", mod)]
        assert any(os.path.exists(c) for c in candidates), mod
    # every family module of the registry is in its table
    for name in os.listdir(os.path.join(ROOT, "netdsl", "layers")):
        if name.endswith(".py") and not name.startswith("_") and name != "registry.py":
            assert "`%s`" % name in doc, name


def test_readme_and_architecture_name_the_cli_package():
    assert "netdsl/cli/" in _layout_block()
    assert "`cli/`" in _read("docs", "architecture.md")
    assert os.path.isdir(os.path.join(ROOT, "netdsl", "cli"))


def test_architecture_verb_example_runs(tmp_path, monkeypatch, capsys):
    """The worked example of adding a CLI verb, run as a verb of the dispatcher."""
    import types
    import netdsl.cli
    doc = _read("docs", "architecture.md")
    section = doc[doc.index("## Worked example: adding a CLI verb"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    module = types.ModuleType("netdsl_doc_types_verb")
    exec(compile(code, "architecture.md", "exec"), module.__dict__)
    monkeypatch.setattr(netdsl.cli, "VERBS", netdsl.cli.VERBS + [module])
    net = tmp_path / "net.prototxt"
    net.write_text(  # written by hand: one Input, two Convolutions, one ReLU
        'layer { name: "data" type: "Input" top: "data" '
        'input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }\n'
        'layer { name: "c1" type: "Convolution" bottom: "data" top: "c1" '
        'convolution_param { num_output: 4 kernel_size: 3 } }\n'
        'layer { name: "r1" type: "ReLU" bottom: "c1" top: "c1" }\n'
        'layer { name: "c2" type: "Convolution" bottom: "c1" top: "c2" '
        'convolution_param { num_output: 4 kernel_size: 3 } }\n')
    assert netdsl.cli.main(["types", str(net)]) == 0
    assert capsys.readouterr().out == "Convolution 2\nInput 1\nReLU 1\n"
    out = tmp_path / "types.txt"
    assert netdsl.cli.main(["types", str(net), "-o", str(out)]) == 0
    assert out.read_text() == "Convolution 2\nInput 1\nReLU 1\n"
    # a missing net: the dispatcher's one error line, exit status 2
    assert netdsl.cli.main(["types", str(tmp_path / "missing.prototxt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("netdsl: error: ") and err.count("\n") == 1
    # the dispatcher's own options reach the new verb
    with pytest.raises(SystemExit):
        netdsl.cli.main(["types", "--help"])
    assert "--proto FORK.proto" in capsys.readouterr().out


def test_architecture_converter_example_runs(tmp_path):
    """docs/architecture.md's worked example of adding a converter (a ```py block,
    run in a fresh process: it registers into the process-wide op table)."""
    import subprocess
    import sys
    from dnn_check import require
    for mod in ("torch", "onnx", "onnxruntime"):
        require(mod)
    doc = _read("docs", "architecture.md")
    section = doc[doc.index("## Worked example: adding a converter"):]
    code = re.findall(r"```py\n(.*?)```", section, re.S)[0]
    assert "register_converter" in code and "@adapter" in code
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=os.path.abspath(ROOT))
    run = subprocess.run([sys.executable, str(script)], cwd=str(tmp_path), env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr      # the block's own asserts check the results
