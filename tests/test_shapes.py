"""Shape inference against Caffe's own formulas.

Every expected shape below is derived by hand from the Reshape/LayerSetUp code of
BVLC Caffe (src/caffe/layers/<type>_layer.cpp, named in each test), never by
running the code under test.  C++ integer division truncates toward zero.
"""
import json
import sys
import os

import pytest

from netdsl.errors import NetdslError
from netdsl.proto import caffe_pb2
from netdsl.prototxt import parse_net
from netdsl.layers import lookup
from netdsl.shape_table import format_table, to_json
from netdsl.shapes import check_net, conv_out, deconv_out, infer_shapes, param_shapes, pool_dims

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fcn_nets  # noqa: E402


def _dims(shape):
    return " ".join("dim: %d" % d for d in shape)


def net_with(body, *bottoms, tops=1):
    """Input layers b0, b1, ... of the given shapes, then layer "L" over them."""
    text = ""
    for i, s in enumerate(bottoms):
        text += ('layer { name: "in%d" type: "Input" top: "b%d" input_param { shape { %s } } }\n'
                 % (i, i, _dims(s)))
    bl = "".join(' bottom: "b%d"' % i for i in range(len(bottoms)))
    tl = "".join(' top: "t%d"' % i for i in range(tops))
    text += 'layer { name: "L"%s%s %s }' % (bl, tl, body)
    return parse_net(text, upgrade=False)


def layer(body, *bottoms, tops=1, **kw):
    return infer_shapes(net_with(body, *bottoms, tops=tops), **kw).layers[-1]


def tops(body, *bottoms, n=1, **kw):
    return layer(body, *bottoms, tops=n, **kw).top_shapes


def error(body, *bottoms, n=1, check=False, **kw):
    fn = check_net if check else infer_shapes
    with pytest.raises(NetdslError) as ei:
        fn(net_with(body, *bottoms, tops=n), **kw)
    return ei.value


# -- Convolution (conv_layer.cpp: out = (in + 2p - (d(k-1)+1)) / s + 1, C++ division) --------

def conv(extra, num_output=4):
    return 'type: "Convolution" convolution_param { num_output: %d %s }' % (num_output, extra)


def test_conv_same_padding():
    # (32 + 2*1 - 3)/1 + 1 = 32
    ls = layer(conv("kernel_size: 3 pad: 1", 16), (1, 3, 32, 32))
    assert ls.top_shapes == [(1, 16, 32, 32)]
    # weights (num_output, C/group, kh, kw), bias (num_output,): base_conv_layer.cpp
    assert ls.param_shapes == [(16, 3, 3, 3), (16,)]
    assert ls.param_count == 16 * 3 * 9 + 16


def test_conv_stride_truncates():
    # (32 - 3)/2 + 1 = 29/2 + 1 = 14 + 1 = 15
    assert tops(conv("kernel_size: 3 stride: 2"), (1, 3, 32, 32)) == [(1, 4, 15, 15)]


def test_conv_cpp_division_truncates_toward_zero():
    # (2 - 3)/2 = -1/2, which C++ truncates to 0 (Python's floor would give -1): 0 + 1 = 1
    assert conv_out(2, 3, 2, 0) == 1
    assert tops(conv("kernel_size: 3 stride: 2"), (1, 1, 2, 2)) == [(1, 4, 1, 1)]


def test_conv_dilation():
    # extent d(k-1)+1 = 2*2+1 = 5: (10 - 5)/1 + 1 = 6
    assert tops(conv("kernel_size: 3 dilation: 2"), (1, 1, 10, 10)) == [(1, 4, 6, 6)]
    # per-axis dilation [1, 2]: H extent 3 -> 8, W extent 5 -> 6
    assert tops(conv("kernel_size: 3 dilation: 1 dilation: 2"), (1, 1, 10, 10)) == [(1, 4, 8, 6)]


def test_conv_h_w_forms():
    # H: (20 + 2 - 3)/1 + 1 = 20; W: (21 + 0 - 5)/2 + 1 = 8 + 1 = 9
    ls = layer(conv("kernel_h: 3 kernel_w: 5 stride_h: 1 stride_w: 2 pad_h: 1 pad_w: 0"),
               (1, 3, 20, 21))
    assert ls.top_shapes == [(1, 4, 20, 9)]
    assert ls.param_shapes == [(4, 3, 3, 5), (4,)]


def test_conv_nd_kernel():
    # 3 spatial axes, kernel 3 once, pad per axis [0, 1, 2]:
    # D (8+0-3)+1 = 6, H (9+2-3)+1 = 9, W (10+4-3)+1 = 12
    body = conv("kernel_size: 3 pad: 0 pad: 1 pad: 2 force_nd_im2col: true")
    ls = layer(body, (1, 2, 8, 9, 10))
    assert ls.top_shapes == [(1, 4, 6, 9, 12)]
    assert ls.param_shapes == [(4, 2, 3, 3, 3), (4,)]


def test_conv_axis():
    # axis 2: channels = shape(2) = 4, spatial (10, 10): top (2, 3, num_output, 8, 8)
    ls = layer(conv("kernel_size: 3 axis: 2", 6), (2, 3, 4, 10, 10))
    assert ls.top_shapes == [(2, 3, 6, 8, 8)]
    assert ls.param_shapes == [(6, 4, 3, 3), (6,)]


def test_conv_group():
    # group 3 on 6 channels: weights (9, 6/3, 3, 3)
    ls = layer(conv("kernel_size: 3 group: 3", 9), (1, 6, 8, 8))
    assert ls.param_shapes == [(9, 2, 3, 3), (9,)]
    e = error(conv("kernel_size: 3 group: 2", 4), (1, 5, 8, 8))
    assert e.layer == "L" and e.field == "convolution_param.group"
    assert "5" in e.message and "group 2" in e.message
    e = error(conv("kernel_size: 3 group: 2", 7), (1, 4, 8, 8))
    assert "num_output 7" in e.message


def test_conv_no_bias_and_multiple_bottoms():
    ls = layer(conv("kernel_size: 1 bias_term: false"), (2, 3, 5, 5), (2, 3, 5, 5), tops=2)
    assert ls.top_shapes == [(2, 4, 5, 5), (2, 4, 5, 5)]
    assert ls.param_shapes == [(4, 3, 1, 1)]
    e = error(conv("kernel_size: 1"), (2, 3, 5, 5), (2, 3, 5, 6), n=2)
    assert "(2, 3, 5, 6)" in e.message
    e = error(conv("kernel_size: 1"), (2, 3, 5, 5), (2, 3, 5, 5), n=1)
    assert "as many top blobs as bottom blobs" in e.message


def test_conv_negative_and_empty_outputs():
    # (1 - 3)/1 + 1 = -1: Caffe's Blob::Reshape rejects it
    e = error(conv("kernel_size: 3"), (1, 1, 1, 1))
    assert "-1" in e.message and "stride + 1" in e.message
    # (2 - 3)/1 + 1 = -1 + 1 = 0: Caffe accepts an empty blob, check_net does not
    assert tops(conv("kernel_size: 3"), (1, 1, 2, 2)) == [(1, 4, 0, 0)]
    e = error(conv("kernel_size: 3"), (1, 1, 2, 2), check=True)
    assert "output size below 1" in e.message and e.layer == "L"
    assert "(2 + 2*0 - 3) / 1 + 1" in e.message


