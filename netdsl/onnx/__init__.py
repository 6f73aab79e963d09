"""ONNX -> Caffe on the PyTorch converter's op table, with proven parity.

::

    from netdsl.onnx import convert
    result = convert("model.onnx")            # input shapes from the graph
    result.save("out/")          # deploy.prototxt, model.caffemodel, parity.json
    print(result.parity.table())

Each ONNX node is translated (:mod:`netdsl.onnx.adapters`) into the
arguments of the ATen converters of :mod:`netdsl.convert.table`, so both front
ends share one mapping to stock BVLC layers; constant subgraphs (Shape
arithmetic on static shapes) are folded first.  The parity check runs the ONNX
graph with onnxruntime (docs/from-onnx.md).
"""
from __future__ import annotations

from netdsl.onnx.convert import OnnxConversion, convert

__all__ = ["convert", "OnnxConversion"]
