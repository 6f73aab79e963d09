"""Fork schemas at run time: specs/forks/deconvnet.proto and segnet-deeplab.proto with the
plugin specs/forks/segmentation_layers.py.

Expected values are worked out by hand from the forks' C++ rules, quoted in each
comment: SegNet's upsample_layer.cpp (out = H * scale - pad_out unless
upsample_h/w; top[mask[i]] = bottom[i]), DeepLab's interp_layer.cpp (shrink:
(in_eff - 1) / s + 1; zoom: in_eff + (in_eff - 1) * (z - 1)) and util/interp.cpp
(output y samples input y * (in_eff - 1) / (out - 1)), BVLC's pooling_layer.cpp
(ceil((in + 2p - k) / s) + 1, mask index h * W + w) and the unpooling geometry of
deconvnet.proto ((in - 1) * s - 2p + k).
"""
import importlib.util
import json
import os

import numpy as np
import pytest

from netdsl import NetSpec, NetdslError, layers as L, params as P
from netdsl.cli import main
from netdsl.coord_map import crop_params, layer_coord_map
from netdsl.forward import forward
from netdsl.netspec import use_schema
from netdsl.plugins import ENV_VAR, load_plugin, temporary_layers
from netdsl.prototxt import parse_net, read_net
from netdsl.proto import BUNDLED, caffe_pb2, load_schema
from netdsl.shapes import infer_shapes
from netdsl.weights import init_weights, open_caffemodel, write_caffemodel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FORKS = os.path.join(ROOT, "specs", "forks")
SEG = os.path.join(FORKS, "segnet-deeplab.proto")
DCN = os.path.join(FORKS, "deconvnet.proto")
PLUGIN = os.path.join(FORKS, "segmentation_layers.py")
SEG_ARGS = ["--proto", SEG, "--plugin", PLUGIN]
DCN_ARGS = ["--proto", DCN, "--plugin", PLUGIN]

# the argmax example: windows of a 2x2, stride 2 max pooling and their maxima
#   [[1, 9 | 2, 0],     top-left {1, 9, 3, 4}: 9 at (0, 1), index 0 * 4 + 1 = 1
#    [3, 4 | 8, 6],     top-right {2, 0, 8, 6}: 8 at (1, 2), index 1 * 4 + 2 = 6
#    [7, 0 | 5, 5],     bottom-left {7, 0, 2, 1}: 7 at (2, 0), index 2 * 4 + 0 = 8
#    [2, 1 | 0, 4]]     bottom-right {5, 5, 0, 4}: the first 5, at (2, 2), index 10
X4 = np.array([[1, 9, 2, 0], [3, 4, 8, 6], [7, 0, 5, 5], [2, 1, 0, 4]], np.float32)
POOLED = [[9, 8], [7, 5]]
MASK = [[1, 6], [8, 10]]
UNPOOLED = [[0, 9, 0, 0], [0, 0, 8, 0], [7, 0, 5, 0], [0, 0, 0, 0]]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    with temporary_layers():
        yield
    use_schema(None)


@pytest.fixture
def seg():
    pb2 = load_schema(SEG)
    use_schema(pb2)
    load_plugin(PLUGIN)
    return pb2


@pytest.fixture
def dcn():
    pb2 = load_schema(DCN)
    use_schema(pb2)
    load_plugin(PLUGIN)
    return pb2


def _input(shape):
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=list(shape)))
    return n


def _write(path, text):
    path.write_text(text)
    return str(path)


# -- the schemas ----------------------------------------------------------------------------

