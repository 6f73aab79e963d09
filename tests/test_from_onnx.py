"""netdsl.onnx.convert / netdsl from-onnx: ONNX graphs converted to stock Caffe
layers through the op table the PyTorch converter uses.

The models of the PyTorch converter's tests (tests/torch_cases.py, torchvision)
are exported with torch.onnx.export, both the dynamo exporter (opset 20) and
the legacy TorchScript one (opsets 11 and 13).  Expected values come from
onnxruntime running the ONNX file itself: netdsl's numpy forward (the parity
check of every conversion) and OpenCV dnn on the written files must both be
within 1e-4 relative (max abs error over the output's largest magnitude).
The Resize graphs are built by hand with onnx.helper, one per sampling mode.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from dnn_check import opencv_forward, require

TOL = 1e-4
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

HAVE_TORCH = __import__("importlib").util.find_spec("torch") is not None


@pytest.fixture(scope="module")
def torch():
    mod = require("torch")
    require("onnx")
    require("onnxruntime")
    require("cv2")
    mod.set_num_threads(2)
    return mod


def rel_err(ours, ref) -> float:
    ours = np.asarray(ours, np.float64).reshape(ref.shape)
    return float(np.abs(ours - ref).max() / max(np.abs(ref).max(), 1e-30))


def export(torch, model, shapes, path, exporter: str) -> str:
    """torch.onnx.export of ``model``: 'dynamo' (the exporter's default opset,
    20 with torch 2.14) or 'legacy11' / 'legacy13' (TorchScript exporter at that opset)."""
    import logging
    args = tuple(torch.randn(s) for s in shapes)
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            if exporter == "dynamo":
                torch.onnx.export(model, args, str(path), dynamo=True, external_data=False)
            else:
                torch.onnx.export(model, args, str(path), dynamo=False,
                                  opset_version=int(exporter[len("legacy"):]))
    finally:
        logging.disable(logging.NOTSET)
    return str(path)


def convert_checked(tmp_path, model, target="opencv"):
    """Save a hand-built ModelProto, convert it, and check parity.json and
    OpenCV on the written files against onnxruntime."""
    import onnx
    from netdsl.onnx import convert
    path = str(tmp_path / "model.onnx")
    onnx.save(model, path)
    result = convert(path, target=target)
    assert result.parity.ok, result.parity.table()
    ours, cv = check_files(tmp_path, result, path)
    assert ours <= TOL and cv <= TOL
    return result


def check_files(tmp_path, result, onnx_path):
    """Save the conversion; parity.json says ok; OpenCV dnn on the written files
    agrees with onnxruntime.  Returns (netdsl rel err, OpenCV rel err)."""
    import onnxruntime as ort
    from netdsl.prototxt import read_net
    out = tmp_path / "out"
    result.save(str(out))
    proto, weights = str(out / "deploy.prototxt"), str(out / "model.caffemodel")
    assert [lp.name for lp in read_net(proto).layer] == [lp.name for lp in result.net.layer]
    report = json.loads((out / "parity.json").read_text())
    assert report["ok"] is True
    rng = np.random.default_rng(7)
    feeds = {n: rng.standard_normal(result.inputs[c]).astype(np.float32)
             for n, c in zip(result.onnx_inputs, result.inputs)}
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    refs = sess.run(result.onnx_outputs, feeds)
    got = opencv_forward(proto, weights, {c: feeds[n] for n, c in
                                          zip(result.onnx_inputs, result.inputs)},
                         result.outputs)
    cv_err = max(rel_err(got[n], r) for n, r in zip(result.outputs, refs))
    return result.parity.max_rel, cv_err


def run_case(torch, tmp_path, label, model, shapes, exporter, target="caffe"):
    from torch_cases import randomise
    from netdsl.onnx import convert
    torch.manual_seed(3)
    model = randomise(model)
    path = export(torch, model, shapes, tmp_path / "model.onnx", exporter)
    result = convert(path, target=target)
    assert result.parity.ok, result.parity.table()
    ours, cv = check_files(tmp_path, result, path)
    print("\nONNX-PARITY %s %s/opset%d netdsl=%.2e opencv=%.2e"
          % (label, exporter.rstrip("0123456789"), result.opset, ours, cv))
    assert ours <= TOL and cv <= TOL
    return result


# -- the PyTorch converter's modules, both exporters ------------------------------------

def pitfall_cases():
    if not HAVE_TORCH:
        return []
    from torch_cases import pitfalls
    return [(c, e) for c in sorted(pitfalls()) for e in ("dynamo", "legacy11")]


@pytest.mark.parametrize("case,exporter", pitfall_cases())
def test_pitfall_module(tmp_path, torch, case, exporter):
    from torch_cases import pitfalls
    model, shape = pitfalls()[case]
    run_case(torch, tmp_path, case, model, [shape], exporter, target="opencv")


#: coverage modules one exporter cannot give in a convertible form: the dynamo
#: exporter writes softplus(beta=2) as Where/Greater (a data-dependent select);
#: the legacy one refuses an uneven adaptive pooling and writes a dilated
#: padding='same' conv as auto_pad SAME with dilation (which onnxruntime refuses
#: to run, so there is no reference)
NOT_EXPORTED = {("activations", "dynamo"), ("pools", "legacy13"), ("convs", "legacy13")}

def coverage_cases():
    if not HAVE_TORCH:
        return []
    from torch_cases import coverage
    return [(c, e) for c in sorted(coverage()) for e in ("dynamo", "legacy13")
            if (c, e) not in NOT_EXPORTED]


@pytest.mark.parametrize("case,exporter", coverage_cases())
def test_op_family(tmp_path, torch, case, exporter):
    from torch_cases import coverage
    model, shapes, target = coverage()[case]
    run_case(torch, tmp_path, case, model, shapes, exporter, target=target)


# -- torchvision ---------------------------------------------------------------------------

BOTH = ("dynamo", "legacy11")
TORCHVISION = {
    "resnet18": ({}, (1, 3, 64, 64), BOTH),
    "resnet50": ({}, (1, 3, 64, 64), BOTH),
    # the legacy exporter refuses an adaptive pooling whose output size (7) is not a
    # factor of its input's, so it gets VGG's own 224 x 224 (7 x 7 features)
    "vgg16_bn": ({}, {"dynamo": (1, 3, 32, 32), "legacy11": (1, 3, 224, 224)}, BOTH),
    "mobilenet_v2": ({}, (1, 3, 64, 64), ("dynamo", "legacy13")),
    "mobilenet_v3_large": ({}, (1, 3, 64, 64), BOTH),
    "squeezenet1_1": ({}, (1, 3, 64, 64), ("dynamo", "legacy13")),
    "shufflenet_v2_x1_0": ({}, (1, 3, 64, 64), BOTH),
    "efficientnet_b0": ({}, (1, 3, 64, 64), BOTH),
    "regnet_y_400mf": ({}, (1, 3, 64, 64), BOTH),
    "densenet121": ({}, (1, 3, 64, 64), ("dynamo", "legacy13")),
    "fcn_resnet50": ({"weights": None, "weights_backbone": None}, (1, 3, 64, 64), BOTH),
    "deeplabv3_mobilenet_v3_large": ({"weights": None, "weights_backbone": None},
                                     (1, 3, 64, 64), BOTH),
}


def torchvision_cases():
    return [(n, e) for n in sorted(TORCHVISION) for e in TORCHVISION[n][2]]


@pytest.mark.slow
@pytest.mark.parametrize("name,exporter", torchvision_cases())
def test_torchvision_model(tmp_path, torch, name, exporter):
    tv = require("torchvision")
    kwargs, shape, _ = TORCHVISION[name]
    shape = shape[exporter] if isinstance(shape, dict) else shape
    torch.manual_seed(0)
    builder = getattr(tv.models.segmentation, name, None) or getattr(tv.models, name)
    model = builder(**kwargs)
    run_case(torch, tmp_path, name, model, [shape], exporter)


# -- hand-built Resize graphs ------------------------------------------------------------

def _resize_model(mode, coord, nearest="round_prefer_floor", scales=None, sizes=None,
                  shape=(1, 2, 5, 7), opset=19, op="Resize"):
    onnx = require("onnx")
    h = onnx.helper
    inits, ins = [], ["x"]
    if op == "Resize":
        ins += ["", "scales" if scales is not None else "", "sizes" if sizes is not None else ""]
        if scales is not None:
            inits.append(onnx.numpy_helper.from_array(np.asarray(scales, np.float32), "scales"))
        if sizes is not None:
            inits.append(onnx.numpy_helper.from_array(np.asarray(sizes, np.int64), "sizes"))
        while ins[-1] == "":
            ins.pop()
        attrs = {"mode": mode, "coordinate_transformation_mode": coord, "nearest_mode": nearest}
    else:  # Upsample, opset 9: scales as an input
        ins.append("scales")
        inits.append(onnx.numpy_helper.from_array(np.asarray(scales, np.float32), "scales"))
        attrs = {"mode": mode}
    node = h.make_node(op, ins, ["y"], name="resize", **attrs)
    g = h.make_graph([node], "resize", [h.make_tensor_value_info("x", 1, list(shape))],
                     [h.make_tensor_value_info("y", 1, None)], initializer=inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", opset)])
    m.ir_version = 8
    return m


RESIZE = {
    "nearest_asymmetric_floor_x2": ("nearest", "asymmetric", "floor", [1, 1, 2, 2], None),
    "nearest_half_pixel_round_sizes": ("nearest", "half_pixel", "round_prefer_floor", None,
                                       [1, 2, 8, 11]),
    "nearest_pytorch_half_pixel_ceil": ("nearest", "pytorch_half_pixel", "round_prefer_ceil",
                                        [1, 1, 1.5, 2.5], None),
    "nearest_align_corners_sizes": ("nearest", "align_corners", "round_prefer_floor", None,
                                    [1, 2, 9, 4]),
    "nearest_asymmetric_ceil_down": ("nearest", "asymmetric", "ceil", None, [1, 2, 3, 5]),
    "linear_half_pixel_x2": ("linear", "half_pixel", "floor", [1, 1, 2, 2], None),
    "linear_half_pixel_scales": ("linear", "half_pixel", "floor", [1, 1, 1.6, 0.5], None),
    "linear_pytorch_half_pixel_sizes": ("linear", "pytorch_half_pixel", "floor", None,
                                        [1, 2, 1, 13]),
    "linear_align_corners_sizes": ("linear", "align_corners", "floor", None, [1, 2, 11, 13]),
    "linear_asymmetric_x3": ("linear", "asymmetric", "floor", [1, 1, 3, 3], None),
}


@pytest.mark.parametrize("case", sorted(RESIZE))
def test_resize_mode(tmp_path, case):
    """Each coordinate_transformation_mode / nearest_mode, with scales and with
    sizes, against onnxruntime's Resize and OpenCV on the written files."""
    require("onnxruntime")
    require("cv2")
    mode, coord, nearest, scales, sizes = RESIZE[case]
    convert_checked(tmp_path, _resize_model(mode, coord, nearest, scales, sizes))


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_upsample_opset9(tmp_path, mode):
    """Upsample (opsets 7-9): asymmetric coordinates, nearest rounds down."""
    require("onnxruntime")
    from netdsl.onnx import convert
    m = _resize_model(mode, None, scales=[1, 1, 2, 3], opset=9, op="Upsample")
    result = convert(m)
    assert result.parity.ok, result.parity.table()


