"""Coordinate maps and crop offsets (pycaffe's python/caffe/coord_map.py semantics).

A layer maps input coordinate x to output coordinate y = scale*x + shift.  With the
window extent e = dilation*(kernel - 1) + 1 (hand-derived from coord_map.py):
    Convolution / Pooling:  scale 1/stride,  shift (pad - (e - 1)/2) / stride
    Deconvolution:          scale stride,    shift (e - 1)/2 - pad
    Crop(offset o):         scale 1,         shift -o
The reference offsets are the Crop offsets in FCN's published prototxts
(shelhamer/fcn.berkeleyvision.org voc-fcn*/val.prototxt, voc-fcn8s/deploy.prototxt).
"""
import os
import sys
from fractions import Fraction

import numpy as np
import pytest

from netdsl.coord_map import (AxisMismatchException, UndefinedMapException, compose,
                              coord_map, coord_map_from_to, crop, crop_params, inverse,
                              layer_coord_map, offsets_for)
from netdsl.errors import NetdslError
from netdsl.prototxt import parse_net
from netdsl.shapes import infer_shapes

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fcn_nets  # noqa: E402


def lp(text):
    return parse_net("layer { %s }" % text, upgrade=False).layer[0]


# -- single layers ----------------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    # k3 p1 s1: shift (1 - 1)/1 = 0
    ('type: "Convolution" convolution_param { kernel_size: 3 pad: 1 }', (1, (1,), (0,))),
    # fc6 of FCN, k7 p0: shift (0 - 3)/1 = -3
    ('type: "Convolution" convolution_param { kernel_size: 7 }', (1, (1,), (-3,))),
    # conv1 of AlexNet-FCN, k11 s4 p100: scale 1/4, shift (100 - 5)/4 = 95/4
    ('type: "Convolution" convolution_param { kernel_size: 11 stride: 4 pad: 100 }',
     (1, (Fraction(1, 4),), (Fraction(95, 4),))),
    # dilation 2, k3: extent 5, pad 0: shift -2; pad 2: shift 0
    ('type: "Convolution" convolution_param { kernel_size: 3 dilation: 2 }', (1, (1,), (-2,))),
    ('type: "Convolution" convolution_param { kernel_size: 3 dilation: 2 pad: 2 }',
     (1, (1,), (0,))),
    # max pool k2 s2: scale 1/2, shift (0 - 1/2)/2 = -1/4
    ('type: "Pooling" pooling_param { kernel_size: 2 stride: 2 }',
     (1, (Fraction(1, 2),), (Fraction(-1, 4),))),
    # FCN-32s upscore, k64 s32: scale 32, shift 63/2
    ('type: "Deconvolution" convolution_param { kernel_size: 64 stride: 32 }',
     (1, (32,), (Fraction(63, 2),))),
    # k4 s2 p1: scale 2, shift 3/2 - 1 = 1/2
    ('type: "Deconvolution" convolution_param { kernel_size: 4 stride: 2 pad: 1 }',
     (1, (2,), (Fraction(1, 2),))),
    # Crop axis 2 offset 19: axis 2 - 1 = 1, shift -19
    ('type: "Crop" crop_param { axis: 2 offset: 19 }', (1, (1,), (-19,))),
    ('type: "ReLU"', (None, (1,), (0,))),
    # per-axis pooling: H k3 s1 -> shift -1; W k5 s2 -> shift (0 - 2)/2 = -1
    ('type: "Pooling" pooling_param { kernel_h: 3 kernel_w: 5 stride_h: 1 stride_w: 2 }',
     (1, (1, Fraction(1, 2)), (-1, -1))),
])
def test_layer_maps(text, expected):
    assert layer_coord_map(lp(text)) == expected


def test_undefined_maps():
    assert layer_coord_map(lp('type: "InnerProduct"')) is None
    assert layer_coord_map(lp('type: "Pooling" pooling_param { global_pooling: true }')) is None
    # Concat over channels keeps coordinates; over a spatial axis it does not
    assert layer_coord_map(lp('type: "Concat"')) == (None, (1,), (0,))
    assert layer_coord_map(lp('type: "Concat" concat_param { axis: 2 }')) is None


