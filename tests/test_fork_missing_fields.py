"""A fork's schema older than a BVLC field lacks it; every verb reads such a field
as the behaviour before it existed.

``FIELDS_READ`` is the audit: every field of BVLC's caffe.proto whose name netdsl's
sources read (attribute access or a quoted name; by name, so a superset), kept
complete by the first test.  For each message the other tests derive from
netdsl/proto/caffe.proto a schema with that message's audited fields removed (all
those the test net leaves unset) and run the verbs that walk a net on it: they must
give what they give with BVLC's schema, the behaviour of a field's default, except
where the behaviour before the field was another (``OLD_BEHAVIOUR``: the same net
under BVLC's schema with that older value written out).
"""
from __future__ import annotations

import glob
import io
import os
import re
from contextlib import redirect_stdout

import numpy as np
import pytest

from netdsl.cli import main
from netdsl.proto import caffe_pb2 as bvlc
from netdsl.proto import load_schema
from netdsl.schema import is_repeated

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
BVLC = os.path.join(ROOT, "netdsl", "proto", "caffe.proto")

#: BVLC fields (by message) whose names netdsl reads; V0/V1 layers, Datum and the
#: solver are read only by the upgrade of old files and by the solver writer
FIELDS_READ = {
    'BlobShape': ('dim',),
    'BlobProto': ('shape', 'data', 'diff', 'double_data', 'num', 'channels', 'height', 'width'),
    'BlobProtoVector': ('blobs',),
    'Datum': ('channels', 'height', 'width', 'data', 'label', 'float_data'),
    'FillerParameter': ('type', 'value', 'min', 'max', 'mean', 'std', 'sparse', 'variance_norm'),
    'NetParameter': ('name', 'input', 'input_shape', 'input_dim', 'force_backward', 'state',
                     'layer', 'layers'),
    'SolverParameter': ('net', 'gamma', 'power', 'weight_decay', 'type', 'solver_type',
                        'weights'),
    'NetState': ('phase', 'level', 'stage'),
    'NetStateRule': ('phase', 'min_level', 'max_level', 'stage', 'not_stage'),
    'ParamSpec': ('name', 'share_mode', 'lr_mult', 'decay_mult'),
    'LayerParameter': (
        'name', 'type', 'bottom', 'top', 'phase', 'loss_weight', 'param', 'blobs',
        'propagate_down', 'include', 'exclude', 'transform_param', 'loss_param',
        'accuracy_param', 'argmax_param', 'batch_norm_param', 'bias_param', 'clip_param',
        'concat_param', 'contrastive_loss_param', 'convolution_param', 'crop_param',
        'data_param', 'dropout_param', 'dummy_data_param', 'eltwise_param', 'elu_param',
        'embed_param', 'exp_param', 'flatten_param', 'hdf5_data_param', 'hdf5_output_param',
        'hinge_loss_param', 'image_data_param', 'infogain_loss_param', 'inner_product_param',
        'input_param', 'log_param', 'lrn_param', 'memory_data_param', 'mvn_param',
        'parameter_param', 'pooling_param', 'power_param', 'prelu_param', 'python_param',
        'recurrent_param', 'reduction_param', 'relu_param', 'reshape_param', 'scale_param',
        'sigmoid_param', 'softmax_param', 'spp_param', 'slice_param', 'swish_param',
        'tanh_param', 'threshold_param', 'tile_param', 'window_data_param'),
    'TransformationParameter': ('scale', 'mirror', 'crop_size', 'mean_file', 'mean_value',
                                'force_color', 'force_gray'),
    'LossParameter': ('ignore_label', 'normalization', 'normalize'),
    'AccuracyParameter': ('top_k', 'axis', 'ignore_label'),
    'ArgMaxParameter': ('out_max_val', 'top_k', 'axis'),
    'ClipParameter': ('min', 'max'),
    'ConcatParameter': ('axis', 'concat_dim'),
    'BatchNormParameter': ('use_global_stats', 'moving_average_fraction', 'eps'),
    'BiasParameter': ('axis', 'num_axes', 'filler'),
    'ConvolutionParameter': ('num_output', 'bias_term', 'pad', 'kernel_size', 'stride',
                             'dilation', 'pad_h', 'pad_w', 'kernel_h', 'kernel_w', 'stride_h',
                             'stride_w', 'group', 'weight_filler', 'bias_filler', 'axis'),
    'CropParameter': ('axis', 'offset'),
    'DataParameter': ('source', 'batch_size', 'rand_skip', 'scale', 'mean_file', 'crop_size',
                      'mirror'),
    'DropoutParameter': ('dropout_ratio',),
    'DummyDataParameter': ('data_filler', 'shape', 'num', 'channels', 'height', 'width'),
    'EltwiseParameter': ('operation', 'coeff'),
    'ELUParameter': ('alpha',),
    'EmbedParameter': ('num_output', 'input_dim', 'bias_term', 'weight_filler', 'bias_filler'),
    'ExpParameter': ('base', 'scale', 'shift'),
    'FlattenParameter': ('axis', 'end_axis'),
    'HDF5DataParameter': ('source', 'batch_size', 'shuffle'),
    'HingeLossParameter': ('norm',),
    'ImageDataParameter': ('source', 'batch_size', 'rand_skip', 'shuffle', 'new_height',
                           'new_width', 'is_color', 'scale', 'mean_file', 'crop_size',
                           'mirror'),
    'InfogainLossParameter': ('source', 'axis'),
    'InnerProductParameter': ('num_output', 'bias_term', 'weight_filler', 'bias_filler',
                              'axis', 'transpose'),
    'InputParameter': ('shape',),
    'LogParameter': ('base', 'scale', 'shift'),
    'LRNParameter': ('local_size', 'alpha', 'beta', 'norm_region', 'k'),
    'MemoryDataParameter': ('batch_size', 'channels', 'height', 'width'),
    'MVNParameter': ('normalize_variance', 'across_channels', 'eps'),
    'ParameterParameter': ('shape',),
    'PoolingParameter': ('pool', 'pad', 'pad_h', 'pad_w', 'kernel_size', 'kernel_h',
                         'kernel_w', 'stride', 'stride_h', 'stride_w', 'global_pooling',
                         'round_mode'),
    'PowerParameter': ('power', 'scale', 'shift'),
    'PythonParameter': ('module', 'layer', 'param_str'),
    'RecurrentParameter': ('num_output', 'weight_filler', 'bias_filler', 'expose_hidden'),
    'ReductionParameter': ('operation', 'axis', 'coeff'),
    'ReLUParameter': ('negative_slope',),
    'ReshapeParameter': ('shape', 'axis', 'num_axes'),
    'ScaleParameter': ('axis', 'num_axes', 'filler', 'bias_term', 'bias_filler'),
    'SliceParameter': ('axis', 'slice_point', 'slice_dim'),
    'SoftmaxParameter': ('axis',),
    'SwishParameter': ('beta',),
    'TileParameter': ('axis', 'tiles'),
    'ThresholdParameter': ('threshold',),
    'WindowDataParameter': ('source', 'scale', 'mean_file', 'batch_size', 'crop_size',
                            'mirror', 'fg_threshold', 'bg_threshold', 'fg_fraction',
                            'context_pad', 'crop_mode'),
    'SPPParameter': ('pyramid_height', 'pool'),
    'V1LayerParameter': (
        'bottom', 'top', 'name', 'include', 'exclude', 'type', 'blobs', 'param',
        'blob_share_mode', 'blobs_lr', 'weight_decay', 'loss_weight', 'accuracy_param',
        'argmax_param', 'concat_param', 'contrastive_loss_param', 'convolution_param',
        'data_param', 'dropout_param', 'dummy_data_param', 'eltwise_param', 'exp_param',
        'hdf5_data_param', 'hdf5_output_param', 'hinge_loss_param', 'image_data_param',
        'infogain_loss_param', 'inner_product_param', 'lrn_param', 'memory_data_param',
        'mvn_param', 'pooling_param', 'power_param', 'relu_param', 'sigmoid_param',
        'softmax_param', 'slice_param', 'tanh_param', 'threshold_param', 'window_data_param',
        'transform_param', 'loss_param', 'layer'),
    'V0LayerParameter': (
        'name', 'type', 'num_output', 'biasterm', 'weight_filler', 'bias_filler', 'pad',
        'kernelsize', 'group', 'stride', 'pool', 'dropout_ratio', 'local_size', 'alpha',
        'beta', 'k', 'source', 'scale', 'meanfile', 'batchsize', 'cropsize', 'mirror',
        'blobs', 'blobs_lr', 'weight_decay', 'rand_skip', 'det_fg_threshold',
        'det_bg_threshold', 'det_fg_fraction', 'det_context_pad', 'det_crop_mode',
        'new_height', 'new_width', 'shuffle_images', 'concat_dim', 'hdf5_output_param'),
    'PReLUParameter': ('filler', 'channel_shared'),
}

