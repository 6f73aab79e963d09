"""Legacy net and solver upgrades, checked against hand-derived expectations.

Every expected value here comes from reading Caffe's
src/caffe/util/upgrade_proto.cpp; comments name the function whose rule
gives it.  The expected prototxt files under data/prototxt/expected/ were
written by hand the same way and say at the top which rules applied.
"""
from __future__ import annotations

import os

import pytest

from netdsl.errors import NetdslError
from netdsl.proto import caffe_pb2, load_schema
from netdsl.prototxt import parse_message, parse_net, parse_solver, to_text
from netdsl.upgrade import (
    needs_solver_upgrade,
    needs_upgrade,
    upgrade_net,
    upgrade_net_with_notes,
    upgrade_solver,
    upgrade_solver_with_notes,
)

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "prototxt")
EXPECTED = os.path.join(DATA, "expected")

LEGACY_NETS = [
    "v0_imagenet", "v0_deploy", "v1_imagenet", "v1_siamese", "v1_window_finetune",
    "deploy_input_dim", "deploy_input_shape", "resnet_bn_deploy",
]
CURRENT_NETS = ["lenet", "caffenet", "fcn"]
ALL_FILES = sorted(
    [os.path.join(DATA, f) for f in os.listdir(DATA) if f.endswith(".prototxt")]
    + [os.path.join(EXPECTED, f) for f in os.listdir(EXPECTED) if f.endswith(".prototxt")])


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def raw_net(text: str) -> caffe_pb2.NetParameter:
    """Parse without upgrading."""
    return parse_net(text, upgrade=False)


def raw_file(name: str, folder: str = DATA) -> caffe_pb2.NetParameter:
    return raw_net(_read(os.path.join(folder, name + ".prototxt")))


def is_solver(path: str) -> bool:
    return os.path.basename(path).startswith("solver")


def copy_of(msg):
    out = type(msg)()
    out.CopyFrom(msg)
    return out


# -- legacy nets upgrade to their hand-written expectations -----------------

@pytest.mark.parametrize("name", LEGACY_NETS)
def test_legacy_net_upgrades_to_expected(name):
    upgraded = upgrade_net(raw_file(name))
    expected = raw_file(name, EXPECTED)
    assert to_text(upgraded) == to_text(expected)
    assert upgraded == expected


@pytest.mark.parametrize("name", LEGACY_NETS)
def test_legacy_net_needs_upgrade(name):
    assert needs_upgrade(raw_file(name))


@pytest.mark.parametrize("name", CURRENT_NETS)
def test_current_net_is_returned_as_an_equal_copy(name):
    net = raw_file(name)
    assert not needs_upgrade(net)
    upgraded, notes = upgrade_net_with_notes(net)
    assert upgraded == net and upgraded is not net
    assert to_text(upgraded) == to_text(net)
    assert notes == []


@pytest.mark.parametrize("name", [n for n in LEGACY_NETS if n != "resnet_bn_deploy"])
def test_upgraded_net_needs_no_further_upgrade(name):
    assert not needs_upgrade(raw_file(name, EXPECTED))


def test_upgraded_batchnorm_still_reports_needing_upgrade():
    # NetNeedsBatchNormUpgrade only counts the param specs (three), so Caffe's
    # NetNeedsUpgrade stays true after UpgradeNetBatchNorm.
    assert needs_upgrade(raw_file("resnet_bn_deploy", EXPECTED))


@pytest.mark.parametrize("name", LEGACY_NETS + CURRENT_NETS)
def test_upgrade_is_idempotent(name):
    once = upgrade_net(raw_file(name))
    twice = upgrade_net(once)
    assert twice == once
    assert to_text(twice) == to_text(once)


