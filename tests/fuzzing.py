"""Mutation fuzzing of every netdsl reader and language, shared by the tests and bench/fuzz.py.

A *family* is one kind of input (prototxt net, solver, caffemodel, YAML spec,
Jinja2 template, fork ``.proto``, plugin shape expressions, ``--input``/``-D``
arguments, and whole CLI runs).  Each has seeds (the shipped files in specs/,
templates/, tests/data/, plus caffemodels written here in the current, V1 and
V0 formats), a target that feeds one input to netdsl, and the same mutators:
byte flips, truncations, number replacement (int32/int64/uint64 edges, 21-digit
integers, floats past FLT_MAX, nan/inf), token deletion and duplication, line
deletion/duplication, indentation changes, splices from other seeds and inserted
syntax fragments.

The invariant, checked by :func:`run_case`: each input gives a result or a
:class:`netdsl.errors.NetdslError` (for the CLI: exit status 0, or 2 with exactly
one ``netdsl: error:`` line), never another exception, never a hang
(:data:`CASE_SECONDS` per case; :data:`CLI_SECONDS` for a CLI run), never
memory past a stated bound (:data:`CASE_BYTES` of Python allocations measured
with tracemalloc in process; :data:`CLI_ADDRESS_SPACE` bytes of address space,
set with ``resource.setrlimit`` in each CLI subprocess).

Randomness comes from a ``random.Random`` handed to the mutators: hypothesis's
``st.randoms()`` in the tests (derandomized, shrinkable), a seeded Random in
bench/fuzz.py.
"""
from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import tracemalloc
import warnings
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REGRESSIONS = os.path.join(ROOT, "tests", "data", "fuzz")

#: per-case limits (the invariant's "never a hang" and "never memory beyond")
CASE_SECONDS = 10
CASE_BYTES = 256 << 20
CLI_SECONDS = 60
CLI_ADDRESS_SPACE = 2 << 30
#: the --max-memory given to `run` in CLI cases, so forwards stay quick
CLI_RUN_MEMORY = "64M"


class Failure(Exception):
    """An input broke the invariant (the message says how)."""


class _Hang(BaseException):
    pass


# -- mutators ------------------------------------------------------------------

INTERESTING_NUMBERS = [
    "0", "-0", "1", "-1", "2", "3", "7", "255", "256", "65535", "65536", "100000",
    "2147483647", "2147483648", "-2147483648", "-2147483649", "4294967295", "4294967296",
    "9223372036854775807", "9223372036854775808", "-9223372036854775809",
    "18446744073709551615", "18446744073709551616", "199999999999999999997",
    "0.5", "-0.5", "1e-45", "1e38", "3.4028235e38", "3.5e38", "1e39", "-1e39", "1e308",
    "1e309", "nan", "inf", "-inf", "0x10", "1_000", "1.", ".5", "1e", "08",
]
FRAGMENTS = [
    "{", "}", "[", "]", ":", ",", "\"", "'", "#", "\n", "\t", "\\", "\x00", "\xff", "- ",
    "${", "}", "${x}", "${num_classes * 2}", "{{", "}}", "{% if x %}", "{% endif %}",
    "{{ 1/0 }}", "&a ", "*a", "<<: *a", "&a [*a]", "[&b [*b, *b], *b]", "!!python/object:os.system", "? ", "| ",
    "include: ", "repeat: 3", "layer {", "layers {", "name: \"x\"", "top: \"data\"",
    "bottom: \"x\"", "type: \"Convolution\"", "message ", "enum ", "optional ", "= 1;",
    "extend ", "oneof ", "import \"x.proto\";", "syntax = \"proto3\";", "H", "param.",
    "(", ")", "**", "//", "%", "lambda", "__class__", "if", "else",
]


def _numbers(text: str) -> List[Tuple[int, int]]:
    return [m.span() for m in re.finditer(r"-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?", text)]


