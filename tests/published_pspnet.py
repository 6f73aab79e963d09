"""The published PSPNet nets of hszhao/PSPNet at full size, as prototxt text.

Reproduces evaluation/prototxt/pspnet50_ADE20K_473.prototxt of hszhao/PSPNet
(commit 798bdc907c8630e8c3997ebfdd0d7cae0c5ab03b) and, from the same commit,
pspnet101_VOC2012_473.prototxt and pspnet101_cityscapes_713.prototxt: a legacy
``input`` of 1 x 3 x S x S, a three-conv stem, a dilated ResNet (50: 3-4-6-3
bottlenecks, 101: 3-4-23-3) at output stride 8 with the fork's ``BN`` layer
(``bn_param``, frozen, momentum 0.95) after every convolution, the pyramid
pooling module (AVE pooling to 1, 2, 3, 6 bins, 1x1 conv + BN + ReLU, ``Interp``
back by height/width), Concat, conv5_4 + BN + ReLU + Dropout, conv6 (classes)
and ``Interp`` zoom_factor 8.  Layer order, names and every field are those of
the published files; the test pins them through PUBLISHED_SHA256.
"""
from __future__ import annotations

from typing import List, Tuple

# sha256 of NetParameter.SerializeToString(deterministic=True) of the published
# file parsed with tests.fork_schemas' "pspnet" schema; hszhao/PSPNet at commit
# 798bdc907c8630e8c3997ebfdd0d7cae0c5ab03b, evaluation/prototxt/<file>.prototxt:
PUBLISHED_SHA256 = {
    # evaluation/prototxt/pspnet50_ADE20K_473.prototxt
    "pspnet50_ade20k_473": "3eec2dbf2b3dcbb67159be316adf8501eb61498ff7c820f466273c7a25dc77fa",
    # evaluation/prototxt/pspnet101_VOC2012_473.prototxt
    "pspnet101_voc2012_473": "e19d084279d9b192c8fc5a0998cd7af646673068890c9c6777fa592715e53b28",
    # evaluation/prototxt/pspnet101_cityscapes_713.prototxt
    "pspnet101_cityscapes_713": "9600f97bf326c8908492d52afa69be296927fb349a768366d682d96821e54bf7",
}

# (stage, bottleneck count, reduce width, output width, stride, dilation)
_STAGES_50: List[Tuple[int, int, int, int, int, int]] = [
    (2, 3, 64, 256, 1, 1), (3, 4, 128, 512, 2, 1), (4, 6, 256, 1024, 1, 2),
    (5, 3, 512, 2048, 1, 4)]
_BINS = (1, 2, 3, 6)


def _params(*mults: Tuple[float, float]) -> str:
    return "".join("param { lr_mult: %g decay_mult: %g } " % m for m in mults)


def _conv(name: str, bottom: str, nout: int, k: int, stride: int = 1, pad: int | None = 0,
          dilation: int = 1, lr: float = 1, bias: bool = False) -> str:
    mults = [(lr, 1)] + ([(2 * lr, 1)] if bias else [])
    geo = ("" if pad is None else "pad: %d " % pad) + "kernel_size: %d stride: %d " % (k, stride)
    geo += "dilation: %d " % dilation if dilation > 1 else ""
    return ('layer { name: "%s" type: "Convolution" bottom: "%s" top: "%s" %s'
            'convolution_param { num_output: %d %s%sweight_filler { type: "msra" } } }\n'
            % (name, bottom, name, _params(*mults), nout, geo,
               "" if bias else "bias_term: false "))


def _bn(blob: str, lr: float = 1, mean_decay: float = 0) -> str:
    return ('layer { name: "%s/bn" type: "BN" bottom: "%s" top: "%s" %s'
            'bn_param { slope_filler { type: "constant" value: 1 } '
            'bias_filler { type: "constant" value: 0 } frozen: true momentum: 0.95 } }\n'
            % (blob, blob, blob, _params((lr, 0), (lr, 0), (0, mean_decay), (0, 0))))


def _relu(blob: str) -> str:
    return 'layer { name: "%s/relu" type: "ReLU" bottom: "%s" top: "%s" }\n' % (blob, blob, blob)


