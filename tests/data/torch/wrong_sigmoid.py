"""A plugin that maps sigmoid to the wrong layer (TanH): parity must catch it."""
from netdsl.torch import Blob, register_converter


@register_converter("aten.sigmoid")
def sigmoid_as_tanh(cx, op):
    return Blob(cx.L.TanH(op["input"].top), op.out_shape)