def test_conv_parameter_errors():
    e = error(conv("kernel_size: 3 kernel_size: 3 kernel_size: 3"), (1, 1, 8, 8))
    assert "once per spatial dimension" in e.message
    e = error(conv("kernel_size: 3 kernel_h: 3 kernel_w: 3"), (1, 1, 8, 8))
    assert "not both" in e.message
    e = error(conv("kernel_h: 3 kernel_w: 3"), (1, 1, 8, 8, 8))
    assert "2D" in e.message
    e = error('type: "Convolution" convolution_param { kernel_size: 3 }', (1, 1, 8, 8))
    assert e.field == "convolution_param.num_output"


# -- Deconvolution (deconv_layer.cpp: out = s(in - 1) + d(k-1)+1 - 2p) -----------------------

def deconv(extra, num_output=21):
    return 'type: "Deconvolution" convolution_param { num_output: %d %s }' % (num_output, extra)


def test_deconv_fcn32s_upscore():
    # 32*(16 - 1) + 64 - 0 = 544; weights (C_in, num_output/group, k, k)
    ls = layer(deconv("kernel_size: 64 stride: 32 bias_term: false"), (1, 21, 16, 16))
    assert ls.top_shapes == [(1, 21, 544, 544)]
    assert ls.param_shapes == [(21, 21, 64, 64)]


@pytest.mark.parametrize("k,s,p,size,expected", [
    (4, 2, 1, 16, 32),   # 2*15 + 4 - 2 = 32: even factor, exactly 2x
    (3, 2, 1, 16, 31),   # 2*15 + 3 - 2 = 31: odd kernel
    (2, 2, 0, 16, 32),   # 2*15 + 2 - 0 = 32
    (5, 3, 1, 10, 30),   # 3*9 + 5 - 2 = 30: odd factor 3
])
def test_deconv_factors(k, s, p, size, expected):
    assert deconv_out(size, k, s, p) == expected
    body = deconv("kernel_size: %d stride: %d pad: %d" % (k, s, p), 4)
    assert tops(body, (1, 2, size, size)) == [(1, 4, expected, expected)]


def test_deconv_dilation_and_group():
    # 1*(5 - 1) + (2*2 + 1) - 0 = 9
    assert tops(deconv("kernel_size: 3 dilation: 2", 4), (1, 2, 5, 5)) == [(1, 4, 9, 9)]
    # group 2: weights (C_in = 8, num_output/group = 2, 3, 3), bias (4,)
    ls = layer(deconv("kernel_size: 3 group: 2", 4), (1, 8, 5, 5))
    assert ls.param_shapes == [(8, 2, 3, 3), (4,)]


# -- Im2col (im2col_layer.cpp: channels * prod(kernel), spatial as convolution) ------------------

def test_im2col():
    # 3*3*3 = 27 channels, (10 - 3)/1 + 1 = 8
    assert tops('type: "Im2col" convolution_param { kernel_size: 3 }', (1, 3, 10, 10)) == \
        [(1, 27, 8, 8)]
    # kernel 2x3: 3*2*3 = 18 channels, H 9, W 8
    assert tops('type: "Im2col" convolution_param { kernel_h: 2 kernel_w: 3 }',
                (1, 3, 10, 10)) == [(1, 18, 9, 8)]


# -- Pooling (pooling_layer.cpp: ceil(float(in + 2p - k) / s) + 1, then the pad clip) ----------

def pool(extra, method="MAX"):
    return 'type: "Pooling" pooling_param { pool: %s %s }' % (method, extra)


def test_pool_rounds_up():
    # ceil((7 - 2)/2) + 1 = ceil(2.5) + 1 = 4 (a convolution's floor would give 3)
    assert tops(pool("kernel_size: 2 stride: 2"), (1, 1, 7, 7)) == [(1, 1, 4, 4)]


def test_pool_floor_round_mode():
    # round_mode FLOOR: floor(2.5) + 1 = 3
    assert tops(pool("kernel_size: 2 stride: 2 round_mode: FLOOR"), (1, 1, 7, 7)) == [(1, 1, 3, 3)]


def test_pool_clip_rule():
    # ceil((5 + 2 - 2)/2) + 1 = 4, but the last window would start at (4-1)*2 = 6 >= 5 + 1,
    # i.e. in the padding, so Caffe drops it: 3
    assert pool_dims(5, 5, 2, 2, 2, 2, 1, 1) == (3, 3)
    assert tops(pool("kernel_size: 2 stride: 2 pad: 1"), (1, 1, 5, 5)) == [(1, 1, 3, 3)]
    # no clip when the last window starts inside: ceil((6 + 2 - 3)/2) + 1 = 4, 6 < 6 + 1
    assert tops(pool("kernel_size: 3 stride: 2 pad: 1", "AVE"), (1, 1, 6, 6)) == [(1, 1, 4, 4)]


def test_pool_clip_applies_to_both_axes_when_either_pads():
    # Caffe tests `if (pad_h_ || pad_w_)` and then clips each axis:
    # H: ceil((6 + 2 - 2)/2) + 1 = 4, (4-1)*2 = 6 < 6 + 1, kept
    # W: ceil((5 + 0 - 1)/3) + 1 = 3, (3-1)*3 = 6 >= 5 + 0, dropped -> 2 (pad_w is 0!)
    body = pool("kernel_h: 2 kernel_w: 1 stride_h: 2 stride_w: 3 pad_h: 1 pad_w: 0")
    assert tops(body, (1, 1, 6, 5)) == [(1, 1, 4, 2)]


def test_pool_h_w_and_global():
    # H ceil((10 - 3)/1) + 1 = 8; W ceil((12 - 2)/2) + 1 = 6
    assert tops(pool("kernel_h: 3 kernel_w: 2 stride_h: 1 stride_w: 2"), (1, 1, 10, 12)) == \
        [(1, 1, 8, 6)]
    # global pooling: kernel = the whole plane, one output
    assert tops(pool("global_pooling: true", "AVE"), (2, 8, 7, 5)) == [(2, 8, 1, 1)]


def test_pool_single_precision_quotient():
    # float(16777219 - 2) = float(16777217) rounds to 16777216.0f in single precision,
    # so Caffe computes ceil(16777216/1) + 1 = 16777217, not 16777218
    assert tops(pool("kernel_h: 2 kernel_w: 1"), (1, 1, 16777219, 1)) == [(1, 1, 16777217, 1)]