def test_schemas_are_bvlc_plus_the_additions():
    spec = importlib.util.spec_from_file_location("make_schemas",
                                                  os.path.join(FORKS, "make_schemas.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for name, text in mod.render_all().items():
        with open(os.path.join(FORKS, name), encoding="utf-8") as fh:
            assert fh.read() == text, "%s is stale: run specs/forks/make_schemas.py" % name
    bvlc = {f.name: f.number for f in caffe_pb2.LayerParameter.DESCRIPTOR.fields}
    for path, added in ((SEG, {"upsample_param": 1137, "interp_param": 1143}),
                        (DCN, {"unpooling_param": 1150})):
        pb2 = load_schema(path)
        assert pb2.CONFLICTS == []
        fields = {f.name: f.number for f in pb2.LayerParameter.DESCRIPTOR.fields}
        assert fields == dict(bvlc, **added)
        # every BVLC message is still there, field for field
        for mname, desc in caffe_pb2.DESCRIPTOR.message_types_by_name.items():
            mine = pb2.DESCRIPTOR.message_types_by_name[mname]
            assert [(f.name, f.number) for f in mine.fields] == \
                [(f.name, f.number) for f in desc.fields] or mname == "LayerParameter"


def test_fork_messages_keep_the_forks_defaults():
    seg = load_schema(SEG)
    up = seg.UpsampleParameter()
    # SegNet: scale [default = 2]; DeepLab: zoom/shrink [default = 1], the rest 0
    assert (up.scale, up.pad_out_h, up.upsample_h) == (2, False, 0)
    ip = seg.InterpParameter()
    assert (ip.height, ip.width, ip.zoom_factor, ip.shrink_factor, ip.pad_beg, ip.pad_end) == \
        (0, 0, 1, 1, 0, 0)
    assert [f.number for f in seg.UpsampleParameter.DESCRIPTOR.fields] == [1, 2, 3, 4, 5, 6, 7]
    dcn = load_schema(DCN)
    assert dcn.UnpoolingParameter().stride == 1
    # locations point at the field's line in the file
    lines = open(SEG).read().splitlines()
    path, line, col = seg.LOCATIONS[("caffe.LayerParameter", "upsample_param")]
    assert path == SEG and "upsample_param = 1137" in lines[line - 1]


# -- building, prototxt and binary round trips ------------------------------------------------

UPSAMPLE_TEXT = '''layer {
  name: "up"
  type: "Upsample"
  bottom: "pool"
  bottom: "mask"
  top: "up"
  upsample_param {
    scale: 2
    upsample_h: 5
    upsample_w: 7
  }
}
'''


def _segnet_mini():
    n = _input((1, 2, 5, 7))
    n.pool, n.mask = L.Pooling(n.data, pool=P.Pooling.MAX, kernel_size=2, stride=2, ntop=2)
    n.up = L.Upsample(n.pool, n.mask, scale=2, upsample_h=5, upsample_w=7)
    n.zoom = L.Interp(n.pool, zoom_factor=3)
    return n.to_proto()


def test_netspec_under_the_fork_writes_and_reads_its_messages(seg, tmp_path):
    net = _segnet_mini()
    text = str(net)
    # LayerParameter prints in field-number order: name 1, type 2, bottom 3, top 4,
    # then upsample_param (1137) with its fields in their order (scale 1, upsample_h 6, _w 7)
    assert UPSAMPLE_TEXT in text
    assert 'interp_param {\n    zoom_factor: 3\n  }' in text
    again = parse_net(text, "net.prototxt", schema=seg)
    assert again == net
    # BVLC's schema has no upsample_param: located at its line and column
    line = text.splitlines().index("  upsample_param {") + 1
    with pytest.raises(NetdslError) as ei:
        parse_net(text, "net.prototxt", schema=caffe_pb2)
    assert str(ei.value).startswith("net.prototxt:%d:3: unknown field `upsample_param`" % line)
    # with no schema given, the one in use (the fork here) reads it
    assert parse_net(text, "net.prototxt") == net
    # binary: a BVLC reader keeps the fields it does not know and writes them back
    data = net.SerializeToString()
    through_bvlc = caffe_pb2.NetParameter.FromString(data).SerializeToString()
    back = seg.NetParameter.FromString(through_bvlc)
    assert back.layer[2].upsample_param.upsample_h == 5
    assert back.layer[3].interp_param.zoom_factor == 3
    # fmt with the fork schema: already canonical
    path = _write(tmp_path / "net.prototxt", text)
    assert main(["fmt", path, "--proto", SEG, "--check"]) == 0
    assert main(["fmt", path, "--check"]) == 2


def test_deconvnet_netspec(dcn):
    n = _input((1, 3, 8, 8))
    n.pool, n.switches = L.MaxPoolWithSwitches(
        n.data, pooling_param=dict(pool=P.Pooling.MAX, kernel_size=2, stride=2), ntop=2)
    n.unpool = L.Unpooling(n.pool, n.switches, kernel_size=2, stride=2)
    net = n.to_proto()
    assert net.layer[2].unpooling_param.kernel_size == 2
    assert 'unpooling_param {\n    kernel_size: 2\n    stride: 2\n  }' in str(net)
    res = infer_shapes(net)
    # 8 -> ceil((8 - 2) / 2) + 1 = 4 -> (4 - 1) * 2 - 0 + 2 = 8
    assert res.blobs["pool"] == res.blobs["switches"] == (1, 3, 4, 4)
    assert res.blobs["unpool"] == (1, 3, 8, 8)
    assert parse_net(str(net), schema=dcn) == net


# -- shapes from the plugin's rules ------------------------------------------------------------

def _shape_of(layer_fn, shape):
    n = _input(shape)
    n.out = layer_fn(n.data)
    return infer_shapes(n.to_proto()).blobs["out"]


def test_upsample_shapes(seg):
    res = infer_shapes(_segnet_mini())
    # pool: ceil((5 - 2) / 2) + 1 = 3, ceil((7 - 2) / 2) + 1 = 4
    assert res.blobs["pool"] == res.blobs["mask"] == (1, 2, 3, 4)
    assert res.blobs["up"] == (1, 2, 5, 7)                     # upsample_h, upsample_w
    assert res.blobs["zoom"] == (1, 2, 7, 10)                  # 3 + 2 * 2, 4 + 3 * 2
    # scale alone: 3 * 2, 4 * 2; pad_out_h: 3 * 2 - 1; scale_h 3, scale_w 2: 9, 8
    for kwargs, hw in ((dict(), (6, 8)), (dict(pad_out_h=True), (5, 8)),
                       (dict(scale_h=3, scale_w=2), (9, 8))):
        assert _shape_of(lambda x: L.Upsample(x, **kwargs), (1, 2, 3, 4)) == (1, 2) + hw
    bad = (
        (dict(scale=3, scale_h=2, scale_w=2), "scale OR scale_h & scale_w"),
        (dict(scale=1), "scale must be > 1"),
        (dict(scale=3, pad_out_h=True), "requires scale_h == 2"),
        (dict(upsample_h=1, upsample_w=4), "upsample_h must be > 1"),
        (dict(upsample_h=9, upsample_w=9), "must fit in the 2x2 blocks"),   # 9 > 3 * 2
    )
    for kwargs, why in bad:
        with pytest.raises(NetdslError, match=why):
            _shape_of(lambda x: L.Upsample(x, **kwargs), (1, 2, 3, 4))
    n = _input((1, 2, 4, 4))
    n.other = L.Input(shape=dict(dim=[1, 2, 3, 3]))
    n.up = L.Upsample(n.data, n.other)
    with pytest.raises(NetdslError, match=r"the mask \(1, 2, 3, 3\) must have the input's"):
        infer_shapes(n.to_proto())
    n = _input((1, 2, 4, 4))
    n.up = L.Upsample(n.data, n.data, n.data)
    with pytest.raises(NetdslError, match="Upsample takes at most 2 bottom blobs; got 3"):
        infer_shapes(n.to_proto())


def test_interp_shapes(seg):
    cases = (
        (dict(shrink_factor=2), (7, 10), (4, 5)),          # (7-1)/2 + 1 = 4, (10-1)/2 + 1 = 5
        (dict(zoom_factor=3), (3, 4), (7, 10)),            # 3 + 2*2, 4 + 3*2
        (dict(height=11, width=13), (3, 4), (11, 13)),     # given
        (dict(shrink_factor=2, zoom_factor=3), (7, 10), (10, 13)),   # 4 + 3*2, 5 + 4*2
        (dict(zoom_factor=2, pad_beg=-1, pad_end=-1), (5, 5), (5, 5)),  # in_eff 3: 3 + 2*1
        (dict(zoom_factor=1), (6, 9), (6, 9)),             # zoom 1 given: has_zoom_factor
    )
    for kwargs, hw, out in cases:
        assert _shape_of(lambda x: L.Interp(x, **kwargs), (2, 3) + hw) == (2, 3) + out
    bad = (
        (dict(zoom_factor=2, pad_beg=1), "Only supports non-pos padding"),
        (dict(), "Interp needs shrink_factor, zoom_factor, or height and width"),
        (dict(height=5), "Interp needs"),                   # height without width
        (dict(zoom_factor=0), "Zoom factor must be positive"),
        (dict(shrink_factor=2, pad_beg=-3, pad_end=-2), "input height after padding is 0"),
    )
    for kwargs, why in bad:
        with pytest.raises(NetdslError, match=why):
            _shape_of(lambda x: L.Interp(x, **kwargs), (1, 1, 5, 5))


def test_unpooling_and_switches_shapes(dcn):
    def unpool(shape, **kw):
        n = _input(shape)
        n.pool, n.sw = L.MaxPoolWithSwitches(n.data, pooling_param=dict(
            pool=P.Pooling.MAX, kernel_size=3, stride=2, pad=1), ntop=2)
        n.out = L.Unpooling(n.pool, n.sw, **kw)
        return infer_shapes(n.to_proto()).blobs
    blobs = unpool((1, 4, 9, 9), kernel_size=3, stride=2, pad=1)
    # pooling: ceil((9 + 2 - 3) / 2) + 1 = 5; unpooling: (5 - 1) * 2 - 2 + 3 = 9
    assert blobs["pool"] == (1, 4, 5, 5) and blobs["out"] == (1, 4, 9, 9)
    blobs = unpool((1, 4, 10, 10), kernel_size=3, stride=2, pad=1)
    # pooling: ceil((10 + 2 - 3) / 2) + 1 = 6 (rounded up); (6 - 1) * 2 - 2 + 3 = 11, not 10
    assert blobs["out"] == (1, 4, 11, 11)
    blobs = unpool((1, 4, 10, 10), kernel_size=3, stride=2, pad=1, out_h=10, out_w=10)
    assert blobs["out"] == (1, 4, 10, 10)
    with pytest.raises(NetdslError, match="out_h and out_w must be given together"):
        unpool((1, 4, 10, 10), kernel_size=3, stride=2, pad=1, out_h=10)
    with pytest.raises(NetdslError, match="needs the pooling's kernel_size"):
        unpool((1, 4, 9, 9), stride=2)
    n = _input((1, 4, 8, 8))
    n.p, n.s = L.MaxPoolWithSwitches(n.data, pooling_param=dict(pool=P.Pooling.AVE, kernel_size=2),
                                 ntop=2)
    with pytest.raises(NetdslError, match="MAX pooling only"):
        infer_shapes(n.to_proto())
    n = _input((1, 4, 8, 8))
    n.p = L.MaxPoolWithSwitches(n.data, pooling_param=dict(kernel_size=2))
    with pytest.raises(NetdslError, match="MaxPoolWithSwitches takes exactly 2 top blobs; got 1"):
        infer_shapes(n.to_proto())


def test_fork_type_under_bvlc_schema_names_the_fork(tmp_path):
    from netdsl.packs import enable
    enable("segnet")                     # the pack's rules, but BVLC's schema
    n = _input((1, 1, 4, 4))
    n.up = L.Upsample(n.data)            # no upsample_param in BVLC's schema
    with pytest.raises(NetdslError) as ei:
        infer_shapes(n.to_proto())
    assert "reads `upsample_param`, which the schema in use does not have" in str(ei.value)
    assert "load the caffe.proto of SegNet or ENet with --proto" in ei.value.explain()


# -- coordinate maps ------------------------------------------------------------------------

def test_coordinate_maps_and_crop_offsets(seg):
    from fractions import Fraction
    net = _segnet_mini()
    res = infer_shapes(net)
    # pool: x_in = 2 y + 1/2; Upsample (scale 2): y_up = 2 y_pool + 1/2, so x_in = y_up
    assert res.layer("up").strides[0] == (1,) and res.layer("up").offsets[0] == (0,)
    # zoom 3: y_zoom = 3 y_pool, so x_in = 2/3 y_zoom + 1/2
    assert layer_coord_map(net.layer[3], [(1, 2, 3, 4)]) == (1, (3,), (0,))
    assert res.layer("zoom").offsets[0] == (0.5,)
    n = _input((1, 1, 9, 9))
    n.conv = L.Convolution(n.data, num_output=1, kernel_size=3)     # 7 x 7, y = x - 1
    n.crop = L.Interp(n.conv, zoom_factor=1, pad_beg=-1, pad_end=-1)
    # Interp with pad_beg -1: y = 1 * (x + pad_beg) -> y = x - 2 overall, 5 x 5
    assert crop_params(n.to_proto(), "data", "crop") == (2, [2])
    n = _input((1, 1, 7, 7))
    n.small = L.Interp(n.data, shrink_factor=2)
    # 7 -> 4: scale (4 - 1) / (7 - 1) = 1/2
    assert layer_coord_map(n.to_proto().layer[1], [(1, 1, 7, 7)]) == (1, (Fraction(1, 2),), (0,))
    n = _input((1, 1, 7, 10))
    n.small = L.Interp(n.data, shrink_factor=2)
    # 7 -> 4 and 10 -> 5: (4 - 1) / (7 - 1) = 1/2, (5 - 1) / (10 - 1) = 4/9
    assert layer_coord_map(n.to_proto().layer[1], [(1, 1, 7, 10)]) == \
        (1, (Fraction(1, 2), Fraction(4, 9)), (0, 0))
    n = _input((1, 1, 5, 5))
    n.z = L.Interp(n.data, zoom_factor=2, pad_beg=-1, pad_end=-1)
    ls = infer_shapes(n.to_proto()).layer("z")
    # in_eff 3 -> 5: y = 2 (x - 1), so x = y / 2 + 1
    assert ls.strides[0] == (0.5,) and ls.offsets[0] == (1,)


def test_unpooling_map_inverts_the_pooling(dcn):
    n = _input((1, 1, 9, 9))
    n.pool, n.sw = L.MaxPoolWithSwitches(n.data, pooling_param=dict(
        pool=P.Pooling.MAX, kernel_size=3, stride=2, pad=1), ntop=2)
    n.up = L.Unpooling(n.pool, n.sw, kernel_size=3, stride=2, pad=1)
    net = n.to_proto()
    # pooling: y = x / 2 + (1 - 1) / 2 = x / 2; unpooling: y = 2 x + (3 - 1) / 2 - 1 = 2 x
    assert layer_coord_map(net.layer[2]) == (1, (2,), (0,))
    assert crop_params(net, "up", "data") == (2, [0])


# -- numpy forward --------------------------------------------------------------------------

def test_upsample_forward_scatters_at_the_mask(seg):
    n = _input((1, 1, 4, 4))
    n.pool, n.mask = L.Pooling(n.data, pool=P.Pooling.MAX, kernel_size=2, stride=2, ntop=2)
    n.dec = L.Power(n.pool, scale=10)
    n.up = L.Upsample(n.dec, n.mask, scale=2)
    n.near = L.Upsample(n.pool, scale=2)
    out = forward(n.to_proto(), None, {"data": X4.reshape(1, 1, 4, 4)})
    assert out["pool"][0, 0].tolist() == POOLED and out["mask"][0, 0].tolist() == MASK
    # the decoder's values (10 x the maxima) at the maxima's places
    assert out["up"][0, 0].tolist() == (10 * np.array(UNPOOLED)).tolist()
    # one bottom: every value over a 2 x 2 block
    assert out["near"][0, 0].tolist() == [[9, 9, 8, 8], [9, 9, 8, 8], [7, 7, 5, 5], [7, 7, 5, 5]]


def test_scatter_keeps_the_last_value_and_checks_indices():
    spec = importlib.util.spec_from_file_location("seglayers_probe", PLUGIN)
    with temporary_layers():
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    values = np.array([[[[1, 2, 4]]]], np.float32)
    switches = np.array([[[[3, 3, 0]]]], np.float32)
    # the C++ loop writes index 3 twice: 1, then 2 (the later value stays)
    assert mod.scatter(values, switches, 2, 2, "t")[0, 0].tolist() == [[4, 0], [0, 2]]
    with pytest.raises(NetdslError, match="t index 4 out of range for a 2x2 output"):
        mod.scatter(values, np.array([[[[4, 0, 1]]]], np.float32), 2, 2, "t")


def test_interp_forward_is_deeplabs_bilinear(seg):
    def run(x, **kw):
        n = _input(x.shape)
        n.out = L.Interp(n.data, **kw)
        return forward(n.to_proto(), None, {"data": x})["out"][0, 0]
    x = np.array([[[[0, 1], [2, 3]]]], np.float32)
    # zoom 2: 2 -> 3; output y samples input y * (2 - 1) / (3 - 1) = y / 2
    np.testing.assert_array_equal(run(x, zoom_factor=2),
                                  [[0, 0.5, 1], [1, 1.5, 2], [2, 2.5, 3]])
    x = np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5)
    # shrink 2: 5 -> 3, samples 0, 2, 4 exactly
    np.testing.assert_array_equal(run(x, shrink_factor=2), x[0, 0, ::2, ::2])
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    # pad -1 both ends: the centre [[5, 6], [9, 10]], then zoom 2
    np.testing.assert_array_equal(run(x, zoom_factor=2, pad_beg=-1, pad_end=-1),
                                  [[5, 5.5, 6], [7, 7.5, 8], [9, 9.5, 10]])
    x = np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3)
    # 3 -> 4: y samples y * 2/3; the input is 3 * row + col, bilinear keeps a linear
    # function: out[i, j] = 3 * (2i/3) + 2j/3 = 2i + 2j/3 (float32 rounding only)
    want = np.array([[2 * i + 2 * j / 3 for j in range(4)] for i in range(4)])
    np.testing.assert_allclose(run(x, height=4, width=4), want, rtol=1e-6, atol=1e-6)


