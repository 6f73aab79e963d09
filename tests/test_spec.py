"""The spec format, feature by feature.  Expected nets are written as the pycaffe
NetSpec script a user would write for the same net (pycaffe's naming and order rules),
or as prototxt facts computed by hand from Caffe's rules."""
from __future__ import annotations

import os
import textwrap

import pytest

from netdsl import NetSpec, layers as L, params as P
from netdsl.errors import NetdslError
from netdsl.ops.upsample import geometry
from netdsl.prototxt import parse_net, to_text
from netdsl.spec import build_all, load_spec, render, surgery_layers
from netdsl.spec.load import compose_text, plain

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def spec_of(tmp_path, text, name="s.yaml", variables=None):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return load_spec(str(path), variables)


def nets(tmp_path, text, **kw):
    return build_all(spec_of(tmp_path, text, **kw)).nets


def test_yaml_12_scalars():
    # YAML 1.2 core schema: exponents without a dot are numbers; yes/1_1 stay text
    v = plain(compose_text("[1e-10, 1_1, yes, 0x10, .5, ~, True, '7']", "t"))
    assert v == [1e-10, "1_1", "yes", 16, 0.5, None, True, "7"]


def test_same_net_as_pycaffe_script(tmp_path):
    got = nets(tmp_path, """
        inputs:
          data: [1, 3, 16, 16]
        layers:
          - Convolution: conv1
            num_output: 8
            kernel_size: 3
            pad: 1
            weight_filler: {type: xavier}
            param: [{lr_mult: 1}, {lr_mult: 2}]
          - ReLU: relu1
            in_place: true
          - Pooling: pool1
            pool: MAX
            kernel_size: 2
            stride: 2
          - InnerProduct: fc
            inner_product_param: {num_output: 10}
          - Softmax: prob
    """)
    n = NetSpec()
    n.data = L.Input(name="input", shape=dict(dim=[1, 3, 16, 16]))
    n.conv1 = L.Convolution(n.data, num_output=8, kernel_size=3, pad=1,
                            weight_filler=dict(type="xavier"),
                            param=[dict(lr_mult=1), dict(lr_mult=2)])
    n.relu1 = L.ReLU(n.conv1, in_place=True)
    n.pool1 = L.Pooling(n.relu1, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    n.fc = L.InnerProduct(n.pool1, inner_product_param=dict(num_output=10))
    n.prob = L.Softmax(n.fc)
    want = n.to_proto()
    for phase in ("train", "val", "deploy"):
        assert to_text(got[phase]) == to_text(want)


def test_variables_defines_and_expressions(tmp_path):
    text = """
        variables:
          c: 4
          k: 3
          pad: ${(k - 1) // 2}        # an expression keeps its type
          tag: net-${c}
        inputs:
          data: [1, 3, 8, 8]
          py: [1, 2]                  # the Python layer's top, for the shape check
        layers:
          - Convolution: conv_${tag}
            num_output: ${c}
            kernel_size: ${k}
            pad: ${pad}
          - Python: py
            module: m
            layer: "${tag | upper}"
            param_str: "$${literal} ${c * 2}"
    """
    net = nets(tmp_path, text)["deploy"]
    conv = net.layer[1]
    assert conv.name == "conv_net-4"
    assert (conv.convolution_param.num_output, list(conv.convolution_param.kernel_size),
            list(conv.convolution_param.pad)) == (4, [3], [1])
    assert net.layer[2].python_param.layer == "NET-4"
    assert net.layer[2].python_param.param_str == "${literal} 8"
    # -D values are YAML scalars and override defaults; derived variables follow
    net = build_all(spec_of(tmp_path, text, variables={"c": "6", "k": "5"})).nets["deploy"]
    conv = net.layer[1]
    assert conv.name == "conv_net-6"
    assert list(conv.convolution_param.pad) == [2]


def test_default_bottom_in_place_and_names(tmp_path):
    net = nets(tmp_path, """
        inputs:
          data: [1, 3, 8, 8]
        layers:
          - Convolution: c1
            num_output: 4
            kernel_size: 1
          - ReLU:                 # unnamed, in place by top = bottom
            top: c1
            bottom: c1
          - ReLU:                 # unnamed, new top: pycaffe's automatic name
          - Eltwise: sum
            bottom: [c1, ReLU2]
          - Convolution: c2
            name: conv_two        # a layer name that differs from its top
            num_output: 4
            kernel_size: 1
          - Slice: [a, b]         # two tops
            slice_point: 2
          - Silence:              # no top
            bottom: [a, b]
            ntop: 0
    """)["deploy"]
    got = [(l.name, l.type, list(l.bottom), list(l.top)) for l in net.layer]
    assert got == [
        ("input", "Input", [], ["data"]),
        ("c1", "Convolution", ["data"], ["c1"]),
        ("ReLU1", "ReLU", ["c1"], ["c1"]),
        ("ReLU2", "ReLU", ["c1"], ["ReLU2"]),
        ("sum", "Eltwise", ["c1", "ReLU2"], ["sum"]),
        ("conv_two", "Convolution", ["sum"], ["c2"]),
        ("a", "Slice", ["c2"], ["a", "b"]),
        ("Silence1", "Silence", ["a", "b"], []),
    ]


def test_in_place_layer_name_refers_to_its_top(tmp_path):
    # pycaffe: n.relu1 = L.ReLU(n.conv1, in_place=True); later layers may use either name
    net = nets(tmp_path, """
        inputs: {data: [1, 3, 8, 8]}
        layers:
          - Convolution: conv1
            num_output: 4
            kernel_size: 1
          - ReLU: relu1
            in_place: true
          - Pooling: p1
            bottom: relu1
            kernel_size: 2
          - Pooling: p2
            bottom: conv1
            kernel_size: 2
    """)["train"]
    assert [list(l.bottom) for l in net.layer[3:]] == [["conv1"], ["conv1"]]


def test_blocks_repeat_and_head_binding(tmp_path):
    net = nets(tmp_path, """
        inputs: {data: [1, 3, 8, 8]}
        blocks:
          cr:
            args: [name, nout, ks: 3]
            layers:
              - Convolution: conv${name}
                num_output: ${nout}
                kernel_size: ${ks}
                pad: ${ks // 2}
              - ReLU: relu${name}
                in_place: true
          stage:
            args: {n: 2, widths: [4, 8]}
            layers:
              - repeat: ${widths}
                as: w
                index: i
                layers:
                  - cr: ${n}_${i}
                    nout: ${w}
        layers:
          - stage:
          - cr: {name: x, nout: 2, ks: 1}
          - repeat: 2
            layers:
              - ReLU: r${i}
    """)["deploy"]
    got = [(l.name, list(l.bottom), list(l.top)) for l in net.layer[1:]]
    assert got == [("conv2_1", ["data"], ["conv2_1"]), ("relu2_1", ["conv2_1"], ["conv2_1"]),
                   ("conv2_2", ["conv2_1"], ["conv2_2"]), ("relu2_2", ["conv2_2"], ["conv2_2"]),
                   ("convx", ["conv2_2"], ["convx"]), ("relux", ["convx"], ["convx"]),
                   ("r1", ["convx"], ["r1"]), ("r2", ["r1"], ["r2"])]
    assert [l.convolution_param.num_output for l in net.layer if l.type == "Convolution"] \
        == [4, 8, 2]
    assert list(net.layer[5].convolution_param.pad) == [0]


def test_phases_per_phase_and_deploy_drops_losses(tmp_path):
    built = nets(tmp_path, """
        inputs:
          data: [1, 3, 4, 4]
          label: [1, 1, 4, 4]
        layers:
          - Python: [data, label]
            module: layers
            phases: [train, val]
            per_phase:
              train: {layer: TrainData}
              val: {layer: ValData, param_str: "${phase}"}
          - Convolution: score
            num_output: 2
            kernel_size: 1
          - Dropout: drop
            in_place: true
            phases: train
          - SoftmaxWithLoss: loss
            bottom: [score, label]
          - Accuracy: acc
            bottom: [score, label]
    """)
    names = {p: [l.name for l in n.layer] for p, n in built.items()}
    assert names == {"train": ["data", "score", "drop", "loss", "acc"],
                     "val": ["data", "score", "loss", "acc"],
                     "deploy": ["input", "score"]}
    assert built["train"].layer[0].python_param.layer == "TrainData"
    assert built["val"].layer[0].python_param.param_str == "val"


@pytest.mark.parametrize("f,kernel,pad", [(1, 1, 0), (2, 4, 1), (3, 5, 1), (4, 8, 2),
                                          (8, 16, 4), (32, 64, 16)])
def test_bilinear_geometry(f, kernel, pad):
    # kernel 2f - f mod 2, stride f, pad ceil((f - 1) / 2): by hand for each f
    assert geometry("bilinear", f) == {"kernel_size": kernel, "stride": f, "pad": pad}
    assert geometry("nearest", f) == {"kernel_size": f, "stride": f, "pad": 0}


def test_upsample_forms(tmp_path):
    net = nets(tmp_path, """
        inputs: {data: [1, 5, 4, 4]}
        layers:
          - upsample: bil
            bottom: data
            factor: 2
            channels: 5
          - upsample: nn
            bottom: data
            mode: nearest
            factor: 3
            channels: 5
            learnable: true
          - upsample: dense
            bottom: data
            factor: 4
            channels: 5
            dense: true
          - upsample: dense_nn
            bottom: data
            factor: 2
            channels: 5
            dense: true
            mode: nearest
    """)["deploy"]
    want = parse_net(textwrap.dedent("""
        layer { name: "input" type: "Input" top: "data" input_param { shape { dim: 1 dim: 5 dim: 4 dim: 4 } } }
        layer { name: "bil" type: "Deconvolution" bottom: "data" top: "bil" param { lr_mult: 0 }
          convolution_param { num_output: 5 bias_term: false pad: 1 kernel_size: 4 group: 5
                              stride: 2 weight_filler { type: "bilinear" } } }
        layer { name: "nn" type: "Deconvolution" bottom: "data" top: "nn"
          convolution_param { num_output: 5 bias_term: false pad: 0 kernel_size: 3 group: 5
                              stride: 3 weight_filler { type: "constant" value: 1 } } }
        layer { name: "dense" type: "Deconvolution" bottom: "data" top: "dense" param { lr_mult: 0 }
          convolution_param { num_output: 5 bias_term: false kernel_size: 8 stride: 4 } }
        layer { name: "dense_nn" type: "Deconvolution" bottom: "data" top: "dense_nn" param { lr_mult: 0 }
          convolution_param { num_output: 5 bias_term: false kernel_size: 2 stride: 2 } }
    """), "want", upgrade=False)
    assert net == want
    assert surgery_layers(net) == (["dense"], ["dense_nn"])


def test_crop_auto_and_explicit(tmp_path):
    from netdsl.crop_check import CropOffsetWarning
    with pytest.warns(CropOffsetWarning, match="layer 'fixed': crop offset 1,2 disagrees"):
        net = _crop_auto_and_explicit(tmp_path)
    # pycaffe's coordinate maps, by hand: the convolution maps y = x / 2 + (10 - (3 - 1) / 2) / 2
    # = x / 2 + 4.5, the deconvolution z = 2 y + (3 - 1) / 2 = 2 y + 1, so z = x + 10: offset 10
    auto = net.layer[3].crop_param
    assert (auto.axis, list(auto.offset)) == (2, [10])
    fixed = net.layer[4].crop_param
    assert (fixed.axis, list(fixed.offset)) == (2, [1, 2])


def _crop_auto_and_explicit(tmp_path):
    return nets(tmp_path, """
        inputs: {data: [1, 3, 32, 32]}
        layers:
          - Convolution: c
            num_output: 3
            kernel_size: 3
            stride: 2
            pad: 10
          - Deconvolution: up
            convolution_param: {num_output: 3, kernel_size: 3, stride: 2}
          - crop: auto
            reference: data
          - crop: fixed
            bottom: up
            reference: data
            offset: [1, 2]
            axis: 2
    """)["deploy"]


def test_includes_libraries_and_templates(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "blocks.yaml").write_text("variables:\n  width: 4\nblocks:\n  conv:\n"
                                     "    args: [name]\n    layers:\n"
                                     "      - Convolution: ${name}\n"
                                     "        num_output: ${width}\n        kernel_size: 1\n")
    (lib / "relus.yaml.j2").write_text("---\nn: 2\n---\nlayers:\n{% for i in range(n) %}\n"
                                       "  - ReLU: r{{ i }}\n{% endfor %}\n")
    net = nets(tmp_path, """
        include: [lib/blocks.yaml]
        inputs: {data: [1, 3, 8, 8]}
        layers:
          - conv: c1
          - include: lib/relus.yaml.j2
            with: {n: 3}
    """, variables={"width": "7"})["deploy"]
    assert [l.name for l in net.layer] == ["input", "c1", "r0", "r1", "r2"]
    assert net.layer[1].convolution_param.num_output == 7


def test_template_spec_with_front_matter(tmp_path):
    path = tmp_path / "t.yaml.j2"
    path.write_text("---\nn: 2\n---\ninputs: {data: [1, 1, 4, 4]}\nlayers:\n"
                    "{% for i in range(n) %}\n  - ReLU: r{{ i }}\n{% endfor %}\n")
    assert len(build_all(load_spec(str(path))).nets["deploy"].layer) == 3
    assert len(build_all(load_spec(str(path), {"n": "4"})).nets["deploy"].layer) == 5
    assert render(str(path), {"n": "1"}) == ("inputs: {data: [1, 1, 4, 4]}\nlayers:\n"
                                            "  - ReLU: r0\n")


def test_shipped_templates_give_the_fcn8s_spec(tmp_path):
    # the Jinja2 backbone and head reproduce specs/fcn8s.yaml's nets
    spec = tmp_path / "t.yaml"
    tpl = os.path.join(ROOT, "templates")
    spec.write_text(textwrap.dedent("""
        include: [%s/fcn.yaml]
        inputs: {data: [1, 3, 500, 500], label: [1, 1, 500, 500]}
        layers:
          - voc_data:
          - include: %s/vgg16.yaml.j2
          - include: %s/fcn-head.yaml.j2
            with: {stride: 8}
    """ % (tpl, tpl, tpl)))
    got = build_all(load_spec(str(spec))).nets
    want = build_all(load_spec(os.path.join(ROOT, "specs", "fcn8s.yaml"))).nets
    for phase in want:
        assert got[phase] == want[phase], phase


def test_when_and_custom_types(tmp_path):
    net = nets(tmp_path, """
        custom_types: [MyLayer]
        variables: {extra: false}
        inputs: {data: [1, 1, 2, 2], m: [1, 1, 2, 2]}
        layers:
          - ReLU: r
            when: ${extra}
          - MyLayer: m        # its top is in `inputs`: a source unless bottoms are given
            bottom: data
    """)
    assert [l.type for l in net["train"].layer] == ["Input", "MyLayer"]


def test_json_schema():
    from netdsl.spec.schema_json import spec_schema
    s = spec_schema()
    defs = s["$defs"]
    assert s["required"] == ["layers"]
    conv = defs["layer.Convolution"]["properties"]
    assert {"num_output", "kernel_size", "weight_filler", "param", "convolution_param",
            "bottom", "in_place", "phases"} <= set(conv)
    pool = defs["field.caffe.PoolingParameter.pool"]["anyOf"][0]["enum"]
    assert pool[:3] == ["MAX", "AVE", "STOCHASTIC"]
    assert defs["field.caffe.ConvolutionParameter.num_output"]["anyOf"][0] == {
        "type": "integer", "minimum": 0}
    assert "dropout_ratio" in defs["layer.Dropout"]["properties"]
    assert any(r["if"] == {"required": ["upsample"]} for r in defs["item"]["allOf"])
    assert "base_lr" in defs["msg.caffe.SolverParameter"]["properties"]


def test_error_in_rendered_yaml_names_the_rendered_text(tmp_path):
    # the template renders fine, but the YAML it renders has a misspelt type: template
    # line 7, rendered line 6 (the front matter's three lines stay as blank lines, and the
    # `{% for %}` line renders to nothing)
    path = tmp_path / "t.yaml.j2"
    path.write_text("---\nn: 1\n---\ninputs: {data: [1, 1, 2, 2]}\nlayers:\n"
                    "{% for i in range(n) %}\n  - Relu: r{{ i }}\n{% endfor %}\n")
    with pytest.raises(NetdslError) as info:
        build_all(load_spec(str(path)))
    assert info.value.file == str(path) + " (rendered)"
    assert (info.value.line, info.value.column) == (6, 5)
    assert "unknown layer type `Relu`; did you mean `ReLU`?" in str(info.value)


def test_schema_knows_every_key_of_the_shipped_specs():
    # each layer written in specs/ and templates/ uses only keys the schema allows
    import glob
    from netdsl.spec.schema_json import spec_schema
    defs = spec_schema()["$defs"]
    seen = 0
    for path in glob.glob(os.path.join(ROOT, "specs", "*.yaml")) + \
            glob.glob(os.path.join(ROOT, "templates", "*.yaml")):
        with open(path) as fh:
            root = plain(compose_text(fh.read(), path))
        items = list(root.get("layers") or [])
        for blk in (root.get("blocks") or {}).values():
            items += blk["layers"] if isinstance(blk, dict) else blk
        while items:
            item = items.pop()
            head = next(iter(item))
            if head == "repeat":
                items += item["layers"]
                continue
            rule = "layer." + head if "layer." + head in defs else \
                   ("op." + head if "op." + head in defs else None)
            if rule is None:
                continue    # a block use
            seen += 1
            assert set(item) <= set(defs[rule]["properties"]), (path, item)
    assert seen > 20


def test_phase_singular_is_caffes_field(tmp_path):
    with pytest.raises(NetdslError) as info:
        build_all(spec_of(tmp_path, """
            inputs: {data: [1, 1, 2, 2]}
            layers:
              - ReLU: r
                phase: train
        """))
    assert (info.value.line, info.value.column) == (5, 5)
    assert "`phase` is Caffe's TRAIN/TEST field" in str(info.value)
    assert "write `phases: train`" in str(info.value)
    # Caffe's own field still works
    net = build_all(spec_of(tmp_path, """
        inputs: {data: [1, 1, 2, 2]}
        layers:
          - ReLU: r
            phase: TRAIN
    """)).nets["val"]
    assert net.layer[1].phase == 0