def test_pool_tops_and_errors():
    # MAX may output its argmax mask as a second top of the same shape
    assert tops(pool("kernel_size: 2 stride: 2"), (1, 1, 4, 4), n=2) == [(1, 1, 2, 2)] * 2
    assert "exactly 1 top" in error(pool("kernel_size: 2", "AVE"), (1, 1, 4, 4), n=2).message
    assert "average and max" in error(pool("kernel_size: 3 pad: 1", "STOCHASTIC"),
                                      (1, 1, 4, 4)).message
    assert "smaller than the kernel" in error(pool("kernel_size: 2 pad: 2"), (1, 1, 4, 4)).message
    assert "4-axis" in error(pool("kernel_size: 2"), (1, 4, 4)).message
    assert "Global_pooling" in error(pool("global_pooling: true kernel_size: 2"),
                                     (1, 1, 4, 4)).message


# -- SPP (spp_layer.cpp GetPoolingParam) -----------------------------------------------------------

def test_spp_three_levels():
    # 13x13, 8 channels.  level 0: 1 bin, kernel 13, pad 0 -> 1x1.
    # level 1: 2 bins, kernel ceil(13/2) = 7, pad (7*2 - 13 + 1)/2 = 1:
    #   ceil((13 + 2 - 7)/7) + 1 = 3, clipped since (3-1)*7 = 14 >= 13 + 1 -> 2x2.
    # level 2: 4 bins, kernel 4, pad (16 - 13 + 1)/2 = 2:
    #   ceil((13 + 4 - 4)/4) + 1 = 5, clipped since (5-1)*4 = 16 >= 13 + 2 -> 4x4.
    # flattened and concatenated: 8 * (1 + 4 + 16) = 168
    assert tops('type: "SPP" spp_param { pyramid_height: 3 }', (1, 8, 13, 13)) == [(1, 168)]
    # a single level is the pooling output itself, not flattened
    assert tops('type: "SPP" spp_param { pyramid_height: 1 }', (1, 8, 13, 13)) == [(1, 8, 1, 1)]


def test_spp_small_input_fails_like_caffe():
    # 1x1 input, level 1: kernel ceil(1/2) = 1, pad (1*2 - 1 + 1)/2 = 1, and Caffe's
    # pooling requires pad < kernel
    e = error('type: "SPP" spp_param { pyramid_height: 2 }', (1, 8, 1, 1))
    assert "pyramid level 1" in e.message


# -- InnerProduct, Embed ------------------------------------------------------------------------------

def ip(extra):
    return 'type: "InnerProduct" inner_product_param { num_output: 10 %s }' % extra


def test_inner_product_axes():
    # inner_product_layer.cpp: top = shape[:axis] + (N,), K = count(axis)
    ls = layer(ip(""), (2, 3, 4, 5))
    assert ls.top_shapes == [(2, 10)]
    assert ls.param_shapes == [(10, 60), (10,)] and ls.param_count == 610
    ls = layer(ip("axis: 2"), (2, 3, 4, 5))
    assert ls.top_shapes == [(2, 3, 10)] and ls.param_shapes[0] == (10, 20)
    ls = layer(ip("axis: -1 bias_term: false"), (2, 3, 4, 5))
    assert ls.top_shapes == [(2, 3, 4, 10)] and ls.param_shapes == [(10, 5)]
    # transpose stores (K, N)
    assert layer(ip("transpose: true"), (2, 3, 4, 5)).param_shapes == [(60, 10), (10,)]


def test_embed():
    # embed_layer.cpp: bottom shape + (num_output,); weights (input_dim, num_output)
    ls = layer('type: "Embed" embed_param { num_output: 10 input_dim: 100 }', (4, 7))
    assert ls.top_shapes == [(4, 7, 10)]
    assert ls.param_shapes == [(100, 10), (10,)]
    assert "input_dim" in error('type: "Embed" embed_param { num_output: 10 }', (4, 7)).message


# -- Crop (crop_layer.cpp) ----------------------------------------------------------------------------

def test_crop_fcn():
    # axes >= 2 take bottom[1]'s size; 544 - 19 >= 500
    body = 'type: "Crop" crop_param { axis: 2 offset: 19 }'
    assert tops(body, (1, 21, 544, 544), (1, 3, 500, 500)) == [(1, 21, 500, 500)]


def test_crop_out_of_bounds():
    # 544 - 45 = 499 < 500
    e = error('type: "Crop" crop_param { axis: 2 offset: 45 }', (1, 21, 544, 544), (1, 3, 500, 500))
    assert "544 - 45 = 499 < 500" in e.message and e.field == "crop_param.offset"


def test_crop_several_offsets():
    # axis 1, offsets (1, 2, 3): 10-1 >= 5, 20-2 >= 10, 30-3 >= 15
    body = 'type: "Crop" crop_param { axis: 1 offset: 1 offset: 2 offset: 3 }'
    assert tops(body, (2, 10, 20, 30), (2, 5, 10, 15)) == [(2, 5, 10, 15)]
    # offset 3 on the last axis is out of bounds when bottom[1] has 28: 30 - 3 = 27 < 28
    e = error(body, (2, 10, 20, 30), (2, 5, 10, 28))
    assert "dimension 3" in e.message
    # two offsets for three axes after axis 1
    e = error('type: "Crop" crop_param { axis: 1 offset: 1 offset: 2 }', (2, 10, 20, 30),
              (2, 5, 10, 15))
    assert "number of offset values" in e.message


def test_crop_axis_0_and_default_offset():
    assert tops('type: "Crop" crop_param { axis: 0 offset: 1 }', (4, 4), (2, 2)) == [(2, 2)]
    # default axis 2, no offset: 0
    assert tops('type: "Crop"', (1, 3, 8, 8), (1, 1, 5, 6)) == [(1, 3, 5, 6)]


# -- Concat, Slice, Split, Eltwise --------------------------------------------------------------------

def test_concat():
    # concat_layer.cpp: sizes add on the axis, all else equal
    assert tops('type: "Concat"', (2, 3, 4, 4), (2, 5, 4, 4)) == [(2, 8, 4, 4)]
    assert tops('type: "Concat" concat_param { axis: 0 }', (2, 3), (5, 3)) == [(7, 3)]
    assert tops('type: "Concat" concat_param { concat_dim: 0 }', (2, 3), (5, 3)) == [(7, 3)]
    assert tops('type: "Concat" concat_param { axis: -1 }', (2, 3), (2, 4)) == [(2, 7)]
    e = error('type: "Concat"', (2, 3, 4, 4), (2, 3, 5, 4))
    assert "axis 2" in e.message and "(2, 3, 5, 4)" in e.message
    assert "not both" in error('type: "Concat" concat_param { axis: 1 concat_dim: 1 }',
                               (2, 3), (2, 3)).message


def test_slice():
    # slice_layer.cpp: points 3, 7 of 10 give 3, 4 and 3
    assert tops('type: "Slice" slice_param { axis: 1 slice_point: 3 slice_point: 7 }',
                (2, 10, 3), n=3) == [(2, 3, 3), (2, 4, 3), (2, 3, 3)]
    # no points: an even split, 10/2
    assert tops('type: "Slice"', (2, 10, 3), n=2) == [(2, 5, 3)] * 2
    assert "evenly divide" in error('type: "Slice"', (2, 10, 3), n=3).message
    # legacy slice_dim 2: 3 tops of width 1
    assert tops('type: "Slice" slice_param { slice_dim: 2 }', (2, 10, 3), n=3) == [(2, 10, 1)] * 3
    assert "one fewer" in error('type: "Slice" slice_param { slice_point: 3 }',
                                (2, 10, 3), n=3).message