@pytest.mark.parametrize("name", LEGACY_NETS + CURRENT_NETS)
def test_input_is_not_mutated(name):
    net = raw_file(name)
    before, text = copy_of(net), to_text(net)
    upgrade_net(net)
    upgrade_net_with_notes(net)
    assert net == before
    assert to_text(net) == text


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: os.path.relpath(p, DATA))
def test_round_trip(path):
    text = _read(path)
    if is_solver(path):
        first = parse_solver(text, path)
        again = parse_solver(to_text(first), path)
    else:
        first = parse_net(text, path)
        again = parse_net(to_text(first), path)
    assert again == first
    assert to_text(again) == to_text(first)


def test_parse_net_upgrades_through_prototxt():
    path = os.path.join(DATA, "v1_imagenet.prototxt")
    assert parse_net(_read(path), path) == raw_file("v1_imagenet", EXPECTED)


def test_notes_name_the_steps_taken():
    _, notes = upgrade_net_with_notes(raw_file("v0_deploy"))
    text = "\n".join(notes)
    assert "V0 layer syntax" in text
    assert "V1 layer syntax" in text
    assert "Input layer" in text
    assert "layer 'pool1': padding layer 'pad1' folded into it (pad: 1)" in notes


# -- V0 details -------------------------------------------------------------

V0_HEAD = 'name: "v0"\ninput: "data"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 8\ninput_dim: 8\n'


def test_v0_parameter_for_wrong_type_is_a_warning():
    # UpgradeV0LayerParameter only LOG(ERROR)s "Unknown parameter num_output for
    # layer type relu" and drops the value; the upgrade goes on.
    net = raw_net(V0_HEAD + """
layers { layer { name: "relu1" type: "relu" num_output: 4 } bottom: "data" top: "data" }
""")
    upgraded, notes = upgrade_net_with_notes(net)
    expected = raw_net("""
name: "v0"
layer { name: "input" type: "Input" top: "data"
        input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
layer { name: "relu1" type: "ReLU" bottom: "data" top: "data" }
""")
    assert upgraded == expected
    assert "layer 'relu1': V0 parameter `num_output` does not apply to layer type 'relu'; " \
           "dropped" in notes


def test_v0_transform_fields_go_to_transform_param_for_any_type():
    # UpgradeV0LayerParameter sets scale/meanfile/cropsize/mirror on
    # transform_param without looking at the type; window_data det_* fields go
    # to window_data_param under their new names.
    net = raw_net("""
layers { layer { name: "win" type: "window_data" source: "w.txt" batchsize: 8 scale: 0.5
                 det_fg_threshold: 0.6 det_context_pad: 16 det_crop_mode: "square" }
         top: "data" top: "label" }
layers { layer { name: "drop" type: "dropout" dropout_ratio: 0.3 mirror: true } bottom: "data" top: "data" }
""")
    expected = raw_net("""
layer { name: "win" type: "WindowData" top: "data" top: "label"
        transform_param { scale: 0.5 }
        window_data_param { source: "w.txt" batch_size: 8 fg_threshold: 0.6 context_pad: 16
                            crop_mode: "square" } }
layer { name: "drop" type: "Dropout" bottom: "data" top: "data"
        transform_param { mirror: true } dropout_param { dropout_ratio: 0.3 } }
""")
    assert upgrade_net(net) == expected


def test_v0_net_keeps_only_name_layers_inputs_and_force_backward():
    # UpgradeV0Net copies name, layers, input, input_dim and force_backward
    # into a cleared NetParameter; debug_info and state are lost.
    net = raw_net("""
name: "keep"
force_backward: true
debug_info: true
state { phase: TEST }
layers { layer { name: "sig" type: "sigmoid" } bottom: "x" top: "y" }
input: "x"
""")
    expected = raw_net("""
name: "keep"
force_backward: true
layer { name: "sig" type: "Sigmoid" bottom: "x" top: "y" }
""")
    # the bare input without dims is dropped by UpgradeNetInput
    assert upgrade_net(net) == expected


