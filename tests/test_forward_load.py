"""The one net loader the forward and ``caffe.Net`` share: ``load_net`` and
``select_layers`` (Caffe's FilterNet for a phase, level and stages)."""
from __future__ import annotations

import pytest

from netdsl import NetdslError
from netdsl.compat.caffe import Net
from netdsl.forward import forward
from netdsl.forward.core import load_net, select_layers
from netdsl.prototxt import parse_net

RULES = """
name: "rules"
state { level: 1 }
layer { name: "a" type: "Input" top: "x" input_param { shape { dim: 1 dim: 1 } } }
layer { name: "b" type: "ReLU" bottom: "x" top: "b" include { phase: TEST stage: "deploy" } }
layer { name: "c" type: "ReLU" bottom: "x" top: "c" include { min_level: 1 } }
layer { name: "d" type: "ReLU" bottom: "x" top: "d" exclude { stage: "deploy" } }
"""


def _names(layers):
    return [lp.name for lp in layers]


def test_select_layers_follows_caffes_state_rules():
    # src/caffe/net.cpp StateMeetsRule: min_level fails when level < min_level; a rule's
    # stages must all be in the state; an exclude rule that is met drops the layer
    net = parse_net(RULES)
    state, kept = select_layers(net, 1, 0, ["deploy"])
    assert (state.phase, state.level, list(state.stage)) == (1, 0, ["deploy"])
    assert _names(kept) == ["a", "b"]          # c: level 0 < 1; d: stage deploy
    assert _names(select_layers(net, 1, 1)[1]) == ["a", "c", "d"]   # b: no stage deploy
    # no level given (the forward): the net's own state.level 1 stays
    assert _names(select_layers(net, 1)[1]) == ["a", "c", "d"]


def test_forward_and_caffe_net_keep_the_same_layers():
    net = parse_net(RULES)
    # caffe.Net(file, phase) sets level 0 (net.cpp's Net constructor), the forward keeps
    # the net's own level 1: layer c is in the forward only
    assert "c" in forward(net, None, {"x": [[1.0]]})
    caffe_net = Net(net, 1)
    assert list(caffe_net._layer_names) == ["a", "d"]
    assert list(Net(net, 1, stages=["deploy"])._layer_names) == ["a", "b"]


def test_load_net_refuses_what_is_no_net():
    with pytest.raises(NetdslError, match="net must be a NetParameter") as err:
        load_net(42)
    assert isinstance(err.value, TypeError)
    with pytest.raises(NetdslError, match="no such net prototxt"):
        Net("/nonexistent/deploy.prototxt", 1)