def test_compose_and_inverse_like_pycaffe():
    # compose: scales multiply, shift a1*b2 + b1 (pycaffe's formula)
    ax, a, b = compose((None, 1, 0), (1, np.array([0.5]), np.array([-0.25])))
    assert ax == 1 and a[0] == 0.5 and b[0] == -0.25
    ax, a, b = compose((1, np.array([2.0]), np.array([1.0])), (1, np.array([0.5]), np.array([3.0])))
    assert a[0] == 1.0 and b[0] == 2.0 * 3.0 + 1.0
    # inverse: (axis, 1/a, -b/a)
    ax, a, b = inverse((1, np.array([0.5]), np.array([-0.25])))
    assert a[0] == 2.0 and b[0] == 0.5
    # exact maps compose exactly
    assert compose((1, (Fraction(1, 2),), (Fraction(-1, 4),)), (1, (2,), (Fraction(1, 2),))) == \
        (1, (1,), (0,))
    assert inverse((1, (Fraction(1, 4),), (Fraction(95, 4),))) == (1, (4,), (-95,))
    with pytest.raises(AxisMismatchException):
        compose((1, 1, 0), (2, 1, 0))


# -- FCN offsets on NetParameters --------------------------------------------------------------

def _set_offset(net, crop_name, offsets):
    for layer in net.layer:
        if layer.name == crop_name:
            del layer.crop_param.offset[:]
            layer.crop_param.offset.extend(offsets)


@pytest.mark.parametrize("split", ["deploy", "val"])
@pytest.mark.parametrize("builder,crops", [
    (fcn_nets.fcn32s, [("score", "upscore", "data")]),
    (fcn_nets.fcn16s, [("score_pool4c", "score_pool4", "upscore2"),
                       ("score", "upscore16", "data")]),
    (fcn_nets.fcn8s, [("score_pool4c", "score_pool4", "upscore2"),
                      ("score_pool3c", "score_pool3", "upscore_pool4"),
                      ("score", "upscore8", "data")]),
    (fcn_nets.fcn_alexnet, [("score", "upscore", "data")]),
])
def test_fcn_offsets_from_unset_nets(builder, crops, split):
    # Authoring order: each crop is computed and set before the next one, as FCN's net.py
    # does with caffe.coord_map.crop.  Expected: the published offsets.
    net = builder(split, offsets=False)
    published = fcn_nets.PUBLISHED[builder.__name__]
    for crop_name, blob, reference in crops:
        axis, offsets = crop_params(net, blob, reference)
        assert (axis, offsets) == (2, [published[crop_name]])
        _set_offset(net, crop_name, offsets)
    shapes = infer_shapes(net, declared={"data": [(1, 3, 500, 500), (1, 1, 500, 500)]}
                          if split == "val" else None)
    assert shapes.blobs["score"] == (1, 21, 500, 500)


def test_fcn_alexnet_offset_by_hand():
    # conv1 (k11 s4 p100): x/4 + 95/4; pool1 (k3 s2): x/2 - 1/2; conv2 (k5 p2): +0;
    # pool2: x/2 - 1/2; conv3-5 (k3 p1): +0; pool5: x/2 - 1/2; fc6 (k6): x - 5/2;
    # upscore (k63 s32): 32x + 31.  Composed: x/32 + 67/32 after pool5, x/32 - 13/32 after
    # fc6, x + 18 after upscore: data pixel 0 sits at upscore pixel 18.
    net = fcn_nets.fcn_alexnet("deploy", offsets=False)
    assert crop_params(net, "upscore", "data") == (2, [18])


@pytest.mark.parametrize("builder", [fcn_nets.fcn32s, fcn_nets.fcn16s, fcn_nets.fcn8s,
                                     fcn_nets.fcn_alexnet])
def test_offsets_for_published_nets(builder):
    net = builder("deploy")
    shapes = infer_shapes(net)
    recs = offsets_for(net, shapes=shapes)
    published = fcn_nets.PUBLISHED[builder.__name__]
    assert list(recs) == list(published)
    for name, rec in recs.items():
        assert rec.error is None and rec.axis == 2 and rec.offsets == [published[name]]
        assert rec.matches


