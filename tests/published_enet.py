"""ENet for Cityscapes at full size, as published.

Reproduces TimoSaemann/ENet prototxts/enet_deploy_final.prototxt (commit
bb681cc5df1945f8d625aa0de8aeaf33a6bd4550) for the fork TimoSaemann/caffe-enet:
the deploy net after that repository's scripts/BN-absorber-enet.py (each BN
that follows a Convolution folded into it, so those have a bias, and the
spatial dropout removed; the BN after the Concat and the Deconvolutions stay,
in INFERENCE mode).  Input 1 x 3 x 512 x 1024; the initial block (3x3 stride-2
conv concatenated with a MAX pooling), stage 1 (a downsampling bottleneck and
4 regular ones), stages 2 and 3 (regular, dilated and 5x1/1x5 asymmetric
bottlenecks; stage 2 starts by downsampling), stages 4 and 5 (upsampling
bottlenecks: a 2x2 deconvolution with its BN, and the fork's Upsample by the
pooling masks of stages 2 and 1; then regular bottlenecks, with ReLU instead
of PReLU) and a 2x2 deconvolution to the 19 classes at 512 x 1024.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

PUBLISHED_SHA256 = {
    # TimoSaemann/ENet prototxts/enet_deploy_final.prototxt
    # @ bb681cc5df1945f8d625aa0de8aeaf33a6bd4550
    "enet_deploy_final": "30bd8bd22bbd2a5a1669c6b55edd83a2c8df2e7c8b8fa270dce368c7e20315f9",
}

_MSRA = 'weight_filler { type: "msra" }'
_ZERO = 'bias_filler { type: "constant" value: 0.0 }'
_BN = ('param { lr_mult: 1.0 decay_mult: 1.0 } param { lr_mult: 1.0 decay_mult: 0.0 } '
       'bn_param { scale_filler { type: "constant" value: 1.0 } '
       'shift_filler { type: "constant" value: 0.001 } bn_mode: INFERENCE }')

#: the middle convolution of the stage 2 and 3 regular bottlenecks 1..8:
#: 0 = plain 3x3, d > 1 = 3x3 with dilation d, -1 = 5x1 then 1x5
_MIDDLE = [0, 2, -1, 4, 0, 8, -1, 16]


def _layer(name: str, type_: str, bottoms: List[str], tops: List[str], body: str = "") -> str:
    parts = ['name: "%s" type: "%s"' % (name, type_)]
    parts += ['bottom: "%s"' % b for b in bottoms] + ['top: "%s"' % t for t in tops]
    return "layer { %s%s }\n" % (" ".join(parts), " " + body if body else "")


def _conv(name: str, bottom: str, nout: int, geometry: str, bias_filler: bool = True,
          type_: str = "Convolution", fillers: bool = True) -> str:
    body = "num_output: %d bias_term: true %s" % (nout, geometry)
    if fillers:
        body += " " + _MSRA + (" " + _ZERO if bias_filler else "")
    return _layer(name, type_, [bottom], [name], "convolution_param { %s }" % body)


class _Writer:
    def __init__(self, act: str = "PReLU") -> None:
        self.out: List[str] = []
        self.act = act

    def conv(self, name: str, bottom: str, nout: int, geometry: str, bias_filler: bool = True,
             type_: str = "Convolution", fillers: bool = True) -> str:
        self.out.append(_conv(name, bottom, nout, geometry, bias_filler, type_, fillers))
        return name

    def activation(self, name: str, bottom: str) -> str:
        self.out.append(_layer(name, self.act, [bottom], [name]))
        return name

    def bottleneck(self, s: int, i: int, bottom: str, nout: int, red: int, middle: int = 0,
                   down: bool = False, mask: Optional[str] = None) -> Tuple[str, str]:
        """Bottleneck i of stage s; returns its top and (downsampling) its pooling mask."""
        p = "%d_%d" % (s, i)
        pool_mask = ""
        if mask is not None:                      # upsampling: 1x1, 2x2 deconv + BN
            x = self.activation("prelu%s_0" % p, self.conv("conv%s_0" % p, bottom, red,
                                                           "kernel_size: 1 stride: 1"))
            x = self.conv("deconv%s_1" % p, x, red, "kernel_size: 2 stride: 2",
                          type_="Deconvolution", fillers=False)
            self.out.append(_layer("bn%s_1" % p, "BN", [x], ["bn%s_1" % p], _BN))
            x = "bn%s_1" % p
        else:
            x = self.activation("prelu%s_0" % p, self.conv(
                "conv%s_0" % p, bottom, red,
                "kernel_size: 2 stride: 2" if down else "kernel_size: 1 stride: 1"))
            if middle == -1:
                x = self.conv("conv%s_1_a" % p, x, red,
                              "pad: 1 stride: 1 kernel_h: 5 kernel_w: 1")
                x = self.conv("conv%s_1" % p, x, red, "pad: 1 stride: 1 kernel_h: 1 kernel_w: 5",
                              bias_filler=False)
            elif middle > 1:
                x = self.conv("conv%s_1" % p, x, red, "pad: %d kernel_size: 3 stride: 1 "
                              "dilation: %d" % (middle, middle), bias_filler=False)
            else:
                x = self.conv("conv%s_1" % p, x, red, "pad: 1 kernel_size: 3 stride: 1",
                              bias_filler=False)
        x = self.conv("conv%s_2" % p, self.activation("prelu%s_1" % p, x), nout,
                      "kernel_size: 1 stride: 1")
        shortcut = bottom
        if down:
            pool_mask = "pool%s_4_mask" % p
            self.out.append(_layer("pool%s_4" % p, "Pooling", [bottom],
                                   ["pool%s_4" % p, pool_mask],
                                   "pooling_param { pool: MAX kernel_size: 2 stride: 2 }"))
            shortcut = self.conv("conv%s_4" % p, "pool%s_4" % p, nout, "kernel_size: 1 stride: 1")
        elif mask is not None:
            y = self.conv("conv%s_4" % p, bottom, nout, "kernel_size: 1 stride: 1")
            shortcut = "upsample%s_4" % p
            self.out.append(_layer(shortcut, "Upsample", [y, mask], [shortcut],
                                   "upsample_param { scale: 2 }"))
        self.out.append(_layer("eltwise%s_4" % p, "Eltwise", [shortcut, x], ["eltwise%s_4" % p]))
        return self.activation("prelu%s_4" % p, "eltwise%s_4" % p), pool_mask


def enet_deploy_final() -> str:
    """TimoSaemann/ENet prototxts/enet_deploy_final.prototxt as prototxt text."""
    w = _Writer()
    w.out.append('name: "ENet"\n' + _layer(
        "data", "Input", [], ["data"],
        "input_param { shape { dim: 1 dim: 3 dim: 512 dim: 1024 } }"))
    w.conv("conv0_1", "data", 13, "pad: 1 kernel_size: 3 stride: 2", bias_filler=False)
    w.out.append(_layer("pool0_1", "Pooling", ["data"], ["pool0_1"],
                        "pooling_param { pool: MAX kernel_size: 2 stride: 2 }"))
    w.out.append(_layer("concat0_1", "Concat", ["conv0_1", "pool0_1"], ["concat0_1"],
                        "concat_param { axis: 1 }"))
    w.out.append(_layer("bn0_1", "BN", ["concat0_1"], ["bn0_1"], _BN))
    x = w.activation("prelu0_1", "bn0_1")
    masks: Dict[int, str] = {}
    x, masks[1] = w.bottleneck(1, 0, x, 64, 16, down=True)
    for i in range(1, 5):
        x, _ = w.bottleneck(1, i, x, 64, 16)
    x, masks[2] = w.bottleneck(2, 0, x, 128, 32, down=True)
    for s in (2, 3):
        for i, middle in enumerate(_MIDDLE, 1):
            x, _ = w.bottleneck(s, i, x, 128, 32, middle)
    w.act = "ReLU"
    for s, nout, red, blocks in ((4, 64, 16, 3), (5, 16, 4, 2)):
        x, _ = w.bottleneck(s, 0, x, nout, red, mask=masks[6 - s])
        for i in range(1, blocks):
            x, _ = w.bottleneck(s, i, x, nout, red)
    w.conv("deconv6_0_0", x, 19, "kernel_size: 2 stride: 2", type_="Deconvolution",
           fillers=False)
    return "".join(w.out)
