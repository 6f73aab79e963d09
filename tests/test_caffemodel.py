"""caffemodel writer and reader, checked against protobuf's own parser/serializer,
OpenCV's Caffe importer and a caffemodel written by Caffe itself."""
from __future__ import annotations

import os
import re
import signal
import warnings

import numpy as np
import pytest

from dnn_check import require
from netdsl.errors import NetdslError
from google.protobuf.internal.encoder import _VarintBytes

from netdsl.proto import BUNDLED, caffe_pb2, load_schema
from netdsl.layers.legacy import V1_LAYER_TYPES
from netdsl.weights.caffemodel import writer as cm
from netdsl.weights import format_inspect, inspect, open_caffemodel, write_caffemodel


def _rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def _caffe_shape(blob):
    # Caffe's Blob::FromProto rule, applied to a message protobuf parsed
    if any(blob.HasField(f) for f in ("num", "channels", "height", "width")):
        return (blob.num, blob.channels, blob.height, blob.width)
    return tuple(blob.shape.dim)


def _caffe_values(blob):
    if len(blob.double_data):
        return np.array(blob.double_data, dtype=np.float64)
    return np.array(blob.data, dtype=np.float32)


def _expected_net(layers, name=None):
    """The NetParameter protobuf builds for (name, type, arrays) triples."""
    net = caffe_pb2.NetParameter()
    if name:
        net.name = name
    for lname, ltype, arrays in layers:
        lp = net.layer.add(name=lname)
        if ltype:
            lp.type = ltype
        for a in arrays:
            bp = lp.blobs.add()
            bp.shape.SetInParent()
            bp.shape.dim.extend(a.shape)
            bp.data.extend(np.asarray(a, np.float32).ravel().tolist())
    return net


@pytest.fixture
def small_layers():
    rng = np.random.default_rng(7)
    return [
        ("conv1", "Convolution", [_rand(rng, 4, 3, 3, 3), _rand(rng, 4)]),
        ("relu1", "ReLU", []),
        ("fc", "InnerProduct", [_rand(rng, 5, 36), _rand(rng, 5)]),
        ("odd", "Scale", [np.array(1.5, np.float32), np.zeros((0, 3), np.float32)]),
        ("up", "Deconvolution", [_rand(rng, 2, 1, 4, 4)]),
    ]


# ---------------------------------------------------------------- writer


def test_writer_matches_protobuf_serialization(tmp_path, small_layers):
    path = str(tmp_path / "m.caffemodel")
    n = write_caffemodel(path, small_layers, name="tiny")
    data = open(path, "rb").read()
    expected = _expected_net(small_layers, "tiny")
    assert n == len(data)
    # protobuf's parser reads our bytes into the expected message ...
    assert caffe_pb2.NetParameter.FromString(data) == expected
    # ... and its serializer gives the very same bytes
    assert data == expected.SerializeToString()


def test_writer_mapping_with_types_from_net(tmp_path):
    rng = np.random.default_rng(1)
    weights = {"a": [_rand(rng, 2, 2)], "b": [_rand(rng, 3)]}
    net = caffe_pb2.NetParameter()
    net.layer.add(name="a", type="InnerProduct")
    net.layer.add(name="b", type="Bias")
    path = str(tmp_path / "m.caffemodel")
    write_caffemodel(path, weights, types=net)
    got = caffe_pb2.NetParameter.FromString(open(path, "rb").read())
    assert [(l.name, l.type) for l in got.layer] == [("a", "InnerProduct"), ("b", "Bias")]
    write_caffemodel(path, weights, types={"a": "X"})
    got = caffe_pb2.NetParameter.FromString(open(path, "rb").read())
    assert [(l.name, l.type) for l in got.layer] == [("a", "X"), ("b", "")]


def test_writer_converts_dtypes_and_layouts(tmp_path):
    rng = np.random.default_rng(2)
    base = rng.standard_normal((6, 5))
    arrays = [base, base.T, base[::2, ::-1], np.arange(12, dtype=np.int64).reshape(3, 4),
              np.asfortranarray(base.astype(np.float32))]

    def gen():  # a generator is fine: layers are encoded one at a time
        yield ("x", "Test", arrays)

    old_chunk = cm._CHUNK
    cm._CHUNK = 7  # exercise the chunked conversion path
    try:
        path = str(tmp_path / "m.caffemodel")
        write_caffemodel(path, gen())
    finally:
        cm._CHUNK = old_chunk
    got = caffe_pb2.NetParameter.FromString(open(path, "rb").read())
    for a, blob in zip(arrays, got.layer[0].blobs):
        assert tuple(blob.shape.dim) == a.shape
        np.testing.assert_array_equal(np.array(blob.data, np.float32),
                                      np.asarray(a, np.float32).ravel())


