"""What deployers convert today (issue 26): erf GELU, writes into slices, cut
points (--outputs) and refusals that name every blocker.

Expected values: PyTorch's own float32 outputs on the same inputs, and for the
GELU/erf approximation the float64 formulas of Python's math module
(``x * erfc(-x / sqrt 2) / 2``, ``math.erf``) at the same float32 points.
"""
from __future__ import annotations

import math
import os
import sys

import numpy as np
import pytest

from dnn_check import opencv_forward, require

HERE = os.path.dirname(os.path.abspath(__file__))
TOL = 1e-4
HAVE_TORCH = __import__("importlib").util.find_spec("torch") is not None


@pytest.fixture(scope="module")
def torch():
    mod = require("torch")
    require("cv2")
    mod.set_num_threads(2)
    sys.path.insert(0, HERE)
    return mod


def exact_gelu(x: np.ndarray) -> np.ndarray:
    """GELU in float64 at the float32 points: x * erfc(-x / sqrt(2)) / 2."""
    x = x.astype(np.float64)
    return x * 0.5 * np.array([math.erfc(-v / math.sqrt(2.0)) for v in x])


def _grid() -> np.ndarray:
    """A dense float32 grid over the range where GELU is not 0 or x, plus the
    region around 0 and the extremes of float32."""
    return np.concatenate([np.linspace(-13.5, 13.5, 1_000_000),
                           np.linspace(-1e-3, 1e-3, 20_001),
                           [1e-30, -1e-30, 1e-40, -1e-40, 1e30, -1e30, 3e38, -3e38]]
                          ).astype(np.float32)


def _gelu_net(torch, x, target="caffe"):
    from netdsl.torch import convert

    class Gelu(torch.nn.Module):
        def forward(self, v):
            return torch.nn.functional.gelu(v)
    return convert(Gelu().eval(), torch.from_numpy(x.reshape(1, 1, 1, -1)), check=False,
                   target=target)


def test_erf_gelu_is_within_1e6_relative_of_the_exact_value(torch):
    """Worst case over the whole grid (tails included, wherever GELU is a normal
    float32) in netdsl's forward, which computes as Caffe does in float32: below
    1e-6 relative to the exact GELU.  Against PyTorch's own float32 GELU (whose
    1 + erf form loses the tail to cancellation): below 1e-6 of the output's
    scale, the parity measure."""
    from netdsl.forward import forward
    x = _grid()
    result = _gelu_net(torch, x)
    ours = forward(result.net, result.weights, {"v": x.reshape(1, 1, 1, -1)})[
        "output"].reshape(-1).astype(np.float64)
    ref = exact_gelu(x)
    normal = np.abs(ref) >= np.finfo(np.float32).tiny
    rel = np.abs(ours - ref)[normal] / np.abs(ref[normal])
    assert rel.max() < 1e-6, (rel.max(), x[normal][rel.argmax()])
    assert np.abs(ours[~normal]).max() < np.finfo(np.float32).tiny   # tiny stays tiny
    finite = np.abs(x) < 1e10
    pt = torch.nn.functional.gelu(torch.from_numpy(x[finite])).double().numpy()
    assert np.abs(ours[finite] - pt).max() / np.abs(pt).max() < 1e-6
    types = {lp.type for lp in result.net.layer}
    assert types <= {"Input", "AbsVal", "ReLU", "Power", "Exp", "Eltwise", "Split"}, types


def test_erf_gelu_in_opencv(torch, tmp_path):
    """OpenCV dnn folds the two Power shifts that split |x| (so the square rounds
    once): still below 1e-6 relative for x >= -5 (GELU >= -1.5e-6), and below 1e-7
    of the scale over the whole grid."""
    x = _grid()
    x = x[np.abs(x) < 20]
    result = _gelu_net(torch, x, target="opencv")
    result.save(str(tmp_path))
    got = opencv_forward(str(tmp_path / "deploy.prototxt"), str(tmp_path / "model.caffemodel"),
                         {"v": x.reshape(1, 1, 1, -1)}, ["output"])["output"]
    got = got.reshape(-1).astype(np.float64)
    ref = exact_gelu(x)
    keep = (x >= -5) & (np.abs(ref) >= np.finfo(np.float32).tiny)   # OpenCV flushes denormals
    assert (np.abs(got - ref)[keep] / np.abs(ref[keep])).max() < 1e-6
    assert np.abs(got - ref).max() / np.abs(ref).max() < 1e-7


def test_erf_absolute_error(torch):
    """torch.erf: erfc(relu(-y)) - erfc(relu(y)); absolute error below 1e-6 (float32
    rounding of the erfc polynomial near t = 1, i.e. y near 0, dominates)."""
    from netdsl.forward import forward
    from netdsl.torch import convert

    class Erf(torch.nn.Module):
        def forward(self, v):
            return torch.erf(v)
    x = np.linspace(-6, 6, 200_001).astype(np.float32)
    result = convert(Erf().eval(), torch.from_numpy(x.reshape(1, 1, 1, -1)))
    assert result.parity.ok, result.parity.table()
    ours = forward(result.net, result.weights, {"v": x.reshape(1, 1, 1, -1)})["output"]
    ref = np.array([math.erf(v) for v in x.astype(np.float64)])
    assert np.abs(ours.reshape(-1) - ref).max() < 1e-6      # measured: 5.8e-7 near 0


def modern_cases():
    if not HAVE_TORCH:
        return []
    sys.path.insert(0, HERE)
    from torch_cases import modern
    return sorted(modern())