def test_split_and_eltwise():
    assert tops('type: "Split"', (2, 3), n=3) == [(2, 3)] * 3
    assert tops('type: "Eltwise"', (2, 3), (2, 3), (2, 3)) == [(2, 3)]
    assert "(2, 4)" in error('type: "Eltwise"', (2, 3), (2, 4)).message
    assert "one coefficient per bottom" in error(
        'type: "Eltwise" eltwise_param { coeff: 1 coeff: 1 }', (2, 3), (2, 3), (2, 3)).message
    assert "summation" in error(
        'type: "Eltwise" eltwise_param { operation: PROD coeff: 1 coeff: 1 }',
        (2, 3), (2, 3)).message


# -- Flatten, Reshape -----------------------------------------------------------------------------------

def test_flatten():
    # flatten_layer.cpp: axes [axis, end_axis] multiply together
    assert tops('type: "Flatten"', (2, 3, 4, 5)) == [(2, 60)]
    assert tops('type: "Flatten" flatten_param { axis: 2 }', (2, 3, 4, 5)) == [(2, 3, 20)]
    assert tops('type: "Flatten" flatten_param { axis: 1 end_axis: 2 }', (2, 3, 4, 5)) == \
        [(2, 12, 5)]


@pytest.mark.parametrize("param,expected", [
    ("shape { dim: 0 dim: -1 }", (2, 60)),              # 0 copies 2; -1 = 120/2
    ("shape { dim: 0 dim: 0 dim: -1 }", (2, 3, 20)),    # 120/(2*3)
    ("shape { dim: -1 dim: 4 dim: 5 }", (6, 4, 5)),     # 120/20
    ("axis: 1 num_axes: 2 shape { dim: -1 }", (2, 12, 5)),      # axes 1..2 (3*4) replaced
    ("axis: -1 num_axes: 0 shape { dim: 1 }", (2, 3, 4, 5, 1)),  # start = 4 + (-1) + 1 = 4
    ("axis: 0 num_axes: 1 shape { dim: 1 dim: 2 }", (1, 2, 3, 4, 5)),
])
def test_reshape(param, expected):
    # reshape_layer.cpp
    assert tops('type: "Reshape" reshape_param { %s }' % param, (2, 3, 4, 5)) == [expected]


@pytest.mark.parametrize("param,text", [
    ("shape { dim: 7 dim: -1 }", "divisible"),          # 120 % 7 = 1
    ("shape { dim: 2 dim: 7 }", "must match input count"),  # 14 != 120
    ("shape { dim: -1 dim: -1 }", "multiple -1"),
    ("shape { dim: 0 dim: 0 dim: 0 dim: 0 dim: 0 }", "no corresponding bottom axis"),
])
def test_reshape_errors(param, text):
    e = error('type: "Reshape" reshape_param { %s }' % param, (2, 3, 4, 5))
    assert text in e.message and e.field == "reshape_param.shape"


def test_no_in_place_for_split_flatten_reshape():
    for t in ("Split", "Flatten", "Reshape"):
        net = net_with('type: "%s"' % t, (2, 3))
        net.layer[-1].top[0] = "b0"
        with pytest.raises(NetdslError) as ei:
            infer_shapes(net)
        assert "in-place" in ei.value.message


# -- Tile, Reduction, ArgMax, Softmax -------------------------------------------------------------------

def test_tile_reduction_softmax():
    # tile_layer.cpp: axis size * tiles
    assert tops('type: "Tile" tile_param { axis: 1 tiles: 4 }', (2, 3)) == [(2, 12)]
    assert tops('type: "Tile" tile_param { axis: 0 tiles: 2 }', (2, 3)) == [(4, 3)]
    assert "tiles" in error('type: "Tile"', (2, 3)).message
    # reduction_layer.cpp: shape[:axis]
    assert tops('type: "Reduction"', (2, 3, 4)) == [()]
    assert tops('type: "Reduction" reduction_param { axis: 1 }', (2, 3, 4)) == [(2,)]
    assert tops('type: "Reduction" reduction_param { axis: -1 }', (2, 3, 4)) == [(2, 3)]
    assert tops('type: "Softmax"', (2, 5, 3)) == [(2, 5, 3)]
    assert "out of range" in error('type: "Softmax" softmax_param { axis: 3 }', (2, 5, 3)).message


@pytest.mark.parametrize("param,shape,expected", [
    ("", (2, 10), (2, 1, 1)),                     # max(2 axes, 3) axes: (N, 1, top_k)
    ("out_max_val: true", (2, 10), (2, 2, 1)),    # channel 2 holds index and value
    ("top_k: 3", (2, 10), (2, 1, 3)),
    ("", (2, 10, 4, 5), (2, 1, 1, 1)),
    ("axis: 1 top_k: 2", (2, 10, 4, 5), (2, 2, 4, 5)),
])
def test_argmax(param, shape, expected):
    # argmax_layer.cpp Reshape
    assert tops('type: "ArgMax" argmax_param { %s }' % param, shape) == [expected]


def test_argmax_top_k_too_large():
    assert "top_k" in error('type: "ArgMax" argmax_param { top_k: 11 }', (2, 10)).message


# -- Accuracy and losses -----------------------------------------------------------------------------------

def test_accuracy():
    # accuracy_layer.cpp: scalar; optional second top is per class, (C,)
    assert tops('type: "Accuracy"', (10, 5), (10,)) == [()]
    assert tops('type: "Accuracy"', (10, 5), (10,), n=2) == [(), (5,)]
    assert tops('type: "Accuracy"', (1, 21, 5, 5), (1, 1, 5, 5)) == [()]
    assert "Number of labels" in error('type: "Accuracy"', (10, 5), (9,)).message
    # top_k 6 > 50 predictions / 10 labels = 5 classes
    assert "top_k" in error('type: "Accuracy" accuracy_param { top_k: 6 }', (10, 5), (10,)).message


def test_softmax_loss():
    # loss_layer.cpp: scalar loss, loss_weight 1 by default
    ls = layer('type: "SoftmaxWithLoss"', (2, 21, 5, 5), (2, 1, 5, 5))
    assert ls.top_shapes == [()] and ls.loss_weights == [1.0]
    # a second top (the probabilities) needs loss_weight per top: Caffe adds one
    # loss_weight 1 and then requires one per top
    e = error('type: "SoftmaxWithLoss"', (2, 21, 5, 5), (2, 1, 5, 5), n=2)
    assert e.field == "loss_weight"
    ls = layer('type: "SoftmaxWithLoss" loss_weight: 1 loss_weight: 0', (2, 21, 5, 5),
               (2, 1, 5, 5), tops=2)
    assert ls.top_shapes == [(), (2, 21, 5, 5)] and ls.loss_weights == [1.0, 0.0]
    # N*H*W = 2*5*5 = 50 labels needed, 40 given
    assert "Number of labels" in error('type: "SoftmaxWithLoss"', (2, 21, 5, 5),
                                       (2, 1, 4, 5)).message
    assert "first dimension" in error('type: "SoftmaxWithLoss"', (2, 21), (3,)).message


