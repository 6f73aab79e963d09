"""netdsl plugin: the example layer types of specs/forks/deconvnet.proto.

::

    netdsl shapes net.prototxt --proto specs/forks/deconvnet.proto \\
        --plugin specs/forks/segmentation_layers.py

Registers shape, coordinate-map and numpy forward rules for

* ``MaxPoolWithSwitches``: max pooling that also outputs its switches;
* ``Unpooling`` (this example's unpooling_param, with out_h/out_w): puts each
  value back where its switch says, zeros elsewhere; it replaces, while the
  plugin is loaded, the rules of DeconvNet's ``Unpooling`` (netdsl.packs.deconvnet).

SegNet's ``Upsample`` and DeepLab's ``Interp`` (segnet-deeplab.proto) need no
plugin: the layer packs of netdsl.packs give their rules as soon as a schema
with their parameter messages is loaded (docs/forks.md).  Nothing here is part
of netdsl: it only calls :func:`netdsl.plugins.register_layer`.
"""
from __future__ import annotations

from fractions import Fraction
from typing import List, Sequence, Tuple

from netdsl.errors import NetdslError
from netdsl.plugins import register_layer
from netdsl.layers import lookup
from netdsl.packs._util import scatter

Shape = Tuple[int, ...]


def _param(layer, name: str, schema: str):
    """The layer's ``name`` message, or an error saying which schema has it."""
    if name not in layer.DESCRIPTOR.fields_by_name:
        raise NetdslError("a %s layer reads `%s`, which the schema in use does not have"
                          % (layer.type, name), field=name,
                          hint="load the fork's schema: --proto specs/forks/%s" % schema)
    return getattr(layer, name)


def _four_axes(shape: Sequence[int], what: str) -> None:
    if len(shape) != 4:
        raise NetdslError("%s must have 4 axes, corresponding to (num, channels, height, "
                          "width); got %s" % (what, tuple(shape)))


def _exact(x: Fraction):
    return int(x) if x.denominator == 1 else x


def _axes_map(scale: Sequence, shift: Sequence):
    """A map on axis 1 with per-axis values, one value when both axes agree."""
    scale, shift = tuple(scale), tuple(shift)
    if len(set(scale)) == 1 and len(set(shift)) == 1:
        scale, shift = scale[:1], shift[:1]
    return 1, scale, shift


# -- MaxPoolWithSwitches and Unpooling (DeconvNet-style) ------------------------------

def _max_pool(layer) -> None:
    pool = layer.pooling_param.pool
    if pool != layer.pooling_param.MAX:
        raise NetdslError("MaxPoolWithSwitches records the switches of MAX pooling only",
                          field="pooling_param.pool")


def pooling_switches_shape(layer, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # BVLC's Pooling rule (pooling_layer.cpp Reshape) for both tops
    _max_pool(layer)
    return lookup("Pooling").top_shapes(layer, bottoms, ntop)


def pooling_switches_forward(layer, bottoms, blobs, ctx):
    _max_pool(layer)
    return lookup("Pooling").run(layer, bottoms, blobs, ctx)


def unpooling_geometry(layer) -> Tuple[Tuple[int, int], Tuple[int, int], Tuple[int, int]]:
    """((kh, kw), (sh, sw), (ph, pw)) of unpooling_param, checked."""
    p = _param(layer, "unpooling_param", "deconvnet.proto")
    if p.HasField("kernel_h") or p.HasField("kernel_w"):
        if not (p.HasField("kernel_h") and p.HasField("kernel_w")):
            raise NetdslError("kernel_h and kernel_w must be given together",
                              field="unpooling_param.kernel_h")
        k = (p.kernel_h, p.kernel_w)
    else:
        k = (p.kernel_size, p.kernel_size)
    s = (p.stride_h, p.stride_w) if p.HasField("stride_h") else (p.stride, p.stride)
    pad = (p.pad_h, p.pad_w) if p.HasField("pad_h") else (p.pad, p.pad)
    if min(k) <= 0:
        raise NetdslError("Unpooling needs the pooling's kernel_size (or kernel_h and kernel_w)",
                          field="unpooling_param.kernel_size")
    if min(s) <= 0:
        raise NetdslError("stride must be positive", field="unpooling_param.stride")
    if pad[0] >= k[0] or pad[1] >= k[1]:
        raise NetdslError("pad %s must be smaller than the kernel %s" % (pad, k),
                          field="unpooling_param.pad")
    return k, s, pad


def unpooling_size(layer, bottom: Sequence[int]) -> Tuple[int, int]:
    """out = (in - 1) * stride - 2 * pad + kernel per axis, unless out_h/out_w are set."""
    p = _param(layer, "unpooling_param", "deconvnet.proto")
    k, s, pad = unpooling_geometry(layer)
    out = [(bottom[2 + i] - 1) * s[i] - 2 * pad[i] + k[i] for i in range(2)]
    if p.HasField("out_h") or p.HasField("out_w"):
        if not (p.HasField("out_h") and p.HasField("out_w")):
            raise NetdslError("out_h and out_w must be given together",
                              field="unpooling_param.out_h")
        out = [p.out_h, p.out_w]
    return out[0], out[1]


def unpooling_shape(layer, bottoms: List[Shape], ntop: int) -> List[Shape]:
    x, sw = bottoms
    _four_axes(x, "Unpooling's values")
    if tuple(sw) != tuple(x):
        raise NetdslError("the switches %s must have the values' shape %s"
                          % (tuple(sw), tuple(x)), field="bottom")
    oh, ow = unpooling_size(layer, x)
    return [(x[0], x[1], oh, ow)]


def unpooling_map(layer, shapes=None):
    # the inverse of the pooling map (scale 1/s, shift (p - (k-1)/2)/s):
    # scale s, shift (k - 1)/2 - p, as for a Deconvolution of that geometry
    k, s, pad = unpooling_geometry(layer)
    return _axes_map(s, [_exact(Fraction(k[i] - 1, 2) - pad[i]) for i in range(2)])


def unpooling_forward(layer, bottoms, blobs, ctx):
    x, switches = bottoms
    oh, ow = unpooling_size(layer, x.shape)
    return [scatter(x, switches, oh, ow, "unpooling")]


register_layer("MaxPoolWithSwitches", bottoms=1, tops=2, shape=pooling_switches_shape,
               coord_map=lambda layer, shapes=None: lookup("Pooling").map(layer, shapes),
               forward=pooling_switches_forward)
register_layer("Unpooling", bottoms=2, tops=1, shape=unpooling_shape, coord_map=unpooling_map,
               forward=unpooling_forward)