def test_offsets_for_reports_a_wrong_offset():
    net = fcn_nets.fcn32s("deploy")
    _set_offset(net, "score", [20])
    rec = offsets_for(net)["score"]
    assert rec.offsets == [19] and rec.given_offsets == [20] and not rec.matches


def test_crop_extent_checked_against_shapes():
    net = fcn_nets.fcn32s("deploy", offsets=False)
    assert crop_params(net, "upscore", "data", shapes=infer_shapes(net)) == (2, [19])
    # a 510-pixel upscore cropped at 19 leaves 491 < 500
    with pytest.raises(NetdslError) as ei:
        crop_params(net, "upscore", "data",
                    shapes={"upscore": (1, 21, 510, 510), "data": (1, 3, 500, 500)})
    assert "510 - 19 < 500" in ei.value.message


# -- errors naming the layers ---------------------------------------------------------------------

def test_scale_mismatch_names_layers():
    net = fcn_nets.fcn32s("deploy")
    with pytest.raises(NetdslError) as ei:
        crop_params(net, "pool1", "data")
    msg = ei.value.message
    assert "scale mismatch" in msg and "pool1" in msg and "conv1_1" in msg


def test_negative_offset():
    net = fcn_nets.fcn32s("deploy")
    with pytest.raises(NetdslError) as ei:
        crop_params(net, "data", "upscore")
    assert "negative" in ei.value.message and "upscore" in ei.value.message