def test_writer_double_data(tmp_path, small_layers):
    path = str(tmp_path / "d.caffemodel")
    with pytest.warns(UserWarning, match="OpenCV"):
        write_caffemodel(path, small_layers, double=True)
    got = caffe_pb2.NetParameter.FromString(open(path, "rb").read())
    conv = got.layer[0]
    assert len(conv.blobs[0].data) == 0
    np.testing.assert_array_equal(np.array(conv.blobs[0].double_data),
                                  small_layers[0][2][0].astype(np.float64).ravel())
    with open_caffemodel(path) as m:
        w, b = m.arrays("conv1")
        assert w.dtype == np.float64 and w.shape == (4, 3, 3, 3)
        np.testing.assert_array_equal(w, small_layers[0][2][0])


def test_writer_v1_matches_protobuf(tmp_path):
    rng = np.random.default_rng(3)
    w, b = _rand(rng, 4, 3, 2, 2), _rand(rng, 4)
    fc = _rand(rng, 5, 16)
    path = str(tmp_path / "v1.caffemodel")
    write_caffemodel(path, [("conv", "Convolution", [w, b]), ("ip", "InnerProduct", [fc]),
                            ("loss", "SoftmaxWithLoss", [])], v1=True)
    # the V1 message built with protobuf: enum types, legacy 4-D dims padded with 1s
    exp = caffe_pb2.NetParameter()
    V1 = caffe_pb2.V1LayerParameter
    for name, t, arrays in (("conv", V1.CONVOLUTION, [w, b]), ("ip", V1.INNER_PRODUCT, [fc]),
                            ("loss", V1.SOFTMAX_LOSS, [])):
        lp = exp.layers.add(name=name, type=t)
        for a in arrays:
            dims = (1,) * (4 - a.ndim) + a.shape
            bp = lp.blobs.add(num=dims[0], channels=dims[1], height=dims[2], width=dims[3])
            bp.data.extend(a.ravel().tolist())
    data = open(path, "rb").read()
    assert caffe_pb2.NetParameter.FromString(data) == exp
    assert data == exp.SerializeToString()


def test_writer_v1_refuses_what_v1_cannot_hold(tmp_path):
    path = str(tmp_path / "v1.caffemodel")
    with pytest.raises(NetdslError, match="no V1LayerParameter enum"):
        write_caffemodel(path, [("bn", "BatchNorm", [np.zeros(3, np.float32)])], v1=True)
    with pytest.raises(NetdslError, match="at most 4"):
        write_caffemodel(path, [("c", "Convolution", [np.zeros((1,) * 5, np.float32)])], v1=True)
    assert not os.path.exists(path)


def test_writer_refuses_2gib_unless_allowed(tmp_path):
    path = str(tmp_path / "big.caffemodel")
    # 2**29 + 1 float32 values = 2 GiB + 4 bytes of payload; a zero-stride view,
    # so nothing that large is allocated: the refusal comes before any write
    huge = np.broadcast_to(np.float32(0), (2 ** 29 + 1,))
    with pytest.raises(NetdslError, match=r"kProtoReadBytesLimit|2 GiB") as err:
        write_caffemodel(path, [("fc", "InnerProduct", [huge])])
    assert "allow_large" in str(err.value)
    assert not os.path.exists(path)
    assert not [p for p in os.listdir(tmp_path)]  # no temporary file left behind


def test_writer_allow_large_writes_past_the_limit(tmp_path, monkeypatch):
    # the limit logic with a small stand-in limit (the real one is 2**31 - 1)
    monkeypatch.setattr(cm, "PROTO_LIMIT", 100)
    a = np.arange(40, dtype=np.float32)
    path = str(tmp_path / "m.caffemodel")
    with pytest.raises(NetdslError):
        write_caffemodel(path, [("x", "T", [a])])
    write_caffemodel(path, [("x", "T", [a])], allow_large=True)
    with open_caffemodel(path) as m:
        np.testing.assert_array_equal(m.arrays("x")[0], a)


