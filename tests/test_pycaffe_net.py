"""``caffe.Net`` in numpy (netdsl.compat.caffe): set-up, blobs, forward, weights.

Expectations come from Caffe's sources (net.cpp, insert_splits.cpp, blob.cpp,
pycaffe.py, _caffe.cpp), from hand computation, or from OpenCV dnn.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from dnn_check import require

from netdsl.cli import main
from netdsl.compat import caffe
from netdsl.errors import NetdslError
from netdsl.weights import open_caffemodel, write_caffemodel

L, P = caffe.layers, caffe.params


def write(tmp_path, text, name="net.prototxt"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


IP_NET = """name: 'ipnet'
layer { name: 'data' type: 'Input' top: 'data' input_param { shape { dim: 2 dim: 3 } } }
layer { name: 'ip' type: 'InnerProduct' bottom: 'data' top: 'ip'
  inner_product_param { num_output: 4 weight_filler { type: 'gaussian' std: 1 }
                        bias_filler { type: 'constant' value: -2 } } }
layer { name: 'relu' type: 'ReLU' bottom: 'ip' top: 'ip' }
"""


# -- set-up ---------------------------------------------------------------------------

def test_constructors_phase_and_fillers(tmp_path):
    path = write(tmp_path, IP_NET)
    net = caffe.Net(path, caffe.TEST)
    assert net.phase == caffe.TEST == 1
    assert list(net.blobs) == ["data", "ip"]  # in-place ReLU makes no new blob
    assert net.inputs == ["data"] and net.outputs == ["ip"]
    w, b = net.params["ip"]
    assert w.shape == (4, 3) and b.shape == (4,)
    assert np.all(b.data == -2)  # constant filler, value -2
    assert w.data.std() > 0      # gaussian filler drew something
    assert [l.type for l in net.layers] == ["Input", "InnerProduct", "ReLU"]
    assert [len(l.blobs) for l in net.layers] == [0, 2, 0]
    assert list(net.layer_dict) == net._layer_names == ["data", "ip", "relu"]
    # legacy Net(proto, weights, phase) and Net(proto, phase, weights=)
    net.params["ip"][0].data[...] = np.arange(12).reshape(4, 3)
    model = str(tmp_path / "w.caffemodel")
    net.save(model)
    for other in (caffe.Net(path, model, caffe.TEST), caffe.Net(path, caffe.TRAIN, weights=model)):
        assert np.array_equal(other.params["ip"][0].data, np.arange(12).reshape(4, 3))
        assert np.all(other.params["ip"][1].data == -2)
    assert caffe.Net(path, caffe.TRAIN, weights=model).phase == caffe.TRAIN


LEVELS = """
layer { name: 'data' type: 'Input' top: 'data' input_param { shape { dim: 1 dim: 2 } } }
layer { name: 'always' type: 'Power' bottom: 'data' top: 'always' }
layer { name: 'lvl2' type: 'Power' bottom: 'data' top: 'lvl2' include { min_level: 2 } }
layer { name: 'notx' type: 'Power' bottom: 'data' top: 'notx' exclude { stage: 'x' } }
layer { name: 'xy' type: 'Power' bottom: 'data' top: 'xy' include { stage: 'x' stage: 'y' } }
layer { name: 'train' type: 'Power' bottom: 'data' top: 'train' include { phase: TRAIN } }
"""


@pytest.mark.parametrize("kwargs, phase, kept", [
    # StateMeetsRule (net.cpp): min_level <= level; every stage of a rule present;
    # an exclude rule met drops the layer
    ({}, caffe.TEST, ["always", "notx"]),
    ({"level": 2}, caffe.TEST, ["always", "lvl2", "notx"]),
    ({"stages": ["x"]}, caffe.TEST, ["always"]),
    ({"stages": ["x", "y"]}, caffe.TEST, ["always", "xy"]),
    ({}, caffe.TRAIN, ["always", "notx", "train"]),
])
def test_level_stage_phase_filtering(tmp_path, kwargs, phase, kept):
    net = caffe.Net(write(tmp_path, LEVELS), phase, **kwargs)
    names = [n for n in net._layer_names if n != "data" and "split" not in n]
    assert names == kept


def test_split_layers_as_insert_splits_names_them(tmp_path):
    # insert_splits.cpp: a top read by k > 1 bottoms gets layer
    # "<blob>_<layer>_<top index>_split" with tops "..._split_<i>", placed right
    # after the producer; the readers take them in order
    net = caffe.Net(write(tmp_path, LEVELS), caffe.TEST, level=2)
    assert net._layer_names[:2] == ["data", "data_data_0_split"]
    split = net.layers[1]
    assert split.type == "Split"
    assert net.top_names["data_data_0_split"] == ["data_data_0_split_%d" % i for i in range(3)]
    assert net.bottom_names["always"] == ["data_data_0_split_0"]
    assert net.bottom_names["lvl2"] == ["data_data_0_split_1"]
    assert net.bottom_names["notx"] == ["data_data_0_split_2"]
    assert list(net.blobs)[:4] == ["data"] + ["data_data_0_split_%d" % i for i in range(3)]
    x = np.array([[1.5, -2.0]], dtype=np.float32)
    out = net.forward(data=x)
    for name in ("always", "lvl2", "notx"):
        assert np.array_equal(out[name], x)  # Power with defaults is the identity
    # a top with a loss weight counts as one more reader; the weight moves to split top 0
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 2]))
    n.e = L.Power(n.data, loss_weight=1)
    n.f = L.Power(n.e)
    net = caffe.Net(write(tmp_path, str(n.to_proto()), "loss.prototxt"), caffe.TEST)
    assert net.top_names["e_e_0_split"] == ["e_e_0_split_0", "e_e_0_split_1"]
    assert net.bottom_names["f"] == ["e_e_0_split_1"]
    assert net.blob_loss_weights["e_e_0_split_0"] == 1
    assert net.blob_loss_weights["e_e_0_split_1"] == 0


def test_outputs_are_sorted_and_inputs_are_input_tops(tmp_path):
    # net.cpp keeps the unconsumed blobs in a std::set: outputs come sorted
    n = caffe.NetSpec()
    n.b = L.Input(shape=dict(dim=[1, 1]))
    n.zz = L.Power(n.b)
    n.aa = L.Power(n.b)
    net = caffe.Net(write(tmp_path, str(n.to_proto())), caffe.TEST)
    assert net.outputs == ["aa", "zz"]
    assert net.inputs == ["b"]


def test_dummy_data_constant_tops_are_filled_once(tmp_path):
    # DummyDataLayer fills constant tops at set-up only (refill_ is false for them)
    text = """layer { name: 'd' type: 'DummyData' top: 'a' top: 'b'
      dummy_data_param { shape { dim: 2 dim: 3 } shape { dim: 2 }
        data_filler { type: 'gaussian' std: 1 } data_filler { type: 'constant' value: 7 } } }"""
    net = caffe.Net(write(tmp_path, text), caffe.TRAIN)
    assert np.all(net.blobs["b"].data == 7)
    assert np.all(net.blobs["a"].data == 0)  # gaussian tops are drawn at each forward
    net.blobs["b"].data[...] = [1, 2]
    net.forward()
    assert list(net.blobs["b"].data) == [1, 2]
    assert net.blobs["a"].data.std() > 0


# -- blobs ----------------------------------------------------------------------------

def test_blob_object():
    b = caffe.Blob((2, 3))
    # Blob::LegacyShape(i): the axis when it exists, else 1
    assert (b.num, b.channels, b.height, b.width, b.count) == (2, 3, 1, 1, 6)
    d = b.data
    d[...] = 5
    b.reshape(2, 3)
    assert b.data is d                     # same shape: the same array
    b.reshape(1, 2)                        # smaller: the same memory (capacity kept)
    assert np.shares_memory(b.data, d) and b.data.shape == (1, 2)
    b.reshape(4, 4)                        # larger: new memory, zeros
    assert not np.shares_memory(b.data, d) and np.all(b.data == 0)
    assert b.diff.shape == (4, 4) and not b.diff.any()
    with pytest.raises(ValueError):
        b.reshape(-1, 2)


def test_reshape_and_forward_shapes(tmp_path):
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 2, 9, 9]))
    n.conv = L.Convolution(n.data, num_output=3, kernel_size=3, stride=2, pad=1,
                           weight_filler=dict(type="constant", value=1))
    net = caffe.Net(write(tmp_path, str(n.to_proto())), caffe.TEST)
    # (H + 2 pad - kernel) / stride + 1 = (9 + 2 - 3) / 2 + 1 = 5
    assert net.blobs["conv"].shape == (1, 3, 5, 5)
    net.blobs["data"].reshape(2, 2, 13, 7)
    net.reshape()
    assert net.blobs["conv"].shape == (2, 3, 7, 4)  # (13+2-3)/2+1 = 7, (7+2-3)/2+1 = 4
    net.blobs["data"].data[...] = 1
    out = net.forward()
    # all-ones kernel 2x3x3 over ones: 18 inside, fewer at padded borders; corner 2*2*2 = 8
    assert out["conv"][0, 0, 0, 0] == 8 and out["conv"][1, 2, 3, 2] == 18
    # a blob reshaped without net.reshape(): each layer reshapes its tops in forward
    net.blobs["data"].reshape(1, 2, 5, 5)
    net.blobs["data"].data[...] = 1
    assert net.forward()["conv"].shape == (1, 3, 3, 3)
    # an input whose channels no longer fit the parameters is refused by reshape()
    net.blobs["data"].reshape(1, 4, 5, 5)
    with pytest.raises(ValueError):
        net.reshape()


# -- forward --------------------------------------------------------------------------

def test_forward_matches_hand_inner_product(tmp_path):
    net = caffe.Net(write(tmp_path, IP_NET), caffe.TEST)
    w = np.array([[1, 0, 0], [0, 2, 0], [0, 0, -3], [1, 1, 1]], dtype=np.float32)
    net.params["ip"][0].data[...] = w
    x = np.array([[1, 2, 3], [-1, 0, 1]], dtype=np.float32)
    out = net.forward(data=x)
    # relu(x . w^T - 2)
    assert np.array_equal(out["ip"], np.maximum(x @ w.T - 2, 0))
    assert out["ip"] is net.blobs["ip"].data  # pycaffe returns the blobs' arrays
    # start/end by layer name: only 'ip' runs, from whatever 'data' holds
    net.blobs["data"].data[...] = 0
    out = net.forward(start="ip", end="ip")
    assert set(out) == {"ip"} and np.array_equal(out["ip"], np.full((2, 4), -2))
    out = net.forward(start="relu", blobs=["data"])
    assert set(out) == {"ip", "data"} and not out["ip"].any()
    with pytest.raises(ValueError) as info:
        net.forward(start="nope")
    assert isinstance(info.value, NetdslError)
    with pytest.raises(NetdslError, match="Input blob arguments do not match net inputs."):
        net.forward(image=x)
    with pytest.raises(NetdslError, match="Input is not batch sized"):
        net.forward(data=x[:1])


def test_forward_all_batches(tmp_path):
    net = caffe.Net(write(tmp_path, IP_NET), caffe.TEST)
    net.params["ip"][0].data[...] = np.eye(4, 3)
    net.params["ip"][1].data[...] = 0
    x = np.arange(15, dtype=np.float32).reshape(5, 3)
    out = net.forward_all(data=x)
    assert out["ip"].shape == (5, 4)
    assert np.array_equal(out["ip"][:, :3], x) and not out["ip"][:, 3].any()


def test_training_needs_caffe(tmp_path):
    net = caffe.Net(write(tmp_path, IP_NET), caffe.TEST)
    with pytest.raises(RuntimeError, match="training needs Caffe") as info:
        net.backward()
    assert isinstance(info.value, NetdslError)
    with pytest.raises(RuntimeError, match="training needs Caffe"):
        caffe.SGDSolver("solver.prototxt")
    net.params["ip"][0].diff[...] = 3
    net.clear_param_diffs()
    assert not net.params["ip"][0].diff.any()


# -- weights --------------------------------------------------------------------------

def test_copy_from_rules(tmp_path):
    path = write(tmp_path, IP_NET)
    net = caffe.Net(path, caffe.TEST)
    held = net.params["ip"][0].data
    good = str(tmp_path / "good.caffemodel")
    w = np.arange(12, dtype=np.float32).reshape(4, 3)
    write_caffemodel(good, [("ip", "InnerProduct", [w, np.ones(4, np.float32)]),
                            ("unknown", "InnerProduct", [np.zeros(2, np.float32)])])
    net.copy_from(good)  # layers the net lacks are ignored ("Ignoring source layer")
    assert net.params["ip"][0].data is held and np.array_equal(held, w)
    # a blob stored with legacy num/channels/height/width dims 1x1x4x3 matches 4x3
    # (Blob::ShapeEquals compares the legacy shape for such blobs)
    legacy = str(tmp_path / "legacy.caffemodel")
    write_caffemodel(legacy, [("ip", "InnerProduct", [w + 1, np.zeros(4, np.float32)])],
                     v1=True)
    net.copy_from(legacy)
    assert np.array_equal(held, w + 1)
    bad = str(tmp_path / "bad.caffemodel")
    write_caffemodel(bad, [("ip", "InnerProduct", [np.zeros((3, 4), np.float32),
                                                   np.zeros(4, np.float32)])])
    with pytest.raises(NetdslError, match=r"Cannot copy param 0 weights from layer 'ip'; "
                                          r"shape mismatch.  Source param shape is 3 4 \(12\); "
                                          r"target param shape is 4 3 \(12\)"):
        net.copy_from(bad)
    few = str(tmp_path / "few.caffemodel")
    write_caffemodel(few, [("ip", "InnerProduct", [w])])
    with pytest.raises(NetdslError, match="Incompatible number of blobs for layer ip"):
        caffe.Net(path, caffe.TEST, weights=few)


def test_save_writes_every_layer_and_reloads(tmp_path):
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 2]))
    n.a = L.InnerProduct(n.data, num_output=2, weight_filler=dict(type="xavier"))
    n.b = L.Power(n.data)
    net = caffe.Net(write(tmp_path, str(n.to_proto())), caffe.TEST)
    out = str(tmp_path / "saved.caffemodel")
    net.save(out)
    with open_caffemodel(out) as model:
        # Net::ToProto writes every layer, the Split included, by name and type
        assert model.names() == net._layer_names == ["data", "data_data_0_split", "a", "b"]
        assert [l.type for l in model.layers] == ["Input", "Split", "InnerProduct", "Power"]
        assert np.array_equal(model.arrays("a")[0], net.params["a"][0].data)
    again = caffe.Net(write(tmp_path, str(n.to_proto()), "again.prototxt"), caffe.TEST,
                      weights=out)
    assert np.array_equal(again.params["a"][0].data, net.params["a"][0].data)


def test_share_with_shares_memory(tmp_path):
    path = write(tmp_path, IP_NET)
    a, b = caffe.Net(path, caffe.TEST), caffe.Net(path, caffe.TEST)
    b.share_with(a)
    a.params["ip"][0].data[...] = 9
    assert np.all(b.params["ip"][0].data == 9)


def test_shared_params_are_one_array(tmp_path):
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 2]))
    n.a = L.InnerProduct(n.data, num_output=2, param=[dict(name="w"), dict(name="b")])
    n.b = L.InnerProduct(n.data, num_output=2, param=[dict(name="w"), dict(name="b")])
    net = caffe.Net(write(tmp_path, str(n.to_proto())), caffe.TEST)
    net.params["a"][0].data[...] = [[1, 2], [3, 4]]
    assert np.array_equal(net.params["b"][0].data, [[1, 2], [3, 4]])
    out = net.forward(data=np.array([[1, 1]], np.float32))
    assert np.array_equal(out["a"], out["b"]) and list(out["a"][0]) == [3, 7]


def test_hdf5_round_trip_and_layout(tmp_path):
    h5py = require("h5py")
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 2]))
    n.a = L.InnerProduct(n.data, num_output=2, param=[dict(name="w"), dict()],
                         weight_filler=dict(type="gaussian", std=1))
    n.b = L.InnerProduct(n.a, num_output=2, param=[dict(name="w"), dict()])
    path = write(tmp_path, str(n.to_proto()))
    net = caffe.Net(path, caffe.TEST)
    out = str(tmp_path / "w.h5")
    net.save_hdf5(out)
    with h5py.File(out, "r") as f:
        # Net::ToHDF5: data/<layer>/<index>, shared params only under their owner
        assert sorted(f["data"]) == ["a", "b", "data"]
        assert sorted(f["data/a"]) == ["0", "1"] and sorted(f["data/b"]) == ["1"]
        assert np.array_equal(f["data/a/0"][...], net.params["a"][0].data)
    other = caffe.Net(path, caffe.TEST)
    other.load_hdf5(out)
    for name in ("a", "b"):
        for x, y in zip(net.params[name], other.params[name]):
            assert np.array_equal(x.data, y.data)
    third = caffe.Net(path, caffe.TEST, weights=out)  # weights= takes HDF5 files too
    assert np.array_equal(third.params["a"][0].data, net.params["a"][0].data)


# -- errors as pycaffe's ----------------------------------------------------------------

def _coord_net(pool=2, dstride=2, dpad=0):
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 32, 32]))
    n.conv = L.Convolution(n.data, num_output=2, kernel_size=3)
    n.pool = L.Pooling(n.conv, pool=P.Pooling.MAX, kernel_size=pool, stride=pool)
    n.up = L.Deconvolution(n.pool, num_output=2, kernel_size=2 * dstride, stride=dstride,
                           pad=dpad)
    return n


def test_error_classes_are_pycaffes():
    from netdsl.compat.caffe.coord_map import coord_map_from_to, crop
    n = _coord_net(pool=3, dstride=2)
    with pytest.raises(AssertionError) as info:        # pycaffe: assert (a == 1).all()
        crop(n.up, n.data)
    assert "scale mismatch" in info.value.explain()
    n = _coord_net(dpad=10)
    with pytest.raises(AssertionError):                # pycaffe: assert (b <= 0).all()
        crop(n.up, n.data)
    n = _coord_net()
    n.ip = L.InnerProduct(n.up, num_output=2)
    with pytest.raises(RuntimeError):                  # "Could not compute map ..."
        coord_map_from_to(n.ip, n.data)
    with pytest.raises(KeyError):                      # NetSpec.__getattr__: self.tops[name]
        n.missing
    with pytest.raises(TypeError, match=r"^Silence input 0 is not a Top "
                                        r"\(type is <class 'tuple'>\)$"):
        L.Silence(L.DummyData(ntop=2), ntop=0)


def test_cli_prints_the_located_explanation(tmp_path, capsys):
    script = tmp_path / "s.py"
    script.write_text("import caffe\nL = caffe.layers\nL.ReLU('data')\n")
    assert main(["pycaffe", str(script)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("netdsl: error: input 0 of ReLU is a str, not a top")
    assert "\n" not in err


# -- the caffe module -------------------------------------------------------------------

def test_layer_type_list_and_modes():
    types = caffe.layer_type_list()
    assert types == sorted(types)  # LayerRegistry keeps a std::map
    for t in ("Data", "Convolution", "InnerProduct", "Deconvolution", "Python", "Split"):
        assert t in types
    caffe.set_mode_cpu()
    caffe.set_mode_gpu()
    caffe.set_device(0)


def test_pycaffe_dash_m_runs_a_module(tmp_path, monkeypatch):
    (tmp_path / "pycaffe_module.py").write_text(
        "import caffe\nopen('out.txt', 'w').write(str(caffe.Net.__module__))\n")
    monkeypatch.chdir(tmp_path)
    assert main(["pycaffe", "-m", "pycaffe_module"]) == 0
    assert (tmp_path / "out.txt").read_text() == "netdsl.compat.caffe.net"


def test_fcn_style_transplant_interp_save_infer_against_opencv(tmp_path):
    cv2 = require("cv2")
    from netdsl.compat.caffe.coord_map import crop
    rng = np.random.default_rng(3)
    c = caffe.NetSpec()  # a classifier whose fc layer becomes a convolution
    c.data = L.Input(shape=dict(dim=[1, 3, 16, 16]))
    c.conv1 = L.Convolution(c.data, num_output=4, kernel_size=3, pad=1)
    c.pool1 = L.Pooling(c.conv1, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    c.fc = L.InnerProduct(c.pool1, num_output=5)
    cls = caffe.Net(write(tmp_path, str(c.to_proto()), "cls.prototxt"), caffe.TEST)
    for blobs in cls.params.values():
        for b in blobs:
            b.data[...] = rng.standard_normal(b.shape)
    f = caffe.NetSpec()
    f.data = L.Input(shape=dict(dim=[1, 3, 20, 24]))
    f.conv1 = L.Convolution(f.data, num_output=4, kernel_size=3, pad=9)
    f.pool1 = L.Pooling(f.conv1, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    f.fc = L.Convolution(f.pool1, num_output=5, kernel_size=8)
    f.up = L.Deconvolution(f.fc, convolution_param=dict(num_output=5, kernel_size=4, stride=2,
                                                        bias_term=False))
    f.score = crop(f.up, f.data)
    deploy = write(tmp_path, str(f.to_proto()), "fcn.prototxt")
    fcn = caffe.Net(deploy, caffe.TEST)
    for name in cls.params:  # FCN's surgery.transplant: copy by name, coerce by .flat
        for i, b in enumerate(cls.params[name]):
            fcn.params[name][i].data.flat = b.data.flat
    # FCN's surgery.interp with a hand bilinear kernel, size 4: factor 2, centre 1.5
    g = 1 - np.abs(np.arange(4) - 1.5) / 2
    fcn.params["up"][0].data[range(5), range(5), :, :] = np.outer(g, g)
    model = str(tmp_path / "fcn.caffemodel")
    fcn.save(model)
    net = caffe.Net(deploy, model, caffe.TEST)
    assert np.array_equal(net.params["fc"][0].data.ravel(), cls.params["fc"][0].data.ravel())
    x = rng.standard_normal((1, 3, 20, 24)).astype(np.float32)
    ours = net.forward(data=x)["score"]
    ref = cv2.dnn.readNetFromCaffe(deploy, model)
    ref.setInput(x)
    theirs = ref.forward("score")
    assert ours.shape == theirs.shape == (1, 5, 20, 24)
    assert np.abs(ours - theirs).max() <= 1e-4 * max(1.0, np.abs(theirs).max())


def test_net_file_errors(tmp_path):
    with pytest.raises(NetdslError, match="no such net prototxt"):
        caffe.Net(str(tmp_path / "none.prototxt"), caffe.TEST)
    with pytest.raises(TypeError):
        caffe.Net(write(tmp_path, IP_NET))
    path = write(tmp_path, IP_NET)
    net = caffe.Net(path, caffe.TEST)
    with pytest.raises(KeyError) as info:
        net.blobs["dat"]
    assert "did you mean `data`?" in info.value.explain()
    assert os.path.exists(path)


_PEAK = """
import sys
import netdsl.compat.caffe as caffe