def test_shape_arithmetic_folds_and_dynamic_inputs(tmp_path):
    """A Reshape whose shape is computed from Shape/Gather/Concat, on an input
    with a symbolic batch: the shape is folded once --input fixes it."""
    onnx = require("onnx")
    require("onnxruntime")
    from netdsl.errors import NetdslError
    from netdsl.onnx import convert
    h = onnx.helper
    c = lambda name, v: onnx.numpy_helper.from_array(np.asarray(v, np.int64), name)  # noqa
    nodes = [h.make_node("Shape", ["x"], ["s"]),
             h.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             h.make_node("Unsqueeze", ["n", "axes0"], ["n1"]),
             h.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
             h.make_node("Relu", ["x"], ["r"]),
             h.make_node("Reshape", ["r", "shape"], ["flat"]),
             h.make_node("Softmax", ["flat"], ["y"], axis=1)]
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", 1, ["N", 3, 4, 4])],
                     [h.make_tensor_value_info("y", 1, None)],
                     initializer=[c("zero", 0), c("axes0", [0]), c("minus1", [-1])])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    with pytest.raises(NetdslError, match="dynamic shape"):
        convert(m)
    result = convert(m, {"x": (2, 3, 4, 4)})
    assert result.parity.ok
    assert [lp.type for lp in result.net.layer] == ["Input", "ReLU", "Reshape", "Softmax"]


