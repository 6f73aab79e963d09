"""The bundled caffe.proto: wire-identical to BVLC Caffe's, on any protobuf runtime."""
import hashlib
import struct
import os
import subprocess
import sys

import pytest
from google.protobuf import descriptor_pb2

from netdsl import NetdslError
from netdsl.proto import caffe_pb2, load_schema
from netdsl.protoparse import parse_proto

F = descriptor_pb2.FieldDescriptorProto


def canonical(fdp):
    """One sorted line per enum value and field: name, number, type, label, type
    name, default (floats rounded to float32), packed."""
    lines = []

    def walk_enum(e, scope):
        for v in e.value:
            lines.append("E %s.%s %s=%d" % (scope, e.name, v.name, v.number))

    def walk(m, scope):
        fq = scope + "." + m.name
        for e in m.enum_type:
            walk_enum(e, fq)
        for n in m.nested_type:
            walk(n, fq)
        for f in m.field:
            dv = f.default_value if f.HasField("default_value") else "-"
            if f.type in (F.TYPE_FLOAT, F.TYPE_DOUBLE) and dv != "-":
                dv = repr(struct.unpack("f", struct.pack("f", float(dv)))[0])
            packed = f.options.packed if f.options.HasField("packed") else "-"
            lines.append("F %s %s=%d t%d l%d %s %s %s" % (fq, f.name, f.number, f.type, f.label,
                                                        f.type_name, dv, packed))

    for m in fdp.message_type:
        walk(m, fdp.package)
    for e in fdp.enum_type:
        walk_enum(e, fdp.package)
    return "\n".join(sorted(lines))


def bundled_fdp():
    return descriptor_pb2.FileDescriptorProto.FromString(caffe_pb2.DESCRIPTOR.serialized_pb)


def test_descriptor_matches_bvlc_digest():
    # Digest of the same canonical form computed from the FileDescriptorProto that
    # protoc produces for BVLC/caffe master src/caffe/proto/caffe.proto (commit
    # 9b89154): 534 lines (every field and enum value of every message).
    text = canonical(bundled_fdp())
    assert len(text.splitlines()) == 534
    assert hashlib.sha256(text.encode()).hexdigest() == \
        "1915bc9d4ffaaa54e852bfcb52b4e3ef37a8a271abb72394f7b1570fddd6649c"


# (message, field, number, label, type) facts read from BVLC caffe.proto
FACTS = [
    ("NetParameter", "layer", 100, "repeated", "LayerParameter"),
    ("NetParameter", "layers", 2, "repeated", "V1LayerParameter"),
    ("NetParameter", "input", 3, "repeated", "string"),
    ("NetParameter", "input_shape", 8, "repeated", "BlobShape"),
    ("NetParameter", "input_dim", 4, "repeated", "int32"),
    ("BlobProto", "double_data", 8, "repeated", "double"),
    ("BlobProto", "num", 1, "optional", "int32"),
    ("BlobProto", "shape", 7, "optional", "BlobShape"),
    ("LayerParameter", "blobs", 7, "repeated", "BlobProto"),
    ("LayerParameter", "convolution_param", 106, "optional", "ConvolutionParameter"),
    ("LayerParameter", "crop_param", 144, "optional", "CropParameter"),
    ("LayerParameter", "python_param", 130, "optional", "PythonParameter"),
    ("V1LayerParameter", "blobs", 6, "repeated", "BlobProto"),
    ("V1LayerParameter", "blobs_lr", 7, "repeated", "float"),
    ("V0LayerParameter", "num_output", 3, "optional", "uint32"),
    ("SolverParameter", "solver_type", 30, "optional", "SolverType"),
]


@pytest.mark.parametrize("msg,field,number,label,typ", FACTS)
def test_field_facts(msg, field, number, label, typ):
    fd = getattr(caffe_pb2, msg).DESCRIPTOR.fields_by_name[field]
    assert fd.number == number
    labels = {1: "optional", 2: "required", 3: "repeated"}
    assert labels[bundled_field(msg, field).label] == label
    name = fd.message_type.name if fd.message_type else (
        fd.enum_type.name if fd.enum_type else bundled_type(msg, field))
    assert name == typ


def bundled_field(msg, field):
    for m in bundled_fdp().message_type:
        if m.name == msg:
            return next(f for f in m.field if f.name == field)
    raise KeyError(msg)


def bundled_type(msg, field):
    names = {v: k[len("TYPE_"):].lower() for k, v in F.Type.items()}
    return names[bundled_field(msg, field).type]