def _text_mutation(text: str, rnd: random.Random, others: Sequence[str]) -> str:
    op = rnd.randrange(12)
    n = len(text)
    if op == 11:  # deep nesting or a long run of one token
        at = rnd.randrange(n + 1)
        unit = rnd.choice(["(", "[", "{", "-", "not ", "{x: ", "- ", "layer { ", "H+", "a."])
        return text[:at] + unit * rnd.choice([100, 1000, 5000]) + text[at:]
    if op == 0:  # number replacement
        spans = _numbers(text)
        if spans:
            a, b = spans[rnd.randrange(len(spans))]
            choice = rnd.randrange(4)
            if choice == 0:
                new = "".join(rnd.choice("0123456789") for _ in range(21)).lstrip("0") or "1"
            elif choice == 1:
                new = str(rnd.randrange(-10, 10 ** rnd.randrange(1, 25)))
            else:
                new = rnd.choice(INTERESTING_NUMBERS)
            return text[:a] + new + text[b:]
    if op == 1 and n:  # token deletion
        toks = [m.span() for m in re.finditer(r"\S+", text)]
        if toks:
            a, b = toks[rnd.randrange(len(toks))]
            return text[:a] + text[b:]
    if op == 2 and n:  # token duplication
        toks = [m.span() for m in re.finditer(r"\S+", text)]
        if toks:
            a, b = toks[rnd.randrange(len(toks))]
            return text[:b] + " " + text[a:b] + text[b:]
    lines = text.split("\n")
    if op == 3 and lines:  # line deletion
        del lines[rnd.randrange(len(lines))]
        return "\n".join(lines)
    if op == 4 and lines:  # line duplication (sometimes many times)
        i = rnd.randrange(len(lines))
        lines[i:i] = [lines[i]] * rnd.choice([1, 1, 2, 50])
        return "\n".join(lines)
    if op == 5 and lines:  # indentation change
        i = rnd.randrange(len(lines))
        line = lines[i]
        k = rnd.choice([-4, -2, -1, 1, 2, 4])
        if k < 0:
            lines[i] = line[min(-k, len(line) - len(line.lstrip(" "))):]
        else:
            lines[i] = rnd.choice([" ", "\t"]) * k + line
        return "\n".join(lines)
    if op == 6 and lines and len(lines) > 1:  # line swap
        i, j = rnd.randrange(len(lines)), rnd.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
        return "\n".join(lines)
    if op == 7 and others:  # splice a piece of another seed
        other = rnd.choice(others)
        if other:
            a = rnd.randrange(len(other))
            b = min(len(other), a + rnd.randrange(1, 400))
            at = rnd.randrange(n + 1)
            return text[:at] + other[a:b] + text[at:]
    if op == 8:  # insert a syntax fragment
        at = rnd.randrange(n + 1)
        return text[:at] + rnd.choice(FRAGMENTS) + text[at:]
    if op == 9 and n:  # replace an identifier by a near one
        toks = [m.span() for m in re.finditer(r"[A-Za-z_]\w*", text)]
        if toks:
            a, b = toks[rnd.randrange(len(toks))]
            word = text[a:b]
            i = rnd.randrange(len(word))
            return text[:a] + word[:i] + rnd.choice("aeiou_xX1") + word[i + 1:] + text[b:]
    return text


def _byte_mutation(data: bytes, rnd: random.Random, others: Sequence[bytes]) -> bytes:
    b = bytearray(data)
    op = rnd.randrange(6)
    if op == 0 and b:  # byte flips
        for _ in range(rnd.randrange(1, 5)):
            b[rnd.randrange(len(b))] = rnd.randrange(256)
        return bytes(b)
    if op == 1 and b:  # bit flip
        i = rnd.randrange(len(b))
        b[i] ^= 1 << rnd.randrange(8)
        return bytes(b)
    if op == 2 and b:  # truncation
        return bytes(b[:rnd.randrange(len(b))])
    if op == 3:  # a lying varint (a length or a value) written over the bytes
        n = rnd.choice([2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 62, 2 ** 64 - 1, 10 ** 9,
                        rnd.randrange(1 << 35)])
        v = bytearray()
        while n > 0x7F:
            v.append((n & 0x7F) | 0x80)
            n >>= 7
        v.append(n)
        at = rnd.randrange(len(b) + 1)
        b[at:at + len(v)] = v
        return bytes(b)
    if op == 4 and b:  # duplicate a chunk
        a = rnd.randrange(len(b))
        c = min(len(b), a + rnd.randrange(1, 200))
        at = rnd.randrange(len(b) + 1)
        return bytes(b[:at] + b[a:c] + b[at:])
    if op == 5 and others:  # splice
        other = rnd.choice(others)
        if other:
            a = rnd.randrange(len(other))
            c = min(len(other), a + rnd.randrange(1, 300))
            at = rnd.randrange(len(b) + 1)
            return bytes(b[:at] + other[a:c] + b[at:])
    return bytes(b)