def test_non_v0_entry_in_a_v0_net_keeps_only_bottom_and_top():
    # UpgradeV0LayerParameter copies bottom and top, then only reads the V0
    # `layer` block; an entry without one loses everything else.
    net = raw_net("""
input: "data"
layers { layer { name: "tanh" type: "tanh" } bottom: "data" top: "t" }
layers { name: "fc" type: INNER_PRODUCT bottom: "t" top: "fc" inner_product_param { num_output: 3 } }
""")
    upgraded, notes = upgrade_net_with_notes(net)
    expected = raw_net("""
layer { name: "tanh" type: "TanH" bottom: "data" top: "t" }
layer { bottom: "t" top: "fc" }
""")
    assert upgraded == expected
    assert any(n.startswith("layer 'fc': no V0 `layer` block") for n in notes)


def test_padding_layer_feeding_two_convs_pads_both():
    # UpgradeV0PaddingLayers sets the pad on every conv/pool layer that reads
    # the padding layer's top; an unread padding layer just disappears.
    net = raw_net("""
input: "data"
layers { layer { name: "pad" type: "padding" pad: 3 } bottom: "data" top: "padded" }
layers { layer { name: "a" type: "conv" num_output: 2 kernelsize: 7 } bottom: "padded" top: "a" }
layers { layer { name: "b" type: "pool" pool: STOCHASTIC kernelsize: 7 } bottom: "padded" top: "b" }
layers { layer { name: "unused" type: "padding" pad: 1 } bottom: "a" top: "a_pad" }
""")
    expected = raw_net("""
layer { name: "a" type: "Convolution" bottom: "data" top: "a"
        convolution_param { num_output: 2 pad: 3 kernel_size: 7 } }
layer { name: "b" type: "Pooling" bottom: "data" top: "b"
        pooling_param { pool: STOCHASTIC pad: 3 kernel_size: 7 } }
""")
    assert upgrade_net(net) == expected


def test_padding_with_zero_pad_still_sets_pad():
    # the fold copies the padding layer's pad (set_pad), so has_pad is true and
    # UpgradeV0LayerParameter adds pad: 0 to convolution_param.
    net = raw_net("""
input: "data"
layers { layer { name: "p" type: "padding" } bottom: "data" top: "p" }
layers { layer { name: "c" type: "conv" num_output: 1 kernelsize: 1 } bottom: "p" top: "c" }
""")
    expected = raw_net("""
layer { name: "c" type: "Convolution" bottom: "data" top: "c"
        convolution_param { num_output: 1 pad: 0 kernel_size: 1 } }
""")
    assert to_text(upgrade_net(net)) == to_text(expected)


# -- data transformation details --------------------------------------------

def test_data_upgrade_marks_params_present_on_every_data_layer():
    # CONVERT_LAYER_TRANSFORM_PARAM calls mutable_data_param() and
    # mutable_transform_param() for every DATA layer once the net needs the
    # upgrade, so a DATA layer with nothing to move gets both, empty.
    net = raw_net("""
layers { name: "a" type: DATA top: "a" data_param { source: "a_db" crop_size: 32 } }
layers { name: "b" type: DATA top: "b" }
layers { name: "c" type: HDF5_DATA top: "c" hdf5_data_param { source: "c.txt" batch_size: 2 } }
""")
    expected = raw_net("""
layer { name: "a" type: "Data" top: "a" transform_param { crop_size: 32 } data_param { source: "a_db" } }
layer { name: "b" type: "Data" top: "b" transform_param { } data_param { } }
layer { name: "c" type: "HDF5Data" top: "c" hdf5_data_param { source: "c.txt" batch_size: 2 } }
""")
    upgraded = upgrade_net(net)
    assert to_text(upgraded) == to_text(expected)
    assert upgraded.layer[1].HasField("data_param")
    assert upgraded.layer[1].HasField("transform_param")