#: the behaviour before a field existed where it is not the field's default, as that
#: setting under BVLC's schema.  MVNParameter.eps: mvn_layer.cpp before the field
#: (BVLC, 2015) had ``Dtype eps = 1e-10;`` (the field's default is 1e-9).
#: LossParameter.normalization: softmax_loss_layer.cpp before it divided by the
#: count of labels not ignored when ``normalize`` (default true): VALID.
OLD_BEHAVIOUR = {
    ("MVNParameter", "eps"): ('layer { name: "mvn" type: "MVN"',
                              'layer { name: "mvn" type: "MVN" mvn_param { eps: 1e-10 }'),
    ("LossParameter", "normalization"): (
        'top: "loss" ', 'top: "loss" loss_param { normalization: VALID } '),
}

#: what the removal runs leave alone: the fields every schema must have
#: (netdsl.proto.CORE_FIELDS, and those caffemodel I/O finds by number, which every
#: Caffe schema has had: netdsl/weights/caffemodel/fields.py), the upgrade-only
#: messages, the solver
SKIP = {"V0LayerParameter", "V1LayerParameter", "Datum", "SolverParameter"}
REQUIRED = {"BlobProto": ("data", "num", "channels", "height", "width"),
            "NetParameter": ("layers",),
            "NetState": ("phase", "level", "stage")}   # came with NetState; netdsl sets them