NET = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
%s
"""


def net_of(body):
    return parse_net(NET % body, upgrade=False)


def test_fractional_offset():
    # k2 p1: shift (1 - 1/2)/1 = +1/2, so data pixel 0 sits at conv pixel 1/2
    net = net_of('layer { name: "c" type: "Convolution" bottom: "data" top: "c" '
                 'convolution_param { num_output: 1 kernel_size: 2 pad: 1 } }')
    with pytest.raises(NetdslError) as ei:
        crop_params(net, "c", "data")
    assert "1/2" in ei.value.message and "whole number" in ei.value.message
    assert "[c]" in ei.value.message


def test_misaligned_concat_is_an_error():
    # pool k2 s2 (shift -1/4) and conv k1 s2 (shift 0) give 4x4 from 8x8, a quarter pixel apart
    net = net_of("""
    layer { name: "p" type: "Pooling" bottom: "data" top: "p"
            pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
    layer { name: "s2" type: "Convolution" bottom: "data" top: "s2"
            convolution_param { num_output: 3 kernel_size: 1 stride: 2 } }
    layer { name: "cat" type: "Concat" bottom: "p" bottom: "s2" top: "cat" }
    layer { name: "up" type: "Deconvolution" bottom: "cat" top: "up"
            convolution_param { num_output: 6 kernel_size: 2 stride: 2 } }
    """)
    assert infer_shapes(net).blobs["cat"] == (1, 6, 4, 4)
    with pytest.raises(NetdslError) as ei:
        crop_params(net, "up", "data")
    msg = ei.value.message
    assert "'p'" in msg and "'s2'" in msg and "not aligned" in msg


def test_aligned_concat_maps_through():
    # c0 (k3 p0) shifts by -1; 1x1 and 3x3-pad-1 branches keep it; data is cropped by 1
    net = net_of("""
    layer { name: "c0" type: "Convolution" bottom: "data" top: "c0"
            convolution_param { num_output: 4 kernel_size: 3 } }
    layer { name: "b1" type: "Convolution" bottom: "c0" top: "b1"
            convolution_param { num_output: 4 kernel_size: 1 } }
    layer { name: "b3" type: "Convolution" bottom: "c0" top: "b3"
            convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
    layer { name: "cat" type: "Concat" bottom: "b1" bottom: "b3" top: "cat" }
    layer { name: "r" type: "ReLU" bottom: "cat" top: "cat" }
    """)
    shapes = infer_shapes(net)
    assert crop_params(net, "data", "cat", shapes=shapes) == (2, [1])


def test_per_axis_offsets():
    # kernel 3x5, no pad: shifts (-1, -2), so data is cropped by 1 on H and 2 on W
    net = net_of('layer { name: "c" type: "Convolution" bottom: "data" top: "c" '
                 'convolution_param { num_output: 1 kernel_h: 3 kernel_w: 5 } }')
    assert crop_params(net, "data", "c", shapes=infer_shapes(net)) == (2, [1, 2])


def test_axis_mismatch_and_no_common_ancestor():
    net = net_of("""
    layer { name: "c" type: "Convolution" bottom: "data" top: "c"
            convolution_param { num_output: 3 kernel_size: 3 } }
    layer { name: "k" type: "Crop" bottom: "c" bottom: "data" top: "k" crop_param { axis: 1 } }
    layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
            inner_product_param { num_output: 2 } }
    """)
    with pytest.raises(AxisMismatchException) as ei:
        crop_params(net, "k", "data")
    assert ei.value.layer == "c"
    with pytest.raises(NetdslError) as ei:
        crop_params(net, "ip", "c")
    assert "common blob" in ei.value.message
    with pytest.raises(NetdslError) as ei:
        crop_params(net, "nope", "c")
    assert "no blob named 'nope'" in ei.value.message


# -- NetSpec tops: pycaffe's coord_map_from_to and crop ---------------------------------------------

def _fcn_spec(variant):
    """FCN as written in voc-fcn*/net.py, with netdsl's NetSpec."""
    from netdsl import NetSpec, layers as L, params as P

    def conv_relu(bottom, nout, ks=3, stride=1, pad=1):
        conv = L.Convolution(bottom, kernel_size=ks, stride=stride, num_output=nout, pad=pad,
                             param=[dict(lr_mult=1, decay_mult=1), dict(lr_mult=2, decay_mult=0)])
        return conv, L.ReLU(conv, in_place=True)

    def max_pool(bottom, ks=2, stride=2):
        return L.Pooling(bottom, pool=P.Pooling.MAX, kernel_size=ks, stride=stride)

    def upsample(bottom, ks, stride):
        return L.Deconvolution(bottom, convolution_param=dict(num_output=21, kernel_size=ks,
                                                             stride=stride, bias_term=False),
                               param=[dict(lr_mult=0)])

    def score(bottom):
        return L.Convolution(bottom, num_output=21, kernel_size=1, pad=0)

    n = NetSpec()
    n.data, n.label = L.Python(module="voc_layers", layer="VOCSegDataLayer", ntop=2)
    n.conv1_1, n.relu1_1 = conv_relu(n.data, 64, pad=100)
    n.conv1_2, n.relu1_2 = conv_relu(n.relu1_1, 64)
    n.pool1 = max_pool(n.relu1_2)
    n.conv2_1, n.relu2_1 = conv_relu(n.pool1, 128)
    n.conv2_2, n.relu2_2 = conv_relu(n.relu2_1, 128)
    n.pool2 = max_pool(n.relu2_2)
    n.conv3_1, n.relu3_1 = conv_relu(n.pool2, 256)
    n.conv3_2, n.relu3_2 = conv_relu(n.relu3_1, 256)
    n.conv3_3, n.relu3_3 = conv_relu(n.relu3_2, 256)
    n.pool3 = max_pool(n.relu3_3)
    n.conv4_1, n.relu4_1 = conv_relu(n.pool3, 512)
    n.conv4_2, n.relu4_2 = conv_relu(n.relu4_1, 512)
    n.conv4_3, n.relu4_3 = conv_relu(n.relu4_2, 512)
    n.pool4 = max_pool(n.relu4_3)
    n.conv5_1, n.relu5_1 = conv_relu(n.pool4, 512)
    n.conv5_2, n.relu5_2 = conv_relu(n.relu5_1, 512)
    n.conv5_3, n.relu5_3 = conv_relu(n.relu5_2, 512)
    n.pool5 = max_pool(n.relu5_3)
    n.fc6, n.relu6 = conv_relu(n.pool5, 4096, ks=7, pad=0)
    n.drop6 = L.Dropout(n.relu6, dropout_ratio=0.5, in_place=True)
    n.fc7, n.relu7 = conv_relu(n.drop6, 4096, ks=1, pad=0)
    n.drop7 = L.Dropout(n.relu7, dropout_ratio=0.5, in_place=True)
    n.score_fr = score(n.drop7)
    if variant == "fcn32s":
        n.upscore = upsample(n.score_fr, 64, 32)
        n.score = crop(n.upscore, n.data)
    else:
        n.upscore2 = upsample(n.score_fr, 4, 2)
        n.score_pool4 = score(n.pool4)
        n.score_pool4c = crop(n.score_pool4, n.upscore2)
        n.fuse_pool4 = L.Eltwise(n.upscore2, n.score_pool4c, operation=P.Eltwise.SUM)
        if variant == "fcn16s":
            n.upscore16 = upsample(n.fuse_pool4, 32, 16)
            n.score = crop(n.upscore16, n.data)
        else:
            n.upscore_pool4 = upsample(n.fuse_pool4, 4, 2)
            n.score_pool3 = score(n.pool3)
            n.score_pool3c = crop(n.score_pool3, n.upscore_pool4)
            n.fuse_pool3 = L.Eltwise(n.upscore_pool4, n.score_pool3c, operation=P.Eltwise.SUM)
            n.upscore8 = upsample(n.fuse_pool3, 16, 8)
            n.score = crop(n.upscore8, n.data)
    n.loss = L.SoftmaxWithLoss(n.score, n.label, loss_param=dict(normalize=False,
                                                                ignore_label=255))
    return n


@pytest.mark.parametrize("variant", ["fcn32s", "fcn16s", "fcn8s"])
def test_netspec_crop_gives_published_offsets(variant):
    net = _fcn_spec(variant).to_proto()
    crops = {lp.name: (lp.crop_param.axis, list(lp.crop_param.offset))
             for lp in net.layer if lp.type == "Crop"}
    assert crops == {name: (2, [off]) for name, off in fcn_nets.PUBLISHED[variant].items()}
    shapes = infer_shapes(net, declared={"data": [(1, 3, 500, 500), (1, 1, 500, 500)]})
    assert shapes.blobs["score"] == (1, 21, 500, 500)


def test_netspec_coord_map_from_to_returns_numpy_like_pycaffe():
    n = _fcn_spec("fcn32s")
    ax, a, b = coord_map_from_to(n.upscore, n.data)
    assert ax == 1 and isinstance(a, np.ndarray) and isinstance(b, np.ndarray)
    assert a.tolist() == [1.0] and b.tolist() == [-19.0]
    # only element-wise layers between: plain numbers, as pycaffe's (None, 1, 0) maps give
    assert coord_map_from_to(n.relu1_1, n.conv1_1) == (None, 1.0, 0.0)


def test_netspec_params_as_messages_h_w_and_dilation():
    from netdsl import NetSpec, layers as L, params as P
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 20, 20]))
    # pooling_param given as a dict (pycaffe's coord_map would fail on it)
    ax, a, b = coord_map(L.Pooling(n.data, pooling_param=dict(kernel_size=2, stride=2)).fn)
    assert ax == 1 and a.tolist() == [0.5] and b.tolist() == [-0.25]
    # kernel_h/kernel_w: per-axis shifts (-1, -2)
    n.c = L.Convolution(n.data, num_output=2, kernel_h=3, kernel_w=5)
    n.k = crop(n.data, n.c)
    assert n.to_proto().layer[-1].crop_param.offset == [1, 2]
    # dilation 2, kernel 3: extent 5, shift -2
    n.d = L.Convolution(n.data, num_output=2, kernel_size=3, dilation=2)
    n.kd = crop(n.data, n.d)
    assert list(n.to_proto().layer[-1].crop_param.offset) == [2]
    with pytest.raises(UndefinedMapException):
        coord_map(L.InnerProduct(n.data, num_output=2).fn)
    with pytest.raises(NetdslError) as ei:
        crop(n.c, n.data)
    assert "negative" in ei.value.message


def test_registered_map_for_a_fork_type():
    from netdsl.layers import declare, use_layers

    def _up(layer, shapes=None):
        return 1, 2, 0.5          # plain numbers, as pycaffe-style code would give
    with use_layers() as reg:
        declare("Upsample2x", family="test", coord_map=_up, registry=reg)
        net = net_of('layer { name: "u" type: "Upsample2x" bottom: "data" top: "u" }')
        # x_u = 2 x + 1/2: data pixel 0 is u pixel 1/2, a fractional crop
        with pytest.raises(NetdslError):
            crop_params(net, "u", "data")
        assert layer_coord_map(net.layer[1]) == (1, (2,), (Fraction(1, 2),))