def _pspnet(size: int, blocks4: int, classes: int, stride_on_3x3: bool,
            conv5_4_mean_decay: float) -> str:
    out = ['input: "data"\ninput_dim: 1\ninput_dim: 3\ninput_dim: %d\ninput_dim: %d\n'
           % (size, size)]
    prev = "data"
    for name, nout, stride in (("conv1_1_3x3_s2", 64, 2), ("conv1_2_3x3", 64, 1),
                               ("conv1_3_3x3", 128, 1)):
        out += [_conv(name, prev, nout, 3, stride, 1), _bn(name), _relu(name)]
        prev = name
    out.append('layer { name: "pool1_3x3_s2" type: "Pooling" bottom: "%s" top: "pool1_3x3_s2" '
               'pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 } }\n' % prev)
    prev = "pool1_3x3_s2"
    stages = [(s, blocks4 if s == 4 else n, r, o, st, d) for s, n, r, o, st, d in _STAGES_50]
    for stage, blocks, reduce, width, stride, dilation in stages:
        for b in range(1, blocks + 1):
            base = "conv%d_%d" % (stage, b)
            s = stride if b == 1 else 1
            s1, s3 = (1, s) if stride_on_3x3 else (s, 1)
            for suffix, bottom, nout, k, st, pad, dil in (
                    ("_1x1_reduce", prev, reduce, 1, s1, 0, 1),
                    ("_3x3", base + "_1x1_reduce", reduce, 3, s3, dilation, dilation),
                    ("_1x1_increase", base + "_3x3", width, 1, 1, 0, 1)):
                out += [_conv(base + suffix, bottom, nout, k, st, pad, dil), _bn(base + suffix)]
                if suffix != "_1x1_increase":
                    out.append(_relu(base + suffix))
            shortcut = prev
            if b == 1:
                shortcut = base + "_1x1_proj"
                out += [_conv(shortcut, prev, width, 1, s), _bn(shortcut)]
            out.append('layer { name: "%s" type: "Eltwise" bottom: "%s" bottom: "%s" top: "%s" '
                       'eltwise_param { operation: SUM } }\n'
                       % (base, shortcut, base + "_1x1_increase", base))
            out.append(_relu(base))
            prev = base
    feat = (size - 1) // 8 + 1
    for k in _BINS:
        pool = "%s_pool%d" % (prev, k)
        out.append('layer { name: "%s" type: "Pooling" bottom: "%s" top: "%s" '
                   'pooling_param { pool: AVE kernel_size: %d stride: %d } }\n'
                   % (pool, prev, pool, feat // k, feat // k))
        out += [_conv(pool + "_conv", pool, 512, 1, pad=None, lr=10), _bn(pool + "_conv", 10),
                _relu(pool + "_conv")]
        out.append('layer { name: "%s_interp" type: "Interp" bottom: "%s_conv" top: "%s_interp" '
                   'interp_param { height: %d width: %d } }\n' % (pool, pool, pool, feat, feat))
    out.append('layer { name: "%s_concat" type: "Concat" bottom: "%s" %stop: "%s_concat" }\n'
               % (prev, prev, "".join('bottom: "%s_pool%d_interp" ' % (prev, k)
                                      for k in reversed(_BINS)), prev))
    out += [_conv("conv5_4", prev + "_concat", 512, 3, 1, 1, lr=10),
            _bn("conv5_4", 10, conv5_4_mean_decay), _relu("conv5_4"),
            'layer { name: "conv5_4/dropout" type: "Dropout" bottom: "conv5_4" top: "conv5_4" '
            'dropout_param { dropout_ratio: 0.1 } }\n',
            _conv("conv6", "conv5_4", classes, 1, pad=None, lr=10, bias=True),
            'layer { name: "conv6_interp" type: "Interp" bottom: "conv6" top: "conv6_interp" '
            'interp_param { zoom_factor: 8 } }\n']
    return "".join(out)


def pspnet50_ade20k_473() -> str:
    """pspnet50_ADE20K_473.prototxt: ResNet-50, 473 x 473, 150 classes; conv3_1
    strides in its 1x1 reduce, conv5_4/bn's third param has decay_mult 1."""
    return _pspnet(473, 6, 150, stride_on_3x3=False, conv5_4_mean_decay=1)


def pspnet101_voc2012_473() -> str:
    """pspnet101_VOC2012_473.prototxt: ResNet-101, 473 x 473, 21 classes; conv3_1
    strides in its 3x3."""
    return _pspnet(473, 23, 21, stride_on_3x3=True, conv5_4_mean_decay=0)


def pspnet101_cityscapes_713() -> str:
    """pspnet101_cityscapes_713.prototxt: ResNet-101, 713 x 713 (90 x 90 at
    conv5_3), 19 classes."""
    return _pspnet(713, 23, 19, stride_on_3x3=True, conv5_4_mean_decay=0)
