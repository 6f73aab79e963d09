"""Out-of-range numbers: the same located message from specs, NetSpec keywords and prototxt.

Ranges are protobuf's scalar types (language guide, "Scalar Value Types"):
int32 -2^31..2^31-1, uint32 0..2^32-1, int64 -2^63..2^63-1, uint64 0..2^64-1,
float up to FLT_MAX = (2 - 2^-23) * 2^127, enums stored as int32 with the
declared values only, bool true/false.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from netdsl import NetSpec, layers as L, prototxt
from netdsl.errors import NetdslError
from netdsl.spec import build_nets, load_spec

INT32_MAX = 2 ** 31 - 1
UINT32_MAX = 2 ** 32 - 1
INT64_MAX = 2 ** 63 - 1
UINT64_MAX = 2 ** 64 - 1
FLT_MAX = (2 - 2 ** -23) * 2 ** 127
BIG = 199999999999999999997  # 21 digits: the number the issue reports

# (layer type, param message, field, a bad value, type name, range as printed)
CASES = [
    ("Convolution", "convolution_param", "num_output", BIG, "uint32", "0 to %d" % UINT32_MAX),
    ("Convolution", "convolution_param", "num_output", -1, "uint32", "0 to %d" % UINT32_MAX),
    ("Convolution", "convolution_param", "axis", INT32_MAX + 1, "int32",
     "%d to %d" % (-2 ** 31, INT32_MAX)),
    ("Convolution", "convolution_param", "axis", -2 ** 31 - 1, "int32",
     "%d to %d" % (-2 ** 31, INT32_MAX)),
    ("Reshape", "reshape_param", None, None, None, None),  # placeholder, filtered below
    ("ReLU", "relu_param", "negative_slope", 1e39, "float", "3.4028235e+38"),
    ("Pooling", "pooling_param", "pool", 7, "enum PoolMethod", "MAX=0, AVE=1, STOCHASTIC=2"),
    ("Convolution", "convolution_param", "bias_term", 2, "bool", "true or false"),
]
CASES = [c for c in CASES if c[2] is not None]


def _check(err: NetdslError, layer: str, field: str, value, type_name: str, rng: str) -> None:
    text = str(err)
    assert err.layer == layer, text
    assert "`%s`" % field in text, text
    assert str(value) in text or repr(value) in text, text
    assert type_name in text and rng in text, text


@pytest.mark.parametrize("ltype,pfield,field,value,type_name,rng", CASES)
def test_netspec_keyword_out_of_range(ltype, pfield, field, value, type_name, rng):
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 8, 8]))
    n.bad = getattr(L, ltype)(n.data, **{field: value})
    with pytest.raises(NetdslError) as info:
        n.to_proto()
    _check(info.value, "bad", field, value, type_name, rng)
    assert info.value.file == __file__


@pytest.mark.parametrize("ltype,pfield,field,value,type_name,rng", CASES)
def test_prototxt_out_of_range(ltype, pfield, field, value, type_name, rng):
    literal = {True: "true", False: "false"}.get(value, value) if isinstance(value, bool) \
        else value
    text = ('name: "n"\nlayer {\n  name: "bad"\n  type: "%s"\n  %s {\n    %s: %s\n  }\n}\n'
            % (ltype, pfield, field, literal))
    with pytest.raises(NetdslError) as info:
        prototxt.parse_net(text, "net.prototxt")
    _check(info.value, "bad", field, value, type_name, rng)
    assert (info.value.file, info.value.line) == ("net.prototxt", 6)


@pytest.mark.parametrize("ltype,pfield,field,value,type_name,rng", CASES)
def test_spec_out_of_range(tmp_path, ltype, pfield, field, value, type_name, rng):
    path = tmp_path / "net.yaml"
    path.write_text("name: t\ninputs:\n  data: [1, 3, 8, 8]\nlayers:\n"
                    "  - %s: bad\n    %s: %s\n" % (ltype, field, value))
    with pytest.raises(NetdslError) as info:
        build_nets(load_spec(str(path)))
    _check(info.value, "bad", field, value, type_name, rng)
    assert (info.value.file, info.value.line) == (str(path), 6)


def test_int64_and_uint64_ranges():
    # BlobShape.dim is int64; SolverParameter.random_seed is int64 too, and
    # V1LayerParameter has no uint64 field: the uint64 check is the shared
    # function's, tested directly on a descriptor of that type
    with pytest.raises(NetdslError, match=r"`dim` in BlobShape: %d is out of range "
                       r"\(int64: %d to %d\)" % (INT64_MAX + 1, -2 ** 63, INT64_MAX)):
        prototxt.parse_net('layer { name: "in" type: "Input" input_param { shape { dim: %d } } }'
                           % (INT64_MAX + 1))
    net = prototxt.parse_net('layer { name: "in" type: "Input" input_param { shape { dim: %d } '
                             '} }' % INT64_MAX)
    assert net.layer[0].input_param.shape[0].dim[0] == INT64_MAX
    from google.protobuf import descriptor_pb2, descriptor_pool
    from google.protobuf.descriptor import FieldDescriptor
    from netdsl import numrange
    fdp = descriptor_pb2.FileDescriptorProto(name="u64_range_test.proto", package="r")
    msg = fdp.message_type.add(name="M")
    msg.field.add(name="u", number=1, type=FieldDescriptor.TYPE_UINT64,
                  label=FieldDescriptor.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    fd = pool.Add(fdp) and pool.FindMessageTypeByName("r.M").fields_by_name["u"]
    assert numrange.problem(fd, UINT64_MAX) is None
    assert numrange.problem(fd, UINT64_MAX + 1) == (
        "%d is out of range (uint64: 0 to %d)" % (UINT64_MAX + 1, UINT64_MAX))
    assert numrange.problem(fd, -1) is not None


def test_float_limit_is_float32_rounding():
    # FLT_MAX itself and values that round to it are kept; 2^128 - 2^103 is the
    # first value that rounds to infinity (half an ulp of 2^104 above FLT_MAX)
    import numpy as np
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1]))
    n.r = L.ReLU(n.data, negative_slope=FLT_MAX)
    assert n.to_proto().layer[1].relu_param.negative_slope == np.float32(FLT_MAX)
    n.r = L.ReLU(n.data, negative_slope=2.0 ** 128 - 2.0 ** 103)
    with pytest.raises(NetdslError, match="out of range"):
        n.to_proto()
    # inf and nan written as such stay what they are (Caffe's text parser keeps them)
    net = prototxt.parse_net('layer { name: "r" type: "ReLU" relu_param { negative_slope: inf } }')
    assert net.layer[0].relu_param.negative_slope == float("inf")
    n.r = L.ReLU(n.data, negative_slope=float("nan"))
    assert np.isnan(n.to_proto().layer[1].relu_param.negative_slope)


def test_double_and_solver_fields(tmp_path):
    # SolverParameter.base_lr is float, delta is float, random_seed int64
    with pytest.raises(NetdslError, match=r"`random_seed` in SolverParameter: .* \(int64"):
        prototxt.parse_solver("base_lr: 0.1\nrandom_seed: %d\n" % (INT64_MAX + 1), "s.prototxt")
    with pytest.raises(NetdslError, match=r"`base_lr` in SolverParameter: 1e39 .*float"):
        prototxt.parse_solver("base_lr: 1e39\n", "s.prototxt")


def test_cli_huge_integer_in_spec_is_one_located_line(tmp_path):
    """The issue's case: a 21-digit num_output in a shipped spec, through the CLI."""
    import os
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    src = open(os.path.join(root, "specs", "fcn32s.yaml")).read()
    assert "num_classes: 21" in src
    spec = tmp_path / "specs" / "big.yaml"
    spec.parent.mkdir()
    spec.write_text(src.replace("num_classes: 21", "num_classes: %d" % BIG))
    os.symlink(os.path.join(root, "templates"), str(tmp_path / "templates"))
    out = subprocess.run([sys.executable, "-m", "netdsl", "build", str(spec), "-o",
                          str(tmp_path / "out")], capture_output=True, text=True)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "layer 'score_fr'" in lines[0] and "`num_output`" in lines[0]
    assert "%d is out of range (uint32: 0 to %d)" % (BIG, UINT32_MAX) in lines[0]
    assert not (tmp_path / "out").exists()