def status(key):
    for line in open('/proc/self/status'):
        if line.startswith(key + ':'):
            return int(line.split()[1]) * 1024

base = status('VmRSS')
net = caffe.Net(sys.argv[1], caffe.TEST, weights=sys.argv[2])
print(status('VmHWM') - base)
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_loading_weights_peaks_near_their_size(tmp_path):
    import subprocess
    import sys
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3000]))
    n.ip = L.InnerProduct(n.data, num_output=2000, weight_filler=dict(type="gaussian", std=1))
    path = write(tmp_path, str(n.to_proto()))
    model = str(tmp_path / "big.caffemodel")
    w = np.ones((2000, 3000), np.float32)
    size = write_caffemodel(model, [("ip", "InnerProduct", [w, np.zeros(2000, np.float32)])])
    out = subprocess.run([sys.executable, "-c", _PEAK, path, model], capture_output=True,
                         text=True, check=True)
    peak = int(out.stdout.split()[-1])
    # the parameters are allocated once and read straight into: about 1x the file
    assert peak < 1.5 * size, (peak, size)


def test_data_layers_without_numpy_forward_say_what_to_do(tmp_path):
    text = """layer { name: 'd' type: 'Data' top: 'data' top: 'label'
      data_param { source: 'x' batch_size: 2 backend: LMDB }
      transform_param { crop_size: 4 } }
    layer { name: 'p' type: 'Power' bottom: 'data' top: 'p' power_param { scale: 2 } }"""
    net = caffe.Net(write(tmp_path, text), caffe.TEST)   # crop_size fixes the Data shape
    with pytest.raises(NetdslError, match="reads its data inside Caffe"):
        net.forward()
    net.blobs["data"].data[...] = 3
    assert np.all(net.forward(start="p")["p"] == 6)