def test_switches_then_unpooling_forward(dcn):
    n = _input((1, 1, 4, 4))
    n.pool, n.sw = L.MaxPoolWithSwitches(n.data, pooling_param=dict(
        pool=P.Pooling.MAX, kernel_size=2, stride=2), ntop=2)
    n.up = L.Unpooling(n.pool, n.sw, kernel_size=2, stride=2)
    out = forward(n.to_proto(), None, {"data": X4.reshape(1, 1, 4, 4)})
    assert out["pool"][0, 0].tolist() == POOLED and out["sw"][0, 0].tolist() == MASK
    assert out["up"][0, 0].tolist() == UNPOOLED


# -- caffemodels ------------------------------------------------------------------------------

def _deconvnet_net():
    n = _input((1, 3, 8, 8))
    n.conv = L.Convolution(n.data, num_output=4, kernel_size=3, pad=1,
                           weight_filler=dict(type="xavier"))
    n.pool, n.sw = L.MaxPoolWithSwitches(n.conv, pooling_param=dict(
        pool=P.Pooling.MAX, kernel_size=2, stride=2), ntop=2)
    n.unpool = L.Unpooling(n.pool, n.sw, kernel_size=2, stride=2)
    n.deconv = L.Deconvolution(n.unpool, num_output=3, kernel_size=3, pad=1)
    return n.to_proto()