def test_double_range():
    # the only doubles in caffe.proto are BlobProto.double_data/double_diff;
    # DBL_MAX = (2 - 2^-52) * 2^1023, so an integer of 309 digits is past it
    from netdsl import numrange
    from netdsl.proto import caffe_pb2
    fd = caffe_pb2.BlobProto.DESCRIPTOR.fields_by_name["double_data"]
    dbl_max = (2 - 2 ** -52) * 2 ** 1023
    assert numrange.problem(fd, dbl_max) is None
    assert numrange.problem(fd, 10 ** 309).startswith("1" + "0" * 309 + " is out of range "
                                                      "(double: ")
    assert numrange.problem(fd, float("-inf")) is None


def test_prototxt_layer_named_after_the_bad_value():
    # the layer's name is written after the field; an earlier layer's name is not taken
    text = ('layer { name: "first" type: "ReLU" }\n'
            'layer {\n  type: "Convolution"\n  convolution_param { num_output: 4294967296 }\n'
            '  name: "second"\n}\n'
            'layer { type: "Pooling" pooling_param { pool: 9 } }\n')
    with pytest.raises(NetdslError) as info:
        prototxt.parse_net(text, "n.prototxt")
    assert info.value.layer == "second" and info.value.line == 4
    with pytest.raises(NetdslError) as info:
        prototxt.parse_net(text.replace("4294967296", "4294967295"), "n.prototxt")
    assert info.value.layer is None and "`pool` in PoolingParameter: 9" in str(info.value)