def test_writer_rejects_bad_input(tmp_path):
    path = str(tmp_path / "m.caffemodel")
    with pytest.raises(NetdslError, match="list of arrays"):
        write_caffemodel(path, {"x": np.zeros(3)})
    with pytest.raises(NetdslError, match="dtype"):
        write_caffemodel(path, {"x": [np.zeros(3, complex)]})
    with pytest.raises(NetdslError, match="triple"):
        write_caffemodel(path, [("x", [np.zeros(3)])])


# ---------------------------------------------------------------- OpenCV

FCN_PROTOTXT = """
name: "tinyfcn"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 1 dim: 3 dim: 20 dim: 20 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "fc6" type: "Convolution" bottom: "pool1" top: "fc6"
        convolution_param { num_output: 6 kernel_size: 3 } }
layer { name: "score_fr" type: "Convolution" bottom: "fc6" top: "score_fr"
        convolution_param { num_output: 2 kernel_size: 1 } }
layer { name: "upscore" type: "Deconvolution" bottom: "score_fr" top: "upscore"
        convolution_param { num_output: 2 group: 2 kernel_size: 4 stride: 2 bias_term: false } }
"""


def _fcn_weights():
    rng = np.random.default_rng(11)
    return {
        "conv1": [_rand(rng, 4, 3, 3, 3), _rand(rng, 4)],
        "fc6": [_rand(rng, 6, 4, 3, 3), _rand(rng, 6)],
        "score_fr": [_rand(rng, 2, 6, 1, 1), _rand(rng, 2)],
        "upscore": [_rand(rng, 2, 1, 4, 4)],
    }


def _opencv_params(net, weights):
    out = {}
    for name, arrays in weights.items():
        out[name] = [net.getParam(name, i) for i in range(len(arrays))]
    return out


@pytest.mark.parametrize("v1", [False, True])
def test_opencv_loads_written_model(tmp_path, v1):
    cv2 = require("cv2")
    proto = tmp_path / "net.prototxt"
    proto.write_text(FCN_PROTOTXT)
    weights = _fcn_weights()
    types = {"upscore": "Deconvolution"}
    model = str(tmp_path / "net.caffemodel")
    write_caffemodel(model, [(k, types.get(k, "Convolution"), v) for k, v in weights.items()],
                     v1=v1)
    net = cv2.dnn.readNetFromCaffe(str(proto), model)
    got = _opencv_params(net, weights)
    for name, arrays in weights.items():
        for a, p in zip(arrays, got[name]):
            # OpenCV keeps biases as column vectors (and V1 ones as 1x1x1xN)
            np.testing.assert_array_equal(np.asarray(p).reshape(a.shape), a)
    x = np.random.default_rng(0).standard_normal((1, 3, 20, 20)).astype(np.float32)
    net.setInput(x)
    # 20 -> conv(pad 1) 20 -> pool/2 10 -> fc6 (k3) 8 -> deconv: (8 - 1) * 2 + 4 = 18
    assert net.forward().shape == (1, 2, 18, 18)


def test_opencv_rejects_double_data(tmp_path):
    # the claim in write_caffemodel's docstring and warning, checked against OpenCV
    cv2 = require("cv2")
    proto = tmp_path / "net.prototxt"
    proto.write_text(FCN_PROTOTXT)
    model = str(tmp_path / "net.caffemodel")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_caffemodel(model, _fcn_weights(), double=True)
    with pytest.raises(cv2.error):
        cv2.dnn.readNetFromCaffe(str(proto), model)


# ---------------------------------------------------------------- reader


def _check_against_protobuf(path, pb2=caffe_pb2):
    """Our reader against protobuf's parse of the same bytes, layer by layer."""
    msg = pb2.NetParameter.FromString(open(path, "rb").read())
    with open_caffemodel(path) as m:
        if msg.layers:
            names = [(l.name, V1_LAYER_TYPES[pb2.V1LayerParameter.LayerType.Name(l.type)])
                     for l in msg.layers]
            blobs = [list(l.blobs) for l in msg.layers]
        else:
            names = [(l.name, l.type) for l in msg.layer]
            blobs = [list(l.blobs) for l in msg.layer]
        # protobuf hands invalid UTF-8 back as bytes; the reader decodes with U+FFFD
        names = [tuple(x.decode("utf-8", "replace") if isinstance(x, bytes) else x
                       for x in pair) for pair in names]
        assert [(e.name, e.type) for e in m.layers] == names
        for entry, pbs in zip(m.layers, blobs):
            assert entry.shapes == [_caffe_shape(b) for b in pbs]
            for arr, b in zip(m.arrays(entry), pbs):
                exp = _caffe_values(b).reshape(_caffe_shape(b))
                assert arr.dtype == exp.dtype
                np.testing.assert_array_equal(arr, exp)
    return msg