def test_caffemodel_write_and_read_with_the_fork(dcn, tmp_path):
    net = _deconvnet_net()
    weights = init_weights(net)
    # conv: (4, 3, 3, 3) and (4,); deconv: (C_in, C_out, 3, 3) = (4, 3, 3, 3) and (3,)
    assert [w.shape for w in weights["conv"]] == [(4, 3, 3, 3), (4,)]
    assert [w.shape for w in weights["deconv"]] == [(4, 3, 3, 3), (3,)]
    path = str(tmp_path / "w.caffemodel")
    write_caffemodel(path, weights, types=net, pb2=dcn)
    with open_caffemodel(path, pb2=dcn) as model:
        assert [(e.name, e.type) for e in model.layers] == [("conv", "Convolution"),
                                                             ("deconv", "Deconvolution")]
        for name in ("conv", "deconv"):
            for a, b in zip(model.arrays(name), weights[name]):
                np.testing.assert_array_equal(a, b)
    # the fork's protobuf reads what netdsl wrote
    parsed = dcn.NetParameter.FromString(open(path, "rb").read())
    assert [lp.name for lp in parsed.layer] == ["conv", "deconv"]


def test_caffemodel_as_the_forks_caffe_saves_it(dcn, tmp_path):
    # Net::ToProto writes every layer with its parameters and blobs
    net = _deconvnet_net()
    full = dcn.NetParameter()
    full.CopyFrom(net)
    weights = init_weights(net)
    for lp in full.layer:
        for arr in weights.get(lp.name, []):
            blob = lp.blobs.add()
            blob.shape.dim.extend(arr.shape)
            blob.data.extend(arr.ravel().tolist())
    path = tmp_path / "fork.caffemodel"
    path.write_bytes(full.SerializeToString())
    with open_caffemodel(str(path), pb2=dcn) as model:
        assert [(e.name, e.type, e.shapes) for e in model.layers] == [
            ("data", "Input", []), ("conv", "Convolution", [(4, 3, 3, 3), (4,)]),
            ("pool", "MaxPoolWithSwitches", []), ("unpool", "Unpooling", []),
            ("deconv", "Deconvolution", [(4, 3, 3, 3), (3,)])]
        np.testing.assert_array_equal(model.arrays("conv")[0], weights["conv"][0])
    back = dcn.NetParameter.FromString(path.read_bytes())
    assert back.layer[3].unpooling_param.kernel_size == 2
    assert back.layer[3].unpooling_param.stride == 2
    assert back.layer[2].pooling_param.kernel_size == 2
    # inspect through the CLI with the fork's schema
    assert main(["inspect", str(path), "--proto", DCN, "--format", "json"]) == 0


