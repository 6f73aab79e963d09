"""Weights: caffemodel I/O, Caffe's fillers, FCN-style surgery, initialisation.

::

    from netdsl.weights import (write_caffemodel, open_caffemodel, inspect, format_inspect,
                                fill, bilinear_kernel, interp, nearest, transplant,
                                expand_score, init_weights)
"""
from .caffemodel import (PROTO_LIMIT, BlobEntry, CaffeModel, LayerEntry, format_inspect,
                         inspect, open_caffemodel, write_caffemodel)
from .fillers import bilinear_kernel, fill, filler_params
from .init import init_weights, layer_fillers
from .surgery import TransplantReport, expand_score, interp, nearest, transplant, upsample_filt

__all__ = [
    "write_caffemodel", "open_caffemodel", "CaffeModel", "LayerEntry", "BlobEntry",
    "PROTO_LIMIT", "inspect", "format_inspect",
    "fill", "filler_params", "bilinear_kernel",
    "interp", "nearest", "transplant", "expand_score", "TransplantReport", "upsample_filt",
    "init_weights", "layer_fillers",
]
