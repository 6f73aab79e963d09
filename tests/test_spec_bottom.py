"""A block body names its incoming blob: ``${bottom}`` (docs/spec.md, Blocks).

Expected bottoms are read off the specs by hand: the blob a block use reads is
its ``bottom:``, else the previous layer's first top (the blob an in-place layer
writes, not the layer's name, as Caffe names blobs), else the first input.
"""
from __future__ import annotations

import textwrap

import pytest

from netdsl.errors import NetdslError
from netdsl.spec import build_nets, load_spec

_RESIDUAL = """
blocks:
  residual:
    args: [name]
    layers:
      - Convolution: ${name}_conv
        num_output: 4
        kernel_size: 3
        pad: 1
        bottom: ${bottom}
      - Eltwise: ${name}
        bottom: ["${bottom}", "${name}_conv"]
      - Power: ${name}_tag_${bottom}
"""


def _net(tmp_path, text, phase="deploy"):
    path = tmp_path / "net.yaml"
    path.write_text(textwrap.dedent(text))
    return build_nets(load_spec(str(path)), [phase])[phase]


def _bottoms(net, name):
    return [list(lp.bottom) for lp in net.layer if lp.name == name][0]


def test_bottom_is_the_previous_top_the_given_bottom_or_the_first_input(tmp_path):
    net = _net(tmp_path, "name: r\ninputs:\n  data: [1, 4, 8, 8]\n" + _RESIDUAL + """
layers:
  - residual: r1            # nothing before: the first input
  - Convolution: c2
    num_output: 4
    kernel_size: 1
  - ReLU: relu2             # in place: the blob is c2
    in_place: true
  - residual: r2
  - residual: r3
    bottom: relu2           # an in-place layer's name stands for its blob, c2
""")
    assert _bottoms(net, "r1") == ["data", "r1_conv"]
    assert _bottoms(net, "r1_tag_data") == ["r1"]
    assert _bottoms(net, "r2_conv") == ["c2"] and _bottoms(net, "r2") == ["c2", "r2_conv"]
    assert [lp.name for lp in net.layer if lp.name.startswith("r3_tag")] == ["r3_tag_c2"]


def test_a_variable_or_argument_named_bottom_is_a_clear_error(tmp_path):
    with pytest.raises(NetdslError, match="`bottom` names the blob a block reads") as ei:
        _net(tmp_path, "name: r\nvariables: {bottom: 1}\ninputs:\n  data: [1, 4, 8, 8]\n"
             + _RESIDUAL + "layers:\n  - residual: r1\n")
    assert "rename the variable" in str(ei.value) and ":" in ei.value.explain()
    with pytest.raises(NetdslError, match="argument of block `b`") as ei:
        _net(tmp_path, """
name: r
inputs: {data: [1, 4, 8, 8]}
blocks:
  b:
    args: {bottom: x}
    layers: [{ReLU: r, in_place: true}]
layers:
  - b:
""")
    assert "rename the argument" in str(ei.value)


def test_an_unknown_incoming_blob_says_why_when_it_is_read(tmp_path):
    head = "name: r\ninputs:\n  data: [1, 4, 8, 8]\n" + _RESIDUAL
    with pytest.raises(NetdslError, match="automatically named top") as ei:
        _net(tmp_path, head + "layers:\n  - ReLU:\n  - residual: r1\n")
    assert "net.yaml:" in ei.value.explain()
    # a block that does not read ${bottom} does not care
    net = _net(tmp_path, head + """
  plain:
    layers: [{Power: p}]
layers:
  - ReLU:
  - plain:
""")
    assert _bottoms(net, "p") == ["ReLU1"]
    with pytest.raises(NetdslError, match="no layer or input comes before"):
        _net(tmp_path, "name: r\n" + _RESIDUAL + "layers:\n  - residual: r1\n")