def test_external_data_loads(tmp_path, torch):
    """A model saved with its weights in model.onnx.data converts from its path."""
    import onnx
    from torch_cases import UNet, randomise
    from netdsl.onnx import convert
    path = export(torch, randomise(UNet()), [(1, 3, 16, 16)], tmp_path / "src.onnx", "legacy13")
    m = onnx.load(path)
    ext = tmp_path / "ext"
    ext.mkdir()
    onnx.save(m, str(ext / "model.onnx"), save_as_external_data=True,
              all_tensors_to_one_file=True, location="model.onnx.data", size_threshold=0)
    assert (ext / "model.onnx.data").stat().st_size > 1000
    result = convert(str(ext / "model.onnx"))
    assert result.parity.ok, result.parity.table()


def test_unsupported_op_names_type_node_opset(tmp_path):
    onnx = require("onnx")
    from netdsl.errors import NetdslError
    from netdsl.onnx import convert
    h = onnx.helper
    g = h.make_graph([h.make_node("Sin", ["x"], ["y"], name="the_sin")], "g",
                     [h.make_tensor_value_info("x", 1, [1, 2, 3, 3])],
                     [h.make_tensor_value_info("y", 1, None)])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    with pytest.raises(NetdslError) as info:
        convert(m, check=False)
    assert "Sin" in str(info.value) and "the_sin" in str(info.value) and "opset 17" in str(
        info.value)


# -- command line ------------------------------------------------------------------------

