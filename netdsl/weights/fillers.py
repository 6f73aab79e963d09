"""Caffe's weight fillers (``include/caffe/filler.hpp``): the public name of
:mod:`netdsl.layers.fillers`, which sits beside the layer types that fill their
own blobs (DummyData, the fixed weights of a type's rules)."""
from ..layers.fillers import (FILLER_DEFAULTS, FILLERS, FIXED_FILLERS,  # noqa: F401
                              bilinear_kernel, fill, filler_params, is_fixed)

__all__ = ["fill", "filler_params", "bilinear_kernel", "is_fixed", "FILLERS", "FILLER_DEFAULTS"]
