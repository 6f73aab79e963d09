"""A numpy reference forward pass with Caffe's layer semantics, float32.

::

    from netdsl.forward import forward
    blobs = forward("deploy.prototxt", "weights.caffemodel", {"data": x})
    blobs["prob"], blobs.outputs

    net = prepare("deploy.prototxt", "weights.caffemodel")   # weights read once
    for x in images:
        prob = net.forward({"data": x})["prob"]

Each layer type's forward lives with the rest of its rules in
:mod:`netdsl.layers`; :mod:`.core` walks the net and :mod:`.run` is the
``netdsl run`` verb.
"""
from ..layers.conv import conv2d, deconv2d
from .core import (Context, ForwardResult, PreparedNet, forward, input_shapes, prepare,
                   random_inputs)
from .finite import NonFinite, NonFiniteWarning
from .run import run

__all__ = ["forward", "prepare", "PreparedNet", "run", "Context", "ForwardResult",
           "NonFinite", "NonFiniteWarning", "random_inputs", "input_shapes", "conv2d",
           "deconv2d"]


def __getattr__(name: str):
    if name in ("FORWARD", "register"):   # netdsl 0.1's table
        from ..errors import NetdslError
        raise NetdslError("netdsl.forward.%s is gone: every layer type's rules live in one "
                          "LayerType in netdsl.layers" % name,
                          hint="read a forward with netdsl.layers.lookup(TYPE).forward; "
                               "declare a type with netdsl.plugins.register_layer(TYPE, "
                               "forward=...) (see docs/custom-layers.md)")
    raise AttributeError("module 'netdsl.forward' has no attribute %r" % name)
