"""Test nets of the Caffe forks, written as prototxt text by small generators.

Each reproduces the topology and the fork layers' parameters of a published
net (checked against it: the same layer types, geometry and fork parameters,
so the same blob shapes for the same channel counts), with the channel counts
divided by ``div`` to keep the tests fast; spatial sizes are the real ones.
"""
from __future__ import annotations

from typing import List


def _conv(name: str, bottom: str, nout: int, k: int, s: int = 1, p: int = 0, group: int = 1,
          bias: bool = True) -> str:
    extra = "" if group == 1 else " group: %d" % group
    return ('layer { name: "%s" type: "Convolution" bottom: "%s" top: "%s" convolution_param '
            '{ num_output: %d bias_term: %s pad: %d kernel_size: %d stride: %d%s '
            'weight_filler { type: "msra" } } }\n'
            % (name, bottom, name, nout, "true" if bias else "false", p, k, s, extra))


def _bn_scale_relu(name: str) -> str:
    return ('layer { name: "%s/bn" type: "BatchNorm" bottom: "%s" top: "%s" }\n'
            'layer { name: "%s/scale" type: "Scale" bottom: "%s" top: "%s" '
            'scale_param { bias_term: true } }\n'
            'layer { name: "%s/relu" type: "ReLU" bottom: "%s" top: "%s" }\n'
            % ((name,) * 9))