def mutate(data: bytes, rnd: random.Random, others: Sequence[bytes] = (),
           binary: bool = False) -> bytes:
    """1 to 4 mutations of ``data``; text mutations work on latin-1 text, so every
    byte survives them."""
    out = data
    for _ in range(rnd.choice([1, 1, 2, 3, 4])):
        if binary or rnd.random() < 0.15:
            out = _byte_mutation(out, rnd, others)
        else:
            text = out.decode("latin-1")
            texts = [o.decode("latin-1") for o in others[:8]] if others else []
            out = _text_mutation(text, rnd, texts).encode("latin-1")
    return out


# -- seeds -----------------------------------------------------------------------

def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def _files(*patterns: str) -> List[str]:
    out: List[str] = []
    for p in patterns:
        out += sorted(glob.glob(os.path.join(ROOT, p), recursive=True))
    fuzz_dir = REGRESSIONS + os.sep
    return [f for f in out if os.path.isfile(f) and not f.startswith(fuzz_dir)]


def caffemodel_seeds() -> Dict[str, bytes]:
    """Small caffemodels in the three formats Caffe has written."""
    import numpy as np
    from netdsl.proto import caffe_pb2
    from netdsl.weights import write_caffemodel
    rng = np.random.default_rng(0)
    layers = [("conv1", "Convolution", [rng.standard_normal((2, 3, 3, 3)).astype(np.float32),
                                        np.float32([0.5, -1])]),
              ("relu1", "ReLU", []),
              ("fc", "InnerProduct", [rng.standard_normal((3, 8)).astype(np.float32)]),
              ("up", "Deconvolution", [np.ones((2, 1, 4, 4), np.float32)])]
    out: Dict[str, bytes] = {}
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "m.caffemodel")
        write_caffemodel(p, layers, name="seed")
        out["current.caffemodel"] = _read(p)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the OpenCV note on double_data
            write_caffemodel(p, layers, name="seed", double=True)
        out["double.caffemodel"] = _read(p)
    v1 = caffe_pb2.NetParameter(name="seed-v1")
    for name, enum, arrays in [("conv1", caffe_pb2.V1LayerParameter.CONVOLUTION, layers[0][2]),
                               ("fc", caffe_pb2.V1LayerParameter.INNER_PRODUCT, layers[2][2])]:
        lp = v1.layers.add(name=name, type=enum)
        for a in arrays:  # V1-era blobs: the legacy num/channels/height/width
            dims = [1] * (4 - a.ndim) + list(a.shape)
            bp = lp.blobs.add(num=dims[0], channels=dims[1], height=dims[2], width=dims[3])
            bp.data.extend(a.ravel().tolist())
    out["v1.caffemodel"] = v1.SerializeToString()
    v0 = caffe_pb2.NetParameter(name="seed-v0")
    lp = v0.layers.add()
    lp.layer.name = "conv1"
    lp.layer.type = "conv"
    bp = lp.layer.blobs.add(num=2, channels=3, height=3, width=3)
    bp.data.extend(layers[0][2][0].ravel().tolist())
    lp = v0.layers.add()
    lp.layer.name = "relu1"
    lp.layer.type = "relu"
    out["v0.caffemodel"] = v0.SerializeToString()
    return out


#: a small net with many layer types on a tiny input, so mutated nets reach the
#: forward pass (the shipped nets mostly start with data layers)
SMALL_NET = """name: "small"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 4 kernel_size: 3 pad: 1 stride: 1
    weight_filler { type: "xavier" } bias_filler { type: "constant" value: 0.1 } } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "sc1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" relu_param { negative_slope: 0.1 } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "up" type: "Deconvolution" bottom: "pool1" top: "up"
  convolution_param { num_output: 4 group: 4 kernel_size: 4 stride: 2 pad: 1 bias_term: false
    weight_filler { type: "bilinear" } } }
layer { name: "crop" type: "Crop" bottom: "up" bottom: "data" top: "crop" crop_param { axis: 2 offset: 0 } }
layer { name: "cat" type: "Concat" bottom: "crop" bottom: "conv1" top: "cat" }
layer { name: "elt" type: "Eltwise" bottom: "crop" bottom: "conv1" top: "elt"
  eltwise_param { operation: SUM coeff: 1 coeff: -1 } }
layer { name: "lrn" type: "LRN" bottom: "elt" top: "lrn" lrn_param { local_size: 3 } }
layer { name: "ap" type: "Pooling" bottom: "lrn" top: "ap" pooling_param { pool: AVE global_pooling: true } }
layer { name: "fc" type: "InnerProduct" bottom: "cat" top: "fc"
  inner_product_param { num_output: 5 weight_filler { type: "gaussian" std: 0.01 } } }
layer { name: "drop" type: "Dropout" bottom: "fc" top: "fc" dropout_param { dropout_ratio: 0.5 } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
layer { name: "slice" type: "Slice" bottom: "cat" top: "s1" top: "s2" slice_param { axis: 1 slice_point: 3 } }
layer { name: "flat" type: "Flatten" bottom: "s1" top: "flat" }
layer { name: "resh" type: "Reshape" bottom: "s2" top: "resh" reshape_param { shape { dim: 0 dim: -1 } } }
layer { name: "pow" type: "Power" bottom: "ap" top: "pow" power_param { power: 2 scale: 0.5 shift: 1 } }
layer { name: "sig" type: "Sigmoid" bottom: "pow" top: "sig" }
layer { name: "arg" type: "ArgMax" bottom: "prob" top: "arg" argmax_param { top_k: 2 } }
"""