def _cli(*args):
    return subprocess.run([sys.executable, "-m", "netdsl", "from-onnx", *args],
                          capture_output=True, text=True, cwd=HERE)


def _save(m, path):
    import onnx
    onnx.save(m, str(path))
    return str(path)


def test_cli_exit_statuses(tmp_path):
    onnx = require("onnx")
    require("onnxruntime")
    h = onnx.helper
    good = _save(_resize_model("linear", "half_pixel", scales=[1, 1, 2, 2]), tmp_path / "g.onnx")
    r = _cli(good, "-o", str(tmp_path / "ok"))
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(tmp_path / "ok")) == ["deploy.prototxt", "model.caffemodel",
                                                   "parity.json"]
    assert "ok" in r.stdout
    g = h.make_graph([h.make_node("Sin", ["x"], ["y"], name="e1")], "g",
                     [h.make_tensor_value_info("x", 1, [1, 2, 3, 3])],
                     [h.make_tensor_value_info("y", 1, None)])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 13)])
    m.ir_version = 8
    bad = _save(m, tmp_path / "bad.onnx")
    r = _cli(bad, "-o", str(tmp_path / "no"))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "Sin" in r.stderr and "e1" in r.stderr and "opset 13" in r.stderr
    assert not (tmp_path / "no").exists()
    # a wrong --input is a user error too
    r = _cli(good, "-o", str(tmp_path / "no"), "--input", "z=1,2,3,3")
    assert r.returncode == 2 and "no input 'z'" in r.stderr


def test_cli_parity_failure_exits_1(tmp_path):
    """A converter made wrong on purpose (a plugin replaces aten.relu's): the
    files are written, parity.json names the diverging blob, exit 1."""
    onnx = require("onnx")
    require("onnxruntime")
    h = onnx.helper
    w = onnx.numpy_helper.from_array(np.ones((2, 2, 1, 1), np.float32), "w")
    g = h.make_graph([h.make_node("Relu", ["x"], ["r"], name="act"),
                      h.make_node("Conv", ["r", "w"], ["y"], name="conv")], "g",
                     [h.make_tensor_value_info("x", 1, [1, 2, 3, 3])],
                     [h.make_tensor_value_info("y", 1, None)], initializer=[w])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    path = _save(m, tmp_path / "m.onnx")
    plugin = tmp_path / "wrong.py"
    plugin.write_text("from netdsl.torch import Blob, register_converter\n"
                      "@register_converter('aten.relu')\n"
                      "def relu(cx, op):\n"
                      "    return Blob(cx.L.Sigmoid(op['input'].top), op.out_shape)\n")
    r = _cli(path, "-o", str(tmp_path / "out"), "--plugin", str(plugin))
    assert r.returncode == 1, r.stderr
    report = json.loads((tmp_path / "out" / "parity.json").read_text())
    assert report["ok"] is False and report["divergence"]["blob"] == "act"


def test_without_onnxruntime_the_check_says_so(tmp_path, monkeypatch):
    require("onnx")
    from netdsl.errors import NetdslError
    from netdsl.onnx import convert
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    m = _resize_model("nearest", "asymmetric", "floor", scales=[1, 1, 2, 2])
    with pytest.raises(NetdslError, match="onnxruntime.*--no-check"):
        convert(m)
    assert convert(m, check=False).parity is None


def test_doc_table_lists_exactly_the_converted_ops():
    """docs/from-torch.md's mapping table is the one op table of both front
    ends: its ONNX column names every op type the adapters convert, and only
    those."""
    import re
    from netdsl.onnx.adapters import supported
    with open(os.path.join(HERE, "..", "docs", "from-torch.md"), encoding="utf-8") as fh:
        doc = fh.read()
    table = doc[doc.index("| ONNX |", doc.index("## Mapping table")):]
    table = table[:table.index("\n\n")]
    named = set()
    for line in table.splitlines()[2:]:
        cell = line.split("|")[1]
        if cell.strip().startswith("anything else"):
            continue
        named |= set(re.findall(r"`([A-Z][A-Za-z0-9]+)`", cell))
    assert named == set(supported()), (named ^ set(supported()))