def test_reader_on_writer_output(tmp_path, small_layers):
    path = str(tmp_path / "m.caffemodel")
    write_caffemodel(path, small_layers, name="tiny")
    _check_against_protobuf(path)
    with open_caffemodel(path) as m:
        assert m.name == "tiny" and m.format == "layer"
        assert m.names() == ["conv1", "relu1", "fc", "odd", "up"]
        assert m.layer("fc").shapes == [(5, 36), (5,)]
        assert m.layer("fc").dtypes == [np.dtype(np.float32)] * 2
        scalar, empty = m.arrays("odd")
        assert scalar.shape == () and scalar == 1.5 and empty.shape == (0, 3)
        w = m.arrays("conv1")[0]
        assert not w.flags.writeable  # a view of the mapping, no copy
        assert m.arrays("conv1", copy=True)[0].flags.writeable
        d = m.to_dict()
        assert list(d) == ["conv1", "fc", "odd", "up"]  # layers with blobs only
    # views outlive close(); new reads do not
    np.testing.assert_array_equal(w, small_layers[0][2][0])
    with pytest.raises(NetdslError, match="closed"):
        m.arrays("conv1")


def test_reader_unknown_layer_hint(tmp_path, small_layers):
    path = str(tmp_path / "m.caffemodel")
    write_caffemodel(path, small_layers)
    with open_caffemodel(path) as m:
        with pytest.raises(NetdslError, match="conv1"):
            m.arrays("conv_1")


def test_reader_v1_made_by_protobuf(tmp_path):
    # a V1 caffemodel built with caffe_pb2's V1 messages, as old Caffe wrote them
    rng = np.random.default_rng(5)
    net = caffe_pb2.NetParameter(name="old")
    V1 = caffe_pb2.V1LayerParameter
    specs = [("conv1", V1.CONVOLUTION, [(8, 3, 5, 5), (1, 1, 1, 8)]),
             ("relu1", V1.RELU, []),
             ("fc", V1.INNER_PRODUCT, [(1, 1, 10, 200), (1, 1, 1, 10)]),
             ("up", V1.DECONVOLUTION, [(2, 1, 4, 4)]),
             ("loss", V1.SOFTMAX_LOSS, []),
             ("partial", V1.POWER, [(0, 0, 0, 0)])]
    for name, t, shapes in specs:
        lp = net.layers.add(name=name, type=t, bottom=["x"], top=[name])
        lp.blobs_lr.extend([1, 2])
        for s in shapes:
            bp = lp.blobs.add(num=s[0], channels=s[1], height=s[2], width=s[3])
            bp.data.extend(_rand(rng, int(np.prod(s))).tolist())
    path = str(tmp_path / "v1.caffemodel")
    path_bytes = net.SerializeToString()
    open(path, "wb").write(path_bytes)
    _check_against_protobuf(path)
    # rewritten in the current format straight from the open model
    current = str(tmp_path / "current.caffemodel")
    with open_caffemodel(path) as m:
        write_caffemodel(current, m)
    _check_against_protobuf(current)
    with open_caffemodel(current) as c:
        assert c.format == "layer" and len(c.layers) == len(specs)
    with open_caffemodel(path) as m:
        assert m.format == "v1" and m.name == "old"
        # UpgradeV1LayerType's names
        assert [e.type for e in m.layers] == ["Convolution", "ReLU", "InnerProduct",
                                              "Deconvolution", "SoftmaxWithLoss", "Power"]
        assert m.layer("fc").shapes == [(1, 1, 10, 200), (1, 1, 1, 10)]


