"""Caffe's blob arithmetic, shared by every layer family's rules.

Blob::CanonicalAxisIndex, Blob::count, Blob::LegacyShape and Blob::Reshape's
checks (include/caffe/blob.hpp, src/caffe/blob.cpp), C++ integer division and
single-precision rounding as Caffe's layers compute them, and the errors a
rule raises (a NetdslError; the engine adds the layer's name).
"""
from __future__ import annotations

import struct
from typing import Iterable, List, Optional, Sequence, Tuple

from google.protobuf.message import Message

from ..maps import IDENTITY
from .fillers import is_fixed
from .registry import Ops
from ..errors import NetdslError

Shape = Tuple[int, ...]

INT_MAX = 2 ** 31 - 1
MAX_BLOB_AXES = 32   # kMaxBlobAxes, include/caffe/blob.hpp


class Noted(list):
    """Top shapes with a remark on an assumption made."""

    def __init__(self, shapes: Iterable[Shape], note: Optional[str]) -> None:
        super().__init__(shapes)
        self.note = note


def err(message: str, field: Optional[str] = None, hint: Optional[str] = None) -> NetdslError:
    return NetdslError(message, field=field, hint=hint)


def shape_str(shape: Sequence[int]) -> str:
    """``(1, 3, 500, 500)``."""
    return "(" + ", ".join(str(d) for d in shape) + ")"


def canonical_axis(axis: int, shape: Sequence[int], field: Optional[str] = None) -> int:
    """Blob::CanonicalAxisIndex: ``-N <= axis < N``, negative counts from the end."""
    n = len(shape)
    if axis < -n or axis >= n:
        raise err("axis %d is out of range for a %d-axis blob %s (Caffe's CanonicalAxisIndex "
                  "requires -%d <= axis < %d)" % (axis, n, shape_str(shape), n, n), field)
    return axis + n if axis < 0 else axis


def count(shape: Sequence[int], start: int = 0, end: Optional[int] = None) -> int:
    """Blob::count(start, end): the product of dims in [start, end)."""
    out = 1
    for d in shape[start:end]:
        out *= d
    return out


def legacy_dim(shape: Sequence[int], index: int, field: Optional[str] = None) -> int:
    """Blob::LegacyShape (num/channels/height/width): blobs of at most 4 axes, 1-padded."""
    if len(shape) > 4:
        raise err("this layer reads the input with Caffe's legacy num/channels/height/width "
                  "accessors, which need at most 4 axes; got %d axes %s"
                  % (len(shape), shape_str(shape)), field)
    if index >= len(shape) or index < -len(shape):
        return 1
    return shape[index]


def blob_dims(blob_shape: Message) -> Shape:
    return tuple(int(d) for d in blob_shape.dim)


def check_blob_shape(shape: Sequence[int], what: str = "blob") -> None:
    """Blob::Reshape's checks: at most 32 axes, dims >= 0, count <= INT_MAX."""
    c = 1
    for d in shape:
        if d <= 0:
            break
        c *= d
    else:
        if c <= INT_MAX and len(shape) <= MAX_BLOB_AXES:
            return
    if len(shape) > MAX_BLOB_AXES:
        raise err("%s %s has %d axes; Caffe blobs have at most %d"
                  % (what, shape_str(shape), len(shape), MAX_BLOB_AXES))
    c = 1
    for i, d in enumerate(shape):
        if d < 0:
            raise err("%s %s has a negative size on axis %d (Caffe's Blob::Reshape requires "
                      "every dim >= 0)" % (what, shape_str(shape), i))
        if c != 0 and d > INT_MAX // c:
            raise err("%s %s has more than INT_MAX (%d) elements (Caffe's Blob::Reshape: "
                      "\"blob size exceeds INT_MAX\")" % (what, shape_str(shape), INT_MAX))
        c *= d