#: a spec with the PyTorch-parity ops (tests/test_spec_torch_ops.py's, and more)
TORCH_SPEC = """name: torch-ops
inputs:
  data: [1, 2, 5, 7]
layers:
  - torch_interpolate: up
    bottom: data
    shape: [1, 2, 5, 7]
    scale_factor: 3
    mode: bilinear
    align_corners: false
  - torch_max_pool2d: pool
    bottom: up
    shape: [1, 2, 15, 21]
    kernel_size: 2
    stride: 2
  - torch_avg_pool2d: avg
    bottom: pool
    shape: [1, 2, 7, 10]
    kernel_size: 3
    stride: 1
    padding: 1
  - torch_interpolate: near
    bottom: avg
    shape: [1, 2, 7, 10]
    size: [14, 20]
    mode: nearest
"""

EXPRESSION_SEEDS = [
    "N\nC\nH * 2\nW * 2",
    "N\nparam.num_output\nH // 2\nW // 2",
    "b1.N\nbottom[0].C + bottom[1].C\nceil((H + 2 * pooling_param.pad - "
    "pooling_param.kernel_size) / pooling_param.stride) + 1\nmax(W, b1.W) if "
    "has(pooling_param.stride) else -1",
    "len(b0.shape) * b0.axes\nint(-7 / 2) + floor(-7 / 2) + 7 // 2 + 7 % 3\n"
    "min(ntop, nbottom) + abs(-3)",
    "N\nC\nconvolution_param.kernel_size[0] if len(convolution_param.kernel_size) else 1\n"
    "b0.shape[-1]\nb0.count // N",
    "N\nC * ntop\nH if nbottom > 1 else W\n3",
]


@dataclass
class Family:
    """One kind of input: its seeds (name -> bytes), target, and whether it is binary."""
    name: str
    seeds: Dict[str, bytes]
    target: Callable[["Workdir", str, bytes], None]
    binary: bool = False
    subprocess: bool = False
    verbs: Sequence[str] = ()


# -- the work directory: a copy of specs/, templates/ and tests/data ----------------

class Workdir:
    """A temporary tree mirroring the repository's inputs, so relative includes in
    specs and templates resolve as in the repository."""

    def __init__(self) -> None:
        self.root = tempfile.mkdtemp(prefix="netdsl-fuzz-")
        for d in ("specs", "templates", os.path.join("tests", "data")):
            src = os.path.join(ROOT, d)
            if os.path.isdir(src):
                shutil.copytree(src, os.path.join(self.root, d),
                                ignore=shutil.ignore_patterns("fuzz", "__pycache__"))
        self.count = 0
        os.makedirs(os.path.join(self.root, "cases"), exist_ok=True)
        #: a small caffemodel for verbs that read one beside the fuzzed input
        self.model = _write(os.path.join(self.root, "cases", "model.caffemodel"),
                            caffemodel_seeds()["current.caffemodel"])
        self.net = _write(os.path.join(self.root, "cases", "net.prototxt"), SMALL_NET.encode())

    def path_for(self, seed: str, suffix: Optional[str] = None) -> str:
        """A fresh file name beside where ``seed`` (a repository-relative path) lives."""
        self.count += 1
        rel_dir = os.path.dirname(seed) if os.sep in seed or "/" in seed else "cases"
        d = os.path.join(self.root, rel_dir)
        os.makedirs(d, exist_ok=True)
        base = os.path.basename(seed)
        ext = suffix if suffix is not None else _ext(base)
        return os.path.join(d, "_fuzz%d%s" % (self.count, ext))

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _ext(name: str) -> str:
    for e in (".yaml.j2", ".yml.j2", ".prototxt.j2"):
        if name.endswith(e):
            return e
    return os.path.splitext(name)[1]