def test_current_layer_transform_fields_are_not_moved():
    # NetNeedsDataUpgrade only looks at V1 `layers`.
    net = raw_net('layer { name: "d" type: "Data" top: "d" data_param { scale: 0.5 } }')
    assert not needs_upgrade(net)
    assert upgrade_net(net) == net


# -- V1 details -------------------------------------------------------------

@pytest.mark.parametrize("enum_name,type_string", [
    # UpgradeV1LayerType, case by case
    ("NONE", ""),
    ("ABSVAL", "AbsVal"),
    ("BNLL", "BNLL"),
    ("DECONVOLUTION", "Deconvolution"),
    ("DUMMY_DATA", "DummyData"),
    ("HDF5_OUTPUT", "HDF5Output"),
    ("IM2COL", "Im2col"),
    ("MULTINOMIAL_LOGISTIC_LOSS", "MultinomialLogisticLoss"),
    ("MVN", "MVN"),
    ("SIGMOID_CROSS_ENTROPY_LOSS", "SigmoidCrossEntropyLoss"),
    ("SILENCE", "Silence"),
    ("SOFTMAX_LOSS", "SoftmaxWithLoss"),
    ("TANH", "TanH"),
    ("THRESHOLD", "Threshold"),
])
def test_v1_type_names(enum_name, type_string):
    net = raw_net('layers { name: "l" type: %s }' % enum_name)
    upgraded = upgrade_net(net)
    assert upgraded.layer[0].type == type_string
    assert upgraded.layer[0].HasField("type")


def test_every_v1_enum_value_has_a_type_string():
    for value in caffe_pb2.V1LayerParameter.LayerType.values():
        net = caffe_pb2.NetParameter()
        net.layers.add(name="l", type=value)
        upgrade_net(net)  # UpgradeV1LayerType covers every BVLC enum value


def test_v1_layer_without_type_gets_no_type():
    # UpgradeV1LayerParameter sets the type only when has_type().
    upgraded = upgrade_net(raw_net('layers { name: "l" bottom: "x" }'))
    assert not upgraded.layer[0].HasField("type")


def test_v1_net_level_fields_are_kept():
    # UpgradeV1Net starts from a copy of the whole NetParameter.
    net = raw_net("""
name: "n" force_backward: true debug_info: true state { phase: TEST stage: "s" }
layers { name: "p" type: POWER bottom: "x" top: "y" power_param { power: 2 } }
""")
    expected = raw_net("""
name: "n" force_backward: true debug_info: true state { phase: TEST stage: "s" }
layer { name: "p" type: "Power" bottom: "x" top: "y" power_param { power: 2 } }
""")
    assert upgrade_net(net) == expected


# -- input details -----------------------------------------------------------

def test_inputs_without_shapes_are_just_dropped():
    # UpgradeNetInput: no input_shape and no input_dim means a legacy
    # caffemodel; the input fields are cleared and no layer is added.
    net = raw_net('input: "data" layer { name: "r" type: "ReLU" bottom: "data" top: "r" }')
    expected = raw_net('layer { name: "r" type: "ReLU" bottom: "data" top: "r" }')
    assert upgrade_net(net) == expected


def test_input_shape_wins_over_input_dim():
    # UpgradeNetInput uses input_shape whenever there is one, then clears all.
    net = raw_net('input: "x" input_shape { dim: 2 dim: 5 } input_dim: 9 input_dim: 9 '
                  'input_dim: 9 input_dim: 9')
    expected = raw_net('layer { name: "input" type: "Input" top: "x" '
                       'input_param { shape { dim: 2 dim: 5 } } }')
    assert upgrade_net(net) == expected


# -- fatal cases ---------------------------------------------------------------

def _fail(text: str, filename: str = "legacy.prototxt") -> NetdslError:
    with pytest.raises(NetdslError) as info:
        upgrade_net(raw_net(text), filename=filename)
    return info.value


