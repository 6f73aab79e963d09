"""Published SegNet and DeconvNet inference nets, reproduced at full size.

- ``segnet_inference``: alexgkendall/SegNet-Tutorial Models/segnet_inference.prototxt
  and ``bayesian_segnet_inference``: Models/bayesian_segnet_inference.prototxt (commit
  bb68b64e72cb004b3ed927fee0f5624dd8097498), schema fork "segnet". SegNet for CamVid
  (11 classes, 360 x 480): DenseImageData, a VGG16 encoder of Convolution + BN
  (INFERENCE) + ReLU whose MAX poolings also output their masks, a mirrored decoder
  whose Upsample layers place values by those masks (upsample_h/w given where the
  pooling met an odd size: 45 -> 23, 90 -> 45), Softmax. The Bayesian net adds
  Dropout (sample_weights_test) after pool3-5 and after the decoder stages 5-3.
- ``deconvnet_inference_deploy``: HyeonwooNoh/DeconvNet
  model/DeconvNet/DeconvNet_inference_deploy.prototxt (commit
  87dd133d62b5407d09e4973bb9647dccb68e71f0), schema fork "deconvnet", V1 format
  (``layers``): legacy input 1 x 3 x 224 x 224, VGG16 with BN, fc6 (7 x 7) and fc7 as
  convolutions, fc6-deconv (7 x 7), then per stage UNPOOLING by the pooling switches and
  DECONVOLUTION + BN + RELU, seg-score-voc (21 classes).
"""
from __future__ import annotations

from typing import List, Tuple

#: VGG16 stages: (stage, convolutions, channels)
VGG16: List[Tuple[int, int, int]] = [(1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512),
                                     (5, 3, 512)]

# sha256 of NetParameter.SerializeToString(deterministic=True) of each published file,
# parsed with the test schema of its fork (tests/fork_schemas.py):
PUBLISHED_SHA256 = {
    # alexgkendall/SegNet-Tutorial Models/segnet_inference.prototxt @ bb68b64e72cb
    "segnet_inference": "aadb9f0107a885c72e3a6b77ff460667dc820e10ddf2820395f5699f2875fcf8",
    # alexgkendall/SegNet-Tutorial Models/bayesian_segnet_inference.prototxt @ bb68b64e72cb
    "bayesian_segnet_inference": "dca5817afa7c9e4fc97cda4b3b17bf6d8b2dbb18351155e9cb2783f717dd9f1e",
    # HyeonwooNoh/DeconvNet model/DeconvNet/DeconvNet_inference_deploy.prototxt @ 87dd133d
    "deconvnet_inference_deploy":
        "6303da8c7a114adcb7272dada224f3eb1f4da33daf247dff388d69856b07fde0",
}


# -- SegNet ------------------------------------------------------------------------

def _segnet(bayesian: bool) -> str:
    zero = " value: 0" if bayesian else ""
    bn_params = "" if bayesian else ("  param { lr_mult: 1 decay_mult: 1 }\n"
                                     "  param { lr_mult: 1 decay_mult: 0 }\n")

    def conv(name: str, bottom: str, nout: int) -> str:
        return ('layer {\n  bottom: "%s"\n  top: "%s"\n  name: "%s"\n  type: "Convolution"\n'
                '  param { lr_mult: 1 decay_mult: 1 }\n  param { lr_mult: 2 decay_mult: 0 }\n'
                '  convolution_param {\n    weight_filler { type: "msra" }\n'
                '    bias_filler { type: "constant"%s }\n'
                '    num_output: %d\n    pad: 1\n    kernel_size: 3\n  }\n}\n'
                % (bottom, name, name, zero, nout))

    def cbr(name: str, relu: str, bottom: str, nout: int) -> str:
        return (conv(name, bottom, nout)
                + 'layer {\n  bottom: "%s"\n  top: "%s"\n  name: "%s_bn"\n  type: "BN"\n%s'
                  '  bn_param {\n    bn_mode: INFERENCE\n'
                  '    scale_filler { type: "constant" value: 1 }\n'
                  '    shift_filler { type: "constant" value: 0.001 }\n  }\n}\n'
                  % (name, name, name, bn_params)
                + 'layer {\n  bottom: "%s"\n  top: "%s"\n  name: "%s"\n  type: "ReLU"\n}\n'
                  % (name, name, relu))

    def dropout(name: str, blob: str) -> str:
        if not bayesian:
            return ""
        return ('layer {\n  name: "%s"\n  type: "Dropout"\n  bottom: "%s"\n  top: "%s"\n'
                '  dropout_param {\n    dropout_ratio: 0.5\n    sample_weights_test: true\n'
                '  }\n}\n' % (name, blob, blob))

    out = ['name: "VGG_ILSVRC_16_layer"\n'
           'layer {\n  name: "data"\n  type: "DenseImageData"\n  top: "data"\n  top: "label"\n'
           '  dense_image_data_param {\n    source: "/SegNet/CamVid/test.txt"\n'
           '    batch_size: %d\n  }\n}\n' % (4 if bayesian else 1)]
    prev = "data"
    for s, n, ch in VGG16:
        for k in range(1, n + 1):
            out.append(cbr("conv%d_%d" % (s, k), "relu%d_%d" % (s, k), prev, ch))
            prev = "conv%d_%d" % (s, k)
        out.append('layer {\n  bottom: "%s"\n  top: "pool%d"\n  top: "pool%d_mask"\n'
                   '  name: "pool%d"\n  type: "Pooling"\n'
                   '  pooling_param {\n    pool: MAX\n    kernel_size: 2\n    stride: 2\n  }\n}\n'
                   % (prev, s, s, s))
        prev = "pool%d" % s
        if s >= 3:
            out.append(dropout("encdrop%d" % s, prev))
    # upsample_h/w where 360 x 480 pooled from an odd height: 45 -> 23 (pool4), 90 -> 45
    sizes = {5: " upsample_w: 30 upsample_h: 23", 4: " upsample_w: 60 upsample_h: 45"}
    for s, n, ch in reversed(VGG16):
        out.append('layer {\n  name: "upsample%d"\n  type: "Upsample"\n  bottom: "%s"\n'
                   '  top: "pool%d_D"\n  bottom: "pool%d_mask"\n'
                   '  upsample_param { scale: 2%s }\n}\n' % (s, prev, s, s, sizes.get(s, "")))
        prev = "pool%d_D" % s
        for k in range(n, 0, -1):
            name = "conv%d_%d_D" % (s, k)
            if s == 1 and k == 1:           # the classifier: 11 CamVid classes, no BN
                out.append(conv(name, prev, 11))
            else:
                nout = VGG16[s - 2][2] if k == 1 else ch
                out.append(cbr(name, "relu%d_%d_D" % (s, k), prev, nout))
            prev = name
        if s >= 3:
            out.append(dropout("decdrop%d" % s, prev))
    out.append('layer {\n  name: "prob"\n  type: "Softmax"\n  bottom: "%s"\n  top: "prob"\n'
               '  softmax_param { engine: CAFFE }\n}\n' % prev)
    return "".join(out)


