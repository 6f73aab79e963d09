"""PyTorch -> Caffe with proven parity.

::

    from netdsl.torch import convert
    result = convert(model.eval(), torch.randn(1, 3, 224, 224))
    result.save("out/")          # deploy.prototxt, model.caffemodel, parity.json
    print(result.parity.table())

The model is traced with ``torch.export`` (ATen ops with shapes), every op is
mapped through one table of converters (:mod:`netdsl.convert.table`; add your
own with :func:`register_converter`) to stock BVLC layers, using the exact
recipes of :mod:`netdsl.convert.recipes` where Caffe and PyTorch differ, and the
numpy forward of the result is checked against PyTorch (docs/from-torch.md).
"""
from __future__ import annotations

from netdsl.convert.graph import Blob, Context, Op
from netdsl.convert.table import CONVERTERS, lookup, register_converter
from netdsl.torch.convert import Conversion, convert, trace

__all__ = ["convert", "Conversion", "trace", "register_converter", "lookup", "CONVERTERS",
           "Blob", "Context", "Op"]
