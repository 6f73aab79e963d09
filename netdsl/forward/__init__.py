"""A numpy reference forward pass with Caffe's layer semantics, float32.

::

    from netdsl.forward import forward
    blobs = forward("deploy.prototxt", "weights.caffemodel", {"data": x})
    blobs["prob"], blobs.outputs

Each layer type is one registered function (:data:`FORWARD`), grouped by
concern: :mod:`.conv` (Convolution, Deconvolution, Pooling, InnerProduct),
:mod:`.pointwise` (neurons, Eltwise, Scale, Bias, Dropout), :mod:`.norm`
(BatchNorm, MVN, LRN, Softmax, ArgMax) and :mod:`.structure` (Input,
DummyData, Concat, Slice, Split, Flatten, Reshape, Crop, Silence, ...).
"""
from . import conv, norm, pointwise, structure  # noqa: F401  (register the layer types)
from .conv import conv2d, deconv2d
from .core import (FORWARD, Context, ForwardResult, forward, input_shapes, random_inputs,
                   register)
from .run import run

__all__ = ["forward", "run", "register", "FORWARD", "Context", "ForwardResult",
           "random_inputs", "input_shapes", "conv2d", "deconv2d"]