def test_reader_v0_nested_in_v1(tmp_path):
    # V0 layers (V1LayerParameter.layer) as the oldest Caffe wrote them: Caffe's
    # UpgradeV0LayerParameter takes name, type and blobs from the V0 part
    net = caffe_pb2.NetParameter()
    conv = net.layers.add()
    conv.layer.name = "conv1"
    conv.layer.type = "conv"
    b = conv.layer.blobs.add(num=2, channels=1, height=3, width=3)
    b.data.extend(range(18))
    ip = net.layers.add()
    ip.layer.name = "fc"
    ip.layer.type = "innerproduct"
    b = ip.layer.blobs.add(num=1, channels=1, height=1, width=4)
    b.data.extend([1, 2, 3, 4])
    path = str(tmp_path / "v0.caffemodel")
    open(path, "wb").write(net.SerializeToString())
    with open_caffemodel(path) as m:
        assert m.format == "v0"
        assert [(e.name, e.type, e.shapes) for e in m.layers] == [
            ("conv1", "Convolution", [(2, 1, 3, 3)]), ("fc", "InnerProduct", [(1, 1, 1, 4)])]
        np.testing.assert_array_equal(m.arrays("conv1")[0].ravel(), np.arange(18))


def test_reader_unpacked_and_split_floats(tmp_path):
    # old writers may emit `data` unpacked: compile the schema without [packed]
    # so that protobuf itself writes it that way
    text = open(BUNDLED).read()
    unpacked = text.replace("repeated float data = 5 [packed = true];",
                            "repeated float data = 5;").replace(
        "repeated double double_data = 8 [packed = true];", "repeated double double_data = 8;")
    assert unpacked != text
    proto = tmp_path / "unpacked.proto"
    proto.write_text(unpacked)
    up = load_schema(str(proto))
    rng = np.random.default_rng(9)
    w = _rand(rng, 3, 700)  # longer than one probe block of the run counter
    head = up.BlobProto()
    head.shape.dim.extend([3, 700])
    head.data.extend(w.ravel()[:1000].tolist())
    tail = caffe_pb2.BlobProto()
    tail.data.extend(w.ravel()[1000:].tolist())
    # serialized parts of one message concatenate into that message: a blob whose
    # floats are an unpacked run followed by a packed field
    blob = head.SerializeToString() + tail.SerializeToString()
    layer = (caffe_pb2.LayerParameter(name="fc", type="InnerProduct").SerializeToString()
             + b"\x3a" + _VarintBytes(len(blob)) + blob)  # blobs = 7, length-delimited
    data = b"\xa2\x06" + _VarintBytes(len(layer)) + layer  # layer = 100
    path = str(tmp_path / "u.caffemodel")
    open(path, "wb").write(data)
    msg = _check_against_protobuf(path)
    assert len(msg.layer[0].blobs[0].data) == 2100
    with open_caffemodel(path) as m:
        np.testing.assert_array_equal(m.arrays("fc")[0], w)
    # unpacked double_data
    d = up.NetParameter()
    bp = d.layer.add(name="x").blobs.add()
    bp.shape.dim.extend([5])
    bp.double_data.extend([0.5, 1.5, -2.0, 1e300, 3.0])
    path = str(tmp_path / "ud.caffemodel")
    open(path, "wb").write(d.SerializeToString())
    _check_against_protobuf(path)


def test_reader_shape_rules(tmp_path):
    # Blob::FromProto: any legacy dim present -> (num, channels, height, width),
    # absent ones 0, even when `shape` is there too; no dims at all -> a scalar
    net = caffe_pb2.NetParameter()
    lp = net.layer.add(name="x", type="T")
    b = lp.blobs.add(height=2, width=3)  # num, channels absent -> 0: 0 values
    b = lp.blobs.add(num=1, channels=1, height=2, width=3)
    b.shape.dim.extend([6])  # ignored in favour of the legacy dims
    b.data.extend(range(6))
    b = lp.blobs.add()
    b.data.append(4.0)  # no shape at all: Caffe's Reshape({}) -> one value
    b = lp.blobs.add()
    b.shape.dim.extend([2, 0, 5])
    path = str(tmp_path / "s.caffemodel")
    open(path, "wb").write(net.SerializeToString())
    _check_against_protobuf(path)
    with open_caffemodel(path) as m:
        assert m.layer("x").shapes == [(0, 0, 2, 3), (1, 1, 2, 3), (), (2, 0, 5)]