def test_proto_reaches_init_and_inspect(tmp_path, capsys):
    # a fork that moves NetParameter.layer to 1100: only its own schema finds the layers
    text = open(BUNDLED).read()
    assert "repeated LayerParameter layer = 100;" in text
    moved = _write(tmp_path / "moved.proto",
                   text.replace("repeated LayerParameter layer = 100;",
                                "repeated LayerParameter layer = 1100;"))
    net = _write(tmp_path / "net.prototxt",
                 'layer { name: "data" type: "Input" top: "data" '
                 'input_param { shape { dim: 1 dim: 2 dim: 4 dim: 4 } } }\n'
                 'layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" '
                 'convolution_param { num_output: 3 kernel_size: 1 } }\n')
    model = str(tmp_path / "m.caffemodel")
    # the fork's schema is used as given; writing its caffemodel says, in one line,
    # which field BVLC tools would misread; --strict-proto refuses it, located
    assert main(["init", net, "-o", model, "--proto", moved, "--strict-proto"]) == 2
    assert "is 1100 here but 100 in BVLC's schema" in capsys.readouterr().err
    assert main(["init", net, "-o", model, "--proto", moved]) == 0
    warned = [ln for ln in capsys.readouterr().err.splitlines() if "warning" in ln]
    assert warned == ["netdsl: warning: this caffemodel sets fields the fork schema numbers "
                      "differently from BVLC, which BVLC-based tools (Caffe, OpenCV) would "
                      "misread in binary files: NetParameter.layer (1100 here, 100 in BVLC)"]
    assert main(["init", net, "-o", model, "--proto", moved, "--allow-proto-conflicts"]) == 0
    with open_caffemodel(model) as m:           # BVLC's numbers: field 1100 is unknown
        assert m.names() == []
    assert main(["inspect", model, "--proto", moved, "--allow-proto-conflicts",
                 "--format", "json"]) == 0
    info = json.loads(capsys.readouterr().out)
    # conv: (3, 2, 1, 1) weights and (3,) bias
    assert json.dumps(info).count('"conv"') == 1 and "[3, 2, 1, 1]" in json.dumps(info)