def segnet_inference() -> str:
    """SegNet-Tutorial Models/segnet_inference.prototxt."""
    return _segnet(bayesian=False)


def bayesian_segnet_inference() -> str:
    """SegNet-Tutorial Models/bayesian_segnet_inference.prototxt (Monte Carlo Dropout,
    batch of 4 samples)."""
    return _segnet(bayesian=True)


# -- DeconvNet (V1) ------------------------------------------------------------------

def deconvnet_inference_deploy() -> str:
    """DeconvNet model/DeconvNet/DeconvNet_inference_deploy.prototxt (V1 layers)."""
    lr = "  blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0\n"
    fillers = ('    weight_filler { type: "gaussian" std: 0.01 }\n'
               '    bias_filler { type: "constant" value: 0 }\n')

    def unit(kind: str, name: str, bottom: str, nout: int, kernel: int, pad: int,
             bn: str, relu: str, filled: bool) -> str:
        return ('layers { bottom: "%s" top: "%s" name: "%s" type: %s\n%s'
                '  convolution_param { num_output: %d%s kernel_size: %d\n%s  } }\n'
                'layers { bottom: "%s" top: "%s" name: "%s" type: BN\n'
                '  bn_param { scale_filler { type: "constant" value: 1 }\n'
                '             shift_filler { type: "constant" value: 0.001 }\n'
                '             bn_mode: INFERENCE } }\n'
                'layers { bottom: "%s" top: "%s" name: "%s" type: RELU }\n'
                % (bottom, name, name, kind, lr, nout, " pad: %d" % pad if pad else "",
                   kernel, fillers if filled else "", name, name, bn, name, name, relu))

    out = ['name: "DeconvNet_inference_deploy"\n'
           'input: "data"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 224\ninput_dim: 224\n']
    prev = "data"
    for s, n, ch in VGG16:
        for k in range(1, n + 1):
            sk = "%d_%d" % (s, k)
            out.append(unit("CONVOLUTION", "conv" + sk, prev, ch, 3, 1, "bn" + sk,
                            "relu" + sk, False))
            prev = "conv" + sk
        out.append('layers { bottom: "%s" top: "pool%d" top: "pool%d_mask" name: "pool%d" '
                   'type: POOLING\n  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n'
                   % (prev, s, s, s))
        prev = "pool%d" % s
    out.append(unit("CONVOLUTION", "fc6", prev, 4096, 7, 0, "bnfc6", "relu6", False))   # 7 -> 1
    out.append(unit("CONVOLUTION", "fc7", "fc6", 4096, 1, 0, "bnfc7", "relu7", False))
    out.append(unit("DECONVOLUTION", "fc6-deconv", "fc7", 512, 7, 0, "fc6-deconv-bn",
                    "fc6-deconv-relu", True))                                         # 1 -> 7
    prev = "fc6-deconv"
    for s, n, ch in reversed(VGG16):
        out.append('layers { type: UNPOOLING bottom: "%s" bottom: "pool%d_mask" '
                   'top: "unpool%d" name: "unpool%d"\n  unpooling_param { unpool: MAX '
                   'kernel_size: 2 stride: 2 unpool_size: %d } }\n'
                   % (prev, s, s, s, 224 >> (s - 1)))
        prev = "unpool%d" % s
        for k in range(1, n + 1):
            sk = "%d_%d" % (s, k)
            nout = VGG16[s - 2][2] if (k == n and s > 1) else ch
            out.append(unit("DECONVOLUTION", "deconv" + sk, prev, nout, 3, 1, "debn" + sk,
                            "derelu" + sk, True))
            prev = "deconv" + sk
    out.append('layers { name: "seg-score-voc" type: CONVOLUTION bottom: "%s" top: "seg-score"\n'
               '%s  convolution_param { num_output: 21 kernel_size: 1\n%s  } }\n'
               % (prev, lr, fillers))
    return "".join(out)