def _write(path: str, data: bytes) -> str:
    with open(path, "wb") as fh:
        fh.write(data)
    return path


# -- targets (in process) ---------------------------------------------------------------

def _net_target(wd: Workdir, seed: str, data: bytes) -> None:
    from netdsl.coord_map import offsets_for
    from netdsl.forward import forward, random_inputs
    from netdsl.memory import guard_forward, guard_init
    from netdsl.prototxt import read_net, to_text
    from netdsl.shapes import infer_shapes
    from netdsl.weights import init_weights
    path = _write(wd.path_for(seed), data)
    net = read_net(path)
    to_text(net)
    shapes = infer_shapes(net)
    offsets_for(net, shapes=shapes)
    # what `run --random-input` does, under a small memory limit
    guard_init(net, limit=16 << 20)
    weights = init_weights(net)
    from netdsl.forward import input_shapes
    names = list(input_shapes(net))
    guard_forward(net, {}, names, limit=16 << 20)
    forward(net, weights, random_inputs(net))


def _solver_target(wd: Workdir, seed: str, data: bytes) -> None:
    from netdsl.prototxt import read_solver, to_text
    to_text(read_solver(_write(wd.path_for(seed), data)))


def _caffemodel_target(wd: Workdir, seed: str, data: bytes) -> None:
    import numpy as np
    from netdsl.weights import format_inspect, inspect, open_caffemodel
    path = _write(wd.path_for(seed, ".caffemodel"), data)
    with open_caffemodel(path) as m, np.errstate(all="ignore"):
        for entry in m.layers:
            for a in m.arrays(entry):
                a.sum()
        m.to_dict(copy=True)
    format_inspect(inspect(path, stats=True))


def _spec_target(wd: Workdir, seed: str, data: bytes) -> None:
    from netdsl.spec import build_all, build_solver, load_spec
    path = _write(wd.path_for(seed), data)
    spec = load_spec(path)
    built = build_all(spec, None, check=True)
    built.texts()
    build_solver(spec)


def _template_target(wd: Workdir, seed: str, data: bytes) -> None:
    from netdsl.spec import render
    path = _write(wd.path_for(seed), data)
    render(path)
    if path.endswith((".yaml.j2", ".yml.j2")):
        _spec_target(wd, seed, data)


def _proto_target(wd: Workdir, seed: str, data: bytes) -> None:
    import netdsl.proto as proto
    from netdsl.spec.schema_json import spec_schema
    path = _write(wd.path_for(seed, ".proto"), data)
    from netdsl.prototxt import parse_net
    from netdsl.shapes import infer_shapes
    from netdsl.weights import open_caffemodel
    try:
        pb2 = proto.load_schema(path)
        spec_schema(pb2)
        # a net and a caffemodel read through the schema
        net = parse_net(SMALL_NET, "small.prototxt", schema=pb2)
        infer_shapes(net)
        with open_caffemodel(wd.model, pb2=pb2) as m:
            m.to_dict()
    finally:
        for key in [k for k in proto._cache if k[0] == os.path.abspath(path)]:
            del proto._cache[key]  # one module per case: keep a long run's memory flat


def _expr_target(wd: Workdir, seed: str, data: bytes) -> None:
    from netdsl.plugins import expression_param_rule, expression_shape_rule
    from netdsl.proto import caffe_pb2
    text = data.decode("utf-8", "replace")
    dims: List[object] = [int(t.strip()) if re.fullmatch(r"-?\d{1,30}", t.strip()) else t
                          for t in text.split("\n")]
    layer = caffe_pb2.LayerParameter(name="x", type="Custom")
    layer.pooling_param.kernel_size = 3
    layer.pooling_param.stride = 2
    layer.convolution_param.kernel_size.append(3)
    layer.convolution_param.num_output = 4
    bottoms = [(1, 3, 10, 9), (4, 5, 6, 12)]
    for make in (expression_shape_rule, expression_param_rule):
        rule = make([dims], type_name="Custom")
        try:
            if make is expression_shape_rule:
                rule(layer, bottoms, 1)
            else:
                rule(layer, bottoms)
        except Exception as exc:  # noqa: BLE001  (checked below)
            from netdsl.errors import NetdslError
            if not isinstance(exc, NetdslError):
                raise
    expression_shape_rule(dims, type_name="Custom")