def test_random_seed_makes_fillers_repeatable(tmp_path):
    path = write(tmp_path, IP_NET)
    caffe.set_random_seed(5)
    a = caffe.Net(path, caffe.TEST).params["ip"][0].data.copy()
    b = caffe.Net(path, caffe.TEST).params["ip"][0].data.copy()
    caffe.set_random_seed(5)
    c = caffe.Net(path, caffe.TEST).params["ip"][0].data.copy()
    assert not np.array_equal(a, b)   # a fresh draw per net, as Caffe's generator gives
    assert np.array_equal(a, c)       # the same seed, the same draws


def test_classifier_oversample_and_centre(tmp_path):
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 4, 4]))
    n.ip = L.InnerProduct(n.data, num_output=2)
    n.prob = L.Softmax(n.ip)
    deploy = write(tmp_path, str(n.to_proto()))
    rng = np.random.default_rng(1)
    w = rng.standard_normal((2, 48)).astype(np.float32)
    model = str(tmp_path / "c.caffemodel")
    write_caffemodel(model, [("ip", "InnerProduct", [w, np.zeros(2, np.float32)])])
    clf = caffe.Classifier(deploy, model, image_dims=(6, 6))
    im = rng.uniform(0, 1, (6, 6, 3)).astype(np.float32)

    def probs(crop):  # InnerProduct on the C x H x W crop, then softmax
        z = w @ crop.transpose(2, 0, 1).ravel()
        e = np.exp(z - z.max())
        return e / e.sum()

    # pycaffe's oversample: corners (0,0) (0,2) (2,0) (2,2), centre (1,1), then mirrors
    crops = [im[i:i + 4, j:j + 4] for i, j in ((0, 0), (0, 2), (2, 0), (2, 2), (1, 1))]
    crops += [c[:, ::-1] for c in crops]
    expect = np.mean([probs(c) for c in crops], axis=0)
    assert np.allclose(clf.predict([im])[0], expect, atol=1e-6)
    assert np.allclose(clf.predict([im], oversample=False)[0], probs(im[1:5, 1:5]), atol=1e-6)