#: a net whose layers between them read most of BVLC's parameter messages, each with
#: the fewest fields set
NET = '''name: "fields"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 9 dim: 9 } } }
layer { name: "label" type: "Input" top: "label" input_param { shape { dim: 2 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "lrn" type: "LRN" bottom: "pool" top: "lrn" }
layer { name: "mvn" type: "MVN" bottom: "lrn" top: "mvn" }
layer { name: "bn" type: "BatchNorm" bottom: "mvn" top: "bn" }
layer { name: "scale" type: "Scale" bottom: "bn" top: "bn" }
layer { name: "bias" type: "Bias" bottom: "bn" top: "bn" }
layer { name: "up" type: "Deconvolution" bottom: "bn" top: "up"
  convolution_param { num_output: 4 kernel_size: 2 stride: 2 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "crop" type: "Crop" bottom: "up" bottom: "conv" top: "crop" }
layer { name: "cat" type: "Concat" bottom: "crop" bottom: "conv" top: "cat" }
layer { name: "slice" type: "Slice" bottom: "cat" top: "s1" top: "s2" }
layer { name: "sum" type: "Eltwise" bottom: "s1" bottom: "s2" top: "sum" }
layer { name: "elu" type: "ELU" bottom: "sum" top: "elu" }
layer { name: "prelu" type: "PReLU" bottom: "elu" top: "prelu" }
layer { name: "tanh" type: "TanH" bottom: "prelu" top: "tanh" }
layer { name: "power" type: "Power" bottom: "tanh" top: "power" }
layer { name: "exp" type: "Exp" bottom: "power" top: "exp" }
layer { name: "log" type: "Log" bottom: "exp" top: "log" }
layer { name: "swish" type: "Swish" bottom: "log" top: "swish" }
layer { name: "gpool" type: "Pooling" bottom: "swish" top: "gpool" pooling_param { pool: AVE kernel_size: 3 } }
layer { name: "flat" type: "Flatten" bottom: "gpool" top: "flat" }
layer { name: "ip" type: "InnerProduct" bottom: "flat" top: "ip" inner_product_param { num_output: 5 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "drop" type: "Dropout" bottom: "ip" top: "ip" }
layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" }
layer { name: "amax" type: "ArgMax" bottom: "prob" top: "amax" }
layer { name: "rs" type: "Reshape" bottom: "prob" top: "rs" reshape_param { shape { dim: 0 dim: -1 dim: 1 } } }
layer { name: "tile" type: "Tile" bottom: "rs" top: "tile" tile_param { tiles: 2 } }
layer { name: "red" type: "Reduction" bottom: "tile" top: "red" }
layer { name: "thr" type: "Threshold" bottom: "ip" top: "thr" }
layer { name: "sig" type: "Sigmoid" bottom: "ip" top: "sig" }
layer { name: "acc" type: "Accuracy" bottom: "ip" bottom: "label" top: "acc" }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
'''


