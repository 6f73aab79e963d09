"""``upsample``: a fixed (or learnable) upsampling Deconvolution.

::

    - upsample: upscore        # the top
      factor: 32               # integer f
      channels: 21             # C (group = num_output = C)
      mode: bilinear           # or nearest
      learnable: false         # frozen by default: param {lr_mult: 0}
      dense: false             # true: FCN's own ungrouped C x C form, kernels by surgery
      kernel: even             # or odd: bilinear kernel 2f - 1 (ResNet-style trunks)

Grouped (default): one kernel per channel, set by Caffe's own filler.

* bilinear: kernel 2f - f mod 2, stride f, pad ceil((f - 1) / 2), and
  ``weight_filler {type: "bilinear"}`` (Caffe's BilinearFiller);
* nearest: kernel f, stride f, pad 0, ``weight_filler {type: "constant" value: 1}``.

Both have ``bias_term: false`` and ``group = num_output = C``.

``kernel: odd`` (bilinear only): kernel 2f - 1, stride f, pad 0.  Caffe's
BilinearFiller then gives the triangle 1 - |x - (f - 1)| / f centred on tap
f - 1, and the Deconvolution's coordinate map (deconv_layer.cpp; pycaffe's
coord_map: ``y = f x + (k - 1)/2 - pad``) shifts by the whole pixel f - 1.
FCN's even kernel 2f shifts by f - 1/2 - pad: on a VGG trunk, whose 2x2
poolings shift by half a pixel, the halves cancel; on a ResNet-style trunk
(stride-2 convolutions and 3x3 pooling, each shifting by whole pixels) they do
not, and the crop after it has no whole-pixel offset.  Pad 0 keeps the whole
upsampled map, f(H - 1) + 2f - 1 wide, so it covers whatever the crop aligns
it with.

Dense (``dense: true``): FCN's published form, an ungrouped C x C
Deconvolution with ``bias_term: false``, no pad and no filler (kernel
2f - f mod 2 for bilinear, f for nearest, stride f); its kernels are written
by weight surgery (``netdsl init``, ``netdsl build --weights``: bilinear
``interp`` or ``nearest``), so the record names the surgery it needs.
"""
from __future__ import annotations

from typing import List

from .base import OpCall, Record, make_record

KEYS = ("factor", "channels", "mode", "learnable", "dense", "kernel", "name", "bottom",
        "param")


def geometry(mode: str, factor: int, dense: bool = False, kernel: str = "even") -> dict:
    """kernel_size, stride and pad of an upsampling Deconvolution by ``factor``
    (``kernel="odd"``: the bilinear kernel 2f - 1 with pad 0)."""
    f = factor
    if mode == "nearest":
        return {"kernel_size": f, "stride": f, "pad": 0}
    if kernel == "odd":
        return {"kernel_size": 2 * f - 1, "stride": f, "pad": 0}
    kernel = 2 * f - f % 2
    pad = 0 if dense else -(-(f - 1) // 2)   # ceil((f - 1) / 2)
    return {"kernel_size": kernel, "stride": f, "pad": pad}


def expand(call: OpCall) -> List[Record]:
    call.check_keys(KEYS)
    if call.head is None:
        raise call.error(None, "give the top name: `- upsample: NAME`")
    factor = call.integer("factor", minimum=1)
    channels = call.integer("channels", minimum=1)
    mode = call.choice("mode", "bilinear", ("bilinear", "nearest"))
    learnable = call.boolean("learnable", False)
    dense = call.boolean("dense", False)
    kernel = call.choice("kernel", "even", ("even", "odd"))
    if kernel == "odd" and mode != "bilinear":
        raise call.error("kernel", "`kernel: odd` is a bilinear kernel (2f - 1); nearest "
                                   "upsampling has kernel f")
    g = geometry(mode, factor, dense, kernel)
    conv = {"num_output": channels, "bias_term": False, "kernel_size": g["kernel_size"],
            "stride": g["stride"]}
    if not dense:
        conv["pad"] = g["pad"]
        conv["group"] = channels
        conv["weight_filler"] = ({"type": "bilinear"} if mode == "bilinear"
                                 else {"type": "constant", "value": 1.0})
    params = {"convolution_param": conv}
    if "param" in call.args:
        params["param"] = call.args["param"]
    elif not learnable:
        params["param"] = [{"lr_mult": 0}]
    rec = make_record(call, "Deconvolution", params)
    if dense:
        rec.surgery = "interp" if mode == "bilinear" else "nearest"
    return [rec]