def test_defaults_and_enums():
    # caffe.proto: ConvolutionParameter.bias_term default true, group default 1;
    # PoolingParameter pool default MAX; FillerParameter type default "constant",
    # std default 1; DropoutParameter dropout_ratio default 0.5; Phase TRAIN=0 TEST=1
    c = caffe_pb2.ConvolutionParameter()
    assert c.bias_term is True and c.group == 1
    assert caffe_pb2.PoolingParameter().pool == caffe_pb2.PoolingParameter.MAX
    f = caffe_pb2.FillerParameter()
    assert f.type == "constant" and f.std == 1.0 and f.sparse == -1
    assert caffe_pb2.DropoutParameter().dropout_ratio == 0.5
    assert (caffe_pb2.TRAIN, caffe_pb2.TEST) == (0, 1)
    assert caffe_pb2.Phase.Name(1) == "TEST"
    # BlobShape.dim is packed (caffe.proto: repeated int64 dim = 1 [packed = true])
    b = caffe_pb2.BlobShape(dim=[2, 3])
    assert b.SerializeToString() == bytes([0x0A, 2, 2, 3])


def test_wire_bytes_of_a_layer():
    # hand-encoded: NetParameter.layer (100, wire type 2) -> tag 0xA2 0x06;
    # LayerParameter.name (1) "c" -> 0A 01 63; type (2) "ReLU" -> 12 04 ...
    net = caffe_pb2.NetParameter()
    layer = net.layer.add()
    layer.name = "c"
    layer.type = "ReLU"
    body = bytes([0x0A, 1]) + b"c" + bytes([0x12, 4]) + b"ReLU"
    assert net.SerializeToString() == bytes([0xA2, 0x06, len(body)]) + body


def test_parser_errors_are_located(tmp_path):
    bad = tmp_path / "fork.proto"
    bad.write_text('syntax = "proto2";\npackage caffe;\nmessage A {\n  optional Foo x = 1;\n}\n')
    with pytest.raises(NetdslError) as exc:
        load_schema(str(bad))
    assert str(exc.value).startswith(str(bad) + ":4:12: unknown type `Foo` for field `x`")
    with pytest.raises(NetdslError, match=r":3:22: field number 1 of `b` is already used by `a`"):
        parse_proto("message A {\n  optional int32 a = 1;\n  optional int32 b = 1;\n}\n",
                    "x.proto")
    with pytest.raises(NetdslError, match=r"x.proto:2:3: expected a field"):
        parse_proto("message A {\n  int32 a = 1;\n}\n", "x.proto")


def test_parser_handles_nested_scopes_and_defaults():
    text = '''
    syntax = "proto2";
    package p;
    enum Top { A = 0; B = 1; }
    message M {
      enum Mode { X = 0; Y = 5; }
      message Inner { optional Mode m = 1 [default = Y]; }
      optional Inner inner = 1;
      optional Top t = 2 [default = B];
      optional float f = 3 [default = 1e-8];
      optional string s = 4 [default = "a\\"b"];
      repeated int64 d = 5 [packed = true];
      oneof choice { int32 i = 6; string j = 7; }
    }
    '''
    fdp = parse_proto(text, "p.proto")[-1]
    m = fdp.message_type[0]
    inner = m.nested_type[0]
    assert inner.field[0].type_name == ".p.M.Mode" and inner.field[0].default_value == "Y"
    fields = {f.name: f for f in m.field}
    assert fields["t"].type_name == ".p.Top" and fields["t"].default_value == "B"
    assert float(fields["f"].default_value) == pytest.approx(1e-8)
    assert fields["s"].default_value == 'a"b'
    assert fields["d"].options.packed is True
    assert fields["j"].oneof_index == 0


OLDEST = "4.21.12"


@pytest.mark.slow
def test_oldest_protobuf_runtime(tmp_path):
    """The schema loads and the builder gives the same text on protobuf 4.21."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    pip = subprocess.run([str(py), "-m", "pip", "install", "-q", "protobuf==" + OLDEST],
                         capture_output=True, text=True)
    if pip.returncode != 0:
        from dnn_check import unavailable  # fails, unless told to skip when offline
        unavailable("cannot install protobuf %s: %s" % (OLDEST, pip.stderr[-500:]))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = (
        "import google.protobuf as g; assert g.__version__ == %r, g.__version__\n"
        "from netdsl.netspec import NetSpec, layers as L, params as P\n"
        "n = NetSpec(); n.data = L.Input(shape=dict(dim=[1, 3, 8, 8]))\n"
        "n.conv = L.Convolution(n.data, num_output=2, kernel_size=3, param=[dict(lr_mult=1)])\n"
        "n.pool = L.Pooling(n.conv, pool=P.Pooling.MAX, kernel_size=2, stride=2)\n"
        "print(n.to_proto(), end='')\n" % OLDEST)
    env = dict(os.environ, PYTHONPATH=root)
    # numpy/yaml/jinja2 are not needed by the builder: netdsl imports them lazily
    out = subprocess.run([str(py), "-c", script], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    from netdsl.netspec import NetSpec, layers as L, params as P
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 8, 8]))
    n.conv = L.Convolution(n.data, num_output=2, kernel_size=3, param=[dict(lr_mult=1)])
    n.pool = L.Pooling(n.conv, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    assert out.stdout == str(n.to_proto())