# -- the command line ---------------------------------------------------------------------------

def test_cli_shapes_init_inspect_fmt_run(tmp_path, capsys):
    net = _write(tmp_path / "seg.prototxt", '''name: "mini"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 1 dim: 1 dim: 4 dim: 4 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 1 kernel_size: 1
                            weight_filler { type: "constant" value: 2 } } }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool" top: "mask"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "up" type: "Upsample" bottom: "pool" bottom: "mask" top: "up"
        upsample_param { scale: 2 } }
layer { name: "zoom" type: "Interp" bottom: "pool" top: "zoom" interp_param { zoom_factor: 2 } }
''')
    # the schema alone enables the segnet and deeplab packs (netdsl.packs)
    assert main(["shapes", net, "--proto", SEG]) == 0
    assert "up" in capsys.readouterr().out
    assert main(["shapes", net, "--format", "json"] + SEG_ARGS) == 0
    blobs = json.loads(capsys.readouterr().out)["blobs"]
    # pool 4 -> 2; Upsample 2 * 2 = 4; Interp 2 + 1 * 1 = 3
    assert blobs["up"] == [1, 1, 4, 4] and blobs["zoom"] == [1, 1, 3, 3]
    model = str(tmp_path / "init.caffemodel")
    assert main(["init", net, "-o", model] + SEG_ARGS) == 0
    with open_caffemodel(model, pb2=load_schema(SEG)) as m:
        # constant filler 2 for the 1x1x1x1 kernel, bias 0
        assert m.arrays("conv")[0].tolist() == [[[[2.0]]]] and m.arrays("conv")[1].tolist() == [0]
    capsys.readouterr()
    assert main(["inspect", model, "--proto", SEG]) == 0
    assert "conv" in capsys.readouterr().out
    assert main(["fmt", net, "--proto", SEG, "-o", str(tmp_path / "canon.prototxt")]) == 0
    assert main(["fmt", str(tmp_path / "canon.prototxt"), "--check", "--proto", SEG]) == 0
    x = str(tmp_path / "x.npy")
    np.save(x, X4.reshape(1, 1, 4, 4))
    out = str(tmp_path / "out.npz")
    assert main(["run", net, model, "--input", "data=" + x, "-o", out,
                 "--blobs", "up,zoom"] + SEG_ARGS) == 0
    got = np.load(out)
    # conv doubles x; pooled maxima 2 * [[9, 8], [7, 5]] go back to their places
    assert got["up"][0, 0].tolist() == (2 * np.array(UNPOOLED)).tolist()
    # zoom 2 of [[18, 16], [14, 10]]: edge midpoints (18+16)/2 = 17, (18+14)/2 = 16,
    # (16+10)/2 = 13, (14+10)/2 = 12; centre (18+16+14+10)/4 = 14.5
    assert got["zoom"][0, 0].tolist() == [[18, 17, 16], [16, 14.5, 13], [14, 12, 10]]
    assert main(["run", net, "--proto", SEG, "--plugin", PLUGIN]) == 2
    assert "no array for 'data'" in capsys.readouterr().err


def test_cli_pycaffe_script_under_the_fork(tmp_path, capsys):
    script = _write(tmp_path / "net.py", '''import sys
import caffe
from caffe import layers as L, params as P
n = caffe.NetSpec()
n.data = L.Input(shape=dict(dim=[1, 3, 6, 6]))
n.pool, n.mask = L.Pooling(n.data, pool=P.Pooling.MAX, kernel_size=2, stride=2, ntop=2)
n.up = L.Upsample(n.pool, n.mask, scale=2)
open(sys.argv[1], "w").write(str(n.to_proto()))
''')
    out = str(tmp_path / "out.prototxt")
    assert main(["pycaffe", "--proto", SEG, script, out]) == 0
    net = read_net(out, schema=load_schema(SEG))
    assert net.layer[2].upsample_param.scale == 2
    assert main(["shapes", out] + SEG_ARGS) == 0
    assert "up (1,3,6,6)" in capsys.readouterr().out          # 6 -> 3 -> 3 * 2


