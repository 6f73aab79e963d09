"""The compatibility corpus: specs, templates, NetSpec scripts and nets that
netdsl 0.1 handled, each run as a command line, with every file it writes.

An item runs in a fresh copy of ``corpus/`` (the working directory), after the
command ``before`` if it has one, writes its files under ``out/``, and is pinned
in ``pins.json`` by the SHA-256 of each file (``-`` is the standard output, for
verbs that print their result).
``make_pins.py`` runs the items with a given netdsl checkout to make the pins;
``test_compat.py`` runs them with the netdsl under test and compares.  Each run
is a process of its own (``python -m netdsl``), as a user runs netdsl.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Dict, List, NamedTuple, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
PINS = os.path.join(HERE, "pins.json")


class Item(NamedTuple):
    name: str
    argv: List[str]          # netdsl's command line, paths relative to corpus/
    stdout: bool = False     # the verb prints its result: pin the standard output too
    before: Optional[List[str]] = None   # a command run first (its files are not pinned)


def _build(name: str, spec: str, *extra: str) -> Item:
    return Item(name, ["build", spec, "-o", "out"] + list(extra))


ITEMS: List[Item] = [
    # docs/spec.md and README examples
    _build("spec-first", "specs/first.yaml"),
    _build("readme-tiny-fcn", "specs/tiny-fcn.yaml"),
    # FCN's published nets and the shipped variants, as 0.1 shipped them
    _build("fcn32s", "specs/fcn32s.yaml"),
    _build("fcn16s", "specs/fcn16s.yaml"),
    _build("fcn8s", "specs/fcn8s.yaml"),
    _build("fcn8s-atonce", "specs/fcn8s-atonce.yaml"),
    _build("fcn32s-bilinear-group", "specs/fcn32s-bilinear-group.yaml"),
    _build("nearest-decoder", "specs/nearest-decoder.yaml"),
    _build("fcn8s-templates", "specs/fcn8s-templates.yaml"),
    _build("fcn8s-pcontext-deploy", "specs/fcn8s.yaml", "-D", "num_classes=59",
           "--phase", "deploy"),
    _build("fcn32s-weights", "specs/tiny-fcn.yaml", "--weights", "--seed", "3"),
    Item("build-default-dir", ["build", "specs/first.yaml", "--phase", "deploy"]),
    # the spec language, feature by feature
    _build("blocks", "specs/blocks.yaml"),
    _build("repeat", "specs/repeat.yaml"),
    _build("includes", "specs/includes.yaml"),
    _build("template-spec", "specs/template.yaml.j2", "-D", "width=24"),
    _build("phases", "specs/phases.yaml"),
    _build("ops", "specs/ops.yaml"),
    _build("torch-ops", "specs/torch-ops.yaml"),
    _build("expressions", "specs/expressions.yaml"),
    _build("expressions-division", "specs/division.yaml"),
    _build("resnet50-prev", "specs/resnet50-prev.yaml"),
    _build("custom-layers", "specs/custom-layers.yaml"),
    _build("custom-loss", "specs/custom-loss.yaml"),
    _build("plugin", "specs/plugin.yaml"),
    _build("syntax", "specs/syntax.yaml", "-D", "slope=0.25", "-D", "widths=[2, 8]"),
    # the other verbs that write files
    Item("render-solver", ["render", "templates/solver.prototxt.j2", "-D", "base_lr=1e-14",
                           "-o", "out/solver.prototxt"]),
    Item("render-vgg16", ["render", "templates/vgg16.yaml.j2", "-D", "stages=3",
                          "-D", "fc=false", "-o", "out/vgg16.yaml"]),
    Item("upgrade-v1", ["upgrade", "nets/v1_deploy.prototxt", "-o", "out/deploy.prototxt"]),
    Item("upgrade-v0", ["upgrade", "nets/v0_net.prototxt", "-o", "out/net.prototxt"]),
    Item("upgrade-solver", ["upgrade", "nets/old_solver.prototxt", "-o", "out/solver.prototxt"]),
    Item("fmt", ["fmt", "nets/messy.prototxt"], stdout=True),
    Item("init", ["init", "nets/small_deploy.prototxt", "-o", "out/init.caffemodel",
                  "--interp", "upscore", "--seed", "5"]),
    Item("init-transplant", ["init", "nets/fc_conv.prototxt", "-o", "out/init.caffemodel",
                             "--from", "src.caffemodel", "--interp", "upscore"],
         before=["init", "nets/fc_src.prototxt", "-o", "src.caffemodel", "--seed", "4"]),
    Item("schema", ["schema", "-o", "out/spec.schema.json"]),
    Item("run", ["run", "nets/run_net.prototxt", "model.caffemodel", "--input",
                 "data=nets/x.npy", "-o", "out/out.npz"],
         before=["init", "nets/run_net.prototxt", "-o", "model.caffemodel", "--seed", "2"]),
    Item("shapes-json-spec", ["shapes", "specs/fcn8s.yaml", "--input", "data=1,3,300,300",
                              "--format", "json"], stdout=True),
    Item("shapes-json-net", ["shapes", "nets/small_deploy.prototxt", "--format", "json"],
         stdout=True),
    # pycaffe NetSpec scripts, unchanged
    Item("pycaffe-fcn", ["pycaffe", "scripts/fcn_net.py", "out"]),
    Item("pycaffe-readme", ["pycaffe", "scripts/readme_netspec.py", "out"]),
    # README's Python API (run under `pycaffe`, which runs any script)
    Item("python-api", ["pycaffe", "scripts/python_api.py", "out"]),
    Item("pytorch-recipes", ["pycaffe", "scripts/pytorch_recipes.py", "out"]),
]


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def npz_values(data: bytes) -> Dict[str, list]:
    """The arrays of an ``.npz`` file's bytes as nested lists (float32 values
    written as Python floats, which round-trip exactly)."""
    import io
    import numpy as np
    with np.load(io.BytesIO(data)) as z:
        return {k: z[k].tolist() for k in sorted(z.files)}


def _collect(work: str, stdout: Optional[bytes]) -> Dict[str, bytes]:
    out: Dict[str, bytes] = {}
    root = os.path.join(work, "out")
    for d, _, files in os.walk(root):
        for f in files:
            path = os.path.join(d, f)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, root).replace(os.sep, "/")] = fh.read()
    if stdout is not None:
        out["-"] = stdout
    return out


def run_item(item: Item, checkout: str) -> Dict[str, bytes]:
    """The files ``item`` writes when ``python -m netdsl`` of the source tree
    ``checkout`` runs it (a process of its own, as a user runs netdsl)."""
    work = tempfile.mkdtemp(prefix="netdsl-compat-")
    try:
        shutil.copytree(CORPUS, work, dirs_exist_ok=True)
        os.makedirs(os.path.join(work, "out"), exist_ok=True)
        env = dict(os.environ, PYTHONPATH=os.path.abspath(checkout))
        for argv in ([item.before] if item.before else []) + [item.argv]:
            proc = subprocess.run([sys.executable, "-m", "netdsl"] + argv, cwd=work,
                                  env=env, capture_output=True)
            if proc.returncode != 0:
                raise RuntimeError("%s: `netdsl %s`: exit %d: %s" % (
                    item.name, " ".join(argv), proc.returncode,
                    proc.stderr.decode(errors="replace")))
        return _collect(work, proc.stdout if item.stdout else None)
    finally:
        shutil.rmtree(work, ignore_errors=True)