def test_reader_skips_unknown_fields_and_keeps_last_duplicate(tmp_path):
    net = caffe_pb2.NetParameter(name="n")
    net.input.append("data")
    net.input_shape.add().dim.extend([1, 3, 8, 8])
    lp = net.layer.add(name="c", type="Convolution", bottom=["data"], top=["c"])
    lp.convolution_param.num_output = 2
    lp.convolution_param.weight_filler.type = "xavier"
    lp.param.add(lr_mult=1)
    lp.blobs.add().data.append(1.0)
    lp.blobs[0].diff.extend([9.0])  # diffs are not weights
    lp2 = net.layer.add(name="c", type="Convolution")
    b = lp2.blobs.add()
    b.shape.dim.append(2)
    b.data.extend([7, 8])
    path = str(tmp_path / "m.caffemodel")
    raw = net.SerializeToString()
    # an unknown group field (wire types 3/4) on the net, which protobuf skips
    raw = raw + b"\xab\x3e\x08\x01\xac\x3e"
    open(path, "wb").write(raw)
    _check_against_protobuf(path)
    with open_caffemodel(path) as m:
        assert len(m.layers) == 2
        # Caffe's CopyTrainedLayersFrom copies source layers in order: the last wins
        np.testing.assert_array_equal(m.arrays("c")[0], [7, 8])
        assert m.to_dict()["c"][0].tolist() == [7, 8]


def test_reader_refuses_layer_and_layers(tmp_path):
    net = caffe_pb2.NetParameter()
    net.layer.add(name="a")
    net.layers.add(name="b")
    path = str(tmp_path / "m.caffemodel")
    open(path, "wb").write(net.SerializeToString())
    with pytest.raises(NetdslError, match="both 'layer'"):
        open_caffemodel(path)


def test_reader_empty_and_missing_files(tmp_path):
    path = str(tmp_path / "empty.caffemodel")
    open(path, "wb").close()
    with open_caffemodel(path) as m:  # an empty message is a valid NetParameter
        assert m.layers == [] and m.format == "empty"
    with pytest.raises(NetdslError, match="cannot read"):
        open_caffemodel(str(tmp_path / "nope.caffemodel"))
    with pytest.raises(NetdslError, match="cannot read|regular file"):
        open_caffemodel(str(tmp_path))  # a directory


def test_reader_lying_lengths(tmp_path):
    path = str(tmp_path / "lie.caffemodel")
    # layer (field 100) claiming 2**60 bytes in a 12-byte file
    open(path, "wb").write(b"\xa2\x06" + _VarintBytes(2 ** 60) + b"\x0a\x01x")
    with pytest.raises(NetdslError, match=r"at byte 0: field 100 claims"):
        open_caffemodel(path)
    # a blob whose packed data claims more than its blob holds
    blob = b"\x2a" + _VarintBytes(4000) + b"\x00" * 8
    layer = b"\x0a\x01x" + b"\x3a" + _VarintBytes(len(blob)) + blob
    open(path, "wb").write(b"\xa2\x06" + _VarintBytes(len(layer)) + layer)
    with pytest.raises(NetdslError, match="at byte 8: field 5 claims 4000 bytes"):
        open_caffemodel(path)
    # a shape with far more values than the data holds
    net = caffe_pb2.NetParameter()
    b = net.layer.add(name="x").blobs.add()
    b.shape.dim.extend([2 ** 40, 2 ** 20])
    b.data.extend([1, 2])
    open(path, "wb").write(net.SerializeToString())
    with pytest.raises(NetdslError, match="stores 2 data values"):
        open_caffemodel(path)
    # a varint that never ends
    open(path, "wb").write(b"\xa2\x06" + b"\xff" * 20)
    with pytest.raises(NetdslError, match="at byte 2: varint"):
        open_caffemodel(path)


class _Alarm:
    """Turn a hang into a failure (SIGALRM after `seconds`)."""

    def __init__(self, seconds):
        self.seconds = seconds

    def __enter__(self):
        def boom(*_):
            raise TimeoutError("reader hung")
        self.old = signal.signal(signal.SIGALRM, boom)
        signal.alarm(self.seconds)

    def __exit__(self, *exc):
        signal.alarm(0)
        signal.signal(signal.SIGALRM, self.old)


def _read_all(path):
    with open_caffemodel(path) as m, np.errstate(all="ignore"):
        for entry in m.layers:
            for a in m.arrays(entry):
                a.sum()