def test_schema_errors_are_located_in_the_file(tmp_path, capsys):
    base = open(BUNDLED).read()
    net = _write(tmp_path / "net.prototxt", 'layer { name: "d" type: "Input" top: "d" }\n')

    def fork(name, text):
        return _write(tmp_path / name, text)

    # a syntax error: `optional` with no type name; line 3, column 24 is the `=`
    bad = fork("syntax.proto", 'syntax = "proto2";\npackage caffe;\n'
                               'message A { optional x = 1; }\n')
    with pytest.raises(NetdslError) as ei:
        load_schema(bad)
    assert str(ei.value).startswith(bad + ":3:")
    # an unknown type, at the type name (line 3, column 22)
    unknown = fork("unknown.proto", 'syntax = "proto2";\npackage caffe;\n'
                                    'message A { optional Foo x = 1; }\n')
    with pytest.raises(NetdslError) as ei:
        load_schema(unknown)
    assert str(ei.value).startswith(unknown + ":3:22: unknown type `Foo` for field `x`")
    # a number used twice in one message: at the second field's number (column 47:
    # 2 spaces, `optional ` 9, `UpsampleParameter ` 18, `upsample_param ` 15, `= ` 2)
    dup = base.replace("  optional WindowDataParameter window_data_param = 129;\n",
                       "  optional WindowDataParameter window_data_param = 129;\n"
                       "  optional UpsampleParameter upsample_param = 129;\n") + \
        "message UpsampleParameter { optional uint32 scale = 1; }\n"
    dup_path = fork("dup.proto", dup)
    line = dup.splitlines().index("  optional UpsampleParameter upsample_param = 129;") + 1
    with pytest.raises(NetdslError) as ei:
        load_schema(dup_path)
    assert str(ei.value).startswith("%s:%d:47: field number 129 of `upsample_param` is already "
                                    "used by `window_data_param`" % (dup_path, line))
    # DeepLab's real number: 143 is BVLC's input_param (which that fork lacks)
    deeplab = open(SEG).read().replace("interp_param = 1143", "interp_param = 143").replace(
        "  optional InputParameter input_param = 143;\n", "")
    deeplab_path = fork("deeplab.proto", deeplab)
    line = deeplab.splitlines().index("  optional InterpParameter interp_param = 143;") + 1
    with pytest.raises(NetdslError) as ei:
        load_schema(deeplab_path, strict=True)
    assert str(ei.value).startswith(
        "%s:%d:28: field `interp_param` = 143 in LayerParameter takes BVLC's number of "
        "`input_param`" % (deeplab_path, line))
    assert "an existing fork keeps its numbers" in ei.value.explain()
    # used as given by default (and with the former opt-in)
    lenient = load_schema(deeplab_path)
    assert len(lenient.CONFLICTS) == 1 and lenient.InterpParameter().zoom_factor == 1
    assert load_schema(deeplab_path, allow_conflicts=True) is lenient
    # the same through the CLI: --strict-proto exits 2 with the location
    assert main(["fmt", net, "--proto", deeplab_path, "--strict-proto"]) == 2
    assert ("%s:%d:28:" % (deeplab_path, line)) in capsys.readouterr().err
    assert main(["fmt", net, "--proto", deeplab_path]) == 0
    assert main(["fmt", net, "--proto", deeplab_path, "--allow-proto-conflicts"]) == 0
    assert main(["shapes", net, "--proto", unknown]) == 2
    assert "unknown.proto:3:22: unknown type `Foo`" in capsys.readouterr().err


# -- the example specs ------------------------------------------------------------------------

SPECS = (
    # spec, schema, {top: deploy shape}, arithmetic
    ("segnet-upsample.yaml", SEG, {
        "pool1": (1, 16, 23, 31),        # ceil((45 - 2) / 2) + 1, ceil((61 - 2) / 2) + 1
        "pool2": (1, 32, 12, 16),        # ceil((23 - 2) / 2) + 1, ceil((31 - 2) / 2) + 1
        "up2": (1, 32, 23, 31),          # upsample_h/w
        "up1": (1, 16, 45, 61),
        "score": (1, 11, 45, 61)}),
    ("deeplab-interp.yaml", SEG, {
        "conv3_pool": (1, 64, 41, 41),   # 321 -> 161 -> 81 -> 41: ceil((n + 2 - 3) / 2) + 1
        "score": (1, 21, 41, 41),
        "score_full": (1, 21, 321, 321)}),   # 41 + 40 * (8 - 1)
    ("deconvnet-unpool.yaml", DCN, {
        "pool2": (1, 32, 16, 16),        # 64 -> 32 -> 16
        "unpool2": (1, 32, 32, 32),      # (16 - 1) * 2 + 2
        "unpool1": (1, 16, 64, 64),
        "score": (1, 21, 64, 64)}),
)


@pytest.mark.parametrize("name,proto,expected", SPECS, ids=[s[0] for s in SPECS])
def test_example_specs_build_under_their_fork(name, proto, expected, tmp_path, capsys):
    spec = os.path.join(FORKS, name)
    # the spec names its schema (`proto:`) and plugin (`plugins:`) itself
    out = str(tmp_path / "out")
    assert main(["build", spec, "-o", out]) == 0
    # --proto naming the same file agrees; another schema is a located error
    assert main(["build", spec, "-o", str(tmp_path / "same"), "--proto", proto]) == 0
    other = DCN if proto == SEG else SEG
    assert main(["build", spec, "-o", str(tmp_path / "other"), "--proto", other]) == 2
    assert "the spec's `proto:` names %s but --proto gives %s" % (proto, other) \
        in capsys.readouterr().err
    assert not os.path.exists(str(tmp_path / "other"))
    pb2 = load_schema(proto)
    deploy = read_net(os.path.join(out, "deploy.prototxt"), schema=pb2)
    use_schema(pb2)
    blobs = infer_shapes(deploy).blobs
    for top, shape in expected.items():
        assert blobs[top] == shape, top
    # the scores sit on the input pixels: stride 1, offset 0
    last = infer_shapes(deploy).layer(deploy.layer[-1].name)
    assert last.strides[0] == (1,) and last.offsets[0] == (0,)