def test_loss_without_top_gets_an_anonymous_one():
    # LossLayer::AutoTopBlobs: Caffe adds an "(automatic)" top, loss weight 1
    shapes = infer_shapes(net_with('type: "EuclideanLoss"', (4, 3), (4, 3), tops=0))
    ls = shapes.layers[-1]
    assert ls.tops == ["(automatic)"] and ls.top_shapes == [()] and ls.loss_weights == [1.0]
    assert "(automatic)" not in shapes.blobs


def test_other_losses():
    assert tops('type: "EuclideanLoss"', (4, 3), (4, 3)) == [()]
    assert "same dimension" in error('type: "EuclideanLoss"', (4, 3), (4, 2)).message
    assert tops('type: "SigmoidCrossEntropyLoss"', (4, 3), (4, 3)) == [()]
    assert tops('type: "MultinomialLogisticLoss"', (4, 10), (4,)) == [()]
    assert "label" in error('type: "MultinomialLogisticLoss"', (4, 10), (4, 2)).message
    assert tops('type: "HingeLoss"', (4, 10), (4,)) == [()]
    assert tops('type: "ContrastiveLoss"', (4, 8), (4, 8), (4,)) == [()]
    assert tops('type: "InfogainLoss"', (4, 10), (4,), (10, 10)) == [()]
    assert "10 x 10" in error('type: "InfogainLoss"', (4, 10), (4,), (10, 9)).message
    assert layer('type: "EuclideanLoss" loss_weight: 0.5', (4, 3), (4, 3)).loss_weights == [0.5]


# -- normalisation, scale, element-wise --------------------------------------------------------------------

def test_batch_norm():
    # batch_norm_layer.cpp: mean (C,), variance (C,), moving average factor (1,)
    ls = layer('type: "BatchNorm"', (2, 3, 4, 5))
    assert ls.top_shapes == [(2, 3, 4, 5)]
    assert ls.param_shapes == [(3,), (3,), (1,)] and ls.param_count == 7
    ok = 'type: "BatchNorm" param { lr_mult: 0 } param { lr_mult: 0 } param { lr_mult: 0 }'
    assert layer(ok, (2, 3)).param_shapes == [(3,), (3,), (1,)]
    e = error('type: "BatchNorm" param { lr_mult: 1 }', (2, 3, 4, 5))
    assert "lr_mult" in e.message


def test_scale_and_bias():
    # scale_layer.cpp: one bottom -> scale blob shape[axis:axis+num_axes]; bias_term adds
    # a bias of the same shape
    assert layer('type: "Scale" scale_param { bias_term: true }', (2, 3, 4, 5)).param_shapes == \
        [(3,), (3,)]
    assert layer('type: "Scale" scale_param { num_axes: -1 }', (2, 3, 4, 5)).param_shapes == \
        [(3, 4, 5)]
    ls = layer('type: "Scale" scale_param { num_axes: 0 }', (2, 3, 4, 5))
    assert ls.param_shapes == [()] and ls.param_count == 1
    assert layer('type: "Scale" scale_param { axis: 2 num_axes: 2 }', (2, 3, 4, 5)).param_shapes \
        == [(4, 5)]
    # two bottoms: the scale is bottom[1]; a bias gets bottom[1]'s number of axes
    ls = layer('type: "Scale" scale_param { bias_term: true }', (2, 3, 4, 5), (3, 4))
    assert ls.top_shapes == [(2, 3, 4, 5)] and ls.param_shapes == [(3, 4)]
    assert layer('type: "Scale"', (2, 3, 4, 5), (3, 4)).param_shapes == []
    assert "dimension mismatch" in error('type: "Scale"', (2, 3, 4, 5), (3, 5)).message
    assert "extends past" in error('type: "Scale" scale_param { num_axes: 4 }', (2, 3, 4, 5)).message
    # bias_layer.cpp
    assert layer('type: "Bias"', (2, 3, 4, 5)).param_shapes == [(3,)]
    assert layer('type: "Bias"', (2, 3, 4, 5), (3,)).param_shapes == []


def test_prelu():
    # prelu_layer.cpp: one slope per channel, or one shared (a 0-axis blob)
    assert layer('type: "PReLU"', (2, 3, 4, 5)).param_shapes == [(3,)]
    assert layer('type: "PReLU" prelu_param { channel_shared: true }', (2, 3)).param_shapes == [()]
    assert ">=2" in error('type: "PReLU"', (5,)).message
    assert "at most 4 axes" in error('type: "PReLU"', (1, 2, 3, 4, 5)).message


def test_lrn_mvn():
    assert tops('type: "LRN"', (2, 3, 4, 5)) == [(2, 3, 4, 5)]
    assert "odd" in error('type: "LRN" lrn_param { local_size: 4 }', (2, 3, 4, 5)).message
    assert "4-axis" in error('type: "LRN"', (2, 3, 4)).message
    # mvn_layer.cpp reshapes to (num, channels, height, width), legacy 1-padding
    assert tops('type: "MVN"', (2, 3)) == [(2, 3, 1, 1)]


@pytest.mark.parametrize("t", ["AbsVal", "BNLL", "Dropout", "ELU", "Exp", "Log", "Power", "ReLU",
                               "Sigmoid", "Swish", "TanH", "Threshold"])
def test_neurons_keep_shape(t):
    # neuron_layer.cpp: top shaped like bottom
    assert tops('type: "%s"' % t, (2, 3, 4)) == [(2, 3, 4)]


def test_clip_and_exp_base():
    assert tops('type: "Clip" clip_param { min: 0 max: 6 }', (2, 3)) == [(2, 3)]
    # exp_layer.cpp: base must be > 0, or -1 for e
    assert "base" in error('type: "Exp" exp_param { base: 0 }', (2, 3)).message


# -- data and input layers ---------------------------------------------------------------------------------

def data_net(body, n=1):
    tl = "".join(' top: "t%d"' % i for i in range(n))
    return parse_net('layer { name: "d"%s %s }' % (tl, body), upgrade=False)


def data_tops(body, n=1, **kw):
    return infer_shapes(data_net(body, n), **kw).layers[0].top_shapes


def data_error(body, n=1, **kw):
    with pytest.raises(NetdslError) as ei:
        infer_shapes(data_net(body, n), **kw)
    return ei.value


def test_input_layer():
    # input_layer.cpp: shape once (for every top), once per top, or not at all
    assert data_tops('type: "Input" input_param { shape { dim: 2 dim: 3 } }', 2) == [(2, 3)] * 2
    assert data_tops('type: "Input" input_param { shape { dim: 2 } shape { dim: 5 dim: 1 } }',
                     2) == [(2,), (5, 1)]
    assert "once per top" in data_error(
        'type: "Input" input_param { shape { dim: 1 } shape { dim: 2 } shape { dim: 3 } }',
        2).message
    e = data_error('type: "Input"')
    assert "inputs=" in e.hint
    assert data_tops('type: "Input"', inputs={"t0": (1, 3, 8, 8)}) == [(1, 3, 8, 8)]
    # inputs override the layer's own shape
    assert data_tops('type: "Input" input_param { shape { dim: 1 } }',
                     inputs={"t0": [4, 5]}) == [(4, 5)]