def test_reader_truncated_at_every_offset(tmp_path, small_layers):
    path = str(tmp_path / "m.caffemodel")
    write_caffemodel(path, small_layers, name="tiny")
    data = open(path, "rb").read()
    # the byte offsets where a top-level field ends: cutting there leaves a valid
    # (shorter) message, which protobuf parses too
    msg = caffe_pb2.NetParameter.FromString(data)
    ends, pos = set(), 0
    pieces = [caffe_pb2.NetParameter(name="tiny").SerializeToString()] + [
        caffe_pb2.NetParameter(layer=[l]).SerializeToString() for l in msg.layer]
    for p in pieces:
        pos += len(p)
        ends.add(pos)
    cut_path = str(tmp_path / "cut.caffemodel")
    with _Alarm(60):
        for cut in range(1, len(data)):
            open(cut_path, "wb").write(data[:cut])
            if cut in ends:
                _read_all(cut_path)
                continue
            with pytest.raises(NetdslError) as err:
                _read_all(cut_path)
            assert re.search(r"at byte \d+", str(err.value)), str(err.value)
            assert str(err.value).startswith(cut_path + ": ")
            # protobuf refuses the same cut: the reader does not accept a broken file
            with pytest.raises(Exception):
                caffe_pb2.NetParameter.FromString(data[:cut])


def _agrees_or_refuses(path):
    """The reader's invariant on one file: either it reads exactly what protobuf
    parses from the same bytes, or it raises a NetdslError naming the file."""
    try:
        _read_all(path)
    except NetdslError as err:
        assert str(err).startswith(path + ": "), str(err)
        return "error"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NaN/inf payloads compare fine
        _check_against_protobuf(path)
    return "ok"


def test_reader_random_byte_flips(tmp_path, small_layers):
    path = str(tmp_path / "m.caffemodel")
    write_caffemodel(path, small_layers)
    data = open(path, "rb").read()
    rng = np.random.default_rng(20240601)
    bad = str(tmp_path / "bad.caffemodel")
    outcomes = {"ok": 0, "error": 0}
    with _Alarm(120):
        for _ in range(1500):
            b = bytearray(data)
            for _ in range(int(rng.integers(1, 5))):
                b[int(rng.integers(len(b)))] = int(rng.integers(256))
            open(bad, "wb").write(bytes(b))
            outcomes[_agrees_or_refuses(bad)] += 1
    # both outcomes occur: flips in float payloads read fine, flips in tags do not
    assert outcomes["error"] > 0 and outcomes["ok"] > 0


def test_reader_past_2gib(tmp_path):
    # a sparse file holding one blob of 2**29 + 8 floats (2 GiB + 32 bytes):
    # protobuf cannot parse it; the reader maps it and reads its ends
    n = 2 ** 29 + 8
    shape = b"\x0a" + _VarintBytes(len(_VarintBytes(n))) + _VarintBytes(n)
    blob_head = b"\x2a" + _VarintBytes(4 * n)
    blob_len = len(blob_head) + 4 * n + 2 + len(shape)
    layer_head = b"\x0a\x03big" + b"\x3a" + _VarintBytes(blob_len)
    layer_len = len(layer_head) + blob_len
    head = b"\xa2\x06" + _VarintBytes(layer_len) + layer_head + blob_head
    path = str(tmp_path / "big.caffemodel")
    with open(path, "wb") as f:
        f.write(head)
        f.write(np.float32([1, 2]).tobytes())
        f.seek(len(head) + 4 * n - 4)
        f.write(np.float32([3]).tobytes())
        f.write(b"\x3a" + _VarintBytes(len(shape)) + shape)
    st = os.stat(path)
    if st.st_blocks * 512 > 256 * 2 ** 20:
        os.remove(path)
        pytest.skip("the file system does not keep sparse files")
    assert st.st_size > 2 ** 31
    with open_caffemodel(path) as m:  # opening time: bench/caffemodel_io.py
        assert m.layers[0].shapes == [(n,)]
        (a,) = m.arrays("big")
        assert a.shape == (n,)
        assert a[:3].tolist() == [1, 2, 0] and a[-1] == 3
        del a


def test_inspect(tmp_path, small_layers):
    path = str(tmp_path / "m.caffemodel")
    write_caffemodel(path, small_layers, name="tiny")
    info = inspect(path)
    assert info["format"] == "layer" and info["name"] == "tiny"
    assert info["layers"][0] == {"name": "conv1", "type": "Convolution", "blobs": [
        {"shape": [4, 3, 3, 3], "dtype": "float32", "count": 108},
        {"shape": [4], "dtype": "float32", "count": 4}]}
    assert info["params"] == 108 + 4 + 180 + 5 + 1 + 0 + 32
    stats = inspect(path, stats=True)
    w = small_layers[0][2][0]
    blob = stats["layers"][0]["blobs"][0]
    assert blob["min"] == float(w.min()) and blob["max"] == float(w.max())
    assert blob["mean"] == pytest.approx(float(w.astype(np.float64).mean()))
    assert stats["layers"][3]["blobs"][1]["min"] is None  # empty blob
    text = format_inspect(stats)
    assert "conv1" in text and "4x3x3x3" in text and "scalar" in text and "mean" in text
    assert "min" not in format_inspect(info)