def _one_node(op, attrs, shape, consts, opset=17):
    onnx = require("onnx")
    h = onnx.helper
    rng = np.random.default_rng(5)
    inits, ins = [], ["x"]
    for name, value in consts:
        if name == "":
            ins.append("")
            continue
        ins.append(name)
        arr = value if isinstance(value, np.ndarray) else rng.standard_normal(value)
        inits.append(onnx.numpy_helper.from_array(np.asarray(arr, arr.dtype if isinstance(
            value, np.ndarray) else np.float32), name))
    node = h.make_node(op, ins, ["y"], name="n0", **attrs)
    g = h.make_graph([node], "g", [h.make_tensor_value_info("x", 1, list(shape))],
                     [h.make_tensor_value_info("y", 1, None)], initializer=inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", opset)])
    m.ir_version = 8
    return m


W = ("w", (4, 3, 3, 3))        # ConvTranspose: (C_in, C_out, kh, kw)
CW = ("w", (3, 4, 3, 3))       # Conv: (C_out, C_in, kh, kw)
B = ("b", (3,))
NODES = {
    "deconv_asymmetric_pads": ("ConvTranspose", {"strides": [2, 2], "pads": [0, 1, 1, 0]},
                               [W, B]),
    "deconv_output_shape": ("ConvTranspose", {"strides": [2, 2], "output_shape": [10, 12]},
                            [W, B]),
    "deconv_same_upper": ("ConvTranspose", {"strides": [2, 2], "auto_pad": "SAME_UPPER"},
                          [W, B]),
    "deconv_output_padding": ("ConvTranspose", {"strides": [3, 2], "pads": [1, 1, 1, 1],
                                                "output_padding": [2, 1]}, [W]),
    "deconv_end_pad_larger": ("ConvTranspose", {"strides": [2, 2], "pads": [0, 0, 2, 1]},
                              [W, B]),
    "conv_same_upper": ("Conv", {"strides": [2, 2], "auto_pad": "SAME_UPPER"}, [CW, B]),
    "conv_same_lower": ("Conv", {"strides": [2, 2], "auto_pad": "SAME_LOWER"}, [CW]),
    "conv_asymmetric_pads": ("Conv", {"pads": [0, 1, 2, 0]}, [CW, B]),
    "maxpool_ceil": ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1},
                     []),
    "maxpool_same_upper": ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2],
                                       "auto_pad": "SAME_UPPER"}, []),
    "maxpool_unequal_pads": ("MaxPool", {"kernel_shape": [2, 3], "strides": [1, 2],
                                         "pads": [1, 0, 0, 2]}, []),
    "avgpool_pads_include": ("AveragePool", {"kernel_shape": [3, 2], "strides": [2, 1],
                                             "pads": [1, 1, 1, 1], "count_include_pad": 1},
                             []),
    "avgpool_pads_exclude_ceil": ("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2],
                                                  "pads": [1, 1, 1, 1], "ceil_mode": 1}, []),
    "gemm_alpha_beta": ("Gemm", {"alpha": 0.5, "beta": 2.0, "transB": 1},
                        [("w", (5, 4 * 5 * 6)), ("c", (5,))]),
    "depth_to_space_dcr": ("DepthToSpace", {"blocksize": 2}, []),
    "depth_to_space_crd": ("DepthToSpace", {"blocksize": 2, "mode": "CRD"}, []),
    "space_to_depth": ("SpaceToDepth", {"blocksize": 2}, []),
    "reduce_max_channels": ("ReduceMax", {"keepdims": 1},
                            [("axes", np.asarray([1], np.int64))]),
    "hard_sigmoid_onnx_defaults": ("HardSigmoid", {}, []),
    "gather_reordered_repeats": ("Gather", {"axis": 3},
                                 [("idx", np.asarray([3, 0, 0, -2, 1, 2], np.int64))]),
    "gather_channels": ("Gather", {"axis": 1}, [("idx", np.asarray([2, 3, 0], np.int64))]),
    "slice_step_2": ("Slice", {}, [("starts", np.asarray([4, 0], np.int64)),
                                   ("ends", np.asarray([-9, 6], np.int64)),
                                   ("axes", np.asarray([3, 1], np.int64)),
                                   ("steps", np.asarray([-2, 3], np.int64))]),
    "pad_edge": ("Pad", {"mode": "edge"}, [("pads", np.asarray([0, 0, 1, 2, 0, 0, 2, 0],
                                                               np.int64))]),
    "pad_reflect": ("Pad", {"mode": "reflect"}, [("pads", np.asarray([0, 0, 2, 1, 0, 0, 1, 3],
                                                                     np.int64))]),
}


@pytest.mark.parametrize("case", sorted(NODES))
def test_single_node(tmp_path, case):
    """ONNX attribute forms PyTorch's exporters do not write (unequal pads,
    output_shape, auto_pad, DCR order, Gemm's alpha/beta, opset-18 ReduceMax
    axes), one node each, against onnxruntime and OpenCV."""
    require("onnxruntime")
    require("cv2")
    op, attrs, consts = NODES[case]
    shape = (1, 4, 6, 8) if op == "SpaceToDepth" else (1, 4, 5, 6)
    m = _one_node(op, attrs, shape, consts, opset=18)
    if op == "Gemm":  # Gemm takes 2-D input: flatten first
        import onnx
        h = onnx.helper
        m.graph.node.insert(0, h.make_node("Flatten", ["x"], ["xf"], name="flat"))
        m.graph.node[1].input[0] = "xf"
    convert_checked(tmp_path, m)