def test_dummy_data():
    assert data_tops('type: "DummyData" dummy_data_param { shape { dim: 2 dim: 3 } }', 2) == \
        [(2, 3)] * 2
    # legacy num/channels/height/width give 4-axis blobs
    assert data_tops('type: "DummyData" dummy_data_param { num: 5 channels: 3 height: 4 '
                     'width: 4 }') == [(5, 3, 4, 4)]
    assert "Both shape and legacy" in data_error(
        'type: "DummyData" dummy_data_param { num: 5 channels: 3 height: 4 width: 4 '
        'shape { dim: 1 } }').message


def test_memory_and_image_data():
    # memory_data_layer.cpp
    assert data_tops('type: "MemoryData" memory_data_param { batch_size: 4 channels: 3 height: 5 '
                     'width: 6 }', 2) == [(4, 3, 5, 6), (4,)]
    assert "positive" in data_error('type: "MemoryData" memory_data_param { batch_size: 4 }',
                                    2).message
    # image_data_layer.cpp: images resized to new_height x new_width, 3 channels if is_color
    assert data_tops('type: "ImageData" image_data_param { batch_size: 8 new_height: 100 '
                     'new_width: 120 }', 2) == [(8, 3, 100, 120), (8,)]
    assert data_tops('type: "ImageData" image_data_param { new_height: 100 new_width: 120 '
                     'is_color: false }', 2) == [(1, 1, 100, 120), (1,)]
    assert data_tops('type: "ImageData" transform_param { crop_size: 64 } image_data_param { '
                     'batch_size: 8 }', 2) == [(8, 3, 64, 64), (8,)]
    assert "same time" in data_error('type: "ImageData" image_data_param { new_height: 100 }',
                                     2).message
    assert "declared" in data_error('type: "ImageData"', 2).hint


def test_data_and_window_data():
    # data_layer.cpp: (batch_size,) + datum shape cropped to crop_size
    shapes = infer_shapes(data_net('type: "Data" transform_param { crop_size: 227 } data_param { '
                                   'batch_size: 64 }', 2))
    assert shapes.layers[0].top_shapes == [(64, 3, 227, 227), (64,)]
    assert "assumed 3" in shapes.layers[0].note
    # channels known from per-channel mean values or force_gray
    assert data_tops('type: "Data" transform_param { crop_size: 28 mean_value: 1 mean_value: 2 '
                     'mean_value: 3 mean_value: 4 } data_param { batch_size: 2 }') == \
        [(2, 4, 28, 28)]
    assert data_tops('type: "Data" transform_param { crop_size: 28 force_gray: true } data_param { '
                     'batch_size: 2 }') == [(2, 1, 28, 28)]
    assert "declared" in data_error('type: "Data" data_param { batch_size: 64 }').hint
    # window_data_layer.cpp: crop_size > 0 required
    assert data_tops('type: "WindowData" transform_param { crop_size: 227 } window_data_param { '
                     'batch_size: 128 }', 2) == [(128, 3, 227, 227), (128,)]
    assert "crop_size" in data_error('type: "WindowData"', 2).message


def test_python_and_hdf5_need_declarations():
    e = data_error('type: "Python" python_param { module: "voc_layers" layer: "VOCSeg" }', 2)
    assert "voc_layers.VOCSeg" in e.message and "declared" in e.hint and e.layer == "d"
    # by layer name (one shape per top) or by top name
    assert data_tops('type: "Python"', 2, declared={"d": [(1, 3, 8, 8), (1, 1, 8, 8)]}) == \
        [(1, 3, 8, 8), (1, 1, 8, 8)]
    assert data_tops('type: "Python"', 2, declared={"t0": (1, 3, 8, 8), "t1": (1,)}) == \
        [(1, 3, 8, 8), (1,)]
    assert data_tops('type: "Python"', 2, inputs={"t0": (1, 3, 8, 8), "t1": (1,)}) == \
        [(1, 3, 8, 8), (1,)]
    e = data_error('type: "HDF5Data" hdf5_data_param { batch_size: 10 }', 2)
    assert "HDF5" in e.message and "declared" in e.hint


def test_parameter_layer():
    # parameter_layer.hpp: the top is the learnable blob itself
    ls = infer_shapes(data_net('type: "Parameter" parameter_param { shape { dim: 3 dim: 4 } }'))
    assert ls.layers[0].top_shapes == [(3, 4)] and ls.layers[0].param_shapes == [(3, 4)]


# -- recurrent layers -------------------------------------------------------------------------------------

def test_lstm():
    # lstm_layer.cpp unrolled net: x (T, N, I) -> h (T, N, H); params W_xc (4H, I), b_c (4H,),
    # W_hc (4H, H)
    ls = layer('type: "LSTM" recurrent_param { num_output: 4 }', (5, 2, 3), (5, 2))
    assert ls.top_shapes == [(5, 2, 4)]
    assert ls.param_shapes == [(16, 3), (16,), (16, 4)]
    # static input (N, S) adds W_xc_static (4H, S) after b_c
    ls = layer('type: "LSTM" recurrent_param { num_output: 4 }', (5, 2, 3), (5, 2), (2, 6))
    assert ls.param_shapes == [(16, 3), (16,), (16, 6), (16, 4)]
    # expose_hidden: bottoms h_0, c_0 (1, N, H); tops h_T, c_T (1, N, H)
    ls = layer('type: "LSTM" recurrent_param { num_output: 4 expose_hidden: true }',
               (5, 2, 3), (5, 2), (1, 2, 4), (1, 2, 4), tops=3)
    assert ls.top_shapes == [(5, 2, 4), (1, 2, 4), (1, 2, 4)]
    assert "3 axes" in error('type: "LSTM" recurrent_param { num_output: 4 }', (5, 2),
                             (5, 2)).message


def test_rnn_and_lstm_unit():
    # rnn_layer.cpp: W_xh (H, I), b_h (H,), W_hh (H, H), W_ho (H, H), b_o (H,)
    ls = layer('type: "RNN" recurrent_param { num_output: 4 }', (5, 2, 3), (5, 2))
    assert ls.top_shapes == [(5, 2, 4)]
    assert ls.param_shapes == [(4, 3), (4,), (4, 4), (4, 4), (4,)]
    # lstm_unit_layer.cpp: c (1, N, H) and gates (1, N, 4H) give c and h (1, N, H)
    assert tops('type: "LSTMUnit"', (1, 2, 4), (1, 2, 16), (1, 2), n=2) == [(1, 2, 4)] * 2
    assert "4 x 4" in error('type: "LSTMUnit"', (1, 2, 4), (1, 2, 12), (1, 2), n=2).message


# -- BatchReindex, Filter, Silence, HDF5Output ------------------------------------------------------------