def _sources() -> str:
    return "".join(open(p, encoding="utf-8").read()
                   for p in glob.glob(os.path.join(ROOT, "netdsl", "**", "*.py"), recursive=True))


def test_the_audit_lists_every_field_read():
    """Every BVLC field whose name the sources read (``.name``, ``"name"``) is in
    FIELDS_READ under its message; a new read needs its entry (and, if the field's
    default is not the behaviour before it, an entry in netdsl.fork.PRE_FIELD)."""
    src = _sources()
    names = set(re.findall(r"\.(\w+)\b", src)) | set(re.findall(r"[\"'](\w+)[\"']", src))
    missing = ["%s.%s" % (m, f.name) for m, d in bvlc.DESCRIPTOR.message_types_by_name.items()
               for f in d.fields if f.name in names and f.name not in FIELDS_READ.get(m, ())]
    assert missing == []
    stale = ["%s.%s" % (m, f) for m, fs in FIELDS_READ.items() for f in fs
             if f not in bvlc.DESCRIPTOR.message_types_by_name[m].fields_by_name]
    assert stale == []


def _set_fields(text: str):
    """(message, field) of everything the net sets, under BVLC's schema."""
    from google.protobuf import text_format
    out = set()

    def walk(msg):
        for fd, value in msg.ListFields():
            out.add((msg.DESCRIPTOR.name, fd.name))
            if fd.message_type is not None:
                for v in (value if is_repeated(fd) else [value]):
                    walk(v)
    walk(text_format.Parse(text, bvlc.NetParameter()))
    return out


def without(message: str, fields) -> str:
    """BVLC's caffe.proto with ``fields`` of top-level ``message`` taken out."""
    lines = open(BVLC, encoding="utf-8").read().splitlines(keepends=True)
    out, depth, inside = [], 0, False
    pat = re.compile(r"\s*(optional|repeated|required)\s+[\w.]+\s+(\w+)\s*=")
    for line in lines:
        code = line.split("//")[0]
        if depth == 0 and re.match(r"message\s+%s\s*\{" % message, code):
            inside = True
        m = pat.match(code)
        if not (inside and depth == 1 and m and m.group(2) in fields):
            out.append(line)
        depth += code.count("{") - code.count("}")
        if depth == 0:
            inside = False
    return "".join(out)


def _removable():
    from netdsl.proto import CORE_FIELDS
    used = _set_fields(NET)
    out = []
    for message, fields in FIELDS_READ.items():
        if message in SKIP:
            continue
        gone = tuple(f for f in fields if (message, f) not in used
                     and f not in CORE_FIELDS.get(message, ()) + REQUIRED.get(message, ()))
        if gone:
            out.append((message, gone))
    return out


def _cli(*argv, tmp=None):
    buf = io.StringIO()
    with redirect_stdout(buf):
        code = main(list(argv))
    assert code == 0, (argv, buf.getvalue())
    return buf.getvalue().replace(tmp, "TMP") if tmp else buf.getvalue()


