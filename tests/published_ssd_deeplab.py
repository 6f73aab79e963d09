"""Published SSD and DeepLab v2 nets at full size, written as prototxt text by generators.

``mobilenet_ssd_deploy`` reproduces chuanqi305/MobileNet-SSD ``deploy.prototxt``
(commit bb17b6c3eef36d80be441ae8e5339be66e8e3b7a; the file last changed in
5550330f7d7ad5e2b5e026a0ae027359553a675e): the 20-class PASCAL VOC MobileNet-SSD
deploy net, 1 x 3 x 300 x 300 input, MobileNet v1 (conv0 + 13 depthwise /
pointwise pairs, each Convolution + BatchNorm + Scale + ReLU), extra layers
conv14-17, six SSD heads (loc / conf Convolution + Permute + Flatten, PriorBox),
Concat, Reshape to 21 classes, Softmax and DetectionOutput (weiliu89/caffe ssd
fork schema, ``tests.fork_schemas`` fork "ssd").

``deeplab_v2_vgg16_aspp`` reproduces DeepLab v2's released DeepLab-ASPP (VGG-16)
PASCAL VOC test net, ``test.prototxt`` of the DeepLab v2 VGG-16 ASPP-L release, as
published in talent518/deeplab-public-ver2 ``exper/voc12/config/vgg16/test.prototxt``
(commit 51750fa92e9f9e6ccae78c2be5cf809a256e56d5, git blob e97369a5; the same blob
is in xmojiao/deeplab_v2 and kinglintianxia/deeplab_v2): ImageSegData input (513
crop), VGG-16 with MAX poolings k3 p1 (strides 2, 2, 2, 1, 1) and conv5 dilated by
2, four fc6 / fc7 / fc8 branches with fc6 dilated by 6, 12, 18 and 24, summed by
Eltwise, Interp zoom_factor 8, MatWrite and Silence (fork "pspnet": DeepLab v2's
interp_param = 143; the net also uses DeepLab v2's ImageDataParameter.label_type = 16
and LayerParameter.mat_write_param = 145, aquariusjay/deeplab-public-ver2 caffe.proto).
The file is a run_pascal.sh template; the ``${...}`` placeholders in strings are
kept and ``${NUM_LABELS}``, an integer, is the VOC value 21 the script substitutes.

The test checks each generator against the published file through
``PUBLISHED_SHA256``: the SHA-256 of
``NetParameter.SerializeToString(deterministic=True)`` of the published file
parsed with the fork's schema.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

PUBLISHED_SHA256: Dict[str, str] = {
    # chuanqi305/MobileNet-SSD deploy.prototxt @ bb17b6c3eef36d80be441ae8e5339be66e8e3b7a
    "mobilenet_ssd_deploy": "48df4b393317b646189a9b10d06e4d16a89813e75c35f6bbede07a8e103ac0c9",
    # talent518/deeplab-public-ver2 exper/voc12/config/vgg16/test.prototxt
    # @ 51750fa92e9f9e6ccae78c2be5cf809a256e56d5, ${NUM_LABELS} read as 21; parsed with
    # fork "pspnet" plus DeepLab v2's label_type (16) and mat_write_param (145)
    "deeplab_v2_vgg16_aspp": "011cf3307c9783ffa0ce020931787b6494e8efbb98e1c6a0bac6686395959e67",
}

_MSRA = 'weight_filler { type: "msra" }'


def _param(*mults: Tuple[float, float]) -> str:
    return "".join(" param { lr_mult: %g decay_mult: %g }" % m for m in mults)


def _ssd_conv_block(name: str, bottom: str, nout: int, k: int, stride: int = 1,
                    group: int = 1) -> str:
    """Convolution (no bias, lr 0.1) + BatchNorm + Scale + ReLU, in place after the conv."""
    geo = "kernel_size: %d" % k
    if k == 3:
        geo = "pad: 1 " + geo
    if stride != 1:
        geo += " stride: %d" % stride
    if group != 1:
        geo += " group: %d" % group
    return (
        'layer { name: "%s" type: "Convolution" bottom: "%s" top: "%s"%s '
        'convolution_param { num_output: %d bias_term: false %s %s } }\n'
        % (name, bottom, name, _param((0.1, 0.1)), nout, geo, _MSRA)
        + 'layer { name: "%s/bn" type: "BatchNorm" bottom: "%s" top: "%s"%s }\n'
        % (name, name, name, _param((0, 0), (0, 0), (0, 0)))
        + 'layer { name: "%s/scale" type: "Scale" bottom: "%s" top: "%s"%s scale_param '
        '{ filler { value: 1 } bias_term: true bias_filler { value: 0 } } }\n'
        % (name, name, name, _param((0.1, 0.0), (0.2, 0.0)))
        + 'layer { name: "%s/relu" type: "ReLU" bottom: "%s" top: "%s" }\n' % (name, name, name))


#: MobileNet v1 body after conv0: (output channels of the pointwise conv, depthwise stride)
_MOBILENET: Sequence[Tuple[int, int]] = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))
#: SSD extra layers: (1x1 channels, 3x3 stride-2 channels) of conv14 .. conv17
_EXTRAS: Sequence[Tuple[int, int]] = ((256, 512), (128, 256), (128, 256), (64, 128))
#: heads: (source blob, min_size, max_size, aspect ratios)
_HEADS: Sequence[Tuple[str, float, Optional[float], Sequence[float]]] = (
    ("conv11", 60.0, None, (2.0,)),
    ("conv13", 105.0, 150.0, (2.0, 3.0)),
    ("conv14_2", 150.0, 195.0, (2.0, 3.0)),
    ("conv15_2", 195.0, 240.0, (2.0, 3.0)),
    ("conv16_2", 240.0, 285.0, (2.0, 3.0)),
    ("conv17_2", 285.0, 300.0, (2.0, 3.0)),
)


def mobilenet_ssd_deploy(classes: int = 21) -> str:
    """chuanqi305/MobileNet-SSD deploy.prototxt (VOC: 20 classes + background)."""
    out: List[str] = ['name: "MobileNet-SSD"\ninput: "data"\n'
                      'input_shape { dim: 1 dim: 3 dim: 300 dim: 300 }\n']
    out.append(_ssd_conv_block("conv0", "data", 32, 3, 2))
    prev, ch = "conv0", 32
    for i, (nout, stride) in enumerate(_MOBILENET, 1):
        out.append(_ssd_conv_block("conv%d/dw" % i, prev, ch, 3, stride, group=ch))
        out.append(_ssd_conv_block("conv%d" % i, "conv%d/dw" % i, nout, 1))
        prev, ch = "conv%d" % i, nout
    for i, (n1, n2) in enumerate(_EXTRAS, 14):
        out.append(_ssd_conv_block("conv%d_1" % i, prev, n1, 1))
        out.append(_ssd_conv_block("conv%d_2" % i, "conv%d_1" % i, n2, 3, 2))
        prev = "conv%d_2" % i
    for src, min_size, max_size, ratios in _HEADS:
        priors = 1 + 2 * len(ratios) + (1 if max_size else 0)   # flip doubles the ratios
        for what, per_prior, mults in (("loc", 4, ((0.1, 0.1), (0.2, 0.0))),
                                       ("conf", classes, ((1.0, 1.0), (2.0, 0.0)))):
            name = "%s_mbox_%s" % (src, what)
            out.append('layer { name: "%s" type: "Convolution" bottom: "%s" top: "%s"%s '
                       'convolution_param { num_output: %d kernel_size: 1 %s '
                       'bias_filler { type: "constant" value: 0 } } }\n'
                       % (name, src, name, _param(*mults), per_prior * priors, _MSRA))
            out.append('layer { name: "%s_perm" type: "Permute" bottom: "%s" top: "%s_perm" '
                       'permute_param { order: 0 order: 2 order: 3 order: 1 } }\n'
                       % (name, name, name))
            out.append('layer { name: "%s_flat" type: "Flatten" bottom: "%s_perm" '
                       'top: "%s_flat" flatten_param { axis: 1 } }\n' % (name, name, name))
        sizes = "min_size: %r" % min_size + (" max_size: %r" % max_size if max_size else "")
        out.append('layer { name: "%s_mbox_priorbox" type: "PriorBox" bottom: "%s" '
                   'bottom: "data" top: "%s_mbox_priorbox" prior_box_param { %s %s '
                   'flip: true clip: false variance: 0.1 variance: 0.1 variance: 0.2 '
                   'variance: 0.2 offset: 0.5 } }\n'
                   % (src, src, src, sizes, " ".join("aspect_ratio: %r" % r for r in ratios)))
    for what, suffix, axis in (("loc", "_flat", 1), ("conf", "_flat", 1), ("priorbox", "", 2)):
        bottoms = " ".join('bottom: "%s_mbox_%s%s"' % (h[0], what, suffix) for h in _HEADS)
        out.append('layer { name: "mbox_%s" type: "Concat" %s top: "mbox_%s" '
                   'concat_param { axis: %d } }\n' % (what, bottoms, what, axis))
    out.append(
        'layer { name: "mbox_conf_reshape" type: "Reshape" bottom: "mbox_conf" '
        'top: "mbox_conf_reshape" reshape_param { shape { dim: 0 dim: -1 dim: %d } } }\n'
        'layer { name: "mbox_conf_softmax" type: "Softmax" bottom: "mbox_conf_reshape" '
        'top: "mbox_conf_softmax" softmax_param { axis: 2 } }\n'
        'layer { name: "mbox_conf_flatten" type: "Flatten" bottom: "mbox_conf_softmax" '
        'top: "mbox_conf_flatten" flatten_param { axis: 1 } }\n'
        'layer { name: "detection_out" type: "DetectionOutput" bottom: "mbox_loc" '
        'bottom: "mbox_conf_flatten" bottom: "mbox_priorbox" top: "detection_out" '
        'include { phase: TEST } detection_output_param { num_classes: %d '
        'share_location: true background_label_id: 0 nms_param { nms_threshold: 0.45 '
        'top_k: 100 } code_type: CENTER_SIZE keep_top_k: 100 confidence_threshold: 0.25 } }\n'
        % (classes, classes))
    return "".join(out)


#: VGG-16 stages: (convolutions, output channels, dilation of the convolutions,
#: stride of the MAX pooling that follows)
_VGG16: Sequence[Tuple[int, int, int, int]] = (
    (2, 64, 1, 2), (2, 128, 1, 2), (3, 256, 1, 2), (3, 512, 1, 1), (3, 512, 2, 1))
#: ASPP-L: the dilation of each branch's fc6
_ASPP_RATES: Sequence[int] = (6, 12, 18, 24)


def deeplab_v2_vgg16_aspp(num_labels: int = 21) -> str:
    """DeepLab v2 DeepLab-ASPP (VGG-16, ASPP-L) test.prototxt for PASCAL VOC."""
    out: List[str] = [
        'name: "${NET_ID}"\n'
        'layer { name: "data" type: "ImageSegData" top: "data" top: "label" '
        'top: "data_dim" include { phase: TEST } transform_param { mirror: false '
        'crop_size: 513 mean_value: 104.008 mean_value: 116.669 mean_value: 122.675 } '
        'image_data_param { root_folder: "${DATA_ROOT}" '
        'source: "${EXP}/list/${TEST_SET}.txt" batch_size: 1 label_type: NONE } }\n']

    def conv(name: str, bottom: str, nout: int, k: int, dilation: int = 1) -> str:
        pad = dilation * (k // 2)
        geo = ("pad: %d " % pad if pad else "") + "kernel_size: %d" % k
        if dilation != 1:
            geo += " dilation: %d" % dilation
        return ('layer { name: "%s" type: "Convolution" bottom: "%s" top: "%s" '
                'convolution_param { num_output: %d %s } }\n' % (name, bottom, name, nout, geo))

    def relu(name: str, blob: str) -> str:
        return 'layer { name: "%s" type: "ReLU" bottom: "%s" top: "%s" }\n' % (name, blob, blob)

    prev = "data"
    for s, (n, ch, dilation, stride) in enumerate(_VGG16, 1):
        for i in range(1, n + 1):
            name = "conv%d_%d" % (s, i)
            out.append(conv(name, prev, ch, 3, dilation) + relu("relu%d_%d" % (s, i), name))
            prev = name
        out.append('layer { name: "pool%d" type: "Pooling" bottom: "%s" top: "pool%d" '
                   'pooling_param { pool: MAX kernel_size: 3 stride: %d pad: 1 } }\n'
                   % (s, prev, s, stride))
        prev = "pool%d" % s
    branches = []
    for b, rate in enumerate(_ASPP_RATES, 1):
        fc8 = "fc8_${EXP}_%d" % b
        for name, bottom, nout, k, dil in (("fc6_%d" % b, "pool5", 1024, 3, rate),
                                           ("fc7_%d" % b, "fc6_%d" % b, 1024, 1, 1)):
            out.append(conv(name, bottom, nout, k, dil) + relu("relu" + name[2:], name)
                       + 'layer { name: "drop%s" type: "Dropout" bottom: "%s" top: "%s" '
                       'dropout_param { dropout_ratio: 0.5 } }\n' % (name[2:], name, name))
        out.append(conv(fc8, "fc7_%d" % b, num_labels, 1))
        branches.append('bottom: "%s"' % fc8)
    out.append('layer { name: "fc8_${EXP}" type: "Eltwise" %s top: "fc8_${EXP}" '
               'eltwise_param { operation: SUM } }\n' % " ".join(branches))
    out.append('layer { name: "fc8_interp" type: "Interp" bottom: "fc8_${EXP}" '
               'top: "fc8_interp" interp_param { zoom_factor: 8 } }\n'
               'layer { name: "fc8_mat" type: "MatWrite" bottom: "fc8_interp" '
               'include { phase: TEST } mat_write_param { '
               'prefix: "${FEATURE_DIR}/${TEST_SET}/fc8/" '
               'source: "${EXP}/list/${TEST_SET}_id.txt" strip: 0 period: 1 } }\n'
               'layer { name: "silence" type: "Silence" bottom: "label" bottom: "data_dim" }\n')
    return "".join(out)