def test_batch_reindex_filter_silence():
    # batch_reindex_layer.cpp: (len(indices),) + bottom[0].shape[1:]
    assert tops('type: "BatchReindex"', (5, 3, 2), (7,)) == [(7, 3, 2)]
    # filter_layer.cpp: at set-up each top is shaped like its bottom (the whole batch)
    ls = layer('type: "Filter"', (6, 3), (6, 1))
    assert ls.top_shapes == [(6, 3)] and "selector" in ls.note
    assert "singletons" in error('type: "Filter"', (6, 3), (6, 2)).message
    assert tops('type: "Silence"', (6, 3), n=0) == []
    assert tops('type: "HDF5Output"', (6, 3), (6,), n=0) == []


# -- nets ---------------------------------------------------------------------------------------------------

def test_fcn32s_deploy_shapes():
    # voc-fcn32s at 500x500 (hand-derived):
    #   conv1_1: (500 + 2*100 - 3)/1 + 1 = 698; pool1: ceil((698-2)/2) + 1 = 349;
    #   pool2: ceil(347/2) + 1 = 175; pool3: ceil(173/2) + 1 = 88; pool4: 44; pool5: 22;
    #   fc6 (kernel 7): 22 - 7 + 1 = 16; upscore: 32*(16 - 1) + 64 = 544; score: crop to 500
    s = check_net(fcn_nets.fcn32s())
    b = s.blobs
    assert b["conv1_1"] == (1, 64, 698, 698)
    assert [b["pool%d" % i][2] for i in range(1, 6)] == [349, 175, 88, 44, 22]
    assert b["fc6"] == (1, 4096, 16, 16) and b["fc7"] == (1, 4096, 16, 16)
    assert b["upscore"] == (1, 21, 544, 544)
    assert b["score"] == (1, 21, 500, 500)
    # VGG-16's convolutions hold 14,714,688 parameters; fc6 as a 7x7 convolution
    # 512*49*4096 + 4096, fc7 4096*4096 + 4096, score_fr 4096*21 + 21, upscore 21*21*64*64
    assert s.param_count == (14714688 + 512 * 49 * 4096 + 4096 + 4096 * 4096 + 4096
                             + 4096 * 21 + 21 + 21 * 21 * 64 * 64)


def test_blob_order_and_in_place():
    s = infer_shapes(fcn_nets.fcn32s())
    # Caffe creates blobs in top order; in-place ReLU and Dropout make none
    assert list(s.blobs)[:5] == ["data", "conv1_1", "conv1_2", "pool1", "conv2_1"]
    assert len(s.blobs) == 24
    relu = s.layer("relu1_1")
    assert relu.in_place == [True] and relu.top_shapes == [(1, 64, 698, 698)]


def test_strides_and_offsets_on_the_input():
    s = infer_shapes(fcn_nets.fcn32s())
    # conv1_1 (k3, pad 100): output pixel 0 is centred on input pixel -100 + 1 = -99
    assert s.layer("conv1_1").strides == [(1,)] and s.layer("conv1_1").offsets == [(-99,)]
    # pool1 (k2 s2) averages conv pixels 2j, 2j+1: centre -99 + 2j + 0.5
    assert s.layer("pool1").strides == [(2,)] and s.layer("pool1").offsets == [(-98.5,)]
    # upscore is 19 pixels ahead of the input (FCN's crop offset), score aligned
    assert s.layer("upscore").offsets == [(-19,)] and s.layer("score").offsets == [(0,)]
    assert s.layer("score").strides == [(1,)]


def test_legacy_net_inputs():
    net = parse_net('input: "data" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8 '
                    'layer { name: "r" type: "ReLU" bottom: "data" top: "r" }', upgrade=False)
    s = infer_shapes(net)
    # upgrade_proto.cpp UpgradeNetInput: an Input layer named "input" first
    assert s.layers[0].name == "input" and s.layers[0].type == "Input"
    assert s.blobs == {"data": (1, 3, 8, 8), "r": (1, 3, 8, 8)}
    net = parse_net('input: "data" input_shape { dim: 2 dim: 5 }', upgrade=False)
    assert infer_shapes(net).blobs == {"data": (2, 5)}
    net = parse_net('input: "data"', upgrade=False)
    with pytest.raises(NetdslError):
        infer_shapes(net)
    assert infer_shapes(net, {"data": (4,)}).blobs == {"data": (4,)}


def test_net_errors():
    net = net_with('type: "ReLU"', (2, 3))
    net.layer[-1].bottom[0] = "b00"
    with pytest.raises(NetdslError) as ei:
        infer_shapes(net)
    assert ei.value.layer == "L" and "unknown bottom blob 'b00'" in ei.value.message
    assert "b0" in ei.value.hint
    net = net_with('type: "ReLU"', (2, 3))
    net.layer[-1].top[0] = "b0x"
    net.layer.add().CopyFrom(net.layer[-2])     # a second ReLU writing b0x, not in place
    with pytest.raises(NetdslError) as ei:
        infer_shapes(net)
    assert "multiple sources" in ei.value.message


def test_unknown_type():
    e = error('type: "Convoluton" convolution_param { num_output: 2 kernel_size: 1 }', (1, 1, 2, 2))
    assert "Convoluton" in e.message and e.layer == "L"
    assert "Convolution" in e.hint and "declared" in e.hint
    e = error('type: "MyFork"', (1, 1, 2, 2))
    assert "MyFork" in e.message and "declared" in e.hint
    assert tops('type: "MyFork"', (1, 1, 2, 2), declared={"t0": (1, 2)}) == [(1, 2)]
    assert layer('type: "MyFork"', (1, 1, 2, 2), declared={"L": (1, 2)}).declared


def test_inputs_and_declarations_are_checked():
    net = net_with('type: "ReLU"', (2, 3))
    with pytest.raises(NetdslError) as ei:
        infer_shapes(net, {"b00": (1,)})
    assert "b0" in ei.value.hint
    with pytest.raises(NetdslError) as ei:
        infer_shapes(net, {"t0": (1,)})
    assert "declared=" in ei.value.message
    with pytest.raises(NetdslError):
        infer_shapes(net, declared={"nothing": (1,)})
    with pytest.raises(NetdslError):
        infer_shapes(net, declared={"L": [(1,), (2,)]})


def test_param_and_propagate_down_counts():
    # net.cpp: "Too many params specified for layer"; propagate_down 0 or once per bottom
    assert "Too many params" in error('type: "ReLU" param { lr_mult: 1 }', (2, 3)).message
    assert "Too many params" in error(
        'type: "InnerProduct" inner_product_param { num_output: 2 } param {} param {} param {}',
        (2, 3)).message
    assert "propagate_down" in error('type: "ReLU" propagate_down: true propagate_down: true',
                                     (2, 3)).message


def test_blob_size_limit():
    # blob.cpp Reshape: count must stay <= INT_MAX; 65536 * 65536 = 2^32
    e = data_error('type: "DummyData" dummy_data_param { shape { dim: 65536 dim: 65536 } }')
    assert "INT_MAX" in e.message