def _verbs(tmp, net_text: str, proto=None):
    """What shapes (and --cost), fmt, draw, init, inspect, run, upgrade, build and
    pycaffe's caffe.Net give on the net."""
    os.makedirs(tmp, exist_ok=True)
    flag = ["--proto", proto] if proto else []
    net = os.path.join(tmp, "net.prototxt")
    with open(net, "w") as fh:
        fh.write(net_text)
    label = os.path.join(tmp, "label.npy")
    np.save(label, np.array([1, 3], np.float32))
    out = {"shapes": _cli("shapes", net, *flag), "cost": _cli("shapes", net, "--cost", *flag),
           "fmt": _cli("fmt", net, *flag)}
    _cli("draw", net, "-o", os.path.join(tmp, "net.dot"), *flag)
    out["draw"] = open(os.path.join(tmp, "net.dot")).read()
    model = os.path.join(tmp, "net.caffemodel")
    _cli("init", net, "-o", model, "--seed", "3", *flag)
    out["init"] = open(model, "rb").read()
    out["inspect"] = _cli("inspect", model, "--stats", *flag, tmp=tmp)
    npz = os.path.join(tmp, "run.npz")
    _cli("run", net, model, "--random-input", "--seed", "2", "--input", "label=" + label,
         "--blobs", "mvn,bn,crop,ip,prob,red,loss,acc", "-o", npz, *flag)
    with np.load(npz) as z:
        out["run"] = {k: z[k] for k in z.files}
    _cli("upgrade", net, "-o", os.path.join(tmp, "up.prototxt"), *flag)
    out["upgrade"] = open(os.path.join(tmp, "up.prototxt")).read()
    script = os.path.join(tmp, "net.py")
    with open(script, "w") as fh:
        fh.write("import sys\nimport numpy as np\nimport caffe\n"
                 "net = caffe.Net(sys.argv[1], sys.argv[2], caffe.TEST)\n"
                 "net.blobs['data'].data[...] = np.linspace(-1, 1, 486).reshape(2, 3, 9, 9)\n"
                 "net.blobs['label'].data[...] = [1, 3]\n"
                 "out = net.forward()\n"
                 "np.savez(sys.argv[3], **{k: v for k, v in out.items()})\n")
    pyout = os.path.join(tmp, "py.npz")
    _cli("pycaffe", *flag, script, net, model, pyout)
    with np.load(pyout) as z:
        out["pycaffe"] = {k: z[k] for k in z.files}
    return out


def _same(got, want, what, skip=()):
    for key in want:
        if key in skip:
            continue
        if isinstance(want[key], dict):
            assert sorted(got[key]) == sorted(want[key]), (what, key)
            for blob in want[key]:
                np.testing.assert_array_equal(got[key][blob], want[key][blob],
                                              err_msg="%s: %s %s" % (what, key, blob))
        else:
            assert got[key] == want[key], (what, key)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("bvlc"))
    return tmp, _verbs(os.path.join(tmp, "plain"), NET)


def test_the_removal_covers_the_fields_the_engines_read():
    """Every audited message the net reaches loses fields, and the fields the 2015
    piergiaj/caffe-deconvnet schema lacks that a net can leave unset are among them."""
    gone = {(m, f) for m, fs in _removable() for f in fs}
    for field in ("propagate_down", "crop_param", "batch_norm_param", "bias_param",
                  "elu_param", "flatten_param", "reduction_param", "scale_param",
                  "swish_param", "log_param"):   # (input_param: tests/test_fork_zf_deconvnet.py)
        assert ("LayerParameter", field) in gone
    for message, field in (("PoolingParameter", "round_mode"), ("ConvolutionParameter", "dilation"),
                           ("ConvolutionParameter", "axis"), ("LossParameter", "normalization"),
                           ("MVNParameter", "eps"), ("InnerProductParameter", "transpose"),
                           ("FillerParameter", "variance_norm"), ("BlobProto", "double_data"),
                           ("ArgMaxParameter", "axis"), ("LRNParameter", "engine")):
        if field in FIELDS_READ[message]:
            assert (message, field) in gone, (message, field)


@pytest.mark.parametrize("message, fields", _removable(), ids=[m for m, _ in _removable()])
def test_verbs_without_the_fields(message, fields, reference, tmp_path):
    """The schema without ``message``'s fields: the verbs give BVLC's output for the
    same net (with the older behaviour written out where it is not the default)."""
    tmp, plain = reference
    text = NET
    older = [OLD_BEHAVIOUR[(message, f)] for f in fields if (message, f) in OLD_BEHAVIOUR]
    want = plain
    if older:
        for old, new in older:
            assert old in text
            text = text.replace(old, new)
        want = _verbs(os.path.join(str(tmp_path), "older"), text)
        want = {k: want[k] for k in ("shapes", "cost", "run", "pycaffe", "init", "inspect")}
    schema = tmp_path / ("no_%s.proto" % message)
    schema.write_text(without(message, set(fields)))
    pb2 = load_schema(str(schema))
    absent = set(fields) - set(getattr(pb2, message).DESCRIPTOR.fields_by_name)
    assert absent == set(fields)
    got = _verbs(os.path.join(str(tmp_path), "reduced"), NET, str(schema))
    _same(got, want, message, skip=LEGACY_BLOBS if "shape" in absent and
          message == "BlobProto" else ())


