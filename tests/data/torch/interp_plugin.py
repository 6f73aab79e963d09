"""Maps align_corners=True bilinear resizing to DeepLab's Interp layer (a fork
type, schema specs/forks/segnet-deeplab.proto) through register_converter; the
numpy forward of Interp comes from specs/forks/segmentation_layers.py."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "specs", "forks"))
import segmentation_layers  # noqa: E402,F401  (registers Interp's shape and forward rules)

from netdsl.torch import Blob, lookup, register_converter  # noqa: E402

stock = lookup("aten.upsample_bilinear2d")


@register_converter("aten.upsample_bilinear2d")
def to_interp(cx, op):
    if not op.get("align_corners"):
        return stock(cx, op)
    h, w = op.out_shape[2:]
    top = cx.L.Interp(op["input"].top, interp_param={"height": h, "width": w})
    return Blob(top, op.out_shape)