LOSS_NET = """
layer { name: 'x' type: 'Input' top: 'x' top: 'label'
  input_param { shape { dim: 2 dim: 3 dim: 1 dim: 2 } shape { dim: 2 dim: 1 dim: 1 dim: 2 } } }
layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'x' bottom: 'label' top: 'loss' top: 'prob'
  loss_weight: 1 loss_weight: 0 loss_param { %s } }
layer { name: 'acc' type: 'Accuracy' bottom: 'x' bottom: 'label' top: 'acc' top: 'per_class'
  accuracy_param { top_k: %d %s } }
"""


def _hand_softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("loss_param, divisor", [
    # softmax_loss_layer.cpp get_normalizer: VALID (default) = labels not ignored,
    # FULL = N*H*W, BATCH_SIZE = N, NONE = 1; normalize: false means BATCH_SIZE
    ("ignore_label: 1", 3), ("ignore_label: 1 normalization: FULL", 4),
    ("ignore_label: 1 normalization: BATCH_SIZE", 2), ("ignore_label: 1 normalization: NONE", 1),
    ("ignore_label: 1 normalize: false", 2), ("", 4),
])
def test_softmax_with_loss_forward(tmp_path, loss_param, divisor):
    ignore = "ignore_label" in loss_param
    net = caffe.Net(write(tmp_path, LOSS_NET % (loss_param, 1, "")), caffe.TRAIN)
    x = np.array([[[[1, 0]], [[2, 5]], [[0, 1]]], [[[3, 3]], [[-1, 0]], [[0.5, 2]]]],
                 np.float32)
    label = np.array([0, 1, 2, 0], np.float32).reshape(2, 1, 1, 2)
    out = net.forward(x=x, label=label)
    p = _hand_softmax(x.astype(np.float64))
    lab = label.reshape(2, 2).astype(int)
    terms = [-np.log(p[n, lab[n, w], 0, w]) for n in range(2) for w in range(2)
             if not (ignore and lab[n, w] == 1)]
    assert out["loss"].shape == ()
    assert np.isclose(out["loss"], sum(terms) / divisor, rtol=1e-6)
    assert np.allclose(out["prob"], p, atol=1e-7)