def test_both_layer_and_layers_is_fatal():
    # UpgradeV1Net: LOG(FATAL) "Refusing to upgrade inconsistent NetParameter"
    err = _fail('layer { name: "a" type: "ReLU" } layers { name: "b" type: RELU }')
    assert err.file == "legacy.prototxt"
    assert str(err).startswith("legacy.prototxt: the net has both `layer` and legacy `layers` "
                               "fields; Caffe refuses to upgrade such a net.")


def test_unknown_v0_type_is_fatal():
    # UpgradeV0LayerType: LOG(FATAL) "Unknown layer name"
    err = _fail(V0_HEAD + 'layers { layer { name: "sq" type: "square" } bottom: "data" top: "sq" }')
    assert err.layer == "sq"
    assert str(err).startswith("legacy.prototxt: layer 'sq': unknown V0 layer type 'square' "
                               "(known: accuracy, bnll,")


def test_padding_into_non_conv_layer_is_fatal():
    # UpgradeV0PaddingLayers: CHECK type is "conv" or "pool"
    err = _fail(V0_HEAD + """
layers { layer { name: "pad" type: "padding" pad: 1 } bottom: "data" top: "p" }
layers { layer { name: "relu" type: "relu" } bottom: "p" top: "r" }
""")
    assert str(err) == ("legacy.prototxt: layer 'relu': padding layer 'pad' feeds a layer of "
                        "type 'relu'; a padding layer can only be folded into a conv or pool layer")


def test_padding_into_layer_with_two_bottoms_is_fatal():
    # UpgradeV0PaddingLayers: CHECK_EQ(layer bottom_size, 1)
    err = _fail(V0_HEAD + """
layers { layer { name: "pad" type: "padding" pad: 1 } bottom: "data" top: "p" }
layers { layer { name: "conv" type: "conv" num_output: 1 kernelsize: 3 } bottom: "p" bottom: "data" top: "c" }
""")
    assert str(err) == ("legacy.prototxt: layer 'conv': takes 2 bottoms, one from padding layer "
                        "'pad'; a layer fed by a padding layer must have exactly one bottom")


def test_padding_layer_with_two_tops_is_fatal():
    # UpgradeV0PaddingLayers: CHECK_EQ(padding top_size, 1)
    err = _fail(V0_HEAD + """
layers { layer { name: "pad" type: "padding" pad: 1 } bottom: "data" top: "p" top: "q" }
layers { layer { name: "conv" type: "conv" num_output: 1 kernelsize: 3 } bottom: "p" top: "c" }
""")
    assert str(err) == "legacy.prototxt: layer 'pad': padding layer has 2 tops; it must have exactly one"


def test_padding_layer_with_two_bottoms_is_fatal():
    # UpgradeV0PaddingLayers: CHECK_EQ(padding bottom_size, 1)
    err = _fail(V0_HEAD + """
layers { layer { name: "r" type: "relu" } bottom: "data" top: "d2" }
layers { layer { name: "pad" type: "padding" pad: 1 } bottom: "data" bottom: "d2" top: "p" }
layers { layer { name: "pool" type: "pool" kernelsize: 3 } bottom: "p" top: "c" }
""")
    assert str(err) == ("legacy.prototxt: layer 'pad': padding layer has 2 bottoms; "
                        "it must have exactly one")


def test_unknown_bottom_in_v0_net_is_fatal():
    # UpgradeV0PaddingLayers: LOG(FATAL) "Unknown blob input"
    err = _fail(V0_HEAD + 'layers { layer { name: "r" type: "relu" } bottom: "nope" top: "r" }')
    assert str(err) == ("legacy.prototxt: layer 'r': bottom blob 'nope' is neither a net input "
                        "nor the top of an earlier layer")


def test_too_few_input_dims_is_fatal():
    # UpgradeNetInput reads four input_dim per input; Caffe would read past the
    # end of the field, here it is an error.
    err = _fail('input: "a" input: "b" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8')
    assert str(err) == "legacy.prototxt: 2 inputs need 8 input_dim values (four each), got 4"