def test_refused_attribute_form_names_node_and_opset():
    """An op the table has, in a form with no exact layer: the error names the
    op type, node and opset, and says what is wrong."""
    require("onnx")
    from netdsl.errors import NetdslError
    from netdsl.onnx import convert
    m = _one_node("AveragePool", {"kernel_shape": [2, 2], "pads": [0, 0, 1, 1]}, (1, 2, 5, 5),
                  [], opset=18)
    with pytest.raises(NetdslError) as info:
        convert(m, check=False)
    text = str(info.value)
    assert text.startswith("layer 'y': AveragePool node 'n0' (opset 18): average pooling with "
                           "unequal begin/end pads"), text


def _advanced_index_model(idx, perm_in=(2, 3, 0, 1), perm_out=None, tail=None):
    """``x[:, :, I, J]`` as PyTorch's dynamo exporter writes advanced indexing:
    Transpose the indexed axes first, GatherND, Transpose back."""
    onnx = require("onnx")
    h = onnx.helper
    idx = np.asarray(idx, np.int64)
    lead = idx.ndim - 1
    perm_out = perm_out or [lead + i for i in range(4 - idx.shape[-1])] + list(range(lead))
    nodes = [h.make_node("Transpose", ["x"], ["t"], name="to_front", perm=list(perm_in)),
             h.make_node("GatherND", ["t", "idx"], ["g"], name="gather"),
             h.make_node("Transpose", ["g"], ["y"], name="back", perm=list(perm_out))]
    if tail:
        nodes[-1].output[0] = "z"
        nodes.append(h.make_node(tail, ["z"], ["y"], name="after"))
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", 1, [1, 3, 4, 5])],
                     [h.make_tensor_value_info("y", 1, None)],
                     initializer=[onnx.numpy_helper.from_array(idx, "idx")])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 18)])
    m.ir_version = 8
    return m


def test_advanced_indexing_transpose_gathernd_transpose(tmp_path):
    """A Transpose that moves the batch axis, GatherND over the axes it brought
    first, and the Transpose back: the converter follows where each value comes
    from and emits copies (Reshape, Slice, Concat) when a blob is needed.  Reference:
    onnxruntime, and numpy's own advanced indexing x[:, :, I, J]."""
    require("onnxruntime")
    require("cv2")
    rng = np.random.default_rng(0)
    idx = np.stack([rng.integers(0, 4, (3, 2)), rng.integers(-5, 5, (3, 2))], -1)
    result = convert_checked(tmp_path, _advanced_index_model(idx))
    from netdsl.forward import forward
    x = rng.standard_normal((1, 3, 4, 5)).astype(np.float32)
    got = forward(result.net, result.weights, {next(iter(result.inputs)): x})[
        result.outputs[0]]
    np.testing.assert_array_equal(got, x[:, :, idx[..., 0], idx[..., 1]])
    assert {lp.type for lp in result.net.layer} <= {"Input", "Reshape", "Slice", "Concat",
                                                    "Split", "Silence"}


def test_transpose_moving_batch_read_by_another_op_names_the_transpose(tmp_path):
    """A moved value whose batch items do not stay apart: the error comes when a
    reader needs a blob, and names the first node that had no exact layer."""
    require("onnx")
    from netdsl.errors import NetdslError
    from netdsl.onnx import convert
    h = require("onnx").helper
    nodes = [h.make_node("Transpose", ["x"], ["t"], name="to_front", perm=[1, 0, 2, 3]),
             h.make_node("Relu", ["t"], ["y"], name="after")]
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", 1, [2, 3, 4, 5])],
                     [h.make_tensor_value_info("y", 1, None)])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 18)])
    with pytest.raises(NetdslError) as info:
        convert(m, check=False)
    assert "Transpose node 'to_front' (opset 18): this permutation moves the batch axis" \
        in str(info.value), str(info.value)
    # moved on through GatherND and a Transpose that does not bring the batch
    # axis back: still the first mover's error, when Relu needs a blob
    m = _advanced_index_model(np.zeros((2, 2), np.int64), perm_out=[2, 0, 1], tail="Relu")
    with pytest.raises(NetdslError, match="Transpose node 'to_front' .*moves the batch axis"):
        convert(m, check=False)