def test_accuracy_forward_counts_ties_against(tmp_path):
    net = caffe.Net(write(tmp_path, LOSS_NET % ("", 1, "")), caffe.TEST)
    # per pixel (n, w): scores over 3 classes, the true label
    x = np.zeros((2, 3, 1, 2), np.float32)
    x[0, :, 0, 0] = [1, 3, 2]   # label 1: best -> right
    x[0, :, 0, 1] = [2, 2, 1]   # label 0: tied with class 1 -> wrong at top 1
    x[1, :, 0, 0] = [0, 1, 2]   # label 2: best -> right
    x[1, :, 0, 1] = [5, 1, 4]   # label 2: second -> wrong at top 1, right at top 2
    label = np.array([1, 0, 2, 2], np.float32).reshape(2, 1, 1, 2)
    out = net.forward(x=x, label=label)
    assert out["acc"] == np.float32(2) / np.float32(4)
    # per class: class 0 0/1, class 1 1/1, class 2 1/2
    assert np.array_equal(out["per_class"], np.array([0, 1, 0.5], np.float32))
    net = caffe.Net(write(tmp_path, LOSS_NET % ("", 2, ""), "k2.prototxt"), caffe.TEST)
    assert net.forward(x=x, label=label)["acc"] == 1
    net = caffe.Net(write(tmp_path, LOSS_NET % ("", 1, "ignore_label: 2"), "ig.prototxt"),
                    caffe.TEST)
    assert net.forward(x=x, label=label)["acc"] == np.float32(1) / np.float32(2)