def tdiv(a: int, b: int) -> int:
    """C++ integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def f32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]


def f32_code(x: float) -> str:
    """``x`` as Caffe's float32 parameter, written as the shortest Python literal that
    rounds back to the same float32 (0.1 rather than 0.10000000149011612), for the
    code the to-torch export writes; inf and nan as ``math.inf``/``math.nan``."""
    v = f32(float(x))
    if v != v:
        return "math.nan"
    if v in (float("inf"), float("-inf")):
        return "math.inf" if v > 0 else "-math.inf"
    for digits in range(1, 10):
        text = "%.*g" % (digits, v)
        if f32(float(text)) == v:
            break
    return text if any(c in text for c in ".en") else text + ".0"


def need_rank(shape: Shape, n: int, what: str, field: Optional[str] = None) -> None:
    if len(shape) != n:
        raise err("%s needs a %d-axis input; got %d axes %s"
                  % (what, n, len(shape), shape_str(shape)), field)


def same_shapes(bottoms: List[Shape], what: str) -> None:
    for i in range(1, len(bottoms)):
        if bottoms[i] != bottoms[0]:
            raise err("%s requires all bottoms to have the same shape: bottom[0] %s vs "
                      "bottom[%d] %s" % (what, shape_str(bottoms[0]), i, shape_str(bottoms[i])))


def declare_hint(layer: Message) -> str:
    name = layer.name or "<layer>"
    tops = list(layer.top) or ["<top>"]
    example = ", ".join("(N, C, H, W)" if i == 0 else "(N,)" for i in range(len(tops)))
    text = ("declare its output shapes: declared={'%s': [%s]}, or by top name, "
            "declared={'%s': (N, C, H, W)}" % (name, example, tops[0]))
    if not len(layer.bottom):
        text += ("; as a data layer its tops can also be given as net inputs, inputs={'%s': "
                 "(N, C, H, W)} (`--input %s=N,C,H,W` on the command line)" % (tops[0], tops[0]))
    return text


def needs_declaration(layer: Message, why: str) -> NetdslError:
    exc = NetdslError("%s layer: %s" % (layer.type, why), hint=declare_hint(layer))
    exc.declare_tops = (tuple(layer.top), not len(layer.bottom))   # for the CLI's flags
    return exc


def enum_name(msg: Message, field_name: str) -> str:
    """The name of an enum field's value; a BVLC field the schema lacks reads as
    the behaviour before it (netdsl.fork.fill_missing_fields)."""
    value = getattr(msg, field_name)
    fd = msg.DESCRIPTOR.fields_by_name.get(field_name) or \
        getattr(type(msg), "ABSENT_BVLC_FIELDS", {})[field_name]
    ev = fd.enum_type.values_by_number.get(value)
    return ev.name if ev is not None else str(value)


def identity_map(layer: Message, shapes=None, *_):
    """The coordinate map of a layer whose output pixel i sits where input pixel i does."""
    return IDENTITY


# -- fillers shared by several types -----------------------------------------------------

def weight_bias_fillers(param_field: str):
    """Fillers of a layer with ``weight_filler`` then ``bias_filler`` in ``param_field``
    (an unset filler is FillerParameter's default, constant 0)."""
    def fillers(layer: Message, shapes: Sequence[Shape]) -> list:
        p = getattr(layer, param_field)
        return [p.weight_filler, p.bias_filler][:len(shapes)]
    return fillers


def fixed_weight_bias(param_field: str):
    """Whether Caffe's own setup gives the layer's blobs their final values: the
    ``weight_filler`` is set and fixed (constant or bilinear), and so is the bias
    filler when there is a bias.  Such a layer needs no caffemodel entry."""
    def fixed(layer: Message) -> bool:
        p = getattr(layer, param_field)
        if not p.HasField("weight_filler") or not is_fixed(p.weight_filler):
            return False
        return not p.bias_term or is_fixed(p.bias_filler)
    return fixed


def elementwise_cost(ls):
    """netdsl.cost's count for an element-wise layer: one operation per output element."""
    return Ops(elementwise=count(ls.top_shapes[0]))