def mobilenet_ssd(div: int = 8, normalize: bool = True) -> str:
    """chuanqi305/MobileNet-SSD deploy.prototxt's topology (300 x 300 input,
    MobileNet v1 with BatchNorm + Scale, extra layers conv14-17, six heads
    with Permute/Flatten/PriorBox, Concat, Reshape to 21 classes, Softmax,
    DetectionOutput).  ``normalize`` adds an SSD Normalize (VGG-SSD's
    conv4_3_norm) on the first head."""
    c = lambda n: max(n // div, 4)   # noqa: E731
    out: List[str] = ['name: "MobileNet-SSD"\ninput: "data"\n'
                      'input_shape { dim: 1 dim: 3 dim: 300 dim: 300 }\n']
    out.append(_conv("conv0", "data", c(32), 3, 2, 1, bias=False) + _bn_scale_relu("conv0"))
    prev, ch = "conv0", c(32)
    plan = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + \
        [(1024, 2), (1024, 1)]
    for i, (nout, s) in enumerate(plan, 1):
        out.append(_conv("conv%d/dw" % i, prev, ch, 3, s, 1, group=ch, bias=False)
                   + _bn_scale_relu("conv%d/dw" % i))
        out.append(_conv("conv%d" % i, "conv%d/dw" % i, c(nout), 1, bias=False)
                   + _bn_scale_relu("conv%d" % i))
        prev, ch = "conv%d" % i, c(nout)
    for i, (n1, n2) in zip(range(14, 18), ((256, 512), (128, 256), (128, 256), (64, 128))):
        out.append(_conv("conv%d_1" % i, prev, c(n1), 1, bias=False)
                   + _bn_scale_relu("conv%d_1" % i))
        out.append(_conv("conv%d_2" % i, "conv%d_1" % i, c(n2), 3, 2, 1, bias=False)
                   + _bn_scale_relu("conv%d_2" % i))
        prev = "conv%d_2" % i
    heads = [("conv11", 60, None, [2.0]), ("conv13", 105, 150, [2.0, 3.0]),
             ("conv14_2", 150, 195, [2.0, 3.0]), ("conv15_2", 195, 240, [2.0, 3.0]),
             ("conv16_2", 240, 285, [2.0, 3.0]), ("conv17_2", 285, 300, [2.0, 3.0])]
    for k, (src, mn, mx, ars) in enumerate(heads):
        feat = src
        if normalize and k == 0:
            out.append('layer { name: "%s_norm" type: "Normalize" bottom: "%s" top: "%s_norm" '
                       'norm_param { across_spatial: false channel_shared: false '
                       'scale_filler { type: "constant" value: 20 } } }\n' % (src, src, src))
            feat = src + "_norm"
        npri = (1 + 2 * len(ars)) + (1 if mx else 0)
        for what, n in (("loc", 4 * npri), ("conf", 21 * npri)):
            name = "%s_mbox_%s" % (src, what)
            out.append(_conv(name, feat, n, 1))
            out.append('layer { name: "%s_perm" type: "Permute" bottom: "%s" top: "%s_perm" '
                       'permute_param { order: 0 order: 2 order: 3 order: 1 } }\n'
                       % (name, name, name))
            out.append('layer { name: "%s_flat" type: "Flatten" bottom: "%s_perm" '
                       'top: "%s_flat" flatten_param { axis: 1 } }\n' % (name, name, name))
        out.append('layer { name: "%s_mbox_priorbox" type: "PriorBox" bottom: "%s" '
                   'bottom: "data" top: "%s_mbox_priorbox" prior_box_param { min_size: %s %s'
                   '%s flip: true clip: false variance: 0.1 variance: 0.1 variance: 0.2 '
                   'variance: 0.2 offset: 0.5 } }\n'
                   % (src, feat, src, float(mn), "max_size: %s " % float(mx) if mx else "",
                      " ".join("aspect_ratio: %s" % a for a in ars)))
    for what, axis in (("loc", 1), ("conf", 1), ("priorbox", 2)):
        bottoms = " ".join('bottom: "%s_mbox_%s%s"' % (h[0], what, "" if what == "priorbox"
                                                        else "_flat") for h in heads)
        out.append('layer { name: "mbox_%s" type: "Concat" %s top: "mbox_%s" '
                   'concat_param { axis: %d } }\n' % (what, bottoms, what, axis))
    out.append('layer { name: "mbox_conf_reshape" type: "Reshape" bottom: "mbox_conf" '
               'top: "mbox_conf_reshape" reshape_param { shape { dim: 0 dim: -1 dim: 21 } } }\n'
               'layer { name: "mbox_conf_softmax" type: "Softmax" bottom: "mbox_conf_reshape" '
               'top: "mbox_conf_softmax" softmax_param { axis: 2 } }\n'
               'layer { name: "mbox_conf_flatten" type: "Flatten" bottom: "mbox_conf_softmax" '
               'top: "mbox_conf_flatten" flatten_param { axis: 1 } }\n'
               'layer { name: "detection_out" type: "DetectionOutput" bottom: "mbox_loc" '
               'bottom: "mbox_conf_flatten" bottom: "mbox_priorbox" top: "detection_out" '
               'include { phase: TEST } detection_output_param { num_classes: 21 '
               'share_location: true background_label_id: 0 nms_param { nms_threshold: 0.45 '
               'top_k: 100 } code_type: CENTER_SIZE keep_top_k: 100 '
               'confidence_threshold: 0.25 } }\n')
    return "".join(out)


def _bn(name: str, bottom: str, top: str, fork: str = "pspnet") -> str:
    if fork == "pspnet":
        body = 'bn_param { slope_filler { type: "constant" value: 1 } ' \
               'bias_filler { type: "constant" value: 0 } frozen: true }'
    else:
        body = 'bn_param { bn_mode: INFERENCE scale_filler { type: "constant" value: 1 } ' \
               'shift_filler { type: "constant" value: 0.001 } }'
    return 'layer { name: "%s" type: "BN" bottom: "%s" top: "%s" %s }\n' % (name, bottom, top,
                                                                            body)


def pspnet_like(div: int = 8) -> str:
    """hszhao/PSPNet pspnet50_ADE20K_473.prototxt's head on a short trunk: legacy
    ``input`` 473 x 473, conv + BN + ReLU stem, stride 8 to 60 x 60, the pyramid
    pooling module (AVE pooling to 1, 2, 3, 6; 1x1 conv, BN, ReLU, Interp back to
    60 x 60 by height/width), Concat, conv5_4 + BN + ReLU, Dropout, conv6 (150
    classes) and Interp zoom_factor 8 (60 + 59 * 7 = 473)."""
    c = lambda n: max(n // div, 4)   # noqa: E731
    out = ['input: "data"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 473\ninput_dim: 473\n']
    out.append('layer { name: "conv1_1_3x3_s2" type: "Convolution" bottom: "data" '
               'top: "conv1_1_3x3_s2_pre" convolution_param { num_output: %d kernel_size: 3 '
               'stride: 2 pad: 1 bias_term: false } }\n' % c(64))
    out.append(_bn("conv1_1_3x3_s2/bn", "conv1_1_3x3_s2_pre", "conv1_1_3x3_s2"))
    out.append('layer { name: "conv1_1_3x3_s2/relu" type: "ReLU" bottom: "conv1_1_3x3_s2" '
               'top: "conv1_1_3x3_s2" }\n'
               'layer { name: "pool1_3x3_s2" type: "Pooling" bottom: "conv1_1_3x3_s2" '
               'top: "pool1_3x3_s2" pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 } }\n'
               'layer { name: "conv5_3" type: "Convolution" bottom: "pool1_3x3_s2" '
               'top: "conv5_3" convolution_param { num_output: %d kernel_size: 3 stride: 2 '
               'pad: 1 } }\n' % c(2048))
    cat = ['bottom: "conv5_3"']
    for k, size in ((1, 60), (2, 30), (3, 20), (6, 10)):
        p = "conv5_3_pool%d" % k
        out.append('layer { name: "%s" type: "Pooling" bottom: "conv5_3" top: "%s" '
                   'pooling_param { pool: AVE kernel_size: %d stride: %d } }\n'
                   % (p, p, size, size))
        out.append('layer { name: "%s_conv" type: "Convolution" bottom: "%s" top: "%s_conv" '
                   'convolution_param { num_output: %d kernel_size: 1 bias_term: false } }\n'
                   % (p, p, p, c(512)))
        out.append(_bn("%s_conv/bn" % p, "%s_conv" % p, "%s_conv" % p))
        out.append('layer { name: "%s_conv/relu" type: "ReLU" bottom: "%s_conv" top: "%s_conv" }\n'
                   'layer { name: "%s_interp" type: "Interp" bottom: "%s_conv" top: "%s_interp" '
                   'interp_param { height: 60 width: 60 } }\n' % ((p,) * 6))
        cat.append('bottom: "%s_interp"' % p)
    out.append('layer { name: "conv5_3_concat" type: "Concat" %s top: "conv5_3_concat" }\n'
               % " ".join(cat))
    out.append('layer { name: "conv5_4" type: "Convolution" bottom: "conv5_3_concat" '
               'top: "conv5_4" convolution_param { num_output: %d kernel_size: 3 pad: 1 '
               'bias_term: false } }\n' % c(512))
    out.append(_bn("conv5_4/bn", "conv5_4", "conv5_4"))
    out.append('layer { name: "conv5_4/relu" type: "ReLU" bottom: "conv5_4" top: "conv5_4" }\n'
               'layer { name: "conv5_4_drop" type: "Dropout" bottom: "conv5_4" top: "conv5_4" '
               'dropout_param { dropout_ratio: 0.1 } }\n'
               'layer { name: "conv6" type: "Convolution" bottom: "conv5_4" top: "conv6" '
               'convolution_param { num_output: 150 kernel_size: 1 } }\n'
               'layer { name: "conv6_interp" type: "Interp" bottom: "conv6" top: "conv6_interp" '
               'interp_param { zoom_factor: 8 } }\n')
    return "".join(out)


def segnet(div: int = 16, bayesian: bool = False, classes: int = 11) -> str:
    """SegNet-Tutorial segnet_inference.prototxt (bayesian_segnet_inference.prototxt
    with ``bayesian``): DenseImageData, VGG16 encoder of Conv + BN (INFERENCE) +
    ReLU with MAX pooling that outputs its mask, a mirrored decoder whose Upsample
    layers use those masks (upsample_h/w where 360 x 480 pooled to odd sizes),
    Dropout after the deeper stages (Bayesian SegNet), Softmax."""
    c = lambda n: max(n // div, 4)   # noqa: E731
    out = ['name: "segnet"\nlayer { name: "data" type: "DenseImageData" top: "data" '
           'top: "label" dense_image_data_param { source: "test.txt" batch_size: 1 } }\n']

    def cbr(name: str, bottom: str, nout: int, top: str = "") -> str:
        top = top or name
        return ('layer { name: "%s" type: "Convolution" bottom: "%s" top: "%s" '
                'convolution_param { num_output: %d pad: 1 kernel_size: 3 '
                'weight_filler { type: "msra" } } }\n' % (name, bottom, name, nout)
                + _bn(name + "_bn", name, name + "_bn_out" if name == "conv1_1" else name,
                      "segnet")
                + 'layer { name: "%s_relu" type: "ReLU" bottom: "%s" top: "%s" }\n'
                % (name, name + "_bn_out" if name == "conv1_1" else name,
                   name + "_bn_out" if name == "conv1_1" else name))

    stages = [(1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512)]
    prev = "data"
    for s, n, ch in stages:
        for k in range(1, n + 1):
            name = "conv%d_%d" % (s, k)
            out.append(cbr(name, prev, c(ch)))
            prev = name + "_bn_out" if name == "conv1_1" else name
        out.append('layer { name: "pool%d" type: "Pooling" bottom: "%s" top: "pool%d" '
                   'top: "pool%d_mask" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n'
                   % (s, prev, s, s))
        prev = "pool%d" % s
        if bayesian and s >= 3:
            out.append('layer { name: "encdrop%d" type: "Dropout" bottom: "%s" top: "%s" '
                       'dropout_param { dropout_ratio: 0.5 sample_weights_test: true } }\n'
                       % (s, prev, prev))
    sizes = {5: (23, 30), 4: (45, 60), 3: (90, 120), 2: (180, 240), 1: (360, 480)}
    for s, n, ch in reversed(stages):
        bottom = prev
        if s == 1:
            out.append('layer { name: "conv1_2_D_in_copy" type: "Split" bottom: "%s" '
                       'top: "conv1_2_D_in" }\n' % prev)
            bottom = "conv1_2_D_in"
        h, w = sizes[s]
        out.append('layer { name: "upsample%d" type: "Upsample" bottom: "%s" bottom: "pool%d_mask" '
                   'top: "upsample%d" upsample_param { scale: 2 upsample_h: %d upsample_w: %d } }\n'
                   % (s, bottom, s, s, h, w))
        prev = "upsample%d" % s
        for k in range(n, 0, -1):
            nout = c(stages[s - 2][2]) if (k == 1 and s > 1) else c(ch)
            if s == 1 and k == 1:
                out.append('layer { name: "conv1_1_D" type: "Convolution" bottom: "%s" '
                           'top: "conv1_1_D" convolution_param { num_output: %d pad: 1 '
                           'kernel_size: 3 } }\n' % (prev, classes))
                prev = "conv1_1_D"
                break
            name = "conv%d_%d_D" % (s, k)
            out.append(cbr(name, prev, nout))
            prev = name
        if bayesian and s >= 3:
            out.append('layer { name: "decdrop%d" type: "Dropout" bottom: "%s" top: "%s" '
                       'dropout_param { dropout_ratio: 0.5 sample_weights_test: true } }\n'
                       % (s, prev, prev))
    out.append('layer { name: "prob" type: "Softmax" bottom: "%s" top: "prob" }\n' % prev)
    return "".join(out)


def deconvnet(div: int = 16) -> str:
    """HyeonwooNoh/DeconvNet DeconvNet_inference_deploy.prototxt (V1 format): legacy
    input 224 x 224, five VGG stages of CONVOLUTION + BN (INFERENCE) + RELU and a
    POOLING that also outputs its switches, fc6 (7 x 7) and fc7 as convolutions,
    fc6-deconv (7 x 7 DECONVOLUTION), then per stage UNPOOLING by those switches
    (unpool_size 14, 28, 56, 112, 224) and DECONVOLUTION + BN + RELU, seg-score."""
    c = lambda n: max(n // div, 4)   # noqa: E731
    out = ['name: "DeconvNet"\ninput: "data"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 224\n'
           'input_dim: 224\n']

    def cbr(kind: str, name: str, bottom: str, nout: int, k: int = 3, p: int = 1) -> str:
        return ('layers { bottom: "%s" top: "%s" name: "%s" type: %s convolution_param { '
                'num_output: %d pad: %d kernel_size: %d } }\n'
                'layers { bottom: "%s" top: "%s" name: "bn_%s" type: BN bn_param { '
                'scale_filler { type: "constant" value: 1 } shift_filler { type: "constant" '
                'value: 0.001 } bn_mode: INFERENCE } }\n'
                'layers { bottom: "%s" top: "%s" name: "relu_%s" type: RELU }\n'
                % (bottom, name, name, kind, nout, p, k, name, name, name, name, name, name))

    stages = [(1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512)]
    prev = "data"
    for s, n, ch in stages:
        for k in range(1, n + 1):
            name = "conv%d_%d" % (s, k)
            out.append(cbr("CONVOLUTION", name, prev, c(ch)))
            prev = name
        out.append('layers { bottom: "%s" top: "pool%d" top: "pool%d_mask" name: "pool%d" '
                   'type: POOLING pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n'
                   % (prev, s, s, s))
        prev = "pool%d" % s
    out.append(cbr("CONVOLUTION", "fc6", prev, c(4096), 7, 0))
    out.append(cbr("CONVOLUTION", "fc7", "fc6", c(4096), 1, 0))
    out.append(cbr("DECONVOLUTION", "fc6-deconv", "fc7", c(512), 7, 0))
    prev = "fc6-deconv"
    for s, n, ch in reversed(stages):
        out.append('layers { type: UNPOOLING bottom: "%s" bottom: "pool%d_mask" top: "unpool%d" '
                   'name: "unpool%d" unpooling_param { unpool: MAX kernel_size: 2 stride: 2 '
                   'unpool_size: %d } }\n' % (prev, s, s, s, 224 >> (s - 1)))
        prev = "unpool%d" % s
        for k in range(1, n + 1):
            nout = c(stages[s - 2][2]) if (k == n and s > 1) else c(ch)
            name = "deconv%d_%d" % (s, k)
            out.append(cbr("DECONVOLUTION", name, prev, nout))
            prev = name
    out.append('layers { bottom: "%s" top: "seg-score" name: "seg-score-voc" type: CONVOLUTION '
               'convolution_param { num_output: 21 kernel_size: 1 } }\n' % prev)
    return "".join(out)


def deeplab_v2_aspp(div: int = 16) -> str:
    """A DeepLab v2 test net (deeplab-public-ver2's ASPP-L head on a VGG-style
    trunk): 321 x 321 input (DeepLab's crop), stride 8 (three MAX poolings k3 s2
    p1: 161, 81, 41), four dilated 3x3 branches (dilation 6, 12, 18, 24) summed
    by Eltwise, then Interp zoom_factor 8: 41 + 40 * 7 = 321 (test phase net)."""
    c = lambda n: max(n // div, 4)   # noqa: E731
    out = ['name: "deeplab_v2"\ninput: "data"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 321\n'
           'input_dim: 321\n']   # the schema has no InputParameter (143 is interp_param)
    prev = "data"
    for s, ch in ((1, 64), (2, 128), (3, 256)):
        out.append('layer { name: "conv%d" type: "Convolution" bottom: "%s" top: "conv%d" '
                   'convolution_param { num_output: %d kernel_size: 3 pad: 1 } }\n'
                   'layer { name: "relu%d" type: "ReLU" bottom: "conv%d" top: "conv%d" }\n'
                   'layer { name: "pool%d" type: "Pooling" bottom: "conv%d" top: "pool%d" '
                   'pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 } }\n'
                   % (s, prev, s, c(ch), s, s, s, s, s, s))
        prev = "pool%d" % s
    branches = []
    for k, d in enumerate((6, 12, 18, 24), 1):
        out.append('layer { name: "fc6_%d" type: "Convolution" bottom: "%s" top: "fc6_%d" '
                   'convolution_param { num_output: %d kernel_size: 3 pad: %d dilation: %d } }\n'
                   'layer { name: "relu6_%d" type: "ReLU" bottom: "fc6_%d" top: "fc6_%d" }\n'
                   'layer { name: "fc8_%d" type: "Convolution" bottom: "fc6_%d" top: "fc8_%d" '
                   'convolution_param { num_output: 21 kernel_size: 1 } }\n'
                   % (k, prev, k, c(1024), d, d, k, k, k, k, k, k))
        branches.append('bottom: "fc8_%d"' % k)
    out.append('layer { name: "fc8" type: "Eltwise" %s top: "fc8" '
               'eltwise_param { operation: SUM } }\n' % " ".join(branches))
    out.append('layer { name: "fc8_interp" type: "Interp" bottom: "fc8" top: "fc8_interp" '
               'interp_param { zoom_factor: 8 } }\n')
    return "".join(out)


def enet_like(div: int = 4) -> str:
    """TimoSaemann/ENet enet_deploy_final.prototxt's building blocks at its real
    size (512 x 1024): the initial block (3x3 stride-2 conv and a MAX pooling,
    concatenated), a downsampling bottleneck whose pooling keeps its mask, BN
    (default LEARN mode, as in the final net), PReLU, an upsampling bottleneck
    (Upsample scale 2 by that mask, summed with the 3x3 branch), and the final
    Deconvolution to 19 classes at 512 x 1024."""
    out = ['name: "ENet"\nlayer { name: "data" type: "Input" top: "data" '
           'input_param { shape { dim: 1 dim: 3 dim: 512 dim: 1024 } } }\n'
           'layer { name: "conv0_1" type: "Convolution" bottom: "data" top: "conv0_1" '
           'convolution_param { num_output: 13 pad: 1 kernel_size: 3 stride: 2 '
           'weight_filler { type: "msra" } } }\n'
           'layer { name: "pool0_1" type: "Pooling" bottom: "data" top: "pool0_1" '
           'pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n'
           'layer { name: "concat0_1" type: "Concat" bottom: "conv0_1" bottom: "pool0_1" '
           'top: "concat0_1" }\n'
           'layer { name: "bn0_1" type: "BN" bottom: "concat0_1" top: "bn0_1" bn_param { '
           'scale_filler { type: "constant" value: 1 } shift_filler { type: "constant" '
           'value: 0.001 } } }\n'
           'layer { name: "prelu0_1" type: "PReLU" bottom: "bn0_1" top: "bn0_1" }\n'
           'layer { name: "pool1_0_4" type: "Pooling" bottom: "bn0_1" top: "pool1_0_4" '
           'top: "pool1_0_4_mask" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n'
           'layer { name: "conv1_0_1" type: "Convolution" bottom: "pool1_0_4" top: "conv1_0_1" '
           'convolution_param { num_output: 16 pad: 1 kernel_size: 3 '
           'weight_filler { type: "msra" } } }\n'
           'layer { name: "prelu1_0_1" type: "PReLU" bottom: "conv1_0_1" top: "conv1_0_1" }\n'
           'layer { name: "upsample5_0_4" type: "Upsample" bottom: "conv1_0_1" '
           'bottom: "pool1_0_4_mask" top: "upsample5_0_4" upsample_param { scale: 2 } }\n'
           'layer { name: "conv5_0_2" type: "Convolution" bottom: "bn0_1" top: "conv5_0_2" '
           'convolution_param { num_output: 16 pad: 1 kernel_size: 3 '
           'weight_filler { type: "msra" } } }\n'
           'layer { name: "eltwise5_0_4" type: "Eltwise" bottom: "upsample5_0_4" '
           'bottom: "conv5_0_2" top: "eltwise5_0_4" }\n'
           'layer { name: "deconv6_0_0" type: "Deconvolution" bottom: "eltwise5_0_4" '
           'top: "deconv6_0_0" convolution_param { num_output: 19 bias_term: true '
           'kernel_size: 2 stride: 2 weight_filler { type: "msra" } } }\n']
    return "".join(out).replace("num_output: 16", "num_output: %d" % max(16, 16 // div))