#: a schema without BlobProto.shape (BVLC, 2015) writes blobs as Caffe did before it,
#: num/channels/height/width (blob.cpp ToProto then), so the caffemodel's bytes and
#: inspect's shapes differ; what the nets compute does not
LEGACY_BLOBS = ("init", "inspect")


def test_caffemodel_without_blob_shape(tmp_path):
    """blob.cpp before N-D blobs: ToProto writes num, channels, height, width (a
    blob of fewer axes padded with leading 1s, LegacyShape), never ``shape``."""
    from netdsl.weights import write_caffemodel
    schema = tmp_path / "old.proto"
    schema.write_text(without("BlobProto", {"shape", "double_data", "double_diff"}))
    pb2 = load_schema(str(schema))
    path = str(tmp_path / "m.caffemodel")
    write_caffemodel(path, {"ip": [np.ones((5, 36), np.float32), np.zeros(5, np.float32)]},
                     types={"ip": "InnerProduct"}, pb2=pb2)
    back = bvlc.NetParameter.FromString(open(path, "rb").read())
    w, b = back.layer[0].blobs
    assert not w.HasField("shape") and (w.num, w.channels, w.height, w.width) == (1, 1, 5, 36)
    assert (b.num, b.channels, b.height, b.width) == (1, 1, 1, 5)
    assert list(w.data) == [1.0] * 180


def _forward_with(tmp_path, message, fields, text, feeds, schema=None):
    from netdsl.forward import forward
    from netdsl.netspec import use_schema
    from netdsl.prototxt import parse_net
    if schema is None:
        schema = tmp_path / ("no_%s.proto" % message)
        schema.write_text(without(message, set(fields)))
    pb2 = load_schema(str(schema))
    assert not set(fields) & set(getattr(pb2, message).DESCRIPTOR.fields_by_name)
    use_schema(pb2)
    try:
        return forward(parse_net(text, "net.prototxt", schema=pb2), None, feeds)
    finally:
        use_schema(None)


def test_mvn_without_eps_uses_the_older_constant(tmp_path):
    """mvn_layer.cpp before MVNParameter.eps: ``Dtype eps = 1e-10``, added to the
    standard deviation.  A plane [0, 2e-9]: deviations +-1e-9, standard deviation
    1e-9, so +-1e-9 / (1e-9 + 1e-10) = +-0.909 (with the field's default 1e-9: 0.5)."""
    text = ('input: "x" input_dim: 1 input_dim: 1 input_dim: 1 input_dim: 2\n'
            'layer { name: "mvn" type: "MVN" bottom: "x" top: "y" }\n')
    x = np.array([0, 2e-9], np.float32).reshape(1, 1, 1, 2)
    y = _forward_with(tmp_path, "MVNParameter", ["eps"], text, {"x": x})["y"].ravel()
    np.testing.assert_allclose(y, [-1 / 1.1, 1 / 1.1], rtol=1e-3)


@pytest.mark.parametrize("normalize, divisor", [("", 2), ("normalize: true", 2),
                                                ("normalize: false", 3)])
def test_softmax_loss_without_normalization(tmp_path, normalize, divisor):
    """softmax_loss_layer.cpp before LossParameter.normalization: divide by the labels
    not ignored when ``normalize`` (default true in the schemas of that time, as in
    piergiaj/caffe-deconvnet's), else by the batch.  Three samples of two equal
    scores (-log 1/2 each), one label ignored: 2 log 2 over 2 or 3."""
    text = ('input: "s" input_shape { dim: 3 dim: 2 }\ninput: "l" input_shape { dim: 3 }\n'
            'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "s" bottom: "l" top: "loss"\n'
            '  loss_param { ignore_label: 1 %s } }\n' % normalize)
    feeds = {"s": np.zeros((3, 2), np.float32), "l": np.array([0, 1, 0], np.float32)}
    schema = os.path.join(HERE, "data", "fork_schemas", "zf_deconvnet.proto")
    loss = _forward_with(tmp_path, "LossParameter", ["normalization"], text, feeds,
                         schema)["loss"]
    np.testing.assert_allclose(float(loss), 2 * np.log(2) / divisor, rtol=1e-6)