def test_euclidean_loss_forward(tmp_path):
    n = caffe.NetSpec()
    n.a, n.b = L.Input(shape=[dict(dim=[2, 3]), dict(dim=[2, 3])], ntop=2)
    n.loss = L.EuclideanLoss(n.a, n.b)
    net = caffe.Net(write(tmp_path, str(n.to_proto())), caffe.TRAIN)
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.ones((2, 3), np.float32)
    # sum of squared differences / N / 2 = (1+0+1+4+9+16) / 2 / 2
    assert net.forward(a=a, b=b)["loss"] == np.float32(31 / 4)


PY_LAYERS = '''
import numpy as np
import caffe


class FeedLayer(caffe.Layer):
    """A data layer in FCN's voc_layers style: its param_str says what to give."""

    def setup(self, bottom, top):
        params = eval(self.param_str)
        self.value = params["value"]
        self.calls = []
        if len(top) != 2:
            raise Exception("Need to define two tops: data and label.")

    def reshape(self, bottom, top):
        top[0].reshape(1, 2, 3, 3)
        top[1].reshape(1, 1, 3, 3)

    def forward(self, bottom, top):
        self.calls.append(self.phase)
        top[0].data[...] = self.value
        top[1].data[...] = 1


class TwiceLayer(caffe.Layer):
    """x * 2 + its own blob."""

    def setup(self, bottom, top):
        self.blobs.add_blob(1)
        self.blobs[0].data[...] = 0.5

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        top[0].data[...] = bottom[0].data * 2 + self.blobs[0].data[0]
'''

