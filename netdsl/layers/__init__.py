"""Every Caffe layer type: what it is (the registry) and how to add one to a net.

``L.Convolution(bottom, num_output=64, ...)`` adds a layer to a NetSpec, as
pycaffe's ``caffe.layers`` does (``from netdsl import layers as L``).
:func:`lookup` gives the :class:`~netdsl.layers.registry.LayerType` that the
engines (shapes, coordinate maps, forward, fillers) read.  One module per
family declares BVLC's types:

=============  ==========================================================
module         layer types
=============  ==========================================================
data           Input, DummyData, Data, ImageData, WindowData, MemoryData,
               HDF5Data, HDF5Output, Python, Parameter
conv           Convolution, Deconvolution, Im2col
pool           Pooling, SPP
inner          InnerProduct, Embed
structure      Crop, Concat, Slice, Split, Eltwise, Flatten, Reshape, Tile,
               Reduction, ArgMax, BatchReindex, Filter, Silence
neuron         ReLU, Sigmoid, TanH, AbsVal, BNLL, ELU, Threshold, Clip,
               Swish, Power, Exp, Log, Dropout, PReLU
norm           BatchNorm, Scale, Bias, LRN, MVN, Softmax
loss           the loss layers and Accuracy
recurrent      RNN, LSTM, LSTMUnit
=============  ==========================================================

Fork layer packs and user plugins use the same :func:`declare`.
"""
from typing import Any

from .registry import current, declare, lookup, use_layers  # noqa: F401
from . import conv, data, inner, loss, neuron, norm, pool, recurrent, structure  # noqa: F401,E402

__all__ = ["declare", "lookup", "current", "use_layers"]


def __getattr__(name: str) -> Any:
    # pycaffe's L.<Type>(...): layer types are CamelCase, this package's names are not.
    # The NetSpec builder sits floors above the registry: this face offers it lazily.
    if name[:1].isupper():
        from ..netspec import layers as factory
        fn = globals()[name] = getattr(factory, name)   # as the factory, keep it for next time
        return fn
    raise AttributeError("module 'netdsl.layers' has no attribute %r" % name)
