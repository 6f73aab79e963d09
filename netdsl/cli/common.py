"""What several verbs share: writing text out, reading a net or a spec's net, the
``--input``/``--declare``/``-D`` items and the options common to several verbs."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Dict, List, Optional

from ..errors import NetdslError


def emit(text: str, out: Optional[str]) -> None:
    """``text`` to ``out`` (atomically), or to standard output for None or ``-``."""
    from ..fileio import atomic_write
    if out and out != "-":
        atomic_write(out, text)
    else:
        sys.stdout.write(text)


def warn_written(msg, what: str = "prototxt") -> None:
    """One warning line when ``msg``, about to be written, sets fields its fork
    schema numbers differently from BVLC (netdsl.fork.warn_on_write)."""
    from ..fork import warn_on_write
    warn_on_write(msg, what)


def json_text(obj) -> str:
    """Indented JSON with lists of numbers kept on one line."""
    import re
    text = json.dumps(obj, indent=2, default=_json_default)
    text = re.sub(r"\[\s*([-0-9.eE,\s]*?)\s*\]",
                  lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",") if x.strip())
                  + "]", text)
    return text + "\n"


def _json_default(obj):
    import numpy as np
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(type(obj).__name__)


# -- items of the command line ---------------------------------------------------

def parse_inputs(items: Optional[List[str]]) -> Dict[str, List[int]]:
    """``--input name=N,C,H,W`` (repeatable) -> {name: [N, C, H, W]}."""
    out: Dict[str, List[int]] = {}
    for item in items or ():
        name, sep, dims = item.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            out[name] = [int(d) for d in dims.replace("x", ",").split(",") if d.strip()]
            if not out[name]:
                raise ValueError
        except ValueError:
            raise NetdslError("bad --input %r: expected NAME=N,C,H,W (e.g. data=1,3,500,500)"
                              % item) from None
    return out


def parse_declared(items: Optional[List[str]]) -> Optional[Dict[str, List[int]]]:
    """``--declare top=N,C,H,W`` (repeatable): shapes of tops Caffe cannot infer."""
    return parse_inputs(items) or None


def spec_defines(items: Optional[List[str]]) -> Dict[str, str]:
    """``-D NAME=VALUE`` items, checked, as raw text (read as YAML by the spec loader)."""
    from ..spec import parse_define
    out: Dict[str, str] = {}
    for item in items or ():
        key, _ = parse_define(item)
        out[key] = item.partition("=")[2]
    return out


def defines(args: argparse.Namespace) -> Optional[Dict[str, str]]:
    """The ``-D NAME=VALUE`` items of a verb (None when there are none)."""
    return spec_defines(getattr(args, "define", None)) or None


def caffe_phase(args: argparse.Namespace) -> Optional[str]:
    """The Caffe phase of a prototxt NET (``--phase train``: TRAIN, else TEST); None
    for a spec, whose ``--phase`` picks one of its nets instead."""
    return None if is_spec(args.net) else ("TRAIN" if args.phase == "train" else "TEST")


# -- nets --------------------------------------------------------------------------

def is_spec(path: str) -> bool:
    """Whether ``path`` names a YAML spec (or a Jinja2 template of one)."""
    return path.endswith((".yaml", ".yml", ".yaml.j2", ".yml.j2"))


def load_net(path: str, pb2=None, *, phase: Optional[str] = None, variables=None,
             strict: Optional[bool] = None):
    """A NetParameter from a prototxt (read with ``pb2``, default the schema in
    use), or from a spec's net for ``phase`` (train, val or deploy; default deploy).
    A spec's explicit crop offsets are checked (a warning, an error when ``strict``)."""
    from .. import prototxt
    from ..netspec import current_schema
    pb2 = pb2 or current_schema()
    if is_spec(path):
        return load_spec_net(path, phase=phase, variables=variables, strict=strict)[0]
    return prototxt.read_net(path, schema=pb2)


def load_spec_net(path: str, *, phase: Optional[str] = None, variables=None,
                  strict: Optional[bool] = None):
    """(NetParameter, Compiled) of a spec's net for ``phase`` (default deploy): the
    Compiled carries the spec's ``inputs`` shapes, including those of tops other
    layers make (``declared``, e.g. a Python data layer's)."""
    from ..layers.registry import activate
    from ..spec import build_all, load_spec
    spec = load_spec(path, variables=variables)
    built = build_all(spec, check=False, strict=strict)
    activate(spec.registry)   # its custom_layers, for the rest of this verb
    want = {"test": "val", None: "deploy"}.get(phase, phase)
    if want not in built.nets:
        raise NetdslError("the spec has no %s net (it has %s)"
                          % (want, ", ".join(built.nets)), file=path)
    return built.nets[want], built.compiled[want]


# -- options several verbs take ----------------------------------------------------

def declare_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--declare", action="append", metavar="TOP=N,C,H,W",
                   help="shape of a top Caffe cannot infer (Python or fork layers), or a "
                        "layer's: LAYER=N,C,H,W; repeatable")


def memory_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-memory", metavar="SIZE",
                   help="refuse to start when the estimated peak memory is larger "
                        "(e.g. 2G, 512M; default: half the available memory)")


def weights_options(p: argparse.ArgumentParser) -> None:
    memory_option(p)
    p.add_argument("--bn-stats", choices=["zero", "unit"], default="zero",
                   help="BatchNorm statistics: zero (Caffe's default; a TEST forward then "
                        "divides by sqrt(eps)) or unit (mean 0, variance 1, moving-average "
                        "factor 1: a fresh net's TEST forward is usable)")
    p.add_argument("--double", action="store_true",
                   help="store double_data (Caffe reads it; OpenCV's importer rejects it)")
    p.add_argument("--allow-large", action="store_true",
                   help="write a caffemodel of 2 GiB or more (protobuf and Caffe cannot "
                        "parse it)")