PY_NET = """
layer { name: 'feed' type: 'Python' top: 'data' top: 'label'
  python_param { module: 'my_layers' layer: 'FeedLayer' param_str: "{'value': 3}" } }
layer { name: 'twice' type: 'Python' bottom: 'data' top: 'twice'
  python_param { module: 'my_layers' layer: 'TwiceLayer' } }
layer { name: 'score' type: 'Convolution' bottom: 'twice' top: 'score'
  convolution_param { num_output: 2 kernel_size: 1 weight_filler { type: 'constant' value: 1 } } }
layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'score' bottom: 'label' top: 'loss' }
"""


def test_python_layers_run_as_pycaffe_runs_them(tmp_path, monkeypatch):
    (tmp_path / "my_layers.py").write_text(PY_LAYERS)
    monkeypatch.syspath_prepend(str(tmp_path))
    import sys
    monkeypatch.setitem(sys.modules, "caffe", caffe)
    net = caffe.Net(write(tmp_path, PY_NET), caffe.TRAIN)
    feed, twice = net.layers[0], net.layers[1]
    assert feed.type == "Python" and isinstance(feed, caffe.Layer) and feed.value == 3
    assert net.blobs["data"].shape == (1, 2, 3, 3) and net.blobs["score"].shape == (1, 2, 3, 3)
    assert list(net.params) == ["twice", "score"]  # a Python layer's own blobs are params
    out = net.forward()
    assert feed.calls == [caffe.TRAIN]
    # twice: 3 * 2 + 0.5 = 6.5 per channel; score: 1x1 conv of ones over 2 channels = 13 for
    # both classes, so softmax gives 1/2 each: loss = -log(1/2) averaged over 9 labels
    assert np.all(net.blobs["twice"].data == 6.5) and np.all(net.blobs["score"].data == 13)
    assert np.isclose(out["loss"], np.log(2), rtol=1e-6)
    saved = str(tmp_path / "py.caffemodel")
    net.save(saved)
    with open_caffemodel(saved) as model:
        assert model.layer("twice").shapes == [(1,)]