@pytest.mark.parametrize("case", modern_cases())
def test_modern_module(tmp_path, torch, case):
    """ConvNeXt block, LayerNorm2d, YOLOv5 Detect (in-place slice writes), its v7
    split/cat form, assorted slice writes: netdsl's forward and OpenCV dnn within
    1e-4 relative of PyTorch, for target='opencv' (stock layers OpenCV runs)."""
    from test_from_torch import check_files
    from torch_cases import modern, randomise
    from netdsl.torch import convert
    model, shape = modern()[case]
    model = randomise(model)
    torch.manual_seed(1)
    x = torch.randn(shape)
    result = convert(model, x, target="opencv")
    assert result.parity.ok, result.parity.table()
    assert result.parity.max_rel <= TOL
    assert check_files(tmp_path, result, model, (x,)) <= TOL


def test_functionalised_slice_writes(torch):
    """After run_decompositions, writes into slices are slice_scatter /
    select_scatter / index_put: Slice + Concat copies, bit-exact."""
    from torch_cases import SliceWrites
    from netdsl.torch import convert
    x = torch.randn(1, 4, 5, 6)
    program = torch.export.export(SliceWrites().eval(), (x,)).run_decompositions()
    targets = {str(n.target).split(".")[1] for n in program.graph.nodes
               if n.op == "call_function"}
    assert targets & {"slice_scatter", "select_scatter", "index_put"}, targets
    result = convert(program, x)
    assert result.parity.ok and result.parity.max_rel < 1e-6, result.parity.table()


def test_outputs_cut_the_net(torch, tmp_path):
    """--outputs / outputs=: the net ends at the named module outputs (and a graph
    node name); ops after them, even ones with no Caffe form, are not converted;
    the check compares those tensors with PyTorch's own intermediate values."""
    from netdsl.torch import convert

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
            self.head = torch.nn.Conv2d(4, 6, 1)

        def forward(self, x):
            y = self.head(self.stem(x)).flatten(2)
            return y @ y.transpose(1, 2)        # no stock Caffe form

    model = Net().eval()
    x = torch.randn(1, 3, 8, 8)
    result = convert(model, x, outputs=["stem", "head"])
    assert result.outputs == ["stem", "head"]
    assert result.parity.ok, result.parity.table()
    with torch.no_grad():
        want = [model.stem(x), model.head(model.stem(x))]
    from netdsl.forward import forward
    got = forward(result.net, result.weights, {"x": x.numpy()})
    for name, w in zip(result.outputs, want):
        assert np.abs(got[name] - w.numpy()).max() <= 1e-5 * np.abs(w.numpy()).max()
    assert "InnerProduct" not in {lp.type for lp in result.net.layer}
    from netdsl.errors import NetdslError
    with pytest.raises(NetdslError, match="did you mean `head`"):
        convert(model, x, outputs=["haed"])


def test_refusal_lists_every_blocker(torch):
    """Two independent blockers: both are in the one message, which is located at
    the first with no stock Caffe form (the product of two computed tensors), says
    which kind each is, and suggests --outputs with the module before it."""
    from netdsl.errors import NetdslError
    from netdsl.torch import convert

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Conv2d(3, 4, 1)
            self.b = torch.nn.Hardshrink()
            self.c = torch.nn.Conv2d(4, 4, 1)

        def forward(self, x):
            y = self.c(self.b(self.a(x))).flatten(2)
            return y @ y.transpose(1, 2)

    with pytest.raises(NetdslError) as err:
        convert(Net().eval(), torch.randn(1, 3, 4, 4))
    text = str(err.value)
    assert "2 blockers in all" in text
    assert "aten.hardshrink" in text and "not written yet" in text
    assert "a product of two computed tensors" in text and "no stock Caffe form" in text
    assert err.value.file == __file__ and err.value.line is not None
    assert "--outputs" in text


def test_data_dependent_shapes_have_no_stock_form(torch):
    from netdsl.errors import NetdslError
    from netdsl.torch import convert

    class Net(torch.nn.Module):
        def forward(self, x):
            return x[x > 0]
    with pytest.raises(NetdslError, match="data-dependent shape.*no stock Caffe form"):
        convert(Net().eval(), torch.randn(1, 3, 4, 4))


def test_swin_t_refusal_names_the_attention_product(torch):
    """torchvision's swin_t: refused in one message that leads with the attention
    matmul (a product of two computed tensors, no stock Caffe form) and points at
    --outputs with the patch embedding before it."""
    tv = require("torchvision")
    from netdsl.errors import NetdslError
    from netdsl.torch import convert
    model = tv.models.swin_t(weights=None).eval()
    with pytest.raises(NetdslError) as err:
        convert(model, torch.randn(1, 3, 64, 64))
    text = str(err.value)
    assert "aten.matmul" in text.split(" -- ")[0]
    assert "a product of two computed tensors" in text and "no stock Caffe form exists" in text
    assert "attn" in text and "attention" in text
    assert "--outputs features.0" in text
    assert err.value.file.endswith("swin_transformer.py")


def test_resnet34_outputs_are_the_models(torch, tmp_path):
    """A ceil-mode pool's cut leaves Slice remainders; they go to a Silence layer,
    so caffe.Net's outputs (Caffe's Net::Init rule: a top no later layer reads)
    are exactly the model's one output."""
    tv = require("torchvision")
    from netdsl.compat import caffe
    from netdsl.torch import convert
    model = tv.models.resnet34(weights=None).eval()
    result = convert(model, torch.randn(1, 3, 64, 64), input_names=["data"], check=False)
    result.save(str(tmp_path))
    net = caffe.Net(str(tmp_path / "deploy.prototxt"), caffe.TEST)
    assert net.outputs == ["output"]
    assert "Silence" in {lp.type for lp in result.net.layer}