def _args_target(wd: Workdir, seed: str, data: bytes) -> None:
    from netdsl.cli import parse_inputs, _spec_defines
    from netdsl.errors import NetdslError
    from netdsl.forward.run import parse_input_args
    from netdsl.memory import parse_size
    from netdsl.spec import parse_defines
    text = data.decode("utf-8", "replace")
    for fn in (lambda: parse_inputs([text]), lambda: parse_input_args([text]),
               lambda: parse_size(text),
               lambda: parse_defines(_spec_defines([text]))):
        try:
            fn()
        except NetdslError:
            pass
    # a -D value into a real spec, and an --input shape into shapes
    from netdsl.shapes import infer_shapes
    from netdsl.spec import build_nets, load_spec
    spec_path = os.path.join(wd.root, "specs", "fcn32s.yaml")
    value = text.partition("=")[2] if "=" in text else text
    try:
        build_nets(load_spec(spec_path, variables={"num_classes": value}), check=True)
    except NetdslError:
        pass
    from netdsl.prototxt import read_net
    net = read_net(os.path.join(wd.root, "tests", "data", "prototxt", "fcn.prototxt"))
    name, _, dims = text.partition("=")
    shapes = parse_inputs(["data=" + (dims or name)])
    infer_shapes(net, shapes)


# -- the CLI family (subprocesses under setrlimit) --------------------------------------

def _limits() -> None:  # in the child, before exec
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (CLI_ADDRESS_SPACE, CLI_ADDRESS_SPACE))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


CLI_VERBS = {
    ".prototxt": ["shapes", "run", "init", "fmt", "upgrade"],
    ".caffemodel": ["inspect", "init-from", "run-weights"],
    ".yaml": ["build", "shapes", "build-weights"],
    ".j2": ["render", "build"],
    ".proto": ["schema", "shapes-proto", "inspect-proto"],
    ".args": ["shapes-input", "build-define", "run-max-memory"],
}


def cli_command(verb: str, path: str, out: str) -> List[str]:
    """The netdsl arguments a CLI case runs (``path`` is the mutated file)."""
    if verb == "shapes":
        return ["shapes", path]
    if verb == "run":
        return ["run", path, "--random-input", "--max-memory", CLI_RUN_MEMORY,
                "-o", os.path.join(out, "o.npz")]
    if verb == "init":
        return ["init", path, "-o", os.path.join(out, "m.caffemodel"), "--max-memory", "64M"]
    if verb == "fmt":
        return ["fmt", path, "-o", os.path.join(out, "f.prototxt")]
    if verb == "upgrade":
        return ["upgrade", path, "-o", os.path.join(out, "u.prototxt")]
    if verb == "inspect":
        return ["inspect", path, "--stats"]
    if verb == "build":
        return ["build", path, "-o", out]
    if verb == "build-weights":
        return ["build", path, "-o", out, "--weights", "--max-memory", "64M"]
    if verb == "render":
        return ["render", path, "-o", os.path.join(out, "r.yaml")]
    if verb == "schema":
        return ["schema", "--proto", path, "-o", os.path.join(out, "s.json")]
    # the first line, as one argument (an argument cannot hold a NUL byte)
    cases = os.path.join(os.path.dirname(out), "cases")
    if verb == "init-from":
        return ["init", os.path.join(cases, "net.prototxt"), "--from", path,
                "-o", os.path.join(out, "m.caffemodel")]
    if verb == "run-weights":
        return ["run", os.path.join(cases, "net.prototxt"), path, "--random-input",
                "-o", os.path.join(out, "o.npz")]
    if verb == "shapes-proto":
        return ["shapes", os.path.join(ROOT, "tests", "data", "prototxt", "fcn.prototxt"),
                "--proto", path]
    if verb == "inspect-proto":
        return ["inspect", os.path.join(os.path.dirname(out), "cases", "model.caffemodel"),
                "--proto", path]
    text = open(path, encoding="utf-8", errors="replace").read().split("\n")[0]
    text = text.replace("\x00", "")
    if verb == "shapes-input":
        return ["shapes", os.path.join(ROOT, "tests", "data", "prototxt", "fcn.prototxt"),
                "--input", text]
    if verb == "build-define":
        return ["build", os.path.join(ROOT, "specs", "fcn32s.yaml"), "-o", out, "-D", text]
    if verb == "run-max-memory":
        return ["run", os.path.join(ROOT, "tests", "data", "prototxt", "deploy_input_dim.prototxt"),
                "--random-input", "--max-memory", text]
    raise ValueError(verb)


