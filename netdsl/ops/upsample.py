"""``upsample``: a fixed (or learnable) upsampling Deconvolution.

::

    - upsample: upscore        # the top
      factor: 32               # integer f
      channels: 21             # C (group = num_output = C)
      mode: bilinear           # or nearest
      learnable: false         # frozen by default: param {lr_mult: 0}
      dense: false             # true: FCN's own ungrouped C x C form, kernels by surgery

Grouped (default): one kernel per channel, set by Caffe's own filler.

* bilinear: kernel 2f - f mod 2, stride f, pad ceil((f - 1) / 2), and
  ``weight_filler {type: "bilinear"}`` (Caffe's BilinearFiller);
* nearest: kernel f, stride f, pad 0, ``weight_filler {type: "constant" value: 1}``.

Both have ``bias_term: false`` and ``group = num_output = C``.

Dense (``dense: true``): FCN's published form, an ungrouped C x C
Deconvolution with ``bias_term: false``, no pad and no filler (kernel
2f - f mod 2 for bilinear, f for nearest, stride f); its kernels are written
by weight surgery (``netdsl init``, ``netdsl build --weights``: bilinear
``interp`` or ``nearest``), so the record names the surgery it needs.
"""
from __future__ import annotations

from typing import List

from .base import OpCall, Record, make_record

KEYS = ("factor", "channels", "mode", "learnable", "dense", "name", "bottom", "param")


def geometry(mode: str, factor: int, dense: bool = False) -> dict:
    """kernel_size, stride and pad of an upsampling Deconvolution by ``factor``."""
    f = factor
    if mode == "nearest":
        return {"kernel_size": f, "stride": f, "pad": 0}
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
    g = geometry(mode, factor, dense)
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