def test_phase_filtering():
    net = parse_net("""
        layer { name: "d" type: "Input" top: "data" input_param { shape { dim: 64 dim: 3 } }
                include { phase: TRAIN } }
        layer { name: "d" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 } }
                include { phase: TEST } }
        layer { name: "r" type: "ReLU" bottom: "data" top: "data" }""", upgrade=False)
    assert infer_shapes(net).blobs == {"data": (1, 3)}            # net.state: TEST
    assert infer_shapes(net, phase="TRAIN").blobs == {"data": (64, 3)}
    assert infer_shapes(net, phase=caffe_pb2.TEST).blobs == {"data": (1, 3)}


def test_param_shapes_function():
    lp = caffe_pb2.LayerParameter(name="c", type="Convolution")
    lp.convolution_param.num_output = 8
    lp.convolution_param.kernel_size.append(5)
    assert param_shapes(lp, [(1, 3, 32, 32)]) == [(8, 3, 5, 5), (8,)]
    assert param_shapes(caffe_pb2.LayerParameter(type="ReLU"), [(1, 3)]) == []
    with pytest.raises(NetdslError):
        param_shapes(caffe_pb2.LayerParameter(type="NoSuchType"), [(1,)])


# BVLC layer types (REGISTER_LAYER_CLASS / REGISTER_LAYER_CREATOR names in
# src/caffe/layers/*.cpp and layer_factory.cpp at BVLC master)
BVLC_TYPES = (
    "AbsVal", "Accuracy", "ArgMax", "BNLL", "BatchNorm", "BatchReindex", "Bias",
    "Clip", "Concat", "ContrastiveLoss", "Convolution", "Crop", "Data", "Deconvolution",
    "Dropout", "DummyData", "ELU", "Eltwise", "Embed", "EuclideanLoss", "Exp",
    "Filter", "Flatten", "HDF5Data", "HDF5Output", "HingeLoss", "Im2col", "ImageData",
    "InfogainLoss", "InnerProduct", "Input", "LRN", "LSTM", "LSTMUnit", "Log", "MVN",
    "MemoryData", "MultinomialLogisticLoss", "PReLU", "Parameter", "Pooling", "Power",
    "Python", "RNN", "ReLU", "Reduction", "Reshape", "SPP", "Scale", "Sigmoid",
    "SigmoidCrossEntropyLoss", "Silence", "Slice", "Softmax", "SoftmaxWithLoss",
    "Split", "Swish", "TanH", "Threshold", "Tile", "WindowData",
)


def test_every_bvlc_type_has_a_rule():
    assert all(lookup(t) is not None and lookup(t).shape is not None for t in BVLC_TYPES)


def test_reports():
    s = infer_shapes(fcn_nets.fcn32s())
    text = format_table(s)
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["layer", "type", "params"]
    conv = [ln for ln in lines if ln.startswith("conv1_1 ")][0]
    assert "1,792" in conv and "(1,64,698,698)" in conv and "-99" in conv
    assert "136,152,917" in lines[-1]
    d = to_json(s)
    json.dumps(d)
    assert d["blobs"]["score"] == [1, 21, 500, 500]
    up = [x for x in d["layers"] if x["name"] == "upscore"][0]
    assert up["param_shapes"] == [[21, 21, 64, 64]] and up["offsets"] == [[-19]]


def test_registered_rule_for_a_fork_type():
    from netdsl.layers import declare, use_layers

    def _up(layer, bottoms, ntop):
        n, c, h, w = bottoms[0]
        return [(n, c, 2 * h, 2 * w)]

    def _up_params(layer, bottoms):
        return [(bottoms[0][1],)]

    with use_layers() as reg:
        declare("Upsample2x", family="test", bottoms=1, tops=1, shape=_up, params=_up_params,
                registry=reg)
        ls = layer('type: "Upsample2x"', (1, 3, 4, 5))
        assert ls.top_shapes == [(1, 3, 8, 10)] and ls.param_shapes == [(3,)]
        assert "exactly 1 bottom" in error('type: "Upsample2x"', (1, 3, 4, 5), (1,)).message
    assert lookup("Upsample2x") is None


def test_shared_parameters_count_once():
    """Caffe's Net::AppendParam: a param name seen before makes the blob a share of
    the first owner, not a new learnable blob (DeepLab's multi-scale nets)."""
    from netdsl.prototxt import parse_net
    net = parse_net(
        'layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 2 '
        'dim: 4 dim: 4 } } }\n'
        'layer { name: "a" type: "Convolution" bottom: "x" top: "a" param { name: "w" } '
        'param { name: "b" } convolution_param { num_output: 3 kernel_size: 3 } }\n'
        'layer { name: "c" type: "Convolution" bottom: "x" top: "c" param { name: "w" } '
        'param { name: "b" } convolution_param { num_output: 3 kernel_size: 3 } }\n', "n")
    res = infer_shapes(net)
    assert [ls.param_count for ls in res.layers] == [0, 57, 57]   # 3*2*3*3 + 3 each
    assert res.param_count == 57


def test_shared_batchnorm_statistics_count_once():
    """Two branches sharing a convolution and a BatchNorm by param names (a Siamese
    net): Net::AppendParam makes the second owners shares, so each blob counts once
    among the parameters, and BatchNorm's mean, variance and factor
    (batch_norm_layer.cpp, lr_mult fixed at 0) once among the statistics."""
    from netdsl.prototxt import parse_net
    branch = ('layer {{ name: "c{i}" type: "Convolution" bottom: "x" top: "c{i}" '
              'param {{ name: "w" }} param {{ name: "b" }} '
              'convolution_param {{ num_output: 3 kernel_size: 3 }} }}\n'
              'layer {{ name: "bn{i}" type: "BatchNorm" bottom: "c{i}" top: "c{i}" '
              'param {{ name: "m" }} param {{ name: "v" }} param {{ name: "f" }} }}\n')
    net = parse_net('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 '
                    'dim: 2 dim: 4 dim: 4 } } }\n' + branch.format(i=1) + branch.format(i=2),
                    "n")
    res = infer_shapes(net)
    conv, stats = 3 * 2 * 3 * 3 + 3, 3 + 3 + 1      # weights + bias; mean, variance, factor
    assert [ls.param_count for ls in res.layers] == [0, conv, stats, conv, stats]
    assert (res.param_count, res.statistics_count) == (conv + stats, stats)
    assert res.statistics_types == ["BatchNorm"]


def test_missing_bottom_made_by_a_layer_of_another_phase_says_so():
    """A train net's data layer is `include { phase: TRAIN }`; shaped in the
    default TEST phase its top is missing, and the hint names that layer."""
    from netdsl.prototxt import parse_net
    net = parse_net(
        'layer { name: "data" type: "Input" top: "data" include { phase: TRAIN } '
        'input_param { shape { dim: 1 dim: 3 dim: 4 dim: 4 } } }\n'
        'layer { name: "relu" type: "ReLU" bottom: "data" top: "r" }\n', "n")
    with pytest.raises(NetdslError) as info:
        infer_shapes(net)
    assert "layer 'data' makes it" in str(info.value) and "--phase" in str(info.value)
    assert tuple(infer_shapes(net, phase="TRAIN").blobs["r"]) == (1, 3, 4, 4)