def run_cli(args: List[str], cwd: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    env.pop("NETDSL_PLUGINS", None)
    return subprocess.run([sys.executable, "-m", "netdsl"] + args, cwd=cwd, env=env,
                          capture_output=True, timeout=CLI_SECONDS, preexec_fn=_limits,
                          stdin=subprocess.DEVNULL)


def check_cli_result(proc: subprocess.CompletedProcess, args: List[str]) -> None:
    """Exit 0, or exit 2 with one ``netdsl: error:`` line (warnings and notes aside)."""
    err = proc.stderr.decode("utf-8", "replace")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if proc.returncode == 0:
        if "Traceback" in err:
            raise Failure("exit 0 with a traceback: %s" % err[-2000:])
        return
    if proc.returncode != 2:
        raise Failure("exit %d from netdsl %s: %s" % (proc.returncode, " ".join(args),
                                                     err[-2000:]))
    errors = [ln for ln in lines if ln.startswith("netdsl: error: ")]
    # (indented lines are the error's source excerpt: the offending line and a caret)
    other = [ln for ln in lines if not ln.startswith(("netdsl: error: ", "netdsl: warning: ",
                                                       "netdsl: note: ", "    "))]
    if len(errors) != 1 or other:
        raise Failure("exit 2 without exactly one error line: %s" % err[-2000:])
    if "out of memory" in errors[0]:
        raise Failure("ran out of memory (the estimate did not stop it): %s" % errors[0])


def _cli_target(verb: str) -> Callable[[Workdir, str, bytes], str]:
    def target(wd: Workdir, seed: str, data: bytes) -> str:
        ext = ".args" if verb in CLI_VERBS[".args"] else None
        path = _write(wd.path_for(seed, ext), data)
        out = tempfile.mkdtemp(prefix="out", dir=wd.root)
        args = cli_command(verb, path, out)
        try:
            proc = run_cli(args, wd.root)
        except subprocess.TimeoutExpired:
            raise Failure("netdsl %s hung (over %d s)" % (" ".join(args), CLI_SECONDS))
        finally:
            shutil.rmtree(out, ignore_errors=True)
        check_cli_result(proc, args)
        return "ok" if proc.returncode == 0 else "error"
    return target


# -- families -------------------------------------------------------------------------

ARG_SEEDS = {
    "input": b"data=1,3,500,500", "input-x": b"data=1x3x224x224", "define": b"num_classes=59",
    "define-list": b"sizes=[1, 2, 3]", "memory": b"2G", "npy": b"data=x.npy",
}


def _rel(paths: Sequence[str]) -> Dict[str, bytes]:
    return {os.path.relpath(p, ROOT): _read(p) for p in paths}


def families() -> Dict[str, Family]:
    """Every family, by name (seeds are read now)."""
    nets = _rel([p for p in _files("tests/data/prototxt/*.prototxt", "tests/data/fcn/*.prototxt")
                 if "solver" not in os.path.basename(p)])
    nets["cases/small.prototxt"] = SMALL_NET.encode()
    solvers = _rel(_files("tests/data/prototxt/solver*.prototxt"))
    specs = _rel(_files("specs/*.yaml", "specs/forks/*.yaml", "tests/data/bad_specs/*.yaml",
                        "templates/*.yaml"))
    specs["specs/torch-ops.yaml"] = TORCH_SPEC.encode()
    templates = _rel(_files("templates/*.j2", "tests/data/bad_specs/*.j2", "specs/*.j2"))
    protos = _rel(_files("specs/forks/*.proto", "tests/data/**/*.proto"))
    models = caffemodel_seeds()
    exprs = {"expr%d" % i: s.encode() for i, s in enumerate(EXPRESSION_SEEDS)}
    fams = {
        "prototxt_net": Family("prototxt_net", nets, _net_target),
        "prototxt_solver": Family("prototxt_solver", solvers, _solver_target),
        "caffemodel": Family("caffemodel", models, _caffemodel_target, binary=True),
        "spec": Family("spec", specs, _spec_target),
        "template": Family("template", templates, _template_target),
        "proto": Family("proto", protos, _proto_target),
        "expr": Family("expr", exprs, _expr_target),
        "args": Family("args", dict(ARG_SEEDS), _args_target),
    }
    cli_seeds: Dict[str, bytes] = {}
    for group in (nets, solvers, specs, templates, protos):
        cli_seeds.update(group)
    cli_seeds.update({k + ".caffemodel": v for k, v in models.items()})
    cli_seeds.update({"args/" + k: v for k, v in ARG_SEEDS.items()})
    fams["cli"] = Family("cli", cli_seeds, None, subprocess=True)  # type: ignore[arg-type]
    return fams


def verbs_for(seed: str) -> List[str]:
    """The CLI verbs a seed file can be given to."""
    if seed.startswith("args/"):
        return CLI_VERBS[".args"]
    for ext, verbs in CLI_VERBS.items():
        if seed.endswith(ext):
            if ext == ".prototxt" and "solver" in os.path.basename(seed):
                return ["fmt", "upgrade"]
            return verbs
    return ["shapes"]


# -- one case ---------------------------------------------------------------------------

@contextlib.contextmanager
def _time_limit(seconds: int):
    def boom(*_):
        raise _Hang()
    old = signal.signal(signal.SIGALRM, boom)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run_case(fam: Family, wd: Workdir, seed: str, data: bytes, verb: Optional[str] = None
             ) -> str:
    """Feed one input; returns "ok" or "error" (a NetdslError), raises Failure otherwise."""
    from netdsl.errors import NetdslError
    from netdsl.plugins import temporary_layers
    if fam.subprocess:
        return _cli_target(verb or verbs_for(seed)[0])(wd, seed, data)
    import warnings
    started = tracemalloc.is_tracing()
    if not started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        with _time_limit(CASE_SECONDS), warnings.catch_warnings(), temporary_layers():
            warnings.simplefilter("ignore")
            fam.target(wd, seed, data)
        outcome = "ok"
    except NetdslError as exc:
        text = str(exc)
        if "\n" in text.strip():
            raise Failure("NetdslError of more than one line: %r" % text)
        outcome = "error"
    except _Hang:
        raise Failure("hang: over %d s" % CASE_SECONDS) from None
    except RecursionError as exc:
        raise Failure("RecursionError: %s" % exc) from None
    except Exception as exc:  # noqa: BLE001  (the invariant)
        import traceback
        tb = traceback.format_exc(limit=-4)
        raise Failure("%s: %s\n%s" % (type(exc).__name__, exc, tb)) from None
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        if not started:
            tracemalloc.stop()
    if peak > CASE_BYTES:
        raise Failure("allocated %d bytes (bound %d)" % (peak, CASE_BYTES))
    return outcome


def case_id(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()[:12]


def save_case(directory: str, fam: Family, seed: str, data: bytes, verb: Optional[str],
              message: str) -> str:
    """Write a failing input where :func:`replay` finds it: DIR/FAMILY/NAME, with the
    seed's directory and the CLI verb encoded in NAME, and the failure beside it."""
    sub = os.path.join(directory, fam.name)
    os.makedirs(sub, exist_ok=True)
    seed_dir = os.path.dirname(seed).replace("/", "+") or "-"
    ext = _ext(os.path.basename(seed)) or ".bin"
    name = "%s@%s@%s%s" % (seed_dir, verb or "-", case_id(data), ext)
    path = os.path.join(sub, name)
    _write(path, data)
    with open(path + ".txt", "w", encoding="utf-8") as fh:
        fh.write(message + "\n")
    return path


def decode_case(name: str) -> Tuple[str, Optional[str]]:
    """(seed path to place the case beside, CLI verb or None) from a saved case's name."""
    seed_dir, verb, rest = name.split("@", 2)
    seed_dir = "" if seed_dir == "-" else seed_dir.replace("+", "/")
    ext = _ext(rest)
    seed = (seed_dir + "/" if seed_dir else "") + "case" + ext
    return seed, (None if verb == "-" else verb)


def regression_cases(directory: str = REGRESSIONS) -> List[Tuple[str, str]]:
    """(family, path) of every saved case."""
    out = []
    for path in sorted(glob.glob(os.path.join(directory, "*", "*"))):
        if path.endswith(".txt") or os.path.isdir(path):
            continue
        out.append((os.path.basename(os.path.dirname(path)), path))
    return out


def replay(fam: Family, wd: Workdir, path: str) -> str:
    """Run a saved case through its family's target."""
    seed, verb = decode_case(os.path.basename(path))
    if fam.subprocess and seed.startswith("args"):
        seed = "args/" + os.path.basename(seed)
    return run_case(fam, wd, seed, _read(path), verb)