def test_too_few_input_shapes_is_fatal():
    err = _fail('input: "a" input: "b" input_shape { dim: 1 }')
    assert str(err) == "legacy.prototxt: 2 inputs but only 1 input_shape entries"


def test_error_without_filename_has_no_file():
    with pytest.raises(NetdslError) as info:
        upgrade_net(raw_net('layer { name: "a" } layers { name: "b" }'))
    assert info.value.file is None
    assert str(info.value).startswith("the net has both")


# -- solvers -----------------------------------------------------------------

def test_legacy_solver_upgrades_to_expected():
    solver = parse_solver(_read(os.path.join(DATA, "solver_nesterov.prototxt")), upgrade=False)
    expected = parse_solver(_read(os.path.join(EXPECTED, "solver_nesterov.prototxt")),
                            upgrade=False)
    before = copy_of(solver)
    assert needs_solver_upgrade(solver)
    upgraded = upgrade_solver(solver)
    assert upgraded == expected
    assert to_text(upgraded) == to_text(expected)
    assert solver == before  # not mutated
    assert upgrade_solver(upgraded) == upgraded


def test_current_solver_is_unchanged():
    solver = parse_solver(_read(os.path.join(DATA, "solver_adam.prototxt")), upgrade=False)
    upgraded, notes = upgrade_solver_with_notes(solver)
    assert upgraded == solver and upgraded is not solver
    assert notes == []


@pytest.mark.parametrize("enum_name,type_string", [
    # UpgradeSolverType
    ("SGD", "SGD"), ("NESTEROV", "Nesterov"), ("ADAGRAD", "AdaGrad"),
    ("RMSPROP", "RMSProp"), ("ADADELTA", "AdaDelta"), ("ADAM", "Adam"),
])
def test_solver_type_names(enum_name, type_string):
    solver = parse_solver("base_lr: 0.1 solver_type: %s" % enum_name, upgrade=False)
    upgraded = upgrade_solver(solver)
    assert upgraded.type == type_string and upgraded.HasField("type")
    assert not upgraded.HasField("solver_type")


def test_solver_with_both_type_fields_is_fatal():
    # UpgradeSolverType: CHECK(!has_solver_type() || !has_type())
    solver = parse_solver('type: "Adam" solver_type: ADAM', upgrade=False)
    with pytest.raises(NetdslError) as info:
        upgrade_solver(solver, filename="s.prototxt")
    assert str(info.value) == ("s.prototxt: both the legacy `solver_type` (enum) and `type` "
                               "(string) are set; keep only `type`")


def test_inline_solver_net_is_not_upgraded():
    # UpgradeSolverAsNeeded only touches solver_type.
    solver = parse_solver('net_param { layers { name: "r" type: RELU } } solver_type: SGD',
                          upgrade=False)
    assert len(upgrade_solver(solver).net_param.layers) == 1


# -- fork schemas --------------------------------------------------------------

def test_fork_schema_messages_are_used(tmp_path):
    with open(caffe_pb2.SOURCE, encoding="utf-8") as fh:
        proto = fh.read()
    marker = "message V1LayerParameter {"
    assert marker in proto
    proto = proto.replace(marker, marker + "\n  optional string fork_tag = 9001;", 1)
    marker = "message LayerParameter {"
    proto = proto.replace(marker, marker + "\n  optional string fork_tag = 9001;", 1)
    path = tmp_path / "caffe.proto"
    path.write_text(proto, encoding="utf-8")
    pb2 = load_schema(str(path))
    net = parse_message('layers { name: "c" type: CONVOLUTION blobs_lr: 1 fork_tag: "x" }',
                        pb2.NetParameter())
    upgraded = upgrade_net(net)
    assert type(upgraded) is pb2.NetParameter
    expected = parse_message('layer { name: "c" type: "Convolution" param { lr_mult: 1 } '
                             'fork_tag: "x" }', pb2.NetParameter())
    assert upgraded == expected
