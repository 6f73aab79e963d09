"""Phase filtering against the rules of BVLC src/caffe/net.cpp (FilterNet, StateMeetsRule).

Expected layer lists are worked out by hand from those rules:
  * include and exclude together are an error;
  * no include rules: kept unless an exclude rule is met;
  * include rules: kept only if one of them is met;
  * a rule is met when its phase equals the state's, min_level <= level <= max_level,
    the state has all of its stages and none of its not_stages.
"""
import pytest

from netdsl.errors import NetdslError
from netdsl.netstate import (filter_net, included_layers, layer_included, make_state,
                             parse_phase, state_meets_rule)
from netdsl.proto import caffe_pb2
from netdsl.prototxt import parse_net

NET = """
name: "rules"
layer { name: "train_data" type: "Input" top: "data" include { phase: TRAIN } }
layer { name: "test_data" type: "Input" top: "data" include { phase: TEST } }
layer { name: "always" type: "ReLU" bottom: "data" top: "data" }
layer { name: "not_in_test" type: "ReLU" bottom: "data" top: "data" exclude { phase: TEST } }
layer { name: "level_1_to_2" type: "ReLU" bottom: "data" top: "data"
        include { min_level: 1 max_level: 2 } }
layer { name: "stage_a_and_b" type: "ReLU" bottom: "data" top: "data"
        include { stage: "a" stage: "b" } }
layer { name: "not_stage_a" type: "ReLU" bottom: "data" top: "data" include { not_stage: "a" } }
layer { name: "a_or_train" type: "ReLU" bottom: "data" top: "data"
        include { stage: "a" } include { phase: TRAIN } }
layer { name: "test_level_0" type: "ReLU" bottom: "data" top: "data"
        include { phase: TEST max_level: 0 } }
"""


def names(net):
    return [layer.name for layer in net.layer]


@pytest.fixture
def net():
    return parse_net(NET, upgrade=False)


def test_default_state_is_test_level_0_no_stages(net):
    # NetState defaults: phase TEST, level 0, no stage (caffe.proto)
    out = filter_net(net)
    assert names(out) == ["test_data", "always", "not_stage_a", "test_level_0"]
    assert out.state.phase == caffe_pb2.TEST and out.state.level == 0


def test_train_phase(net):
    out = filter_net(net, "TRAIN")
    # train_data (phase TRAIN), always, not_in_test (exclude TEST not met), not_stage_a,
    # a_or_train via its second include rule; test_level_0 needs TEST
    assert names(out) == ["train_data", "always", "not_in_test", "not_stage_a", "a_or_train"]


@pytest.mark.parametrize("phase", ["TRAIN", "train", " Train ", 0, caffe_pb2.TRAIN])
def test_phase_spellings(net, phase):
    assert filter_net(net, phase).state.phase == caffe_pb2.TRAIN


def test_levels(net):
    # level 1: level_1_to_2 kept (1 <= 1 <= 2); test_level_0 dropped (1 > max_level 0)
    assert names(filter_net(net, "TEST", level=1)) == [
        "test_data", "always", "level_1_to_2", "not_stage_a"]
    # level 3 is above max_level 2
    assert "level_1_to_2" not in names(filter_net(net, "TEST", level=3))


def test_stages(net):
    # stage a only: stage_a_and_b needs both; not_stage_a drops; a_or_train via stage a
    assert names(filter_net(net, "TEST", stages=["a"])) == [
        "test_data", "always", "a_or_train", "test_level_0"]
    assert names(filter_net(net, "TEST", stages=["a", "b"])) == [
        "test_data", "always", "stage_a_and_b", "a_or_train", "test_level_0"]


def test_stages_add_to_the_nets_own(net):
    # Caffe's Net(param_file, phase, level, stages) adds stages to param.state's
    net.state.stage.append("b")
    out = filter_net(net, "TEST", stages=["a"])
    assert list(out.state.stage) == ["b", "a"]
    assert "stage_a_and_b" in names(out)


def test_filtered_net_refilters_to_itself(net):
    once = filter_net(net, "TRAIN", level=2, stages=["a"])
    # the copy records its state, so filtering by that state keeps every layer
    assert names(filter_net(once, once.state.phase, once.state.level)) == names(once)
    assert [lp.name for lp in included_layers(once)] == names(once)


def test_include_and_exclude_together_is_an_error():
    net = parse_net('layer { name: "both" type: "ReLU" include { phase: TRAIN } '
                    'exclude { phase: TEST } }', upgrade=False)
    with pytest.raises(NetdslError) as ei:
        filter_net(net)
    assert ei.value.layer == "both"
    assert "not both" in str(ei.value)


def test_bad_phase():
    with pytest.raises(NetdslError) as ei:
        parse_phase("TRIAN")
    assert "TRAIN" in str(ei.value)
    with pytest.raises(NetdslError):
        parse_phase(2)
    with pytest.raises(NetdslError):
        parse_phase(True)


def test_state_meets_rule_conditions():
    state = caffe_pb2.NetState(phase=caffe_pb2.TRAIN, level=3, stage=["x", "y"])
    rule = caffe_pb2.NetStateRule
    assert state_meets_rule(state, rule())                      # an empty rule is met
    assert state_meets_rule(state, rule(phase=caffe_pb2.TRAIN, min_level=3, max_level=3))
    assert not state_meets_rule(state, rule(min_level=4))
    assert not state_meets_rule(state, rule(max_level=2))
    assert state_meets_rule(state, rule(stage=["x", "y"]))
    assert not state_meets_rule(state, rule(stage=["x", "z"]))
    assert not state_meets_rule(state, rule(not_stage=["y"]))
    assert state_meets_rule(state, rule(not_stage=["z"]))


def test_layer_included_and_other_fields_kept(net):
    net.name = "kept"
    net.force_backward = True
    out = filter_net(net, "TRAIN")
    assert out.name == "kept" and out.force_backward
    assert len(net.layer) == 9                                 # the original is untouched
    state = make_state(net, "TRAIN")
    assert layer_included(net.layer[0], state) and not layer_included(net.layer[1], state)