def test_where_with_a_constant_condition(tmp_path):
    """Where(mask, a, b) with a constant mask (how the dynamo exporter writes an
    uneven adaptive pooling): a * m + b * (1 - m), exact; a computed condition is
    refused, naming the node."""
    onnx = require("onnx")
    require("onnxruntime")
    require("cv2")
    from netdsl.errors import NetdslError
    from netdsl.onnx import convert
    h = onnx.helper
    mask = np.array([[True, False, False], [False, True, True]]).reshape(1, 1, 2, 3)
    inits = [onnx.numpy_helper.from_array(mask, "m"),
             onnx.numpy_helper.from_array(np.float32(-7.5).reshape(()), "c")]
    nodes = [h.make_node("Relu", ["x"], ["r"], name="relu"),
             h.make_node("Where", ["m", "x", "c"], ["y1"], name="w1"),
             h.make_node("Where", ["m", "c", "r"], ["y2"], name="w2"),
             h.make_node("Where", ["m", "x", "r"], ["y3"], name="w3")]
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", 1, [1, 2, 2, 3])],
                     [h.make_tensor_value_info(o, 1, None) for o in ("y1", "y2", "y3")],
                     initializer=inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 18)])
    m.ir_version = 8
    convert_checked(tmp_path, m)
    nodes = [h.make_node("Greater", ["x", "c"], ["gt"], name="gt"),
             h.make_node("Where", ["gt", "x", "c"], ["y"], name="w")]
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", 1, [1, 2, 2, 3])],
                     [h.make_tensor_value_info("y", 1, None)], initializer=inits[1:])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 18)])
    with pytest.raises(NetdslError, match="node 'gt'"):
        convert(m, check=False)


def test_gather_of_a_consecutive_run_with_shaped_indices(tmp_path):
    """How the dynamo exporter writes as_strided on a channels-last tensor: Reshape
    to 1-D, then Gather on axis 0 with arange(...) indices shaped like the result:
    a run of consecutive positions, so a Slice (here none) and a Reshape."""
    onnx = require("onnx")
    require("onnxruntime")
    require("cv2")
    h = onnx.helper
    inits = [onnx.numpy_helper.from_array(np.asarray([-1], np.int64), "flat"),
             onnx.numpy_helper.from_array(np.arange(120, dtype=np.int64).reshape(1, 4, 5, 6),
                                          "idx")]
    nodes = [h.make_node("Reshape", ["x", "flat"], ["v"], name="to_1d"),
             h.make_node("Gather", ["v", "idx"], ["y"], name="g", axis=0)]
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", 1, [1, 4, 5, 6])],
                     [h.make_tensor_value_info("y", 1, None)], initializer=inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 18)])
    m.ir_version = 8
    result = convert_checked(tmp_path, m)
    assert {lp.type for lp in result.net.layer} <= {"Input", "Reshape", "Split"}


# -- issue 26: erf GELU, slice writes, --outputs, refusals; issue 21 item 6 ----------------

def modern_cases():
    if not HAVE_TORCH:
        return []
    from torch_cases import modern
    return [(c, e) for c in sorted(modern()) for e in ("dynamo", "legacy13")]


@pytest.mark.parametrize("case,exporter", modern_cases())
def test_modern_module(tmp_path, torch, case, exporter):
    """ConvNeXt block (Erf or Gelu and LayerNormalization), LayerNorm2d, YOLOv5
    Detect (ScatterND, between Transposes in the dynamo exporter's form), v7:
    netdsl's forward and OpenCV within 1e-4 of onnxruntime."""
    from torch_cases import modern
    model, shape = modern()[case]
    run_case(torch, tmp_path, case, model, [shape], exporter, target="opencv")


def _unary_node(op_type, opset=20, **attrs):
    onnx = require("onnx")
    h = onnx.helper
    g = h.make_graph([h.make_node(op_type, ["x"], ["y"], name="n", **attrs)], "g",
                     [h.make_tensor_value_info("x", 1, [1, 2, 50, 40])],
                     [h.make_tensor_value_info("y", 1, None)])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", opset)])
    m.ir_version = 9
    return m


@pytest.mark.parametrize("op_type,attrs", [("Gelu", {}), ("Erf", {}),
                                           ("Gelu", {"approximate": "tanh"})])
def test_gelu_and_erf_nodes(tmp_path, op_type, attrs):
    """ONNX Gelu (opset 20, both forms) and Erf: stock layers, within 1e-4 of
    onnxruntime in netdsl's forward and OpenCV (inputs: standard normal)."""
    require("onnxruntime")
    result = convert_checked(tmp_path, _unary_node(op_type, **attrs))
    assert result.parity.max_rel < 1e-6, result.parity.table()