def test_fork_layer_without_rules_says_how_to_declare(tmp_path, capsys):
    # a fork type no pack knows, with the schema but no plugin: the shape check stops there
    fork = tmp_path / "f.proto"
    fork.write_text(open(SEG).read().replace(
        "message InterpParameter {", "message ZoomParameter {\n  optional int32 zoom = 1;\n}\n"
        "message InterpParameter {").replace(
        "interp_param = 1143;", "interp_param = 1143;\n  optional ZoomParameter zoom_param = 1150;"))
    spec = tmp_path / "zoom.yaml"
    spec.write_text("proto: f.proto\ninputs:\n  data: [1, 3, 9, 9]\nlayers:\n"
                    "  - Zoom: up\n    zoom: 2\n")
    assert main(["build", str(spec), "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "no shape rule for layer type" in err and "Zoom" in err
    assert not os.path.exists(str(tmp_path / "x"))


def test_custom_layers_declared_in_the_spec(tmp_path):
    # DeepLab's Interp declared with expressions (interp_layer.cpp, zoom only):
    # out = in + (in - 1) * (zoom - 1): 9 + 8 * 1 = 17; blob counts 1 -> 1;
    # coordinate map: output pixel 2i is input pixel i (axis 1, scale 2, shift 0)
    spec = tmp_path / "interp.yaml"
    spec.write_text(
        "proto: %s\n"
        "custom_layers:\n"
        "  Interp:\n"
        "    bottoms: 1\n"
        "    tops: 1\n"
        "    shape: [[N, C, 'H + (H - 1) * (param.zoom_factor - 1)',"
        " 'W + (W - 1) * (param.zoom_factor - 1)']]\n"
        "    coord_map: [1, 2, 0]\n"
        "inputs:\n  data: [1, 3, 9, 11]\n"
        "layers:\n"
        "  - Interp: up\n    zoom_factor: 2\n" % SEG)
    out = tmp_path / "out"
    assert main(["build", str(spec), "-o", str(out), "--phase", "deploy"]) == 0
    pb2 = load_schema(SEG)
    net = read_net(str(out / "deploy.prototxt"), schema=pb2)
    assert net.layer[-1].interp_param.zoom_factor == 2
    from netdsl.layers import use_layers
    from netdsl.spec import load_spec
    with use_layers(load_spec(str(spec)).registry):   # the spec's custom layers are its own
        assert infer_shapes(net).blobs["up"] == (1, 3, 17, 21)  # 11 + 10 * 1 = 21


@pytest.mark.parametrize("text,where,message", [
    ("proto: missing.proto\n", "1:8", "no schema file"),
    ("proto: {file: x.proto}\n", "1:8", "`proto` is a path, or {path: ..., strict: true|false}"),
    ("plugins: [nowhere.py]\n", "1:11", "no plugin file"),
    ("custom_layers:\n  Interp: {shap: [[N]]}\n", "2:12", "unknown key `shap` in custom layer"),
    ("custom_layers:\n  ReLU: {shape: [[N]]}\n", "2:3", "`ReLU` is a BVLC layer type"),
])
def test_fork_spec_keys_errors_are_located(tmp_path, capsys, text, where, message):
    spec = tmp_path / "bad.yaml"
    spec.write_text(text + "inputs:\n  data: [1, 3, 4, 4]\nlayers:\n  - ReLU: r\n")
    assert main(["build", str(spec), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "%s:%s: %s" % (spec, where, message) in err, err
    assert not os.path.exists(str(tmp_path / "out"))


def test_spec_proto_conflict_is_located_in_the_schema(tmp_path, capsys):
    # a fork from before BVLC's input_param (DeepLab's era) that uses its number,
    # 143, for interp_param
    text = open(SEG).read().replace("optional InputParameter input_param = 143;", "")
    text = text.replace("interp_param = 1143", "interp_param = 143")
    fork = tmp_path / "deeplab.proto"
    fork.write_text(text)
    line = text[:text.index("interp_param = 143")].count("\n") + 1
    spec = tmp_path / "s.yaml"
    # (such a schema has no Input layer either: the net starts with DummyData)
    body = "layers:\n  - DummyData: data\n    shape: {dim: [1, 3, 4, 4]}\n  - ReLU: r\n"
    spec.write_text("proto: {path: deeplab.proto, strict: true}\n" + body)
    assert main(["build", str(spec), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "%s:%d:" % (fork, line) in err
    assert "takes BVLC's number of `input_param`" in err
    spec.write_text("proto: deeplab.proto\n" + body)      # used as given
    assert main(["build", str(spec), "-o", str(tmp_path / "out")]) == 0
    spec.write_text("proto: {path: deeplab.proto, allow_conflicts: true}\n" + body)
    assert main(["build", str(spec), "-o", str(tmp_path / "out")]) == 0


def test_spec_weights_use_the_fork_schema(tmp_path):
    out = tmp_path / "out"
    assert main(["build", os.path.join(FORKS, "segnet-upsample.yaml"), "-o", str(out),
                 "--weights"]) == 0
    with open_caffemodel(str(out / "init.caffemodel"), pb2=load_schema(SEG)) as model:
        names = [l.name for l in model.layers]
    assert "conv1" in names and "score" in names


def test_pycaffe_script_matches_the_yaml_spec(tmp_path):
    """specs/forks/deconvnet_net.py (pycaffe) and deconvnet-unpool.yaml give one net."""
    out = str(tmp_path / "script.prototxt")
    assert main(["pycaffe", "--proto", DCN, os.path.join(FORKS, "deconvnet_net.py"), out]) == 0
    assert main(["build", os.path.join(FORKS, "deconvnet-unpool.yaml"), "-o", str(tmp_path / "y"),
                 "--phase", "deploy", "--proto", DCN, "--plugin", PLUGIN]) == 0
    pb2 = load_schema(DCN)
    script = read_net(out, schema=pb2)
    spec = read_net(str(tmp_path / "y" / "deploy.prototxt"), schema=pb2)
    # the spec's deploy net names its input layer `input`, the script `data`
    assert script.layer[0].top == spec.layer[0].top == ["data"]
    assert list(script.layer)[1:] == list(spec.layer)[1:]