def test_index_views_match_the_names(tmp_path):
    net = caffe.Net(write(tmp_path, LEVELS), caffe.TEST, level=2)
    # pycaffe builds inputs/outputs/top_names from these indices into _blob_names
    assert [net._blob_names[i] for i in net._inputs] == net.inputs
    assert [net._blob_names[i] for i in net._outputs] == net.outputs
    for i, name in enumerate(net._layer_names):
        assert [net._blob_names[k] for k in net._top_ids(i)] == net.top_names[name]
        assert [net._blob_names[k] for k in net._bottom_ids(i)] == net.bottom_names[name]


def test_netspec_field_errors_are_protobufs_classes():
    # pycaffe's assign_proto does getattr/setattr on the message, so protobuf decides:
    # an unknown field is an AttributeError, an unknown enum label a ValueError, a
    # value of the wrong type a TypeError, a non-dict for a message field an AttributeError
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 4, 4]))
    cases = [
        (dict(kernel_sizee=3), AttributeError),
        (dict(kernel_size=3, num_output="two"), TypeError),
        (dict(kernel_size=3, num_output=1, weight_filler=3), AttributeError),
        (dict(kernel_size=3, num_output=[1, 2]), TypeError),
    ]
    for kwargs, cls in cases:
        n.conv = L.Convolution(n.data, **kwargs)
        with pytest.raises(cls) as info:
            n.to_proto()
        assert isinstance(info.value, NetdslError)
    n.conv = L.Convolution(n.data, kernel_size=3, num_output=1)
    n.pool = L.Pooling(n.conv, pool="MAXX", kernel_size=2)
    with pytest.raises(ValueError, match="did you mean `MAX`"):
        n.to_proto()


def test_forward_is_netdsl_forward_layer_by_layer(tmp_path):
    # one implementation: driving the layers one at a time changes no number
    from netdsl.forward import forward
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 12, 10]))
    n.conv = L.Convolution(n.data, num_output=4, kernel_size=3, pad=2,
                           weight_filler=dict(type="gaussian", std=0.3))
    n.relu = L.ReLU(n.conv, in_place=True)
    n.pool = L.Pooling(n.relu, pool=P.Pooling.MAX, kernel_size=3, stride=2)
    n.a = L.Convolution(n.pool, num_output=2, kernel_size=1, weight_filler=dict(type="xavier"))
    n.b = L.Convolution(n.pool, num_output=2, kernel_size=1, weight_filler=dict(type="xavier"))
    n.sum = L.Eltwise(n.a, n.b)
    n.prob = L.Softmax(n.sum)
    deploy = write(tmp_path, str(n.to_proto()))
    net = caffe.Net(deploy, caffe.TEST)
    model = str(tmp_path / "w.caffemodel")
    net.save(model)
    x = np.random.default_rng(0).standard_normal((1, 3, 12, 10)).astype(np.float32)
    ours = net.forward(data=x)
    whole = forward(deploy, model, {"data": x})
    for name in ("conv", "pool", "a", "b", "sum", "prob"):
        assert np.array_equal(net.blobs[name].data, whole[name]), name
    assert np.array_equal(ours["prob"], whole["prob"])


def test_hdf5_without_h5py_says_how_to_get_it(tmp_path, monkeypatch):
    import sys
    net = caffe.Net(write(tmp_path, IP_NET), caffe.TEST)
    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py now fails
    with pytest.raises(NetdslError, match=r"need h5py.*pip install 'netdsl\[hdf5\]'"):
        net.save_hdf5(str(tmp_path / "w.h5"))
    assert not (tmp_path / "w.h5").exists()