def test_scatternd_with_constant_indices(tmp_path):
    """ScatterND writing rows and single values of a computed tensor with another
    computed tensor: copies, bit-exact against onnxruntime."""
    onnx = require("onnx")
    require("onnxruntime")
    h = onnx.helper
    rows = np.array([[0, 2], [0, 0]], np.int64)             # (data[0,2], data[0,0]) rows
    g = h.make_graph(
        [h.make_node("Relu", ["x"], ["u"]),
         h.make_node("Slice", ["x", "s0", "s1", "ax"], ["v0"]),
         h.make_node("Reshape", ["v0", "vs"], ["v"]),
         h.make_node("ScatterND", ["u", "idx", "v"], ["y"], name="sc")], "g",
        [h.make_tensor_value_info("x", 1, [1, 3, 4, 5])],
        [h.make_tensor_value_info("y", 1, None)],
        initializer=[onnx.numpy_helper.from_array(rows, "idx"),
                     onnx.numpy_helper.from_array(np.array([1], np.int64), "s0"),
                     onnx.numpy_helper.from_array(np.array([3], np.int64), "s1"),
                     onnx.numpy_helper.from_array(np.array([1], np.int64), "ax"),
                     onnx.numpy_helper.from_array(np.array([2, 4, 5], np.int64), "vs")])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    result = convert_checked(tmp_path, m)
    assert result.parity.max_rel == 0, result.parity.table()


def test_outputs_cut_at_values(tmp_path, torch):
    """--outputs VALUE,...: the net ends at those values (before a MatMul of two
    computed tensors, which alone would refuse the model) and the check runs
    onnxruntime up to them."""
    from netdsl.errors import NetdslError
    from netdsl.onnx import convert

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)

        def forward(self, x):
            y = torch.relu(self.conv(x)).flatten(2)
            return y @ y.transpose(1, 2)
    path = export(torch, Net().eval(), [(1, 3, 8, 8)], tmp_path / "m.onnx", "legacy13")
    with pytest.raises(NetdslError) as err:
        convert(path)
    assert "two computed tensors" in str(err.value) and "no stock Caffe form" in str(err.value)
    assert "--outputs" in str(err.value)
    import onnx
    relu = next(n.output[0] for n in onnx.load(path).graph.node if n.op_type == "Relu")
    result = convert(path, outputs=[relu])
    assert result.parity.ok and result.onnx_outputs == [relu], result.parity.table()
    assert {lp.type for lp in result.net.layer} == {"Input", "Convolution", "ReLU"}
    with pytest.raises(NetdslError, match="did you mean"):
        convert(path, outputs=[relu + "x"])


def test_resnet34_outputs_are_the_models(torch, tmp_path):
    """Real Caffe listed `linear`, `node_max_pool2d/slice1_1`, `.../slice2_1` as
    resnet34's outputs via ONNX; with the remainders silenced caffe.Net's outputs
    (Net::Init: tops no later layer reads) are exactly the graph's."""
    tv = require("torchvision")
    from netdsl.compat import caffe
    from netdsl.onnx import convert
    path = export(torch, tv.models.resnet34(weights=None).eval(), [(1, 3, 64, 64)],
                  tmp_path / "r.onnx", "dynamo")
    result = convert(path, check=False)
    result.save(str(tmp_path / "out"))
    net = caffe.Net(str(tmp_path / "out" / "deploy.prototxt"), caffe.TEST)
    assert net.outputs == sorted(result.outputs) and len(result.outputs) == 1


@pytest.mark.parametrize("content", [b"", b"hello, not a model\n", b"\x08\x07",
                                     bytes(range(256)) * 8])
@pytest.mark.parametrize("check", [[], ["--no-check"]])
def test_cli_refuses_files_that_are_not_onnx(tmp_path, content, check):
    """Empty, graph-less (b"\\x08\\x07" parses as a ModelProto with only
    ir_version) and non-ONNX files: one located line, exit 2, nothing written."""
    require("onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(content)
    r = _cli(str(bad), "-o", str(tmp_path / "no"), *check)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith("netdsl: error: %s: " % bad)
    assert not (tmp_path / "no").exists()


def test_refusal_lists_every_blocker(tmp_path):
    """A NonZero (data-dependent shape: no stock Caffe form) and an independent Sin
    (no converter yet) are both named in the one error, the former first, located
    at the file; the Cast after the NonZero is not a blocker of its own."""
    onnx = require("onnx")
    from netdsl.errors import NetdslError
    from netdsl.onnx import convert
    h = onnx.helper
    g = h.make_graph([h.make_node("Sin", ["x"], ["s"], name="the_sin"),
                      h.make_node("NonZero", ["x"], ["i"], name="nz"),
                      h.make_node("Cast", ["i"], ["f"], to=1, name="c"),
                      h.make_node("Relu", ["x"], ["y"])], "g",
                     [h.make_tensor_value_info("x", 1, [1, 2, 3, 3])],
                     [h.make_tensor_value_info(v, 1, None) for v in ("f", "s", "y")])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    path = _save(m, tmp_path / "m.onnx")
    with pytest.raises(NetdslError) as err:
        convert(path, check=False)
    text = str(err.value)
    assert text.startswith(path + ": ")
    assert "NonZero (node 'nz'): a data-dependent shape: no stock Caffe form exists" in text
    assert "2 blockers in all" in text and "Sin x1 (not written yet" in text
    assert "Cast" not in text