# ---------------------------------------------------------------- Caffe's own file


def test_caffe_written_model(nsfw_model):
    deploy, model = nsfw_model
    msg = _check_against_protobuf(model)
    assert len(msg.layer) > 100
    with open_caffemodel(model) as m:
        assert m.format == "layer"
        conv = m.layer("conv_1")
        assert conv.type == "Convolution" and conv.shapes[0] == (64, 3, 7, 7)


def test_caffe_written_model_roundtrip_and_opencv(nsfw_model, tmp_path):
    cv2 = require("cv2")
    deploy, model = nsfw_model
    with open_caffemodel(model) as m:
        layers = [(e.name, e.type, m.arrays(e)) for e in m.layers if e.blobs]
        path = str(tmp_path / "copy.caffemodel")
        write_caffemodel(path, layers)
        ours = cv2.dnn.readNetFromCaffe(deploy, path)
        theirs = cv2.dnn.readNetFromCaffe(deploy, model)
        x = np.random.default_rng(0).uniform(0, 255, (1, 3, 224, 224)).astype(np.float32)
        ours.setInput(x)
        theirs.setInput(x)
        np.testing.assert_array_equal(ours.forward(), theirs.forward())



def test_a_legacy_blob_is_written_with_num_channels_height_width(tmp_path):
    """LegacyBlob stores an array with the legacy 4-D dims, padded with leading 1s.
    A channel-shared PReLU's slope is a 0-axis Blob (prelu_layer.cpp LayerSetUp:
    ``Blob(vector<int>(0))``); Caffe's Blob::ShapeEquals (blob.cpp) accepts a stored
    1,1,1,1 for it (LegacyShape of a 0-axis blob is 1 at every index), and OpenCV's
    Caffe importer loads that form, while it cannot make a Mat of an empty
    ``shape {}`` (what Caffe itself writes, and what a plain 0-axis array gives)."""
    from netdsl import prototxt
    from netdsl.forward import forward
    from netdsl.weights.caffemodel.writer import LegacyBlob
    net = prototxt.parse_net(
        'layer { name: "data" type: "Input" top: "data" '
        'input_param { shape { dim: 1 dim: 3 dim: 4 dim: 4 } } }\n'
        'layer { name: "p" type: "PReLU" bottom: "data" top: "p" '
        'prelu_param { channel_shared: true } }\n')
    plain = str(tmp_path / "plain.caffemodel")
    write_caffemodel(plain, {"p": [np.array(0.25, np.float32)]}, types=net)
    stored = caffe_pb2.NetParameter.FromString(open(plain, "rb").read()).layer[0].blobs[0]
    assert stored.HasField("shape") and list(stored.shape.dim) == []   # Caffe's ToProto
    path = str(tmp_path / "p.caffemodel")
    write_caffemodel(path, {"p": [LegacyBlob(np.array(0.25, np.float32))]}, types=net)
    stored = caffe_pb2.NetParameter.FromString(open(path, "rb").read()).layer[0].blobs[0]
    assert (stored.num, stored.channels, stored.height, stored.width) == (1, 1, 1, 1)
    assert not stored.HasField("shape") and list(stored.data) == [0.25]
    x = np.linspace(-2, 2, 48, dtype=np.float32).reshape(1, 3, 4, 4)
    want = np.where(x > 0, x, np.float32(0.25) * x)               # prelu_layer.cpp forward
    np.testing.assert_array_equal(forward(net, path, {"data": x})["p"], want)
    cv2 = require("cv2")
    proto = tmp_path / "p.prototxt"
    proto.write_text(prototxt.to_text(net))
    dnn = cv2.dnn.readNetFromCaffe(str(proto), path)
    dnn.setInput(x)
    np.testing.assert_allclose(dnn.forward(), want, rtol=0, atol=1e-7)
    with pytest.raises(NetdslError, match="shape mismatch"):        # 1,1,1,2 is not 0-axis
        write_caffemodel(path, {"p": [LegacyBlob(np.zeros(2, np.float32))]}, types=net)
