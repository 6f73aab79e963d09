"""The plugin hook (netdsl.plugins): register_layer, load_plugin, NETDSL_PLUGINS and
shape expressions.

Expected shapes are worked out by hand from the expressions given (each
assertion's comment shows the arithmetic); BVLC layer shapes follow Caffe's
formulas (pooling_layer.cpp: ceil((in + 2p - k) / s) + 1).
"""
import os
import textwrap
from fractions import Fraction

import numpy as np
import pytest

from netdsl import NetSpec, NetdslError, layers as L
from netdsl.cli import main
from netdsl.coord_map import layer_coord_map
from netdsl.layers import lookup
from netdsl.netspec import use_schema
from netdsl.plugins import (ENV_VAR, expression_param_rule, expression_shape_rule, load_plugin,
                            register_layer, registered, temporary_layers, unregister_layer)
from netdsl.proto import caffe_pb2, load_schema
from netdsl.shapes import infer_shapes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEG_PROTO = os.path.join(ROOT, "specs", "forks", "segnet-deeplab.proto")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    """Every test leaves the registries, the loaded plugins and the schema as it found them."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    with temporary_layers():
        yield
    use_schema(None)


def _input_net(shape=(1, 3, 5, 7)):
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=list(shape)))
    return n


# -- register_layer -----------------------------------------------------------------------

def test_expression_rule_shapes_a_custom_type():
    register_layer("Stretch", bottoms=1, tops=1, shape=[["N", "C", "2 * H", "3 * W + 1"]],
                   coord_map=(1, (2, 3), (Fraction(1, 2), 1)))
    n = _input_net()
    n.s = L.Stretch(n.data)
    res = infer_shapes(n.to_proto())
    # (1, 3, 5, 7) -> (1, 3, 2*5, 3*7 + 1) = (1, 3, 10, 22)
    assert res.blobs["s"] == (1, 3, 10, 22)
    # x_input = (x_s - shift) / scale: stride (1/2, 1/3), offset (-1/4, -1/3)
    ls = res.layer("s")
    assert ls.strides[0] == (0.5, 1 / 3) and ls.offsets[0] == (-0.25, -1 / 3)
    assert lookup("Stretch").bottoms == 1


def test_one_expression_list_serves_every_top_and_counts_follow_per_top_lists():
    register_layer("Twin", shape=[["N", "C", "H", "W"]])
    n = _input_net((2, 4, 6, 8))
    n.a, n.b = L.Twin(n.data, ntop=2)
    res = infer_shapes(n.to_proto())
    assert res.blobs["a"] == res.blobs["b"] == (2, 4, 6, 8)
    # two lists: two tops exactly
    rec = register_layer("Pair", shape=[["N", "C"], ["N", "C * 2"]])
    assert rec.tops == 2
    n = _input_net((2, 4, 6, 8))
    n.p, n.q = L.Pair(n.data, ntop=2)
    res = infer_shapes(n.to_proto())
    assert res.blobs["p"] == (2, 4) and res.blobs["q"] == (2, 8)   # C * 2 = 8
    n = _input_net()
    n.p = L.Pair(n.data)
    with pytest.raises(NetdslError, match="Pair takes exactly 2 top blobs; got 1"):
        infer_shapes(n.to_proto())


def test_expression_names_bottoms_params_and_functions():
    rule = expression_shape_rule([[
        "b1.N",                                   # second bottom's num
        "bottom[0].C + bottom[1].C",              # channels summed
        "ceil((H + 2 * pooling_param.pad - pooling_param.kernel_size)"
        " / pooling_param.stride) + 1",           # Caffe's pooling formula
        "max(W, b1.W) if has(pooling_param.stride) else -1",
        "len(b0.shape) * b0.axes",                # 4 * 4
        "int(-7 / 2) + floor(-7 / 2) + 7 // 2 + 7 % 3",
        "min(ntop, nbottom) + abs(-3)",
    ]])
    layer = caffe_pb2.LayerParameter(name="x", type="Custom")
    layer.pooling_param.kernel_size = 3
    layer.pooling_param.stride = 2
    out = rule(layer, [(1, 3, 10, 9), (4, 5, 6, 12)], 1)
    # b1.N = 4; 3 + 5 = 8; ceil((10 + 0 - 3) / 2) + 1 = ceil(3.5) + 1 = 5; max(9, 12) = 12;
    # 4 * 4 = 16; int(-3.5) = -3 (toward zero), floor(-3.5) = -4, 7 // 2 = 3, 7 % 3 = 1: -3;
    # min(1, 2) + 3 = 4
    assert out == [(4, 8, 5, 12, 16, -3, 4)]


def test_param_reads_the_own_message_with_proto_defaults():
    seg = load_schema(SEG_PROTO)
    use_schema(seg)
    register_layer("Upsample", bottoms=(1, 2), tops=1, shape=[[
        "N", "C",
        "param.upsample_h if has(param.upsample_h) else H * param.scale - param.pad_out_h",
        "upsample_param.upsample_w if has(upsample_param.upsample_w) "
        "else W * upsample_param.scale - upsample_param.pad_out_w"]])
    n = _input_net((1, 2, 3, 4))
    n.u = L.Upsample(n.data)                          # scale unset: its default 2
    n.v = L.Upsample(n.data, scale=3, pad_out_h=True)
    n.w = L.Upsample(n.data, upsample_h=5, upsample_w=7)
    res = infer_shapes(n.to_proto())
    assert res.blobs["u"] == (1, 2, 6, 8)             # 3 * 2, 4 * 2 (default scale = 2)
    assert res.blobs["v"] == (1, 2, 8, 12)            # 3 * 3 - True(1), 4 * 3 - False(0)
    assert res.blobs["w"] == (1, 2, 5, 7)             # upsample_h/upsample_w given


def test_param_expression_rule_gives_learnable_blobs():
    register_layer("ChannelAffine", bottoms=1, tops=1, shape=[["N", "C", "H", "W"]],
                   params=[["C"], ["C"]])
    n = _input_net((1, 6, 4, 4))
    n.a = L.ChannelAffine(n.data)
    res = infer_shapes(n.to_proto())
    ls = res.layer("a")
    assert ls.param_shapes == [(6,), (6,)] and ls.param_count == 12   # 6 + 6
    rule = expression_param_rule([["C", "C", 3, 3]])
    assert rule(caffe_pb2.LayerParameter(type="X"), [(1, 4, 8, 8)]) == [(4, 4, 3, 3)]


def test_expression_errors_name_the_layer_and_the_expression():
    with pytest.raises(NetdslError, match=r"shape expression `H \*\* 2` of layer type `Sq`: "
                                          r"operator not allowed"):
        register_layer("Sq", shape=[["N", "H ** 2"]])
    with pytest.raises(NetdslError, match="`__import__` is not a function here"):
        expression_shape_rule([["__import__('os')"]])
    with pytest.raises(NetdslError, match=r"`H.bit_length` is not a function here"):
        expression_shape_rule([["H.bit_length()"]])
    with pytest.raises(NetdslError, match="only numbers are allowed as constants"):
        expression_shape_rule([["'text'"]])
    with pytest.raises(NetdslError, match="syntax error"):
        expression_shape_rule([["H +"]])
    with pytest.raises(NetdslError, match="`listcomp` is not allowed"):
        expression_shape_rule([["[H for H in b0.shape][0]"]])
    with pytest.raises(NetdslError, match="list of dims per top"):
        expression_shape_rule("N, C, H, W")

    register_layer("Third", shape=[["N", "C", "H / 3", "W"]])
    n = _input_net((1, 3, 5, 7))
    n.t = L.Third(n.data)
    with pytest.raises(NetdslError) as ei:
        infer_shapes(n.to_proto())
    # 5 / 3 is not an integer
    assert str(ei.value).startswith("layer 't': shape expression `H / 3` (top 0, axis 2): "
                                    "the value 5/3")
    register_layer("Scaled", shape=[["N", "C", "H * param.scal", "W"]])
    use_schema(load_schema(SEG_PROTO))
    register_layer("Upsample", shape=[["N", "C", "H * param.scal", "W"]])
    n = _input_net()
    n.u = L.Upsample(n.data)
    with pytest.raises(NetdslError) as ei:
        infer_shapes(n.to_proto())
    assert "upsample_param has no field `scal`" in str(ei.value)
    assert "did you mean `scale`?" in str(ei.value) and "layer 'u'" in str(ei.value)
    n = _input_net()
    n.s = L.Scaled(n.data)
    with pytest.raises(NetdslError, match="no ScaledParameter"):
        infer_shapes(n.to_proto())
    for expr, why in (("H // (W - W)", "division by zero"),
                      ("b2.H", r"bottom\[2\] does not exist: the layer has 1 bottom"),
                      ("H.x", "`H` has no attributes"),
                      ("b0.depth", "a bottom has N, C, H, W"),
                      ("convolution_param.kernel_size + 1", "repeated field"),
                      ("Q", "unknown name `Q`")):
        register_layer("Bad", shape=[["N", expr]])
        n = _input_net()
        n.b = L.Bad(n.data)
        with pytest.raises(NetdslError, match=why):
            infer_shapes(n.to_proto())


def test_rules_of_builtin_types_are_protected_and_restored():
    with pytest.raises(NetdslError, match="`Pooling` is a built-in layer type"):
        register_layer("Pooling", shape=[["N"]])
    before = lookup("Pooling").shape
    register_layer("Pooling", shape=[["N", "C", "1", "1"]], override=True)
    n = _input_net((1, 3, 8, 8))
    n.p = L.Pooling(n.data, kernel_size=2, stride=2)
    assert infer_shapes(n.to_proto()).blobs["p"] == (1, 3, 1, 1)
    unregister_layer("Pooling")
    assert lookup("Pooling").shape is before
    # 8 -> ceil((8 - 2) / 2) + 1 = 4 again
    assert infer_shapes(n.to_proto()).blobs["p"] == (1, 3, 4, 4)
    with pytest.raises(NetdslError, match="identifier"):
        register_layer("my layer", shape=[["N"]])


def test_bugs_in_a_rule_become_errors_naming_the_type():
    def broken(layer, bottoms, ntop):
        return {}["missing"]
    register_layer("Broken", shape=broken)
    n = _input_net()
    n.b = L.Broken(n.data)
    with pytest.raises(NetdslError, match=r"the shape rule of layer type `Broken` failed: "
                                          r"KeyError"):
        infer_shapes(n.to_proto())


def test_forward_and_coord_map_registered_in_one_call():
    def double(layer, bottoms, blobs, ctx):
        return [bottoms[0].repeat(2, axis=2).repeat(2, axis=3)]
    register_layer("Double", bottoms=1, tops=1, shape=[["N", "C", "2*H", "2*W"]],
                   coord_map=lambda layer, shapes=None: (1, 2, Fraction(1, 2)), forward=double)
    from netdsl.forward import forward
    assert lookup("Double").forward is not None and lookup("Double").coord_map is not None
    n = _input_net((1, 1, 2, 2))
    n.d = L.Double(n.data)
    x = np.array([[[[1, 2], [3, 4]]]], dtype=np.float32)
    out = forward(n.to_proto(), None, {"data": x})["d"]
    # each value repeated over a 2 x 2 block
    np.testing.assert_array_equal(out[0, 0], [[1, 1, 2, 2], [1, 1, 2, 2],
                                              [3, 3, 4, 4], [3, 3, 4, 4]])
    assert layer_coord_map(n.to_proto().layer[1]) == (1, (2,), (Fraction(1, 2),))
    unregister_layer("Double")
    assert lookup("Double") is None


def test_unknown_custom_type_explains_how_to_declare_it():
    n = _input_net((1, 3, 4, 4))
    n.r = L.MyResize(n.data)
    with pytest.raises(NetdslError) as ei:
        infer_shapes(n.to_proto())
    text = str(ei.value)
    assert text.startswith("layer 'r': no shape rule for layer type `MyResize`")
    assert "declared={'r': [(N, C, H, W)]}" in text and "register_layer('MyResize'" in text
    assert "custom_layers:" in text and "--declare TOP=N,C,H,W" in text
    # declaring the shape is enough
    res = infer_shapes(n.to_proto(), declared={"r": (1, 3, 8, 8)})
    assert res.blobs["r"] == (1, 3, 8, 8) and res.layer("r").declared


# -- load_plugin and NETDSL_PLUGINS --------------------------------------------------------

PLUGIN = '''
from netdsl.plugins import register_layer
LOADS = globals().get("LOADS", 0) + 1
register_layer("Halve", bottoms=1, tops=1, shape=[["N", "C", "H // 2", "W // 2"]])
'''


def _halve_net():
    n = _input_net((1, 3, 9, 8))
    n.h = L.Halve(n.data)
    return n.to_proto()


def test_load_plugin_from_a_file(tmp_path):
    path = tmp_path / "halve_layers.py"
    path.write_text(PLUGIN)
    mod = load_plugin(str(path))
    assert registered()["Halve"].source == str(path)
    assert load_plugin(str(path)) is mod and mod.LOADS == 1        # imported once
    # 9 // 2 = 4, 8 // 2 = 4
    assert infer_shapes(_halve_net()).blobs["h"] == (1, 3, 4, 4)


def test_load_plugin_by_module_name(tmp_path, monkeypatch):
    (tmp_path / "netdsl_test_halve_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    load_plugin("netdsl_test_halve_plugin")
    assert infer_shapes(_halve_net()).blobs["h"] == (1, 3, 4, 4)
    with pytest.raises(NetdslError, match="no plugin module named 'netdsl_no_such_plugin'"):
        load_plugin("netdsl_no_such_plugin")


def test_plugin_errors_are_located(tmp_path):
    with pytest.raises(NetdslError, match="no such plugin file"):
        load_plugin(str(tmp_path / "absent.py"))
    bad = tmp_path / "bad_syntax.py"
    bad.write_text("from netdsl.plugins import register_layer\nregister_layer('X',\n")
    with pytest.raises(NetdslError) as ei:
        load_plugin(str(bad))
    assert str(ei.value).startswith(str(bad) + ":2:")
    assert "syntax error in plugin" in str(ei.value)
    boom = tmp_path / "boom.py"
    boom.write_text("x = 1\nraise RuntimeError('no GPU here')\n")
    with pytest.raises(NetdslError) as ei:
        load_plugin(str(boom))
    assert str(ei.value).startswith(str(boom) + ":2: plugin")
    assert "RuntimeError: no GPU here" in str(ei.value)
    expr = tmp_path / "bad_expr.py"
    expr.write_text("from netdsl.plugins import register_layer\n\n"
                    "register_layer('Y', shape=[['N', 'H ^ 2']])\n")
    with pytest.raises(NetdslError) as ei:
        load_plugin(str(expr))
    assert str(ei.value).startswith(str(expr) + ":3: shape expression `H ^ 2`")


def test_env_plugins_load_on_first_use(tmp_path, monkeypatch, capsys):
    path = tmp_path / "env_halve.py"
    path.write_text(PLUGIN)
    net = tmp_path / "net.prototxt"
    net.write_text(str(_halve_net()))
    monkeypatch.setenv(ENV_VAR, " %s , " % path)
    assert main(["shapes", str(net), "--format", "json"]) == 0
    assert '"h": [1, 3, 4, 4]' in capsys.readouterr().out
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "missing.py"))
    assert main(["shapes", str(net)]) == 2
    err = capsys.readouterr().err
    assert "no such plugin file" in err and "(from $NETDSL_PLUGINS)" in err


def test_cli_plugin_option(tmp_path, capsys):
    path = tmp_path / "cli_halve.py"
    path.write_text(PLUGIN)
    net = tmp_path / "net.prototxt"
    net.write_text(str(_halve_net()))
    assert main(["shapes", str(net), "--plugin", str(path)]) == 0
    assert "h (1,3,4,4)" in capsys.readouterr().out
    assert main(["shapes", str(net), "--plugin", str(tmp_path / "nope.py")]) == 2
    assert "nope.py: no such plugin file" in capsys.readouterr().err


def test_docs_examples_run(tmp_path):
    """The Python examples of docs/custom-layers.md run as written."""
    import re
    text = open(os.path.join(ROOT, "docs", "custom-layers.md"), encoding="utf-8").read()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        for i, block in enumerate(blocks):
            exec(compile(textwrap.dedent(block), "custom-layers.md[%d]" % i, "exec"), {})
    finally:
        os.chdir(cwd)
