"""Blob and parameter shapes exactly as Caffe computes them, without Caffe.

Each layer type has a short rule in :data:`SHAPE_RULES` mirroring its
``LayerSetUp``/``Reshape`` in BVLC src/caffe/layers/*.cpp, with Caffe's
``int`` arithmetic (C++ division truncates toward zero; pooling rounds a
``float`` quotient).  Learnable blob shapes come from :data:`PARAM_RULES`.
Checks Caffe makes with ``CHECK`` raise :class:`~netdsl.errors.NetdslError`
naming the layer and field, Caffe's rule and the numbers involved.

:func:`infer_shapes` walks a net once (linear in its size, no recursion);
:func:`check_net` also rejects empty blobs (an output size below 1), which
Caffe itself allows but which no network means.
"""
from __future__ import annotations

import gc
import math
import struct
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from google.protobuf.message import Message

from .errors import NetdslError, did_you_mean

Shape = Tuple[int, ...]
ShapeRule = Callable[[Message, List[Shape], int], List[Shape]]
ParamRule = Callable[[Message, List[Shape]], List[Shape]]

INT_MAX = 2 ** 31 - 1
MAX_BLOB_AXES = 32   # kMaxBlobAxes, include/caffe/blob.hpp

#: layer type -> rule(layer, bottom_shapes, num_tops) -> top shapes
SHAPE_RULES: Dict[str, ShapeRule] = {}
#: layer type -> rule(layer, bottom_shapes) -> learnable blob shapes
PARAM_RULES: Dict[str, ParamRule] = {}


@dataclass(frozen=True)
class BlobCounts:
    """Caffe's ExactNum/Min/Max{Bottom,Top}Blobs and friends for one type."""
    bottoms: Any = None     # int, (min, max) with None for unbounded, or callable(layer)
    tops: Any = None
    equal: bool = False     # EqualNumBottomTopBlobs
    auto_top: bool = False  # AutoTopBlobs: missing tops are added anonymously
    loss: bool = False      # LossLayer: loss_weight defaults to 1
    in_place: bool = True   # False where Reshape CHECKs top != bottom


BLOB_COUNTS: Dict[str, BlobCounts] = {}


def rule(*types: str, bottoms: Any = None, tops: Any = None, equal: bool = False,
         loss: bool = False, in_place: bool = True) -> Callable[[ShapeRule], ShapeRule]:
    """Register a shape rule for ``types``, with their bottom/top blob counts.

    ``bottoms``/``tops`` are an exact count, a ``(min, max)`` pair (``None``
    for no bound) or a function of the LayerParameter giving either.
    """
    # every BVLC loss layer derives from LossLayer, whose AutoTopBlobs() is true
    spec = BlobCounts(bottoms=bottoms, tops=tops, equal=equal, auto_top=loss, loss=loss,
                      in_place=in_place)

    def deco(fn: ShapeRule) -> ShapeRule:
        for t in types:
            SHAPE_RULES[t] = fn
            BLOB_COUNTS[t] = spec
        return fn
    return deco


def param_rule(*types: str) -> Callable[[ParamRule], ParamRule]:
    """Register a learnable-blob shape rule for ``types``."""
    def deco(fn: ParamRule) -> ParamRule:
        for t in types:
            PARAM_RULES[t] = fn
        return fn
    return deco


class _Noted(list):
    """Top shapes with a remark on an assumption made."""

    def __init__(self, shapes: Iterable[Shape], note: Optional[str]) -> None:
        super().__init__(shapes)
        self.note = note


# -- results --------------------------------------------------------------------

@dataclass
class LayerShapes:
    """One layer as Caffe sets it up.

    ``strides``/``offsets`` (one entry per top, None when undefined) place a
    top on the net input: ``x_input = stride * x_top + offset`` per spatial
    axis, from the coordinate maps (:mod:`netdsl.coord_map`).
    """
    name: str
    type: str
    bottoms: List[str]
    tops: List[str]
    bottom_shapes: List[Shape]
    top_shapes: List[Shape]
    param_shapes: List[Shape]
    param_count: int
    loss_weights: List[float] = field(default_factory=list)
    strides: List[Optional[Tuple[Union[int, float], ...]]] = field(default_factory=list)
    offsets: List[Optional[Tuple[Union[int, float], ...]]] = field(default_factory=list)
    in_place: List[bool] = field(default_factory=list)
    declared: bool = False
    note: Optional[str] = None
    layer: Optional[Message] = field(default=None, repr=False, compare=False)


@dataclass
class NetShapes:
    """Shapes of a whole net.

    ``blobs`` has one entry per blob name in the order Caffe creates them
    (in-place blobs with their final shape).  Caffe's automatic split blobs
    and the anonymous tops of loss layers without tops are not listed.
    """
    blobs: Dict[str, Shape]
    layers: List[LayerShapes]

    def layer(self, name: str) -> LayerShapes:
        """The (first) layer called ``name``."""
        cached = self.__dict__.get("_index")
        if cached is None or cached[0] != len(self.layers):
            index: Dict[str, LayerShapes] = {}
            for ls in self.layers:
                index.setdefault(ls.name, ls)
            cached = self.__dict__["_index"] = (len(self.layers), index)
        index = cached[1]
        if name in index:
            return index[name]
        raise NetdslError("no layer named '%s'" % name,
                          hint=did_you_mean(name, [ls.name for ls in self.layers]))

    @property
    def param_count(self) -> int:
        return sum(ls.param_count for ls in self.layers)


# -- helpers: Caffe's blob arithmetic --------------------------------------------

def _err(message: str, field: Optional[str] = None, hint: Optional[str] = None) -> NetdslError:
    return NetdslError(message, field=field, hint=hint)


def shape_str(shape: Sequence[int]) -> str:
    """``(1, 3, 500, 500)``."""
    return "(" + ", ".join(str(d) for d in shape) + ")"


def canonical_axis(axis: int, shape: Sequence[int], field: Optional[str] = None) -> int:
    """Blob::CanonicalAxisIndex: ``-N <= axis < N``, negative counts from the end."""
    n = len(shape)
    if axis < -n or axis >= n:
        raise _err("axis %d is out of range for a %d-axis blob %s (Caffe's CanonicalAxisIndex "
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
        raise _err("this layer reads the input with Caffe's legacy num/channels/height/width "
                   "accessors, which need at most 4 axes; got %d axes %s"
                   % (len(shape), shape_str(shape)), field)
    if index >= len(shape) or index < -len(shape):
        return 1
    return shape[index]


def _dims(blob_shape: Message) -> Shape:
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
        raise _err("%s %s has %d axes; Caffe blobs have at most %d"
                   % (what, shape_str(shape), len(shape), MAX_BLOB_AXES))
    c = 1
    for i, d in enumerate(shape):
        if d < 0:
            raise _err("%s %s has a negative size on axis %d (Caffe's Blob::Reshape requires "
                       "every dim >= 0)" % (what, shape_str(shape), i))
        if c != 0 and d > INT_MAX // c:
            raise _err("%s %s has more than INT_MAX (%d) elements (Caffe's Blob::Reshape: "
                       "\"blob size exceeds INT_MAX\")" % (what, shape_str(shape), INT_MAX))
        c *= d


def _tdiv(a: int, b: int) -> int:
    """C++ integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _f32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]


def _need_rank(shape: Shape, n: int, what: str, field: Optional[str] = None) -> None:
    if len(shape) != n:
        raise _err("%s needs a %d-axis input; got %d axes %s"
                   % (what, n, len(shape), shape_str(shape)), field)


def _same_shapes(bottoms: List[Shape], what: str) -> None:
    for i in range(1, len(bottoms)):
        if bottoms[i] != bottoms[0]:
            raise _err("%s requires all bottoms to have the same shape: bottom[0] %s vs "
                       "bottom[%d] %s" % (what, shape_str(bottoms[0]), i, shape_str(bottoms[i])))


def _declare_hint(layer: Message) -> str:
    name = layer.name or "<layer>"
    tops = list(layer.top) or ["<top>"]
    example = ", ".join("(N, C, H, W)" if i == 0 else "(N,)" for i in range(len(tops)))
    text = ("declare its output shapes: declared={'%s': [%s]}, or by top name, "
            "declared={'%s': (N, C, H, W)}" % (name, example, tops[0]))
    if not len(layer.bottom):
        text += ("; as a data layer its tops can also be given as net inputs, inputs={'%s': "
                 "(N, C, H, W)} (`--input %s=N,C,H,W` on the command line)" % (tops[0], tops[0]))
    return text


def _needs_declaration(layer: Message, why: str) -> NetdslError:
    return NetdslError("%s layer: %s" % (layer.type, why), hint=_declare_hint(layer))


# -- data and input layers --------------------------------------------------------

@rule("Input", bottoms=0, tops=(1, None))
def _input(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # input_layer.cpp: shape once, once per top, or not at all
    shapes = layer.input_param.shape
    n = len(shapes)
    if n not in (0, 1, ntop):
        raise _err("Must specify 'shape' once, once per top blob, or not at all: %d tops vs. "
                   "%d shapes" % (ntop, n), "input_param.shape")
    if n == 0:
        raise NetdslError("Input layer has no input_param.shape, so its top shapes come from "
                          "the caller", field="input_param.shape",
                          hint="pass inputs={%s} (`--input NAME=N,C,H,W` on the command line)"
                          % ", ".join("'%s': (N, C, H, W)" % t for t in layer.top))
    return [_dims(shapes[0 if n == 1 else i]) for i in range(ntop)]


@rule("DummyData", bottoms=0, tops=(1, None))
def _dummy_data(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # dummy_data_layer.cpp: shape, or legacy num/channels/height/width, once or per top
    p = layer.dummy_data_param
    nf = len(p.data_filler)
    if nf not in (0, 1, ntop):
        raise _err("Number of data fillers must be 0, 1 or equal to the number of tops: %d; "
                   "you specified %d data fillers" % (ntop, nf), "dummy_data_param.data_filler")
    legacy = len(p.num) or len(p.channels) or len(p.height) or len(p.width)
    out = []
    if legacy:
        if len(p.shape):
            raise _err("Both shape and legacy fields were specified", "dummy_data_param.shape")
        for fname in ("num", "channels", "height", "width"):
            k = len(getattr(p, fname))
            if k not in (1, ntop):
                raise _err("Must specify '%s' once, or once per top blob (%d); specified %d"
                           % (fname, ntop, k), "dummy_data_param." + fname)
        for i in range(ntop):
            out.append(tuple(int(getattr(p, f)[0 if len(getattr(p, f)) == 1 else i])
                             for f in ("num", "channels", "height", "width")))
    else:
        if len(p.shape) not in (1, ntop):
            raise _err("Must specify 'shape' once, or once per top blob (%d); specified %d"
                       % (ntop, len(p.shape)), "dummy_data_param.shape")
        for i in range(ntop):
            out.append(_dims(p.shape[0 if len(p.shape) == 1 else i]))
    return out


def _crop_size(layer: Message, legacy_param: Optional[Message] = None) -> int:
    crop = layer.transform_param.crop_size
    if not crop and legacy_param is not None and legacy_param.HasField("crop_size"):
        crop = legacy_param.crop_size   # moved into transform_param by Caffe's upgrade
    return crop


def _datum_channels(layer: Message, what: str) -> Tuple[int, Optional[str]]:
    tp = layer.transform_param
    if len(tp.mean_value) > 1:
        # data_transformer.cpp: one mean_value, or one per channel
        return len(tp.mean_value), None
    if tp.force_gray:
        return 1, None
    if tp.force_color:
        return 3, None
    return 3, ("channels assumed 3: Caffe reads them from the %s, which netdsl does not open; "
               "declare the shape if the data has another channel count" % what)


@rule("Data", bottoms=0, tops=(1, 2))
def _data(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # data_layer.cpp: (batch_size,) + datum shape, cropped by transform_param.crop_size
    dp = layer.data_param
    crop = _crop_size(layer, dp)
    if not crop:
        raise _needs_declaration(layer, "without transform_param.crop_size the image size comes "
                                        "from the database records, which netdsl does not read")
    c, note = _datum_channels(layer, "database records")
    b = dp.batch_size
    return _Noted([(b, c, crop, crop)] + [(b,)] * (ntop - 1), note)


@rule("ImageData", bottoms=0, tops=2)
def _image_data(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # image_data_layer.cpp: images read with new_height x new_width, is_color 3 or 1 channels
    p = layer.image_data_param
    nh, nw = p.new_height, p.new_width
    if not ((nh == 0 and nw == 0) or (nh > 0 and nw > 0)):
        raise _err("new_height and new_width must be set together (Caffe: \"Current "
                   "implementation requires new_height and new_width to be set at the same "
                   "time\"); got %d and %d" % (nh, nw), "image_data_param.new_height")
    if p.batch_size <= 0:
        raise _err("Positive batch size required", "image_data_param.batch_size")
    crop = _crop_size(layer, p)
    c = 3 if p.is_color else 1
    if crop:
        h = w = crop
    elif nh:
        h, w = nh, nw
    else:
        raise _needs_declaration(layer, "without new_height/new_width or crop_size the image "
                                        "size comes from the first image file")
    return [(p.batch_size, c, h, w), (p.batch_size,)]


@rule("WindowData", bottoms=0, tops=2)
def _window_data(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # window_data_layer.cpp: (batch_size, channels, crop_size, crop_size), crop_size > 0
    crop = _crop_size(layer, layer.window_data_param)
    if crop <= 0:
        raise _err("WindowData requires transform_param.crop_size > 0 (Caffe: "
                   "CHECK_GT(crop_size, 0))", "transform_param.crop_size")
    c, note = _datum_channels(layer, "window file")
    b = layer.window_data_param.batch_size
    return _Noted([(b, c, crop, crop), (b,)], note)


@rule("MemoryData", bottoms=0, tops=2)
def _memory_data(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # memory_data_layer.cpp: (batch_size, channels, height, width) and (batch_size,)
    p = layer.memory_data_param
    b, c, h, w = p.batch_size, p.channels, p.height, p.width
    if b * c * h * w <= 0:
        raise _err("batch_size, channels, height, and width must be specified and positive in "
                   "memory_data_param; got %d, %d, %d, %d" % (b, c, h, w), "memory_data_param")
    return [(b, c, h, w), (b,)]


@rule("HDF5Data", bottoms=0, tops=(1, None))
def _hdf5_data(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    raise _needs_declaration(layer, "shapes come from the datasets in the HDF5 files "
                                    "(batch_size x the dataset's trailing dims)")


@rule("Python")
def _python(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    raise _needs_declaration(layer, "a Python layer ('%s.%s') sets its top shapes in its own "
                                    "reshape(), which netdsl does not run"
                             % (layer.python_param.module, layer.python_param.layer))


@rule("Parameter", bottoms=0, tops=1)
def _parameter(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # parameter_layer.hpp: the top is the learnable blob of parameter_param.shape
    return [_dims(layer.parameter_param.shape)]


@param_rule("Parameter")
def _parameter_params(layer: Message, bottoms: List[Shape]) -> List[Shape]:
    return [_dims(layer.parameter_param.shape)]


# -- convolution family -------------------------------------------------------------

def _per_axis(values: Sequence[int], n: int, default: Optional[int], what: str,
              field: str) -> List[int]:
    k = len(values)
    allowed = (1, n) if default is None else (0, 1, n)
    if k not in allowed:
        raise _err("%s must be specified once, or once per spatial dimension (%s specified %d "
                   "times; %d spatial dims)" % (what, what, k, n), field)
    if k == 0:
        return [default] * n
    return [int(values[0 if k == 1 else i]) for i in range(n)]


_geometry_memo: List[Any] = [None, None, None]   # layer, shape, result of the last call


def conv_geometry(layer: Message, shape: Shape, min_spatial: int = 0
                  ) -> Tuple[int, List[int], List[int], List[int], List[int]]:
    """(channel_axis, kernel, stride, pad, dilation) per spatial axis.

    base_conv_layer.cpp / im2col_layer.cpp LayerSetUp: kernel_size, stride, pad
    and dilation given once or once per spatial axis; kernel_h/_w, stride_h/_w
    and pad_h/_w only for 2-D.
    """
    memo = _geometry_memo
    if memo[0] is layer and memo[1] == shape and min_spatial == 0:
        return memo[2]
    result = _conv_geometry(layer, shape, min_spatial)
    if min_spatial == 0:
        memo[0], memo[1], memo[2] = layer, shape, result
    return result


def _conv_dims(cp: Message, n: int, base: str, field: str, default: Optional[int],
               note: str = "") -> List[int]:
    """base_conv_layer.cpp: ``<base>_h``/``<base>_w`` (2-D only, exclusive with the
    repeated ``field``) or ``field`` given once or per spatial axis."""
    if cp.HasField(base + "_h") or cp.HasField(base + "_w"):
        if n != 2:
            raise _err("%s_h & %s_w can only be used for 2D convolution%s" % (base, base, note),
                       "convolution_param.%s_h" % base)
        if len(getattr(cp, field)):
            raise _err("Either %s or %s_h/w should be specified; not both" % (field, base),
                       "convolution_param." + field)
        return [getattr(cp, base + "_h"), getattr(cp, base + "_w")]
    return _per_axis(getattr(cp, field), n, default, field, "convolution_param." + field)


def _conv_geometry(layer: Message, shape: Shape, min_spatial: int):
    cp = layer.convolution_param
    ca = canonical_axis(cp.axis, shape, "convolution_param.axis")
    n = len(shape) - ca - 1
    if n < min_spatial:
        raise _err("%s needs at least %d spatial axis after the channel axis %d; input %s"
                   % (layer.type, min_spatial, ca, shape_str(shape)), "convolution_param.axis")
    kernel = _conv_dims(cp, n, "kernel", "kernel_size", None,
                        " (%d spatial axes here)" % n)
    if any(k <= 0 for k in kernel):
        raise _err("Filter dimensions must be nonzero (kernel %s)" % (kernel,),
                   "convolution_param.kernel_size")
    stride = _conv_dims(cp, n, "stride", "stride", 1)
    if any(s <= 0 for s in stride):
        raise _err("Stride dimensions must be nonzero (stride %s)" % (stride,),
                   "convolution_param.stride")
    pad = _conv_dims(cp, n, "pad", "pad", 0)
    dilation = _per_axis(cp.dilation, n, 1, "dilation", "convolution_param.dilation")
    return ca, kernel, stride, pad, dilation


def conv_out(size: int, kernel: int, stride: int, pad: int, dilation: int = 1) -> int:
    """conv_layer.cpp compute_output_shape: (in + 2p - (d(k-1)+1)) / s + 1, C++ division."""
    return _tdiv(size + 2 * pad - (dilation * (kernel - 1) + 1), stride) + 1


def deconv_out(size: int, kernel: int, stride: int, pad: int, dilation: int = 1) -> int:
    """deconv_layer.cpp compute_output_shape: s(in - 1) + d(k-1)+1 - 2p."""
    return stride * (size - 1) + dilation * (kernel - 1) + 1 - 2 * pad


def _conv_formula(kind: str, size: int, k: int, s: int, p: int, d: int, out: int) -> str:
    if kind == "Deconvolution":
        return ("stride*(in - 1) + dilation*(kernel - 1) + 1 - 2*pad = %d*(%d - 1) + %d*(%d - 1) "
                "+ 1 - 2*%d = %d (deconv_layer.cpp)" % (s, size, d, k, p, out))
    return ("(in + 2*pad - (dilation*(kernel - 1) + 1)) / stride + 1 = (%d + 2*%d - %d) / %d + 1 "
            "= %d (integer division, conv_layer.cpp)" % (size, p, d * (k - 1) + 1, s, out))


def _spatial_out(layer: Message, shape: Shape, geometry, deconv: bool) -> List[int]:
    ca, kernel, stride, pad, dilation = geometry
    out = []
    for i in range(len(kernel)):
        size = shape[ca + 1 + i]
        f = deconv_out if deconv else conv_out
        o = f(size, kernel[i], stride[i], pad[i], dilation[i])
        if o < 0:
            raise _err("output size %d on axis %d: %s" % (
                o, ca + 1 + i, _conv_formula(layer.type, size, kernel[i], stride[i], pad[i],
                                             dilation[i], o)),
                "convolution_param.kernel_size")
        out.append(o)
    return out


def _conv_channels(layer: Message, shape: Shape, ca: int) -> Tuple[int, int, int]:
    cp = layer.convolution_param
    c, o, g = shape[ca], cp.num_output, cp.group
    if o <= 0:
        raise _err("num_output must be positive (got %d)" % o, "convolution_param.num_output")
    if g <= 0:
        raise _err("group must be positive (got %d)" % g, "convolution_param.group")
    if c % g:
        raise _err("group %d does not divide the %d input channels (Caffe: channels %% group "
                   "== 0; %d %% %d = %d)" % (g, c, c, g, c % g), "convolution_param.group")
    if o % g:
        raise _err("group %d does not divide num_output %d (Caffe: \"Number of output should be "
                   "multiples of group\"; %d %% %d = %d)" % (g, o, o, g, o % g),
                   "convolution_param.group")
    return c, o, g


@rule("Convolution", "Deconvolution", bottoms=(1, None), tops=(1, None), equal=True)
def _conv(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # base_conv_layer.cpp Reshape: shape[:axis] + (num_output,) + spatial outputs
    shape = bottoms[0]
    geo = conv_geometry(layer, shape)
    _same_shapes(bottoms, layer.type)
    ca = geo[0]
    _, o, _ = _conv_channels(layer, shape, ca)
    out = _spatial_out(layer, shape, geo, layer.type == "Deconvolution")
    return [shape[:ca] + (o,) + tuple(out)] * ntop


@param_rule("Convolution", "Deconvolution")
def _conv_params(layer: Message, bottoms: List[Shape]) -> List[Shape]:
    # weights (out, in/group, *kernel), out/in swapped for Deconvolution; bias (num_output,)
    shape = bottoms[0]
    ca, kernel, _, _, _ = conv_geometry(layer, shape)
    c, o, g = _conv_channels(layer, shape, ca)
    if layer.type == "Deconvolution":
        w = (c, o // g) + tuple(kernel)
    else:
        w = (o, c // g) + tuple(kernel)
    return [w, (o,)] if layer.convolution_param.bias_term else [w]


@rule("Im2col", bottoms=1, tops=1)
def _im2col(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # im2col_layer.cpp Reshape: channels * prod(kernel), spatial dims as convolution
    shape = bottoms[0]
    geo = conv_geometry(layer, shape, min_spatial=1)
    ca, kernel = geo[0], geo[1]
    out = list(shape)
    for k in kernel:
        out[ca] *= k
    for i, o in enumerate(_spatial_out(layer, shape, geo, False)):
        out[ca + 1 + i] = o
    return [tuple(out)]


# -- pooling --------------------------------------------------------------------------

def pool_out(size: int, kernel: int, stride: int, pad: int, ceil_mode: bool = True) -> int:
    """pooling_layer.cpp: ceil (or floor) of float(in + 2p - k) / s, plus 1.

    The quotient is computed in single precision as Caffe does.  The rule
    that drops a last window starting in the padding is applied by
    :func:`pool_dims`, since Caffe applies it to both axes when either pads.
    """
    q = _f32(float(_f32(float(size + 2 * pad - kernel))) / float(_f32(float(stride))))
    return int(math.ceil(q) if ceil_mode else math.floor(q)) + 1


def pool_dims(h: int, w: int, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int,
              ceil_mode: bool = True) -> Tuple[int, int]:
    """Pooled (height, width) with Caffe's clip: when there is padding, a last window
    starting at or beyond ``in + pad`` is dropped."""
    oh = pool_out(h, kh, sh, ph, ceil_mode)
    ow = pool_out(w, kw, sw, pw, ceil_mode)
    if ph or pw:
        if (oh - 1) * sh >= h + ph:
            oh -= 1
        if (ow - 1) * sw >= w + pw:
            ow -= 1
        for name, o, s, size, p in (("height", oh, sh, h, ph), ("width", ow, sw, w, pw)):
            if not (o - 1) * s < size + p:
                raise _err("pooled %s %d: the last window still starts in the padding "
                           "((out - 1)*stride = %d >= in + pad = %d; Caffe CHECKs "
                           "(out - 1)*stride < in + pad)" % (name, o, (o - 1) * s, size + p),
                           "pooling_param.pad")
    return oh, ow


def _pool_geometry(layer: Message, shape: Shape) -> Tuple[int, int, int, int, int, int]:
    pp = layer.pooling_param
    f = "pooling_param."
    if pp.global_pooling:
        if pp.HasField("kernel_size") or pp.HasField("kernel_h") or pp.HasField("kernel_w"):
            raise _err("With Global_pooling: true Filter size cannot specified", f + "kernel_size")
    else:
        if pp.HasField("kernel_size") == (pp.HasField("kernel_h") and pp.HasField("kernel_w")):
            if pp.HasField("kernel_size"):
                raise _err("Filter size is kernel_size OR kernel_h and kernel_w; not both",
                           f + "kernel_size")
            raise _err("For non-square filters both kernel_h and kernel_w are required "
                       "(or give kernel_size)", f + "kernel_size")
    if not ((not pp.HasField("pad") and pp.HasField("pad_h") and pp.HasField("pad_w"))
            or (not pp.HasField("pad_h") and not pp.HasField("pad_w"))):
        raise _err("pad is pad OR pad_h and pad_w are required", f + "pad")
    if not ((not pp.HasField("stride") and pp.HasField("stride_h") and pp.HasField("stride_w"))
            or (not pp.HasField("stride_h") and not pp.HasField("stride_w"))):
        raise _err("Stride is stride OR stride_h and stride_w are required", f + "stride")
    if pp.global_pooling:
        kh, kw = shape[2], shape[3]
    elif pp.HasField("kernel_size"):
        kh = kw = pp.kernel_size
    else:
        kh, kw = pp.kernel_h, pp.kernel_w
    if kh <= 0 or kw <= 0:
        raise _err("Filter dimensions cannot be zero (kernel %d x %d)" % (kh, kw), f + "kernel_size")
    ph, pw = (pp.pad_h, pp.pad_w) if pp.HasField("pad_h") else (pp.pad, pp.pad)
    sh, sw = (pp.stride_h, pp.stride_w) if pp.HasField("stride_h") else (pp.stride, pp.stride)
    if sh <= 0 or sw <= 0:
        raise _err("stride must be positive (got %d x %d)" % (sh, sw), f + "stride")
    if pp.global_pooling and not (ph == 0 and pw == 0 and sh == 1 and sw == 1):
        raise _err("With Global_pooling: true; only pad = 0 and stride = 1", f + "global_pooling")
    _pool_pad_checks(pp.pool, pp.DESCRIPTOR, kh, kw, ph, pw)
    return kh, kw, sh, sw, ph, pw


def _pool_pad_checks(method: int, desc, kh: int, kw: int, ph: int, pw: int) -> None:
    if ph or pw:
        ev = desc.fields_by_name["pool"].enum_type.values_by_number.get(method)
        mname = ev.name if ev is not None else str(method)
        if mname not in ("MAX", "AVE"):
            raise _err("Padding implemented only for average and max pooling (pool is %s)"
                       % mname, "pooling_param.pad")
        if not (ph < kh and pw < kw):
            raise _err("pad must be smaller than the kernel (pad %d x %d, kernel %d x %d; Caffe "
                       "CHECK_LT(pad, kernel))" % (ph, pw, kh, kw), "pooling_param.pad")


def _enum_name(msg: Message, field_name: str) -> str:
    value = getattr(msg, field_name)
    ev = msg.DESCRIPTOR.fields_by_name[field_name].enum_type.values_by_number.get(value)
    return ev.name if ev is not None else str(value)


def _pool_max_tops(layer: Message) -> Tuple[int, int]:
    # pooling_layer.hpp: MAX pooling may output its argmax mask as a second top
    return (1, 2 if _enum_name(layer.pooling_param, "pool") == "MAX" else 1)


@rule("Pooling", bottoms=1, tops=_pool_max_tops)
def _pooling(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # pooling_layer.cpp Reshape
    shape = bottoms[0]
    _need_rank(shape, 4, "Pooling (num, channels, height, width)")
    kh, kw, sh, sw, ph, pw = _pool_geometry(layer, shape)
    pp = layer.pooling_param
    ceil_mode = True
    if "round_mode" in pp.DESCRIPTOR.fields_by_name:   # CEIL unless FLOOR
        ceil_mode = _enum_name(pp, "round_mode") != "FLOOR"
    oh, ow = pool_dims(shape[2], shape[3], kh, kw, sh, sw, ph, pw, ceil_mode)
    return [(shape[0], shape[1], oh, ow)] * ntop


@rule("SPP", bottoms=1, tops=1)
def _spp(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # spp_layer.cpp: per level l, 2^l bins a side, kernel = ceil(in / bins),
    # pad = (kernel*bins - in + 1) / 2, stride = kernel; levels flattened and concatenated
    shape = bottoms[0]
    _need_rank(shape, 4, "SPP (num, channels, height, width)")
    n, c, h, w = shape
    if h <= 0 or w <= 0:
        raise _err("Input dimensions cannot be zero (%d x %d)" % (h, w))
    sp = layer.spp_param
    levels = sp.pyramid_height
    if levels < 1:
        raise _err("pyramid_height must be at least 1", "spp_param.pyramid_height")
    pool_desc = layer.pooling_param.DESCRIPTOR
    method_ev = pool_desc.fields_by_name["pool"].enum_type.values_by_name.get(
        _enum_name(sp, "pool"))
    method = method_ev.number if method_ev is not None else -1
    total = 0
    for lvl in range(levels):
        bins = 2 ** lvl
        kh, kw = -(-h // bins), -(-w // bins)
        ph, pw = (kh * bins - h + 1) // 2, (kw * bins - w + 1) // 2
        try:
            _pool_pad_checks(method, pool_desc, kh, kw, ph, pw)
            oh, ow = pool_dims(h, w, kh, kw, kh, kw, ph, pw)
        except NetdslError as exc:
            raise _err("pyramid level %d (%d x %d bins over %d x %d): %s"
                       % (lvl, bins, bins, h, w, exc.message), "spp_param.pyramid_height")
        if levels == 1:
            return [(n, c, oh, ow)]
        total += c * oh * ow
    return [(n, total)]


# -- inner product, embed ------------------------------------------------------------

@rule("InnerProduct", bottoms=1, tops=1)
def _inner_product(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # inner_product_layer.cpp: shape[:axis] + (num_output,)
    p = layer.inner_product_param
    shape = bottoms[0]
    axis = canonical_axis(p.axis, shape, "inner_product_param.axis")
    return [shape[:axis] + (p.num_output,)]


@param_rule("InnerProduct")
def _inner_product_params(layer: Message, bottoms: List[Shape]) -> List[Shape]:
    # weights (N, K), or (K, N) with transpose; K = count(axis); bias (N,)
    p = layer.inner_product_param
    k = count(bottoms[0], canonical_axis(p.axis, bottoms[0], "inner_product_param.axis"))
    n = p.num_output
    w = (k, n) if p.transpose else (n, k)
    return [w, (n,)] if p.bias_term else [w]


def _embed_check(layer: Message) -> Tuple[int, int]:
    p = layer.embed_param
    if p.num_output <= 0:
        raise _err("EmbedLayer num_output must be positive", "embed_param.num_output")
    if p.input_dim <= 0:
        raise _err("EmbedLayer input_dim must be positive", "embed_param.input_dim")
    return p.input_dim, p.num_output


@rule("Embed", bottoms=1, tops=1)
def _embed(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # embed_layer.cpp: bottom shape + (num_output,)
    _, n = _embed_check(layer)
    return [bottoms[0] + (n,)]


@param_rule("Embed")
def _embed_params(layer: Message, bottoms: List[Shape]) -> List[Shape]:
    k, n = _embed_check(layer)
    return [(k, n), (n,)] if layer.embed_param.bias_term else [(k, n)]


# -- blob plumbing ----------------------------------------------------------------------

@rule("Crop", bottoms=2, tops=1)
def _crop(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # crop_layer.cpp: axes from crop_param.axis take bottom[1]'s size, shifted by offset
    p = layer.crop_param
    a, b = bottoms
    start = canonical_axis(p.axis, a, "crop_param.axis")
    no = len(p.offset)
    if no > 1 and start + no != len(a):
        raise _err("number of offset values specified must be equal to the number of dimensions "
                   "following axis: %d offsets, axis %d of a %d-axis blob" % (no, start, len(a)),
                   "crop_param.offset")
    out = list(a)
    for i in range(start, len(a)):
        if i >= len(b):
            raise _err("bottom[1] %s has no axis %d to crop bottom[0] %s to"
                       % (shape_str(b), i, shape_str(a)), "crop_param.axis")
        off = p.offset[0] if no == 1 else (p.offset[i - start] if no else 0)
        if a[i] - off < b[i]:
            raise _err("the crop for dimension %d is out-of-bounds with size %d and offset %d: "
                       "bottom[0] has %d (Caffe requires bottom[0].shape(i) - offset >= "
                       "bottom[1].shape(i); %d - %d = %d < %d)"
                       % (i, b[i], off, a[i], a[i], off, a[i] - off, b[i]), "crop_param.offset")
        out[i] = b[i]
    return [tuple(out)]


@rule("Concat", bottoms=(1, None), tops=1)
def _concat(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # concat_layer.cpp: same shape except on the concat axis, whose sizes add up
    p = layer.concat_param
    first = bottoms[0]
    if p.HasField("axis") and p.HasField("concat_dim"):
        raise _err("Either axis or concat_dim should be specified; not both", "concat_param.axis")
    if p.HasField("concat_dim"):
        axis = p.concat_dim
        if axis >= len(first):
            raise _err("concat_dim %d out of range for %d-axis bottoms" % (axis, len(first)),
                       "concat_param.concat_dim")
    else:
        axis = canonical_axis(p.axis, first, "concat_param.axis")
    out = list(first)
    for i in range(1, len(bottoms)):
        b = bottoms[i]
        if len(b) != len(first):
            raise _err("All inputs must have the same #axes: bottom[0] %s vs bottom[%d] %s"
                       % (shape_str(first), i, shape_str(b)))
        for j in range(len(first)):
            if j != axis and b[j] != first[j]:
                raise _err("All inputs must have the same shape, except at concat_axis %d: "
                           "bottom[0] %s vs bottom[%d] %s differ on axis %d"
                           % (axis, shape_str(first), i, shape_str(b), j))
        out[axis] += b[axis]
    return [tuple(out)]


@rule("Slice", bottoms=1, tops=(1, None))
def _slice(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # slice_layer.cpp: slice_point splits the axis; none splits it evenly
    p = layer.slice_param
    shape = bottoms[0]
    if p.HasField("axis") and p.HasField("slice_dim"):
        raise _err("Either axis or slice_dim should be specified; not both", "slice_param.axis")
    if p.HasField("slice_dim"):
        axis = p.slice_dim
        if axis >= len(shape):
            raise _err("slice_dim %d out of range for a %d-axis bottom" % (axis, len(shape)),
                       "slice_param.slice_dim")
    else:
        axis = canonical_axis(p.axis, shape, "slice_param.axis")
    size = shape[axis]
    points = list(p.slice_point)
    if points:
        if len(points) != ntop - 1:
            raise _err("%d slice_point values for %d tops (Caffe needs one fewer than the tops)"
                       % (len(points), ntop), "slice_param.slice_point")
        if ntop > size:
            raise _err("%d tops cannot slice axis %d of size %d" % (ntop, axis, size),
                       "slice_param.slice_point")
        sizes, prev = [], 0
        for sp in points:
            if sp <= prev:
                raise _err("slice_point values must increase and be positive (%d after %d)"
                           % (sp, prev), "slice_param.slice_point")
            sizes.append(sp - prev)
            prev = sp
        if size - prev <= 0:
            raise _err("slice_point %d leaves nothing for the last top: axis %d has size %d"
                       % (prev, axis, size), "slice_param.slice_point")
        sizes.append(size - prev)
    else:
        if size % ntop:
            raise _err("Number of top blobs (%d) should evenly divide input slice axis (%d)"
                       % (ntop, size), "slice_param.slice_point")
        sizes = [size // ntop] * ntop
    return [shape[:axis] + (s,) + shape[axis + 1:] for s in sizes]


@rule("Split", bottoms=1, tops=(1, None), in_place=False)
def _split(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    return [bottoms[0]] * ntop


@rule("Eltwise", bottoms=(2, None), tops=1)
def _eltwise(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # eltwise_layer.cpp: identical shapes; coefficients only for SUM, one per bottom
    p = layer.eltwise_param
    if len(p.coeff) not in (0, len(bottoms)):
        raise _err("Eltwise Layer takes one coefficient per bottom blob (%d coefficients, %d "
                   "bottoms)" % (len(p.coeff), len(bottoms)), "eltwise_param.coeff")
    if _enum_name(p, "operation") == "PROD" and len(p.coeff):
        raise _err("Eltwise layer only takes coefficients for summation", "eltwise_param.coeff")
    _same_shapes(bottoms, "Eltwise")
    return [bottoms[0]]


@rule("Flatten", bottoms=1, tops=1, in_place=False)
def _flatten(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # flatten_layer.cpp: axes [axis, end_axis] become one
    p = layer.flatten_param
    shape = bottoms[0]
    start = canonical_axis(p.axis, shape, "flatten_param.axis")
    end = canonical_axis(p.end_axis, shape, "flatten_param.end_axis")
    if end + 1 < start:
        raise _err("end_axis %d comes before axis %d" % (end, start), "flatten_param.end_axis")
    return [shape[:start] + (count(shape, start, end + 1),) + shape[end + 1:]]


@rule("Reshape", bottoms=1, tops=1, in_place=False)
def _reshape(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # reshape_layer.cpp: dims 0 copy the bottom's, one -1 is inferred; axis/num_axes
    # choose the replaced range
    p = layer.reshape_param
    shape = bottoms[0]
    dims = [int(d) for d in p.shape.dim]
    inferred = -1
    copy_axes = []
    constant = 1
    for i, d in enumerate(dims):
        if d == 0:
            copy_axes.append(i)
        elif d == -1:
            if inferred != -1:
                raise _err("new shape contains multiple -1 dims; at most a single (1) value of "
                           "-1 may be specified", "reshape_param.shape")
            inferred = i
        else:
            if d < -1:
                raise _err("dim %d is invalid (sizes are >= 1, 0 to copy, -1 to infer)" % d,
                           "reshape_param.shape")
            constant *= d
    n = len(shape)
    start = p.axis if p.axis >= 0 else n + p.axis + 1
    if start < 0 or start > n:
        raise _err("axis %d out of range for %d-D input blob" % (p.axis, n), "reshape_param.axis")
    if p.num_axes < -1:
        raise _err("num_axes must be >= 0, or -1 for all", "reshape_param.num_axes")
    end = n if p.num_axes == -1 else start + p.num_axes
    if end > n:
        raise _err("end_axis = axis + num_axes = %d is out of range for a %d-axis input"
                   % (end, n), "reshape_param.num_axes")
    top = list(shape[:start]) + dims + list(shape[end:])
    for i in copy_axes:
        if start + i >= n:
            raise _err("new shape contains a 0, but there was no corresponding bottom axis to "
                       "copy (dim %d, input %s)" % (i, shape_str(shape)), "reshape_param.shape")
        top[start + i] = shape[start + i]
    total = count(shape)
    if inferred >= 0:
        explicit = constant * count(shape, 0, start) * count(shape, end)
        for i in copy_axes:
            explicit *= top[start + i]
        if explicit == 0 or total % explicit:
            raise _err("bottom count (%d) must be divisible by the product of the specified "
                       "dimensions (%d) to infer the -1" % (total, explicit), "reshape_param.shape")
        top[start + inferred] = total // explicit
    if count(top) != total:
        raise _err("output count must match input count: %s has %d elements, input %s has %d"
                   % (shape_str(top), count(top), shape_str(shape), total), "reshape_param.shape")
    return [tuple(top)]


@rule("Tile", bottoms=1, tops=1)
def _tile(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # tile_layer.cpp: the axis is multiplied by tiles
    p = layer.tile_param
    shape = bottoms[0]
    axis = canonical_axis(p.axis, shape, "tile_param.axis")
    if not p.HasField("tiles"):
        raise _err("Number of tiles must be specified", "tile_param.tiles")
    if p.tiles <= 0:
        raise _err("Number of tiles must be positive.", "tile_param.tiles")
    return [shape[:axis] + (shape[axis] * p.tiles,) + shape[axis + 1:]]


@rule("Reduction", bottoms=1, tops=1)
def _reduction(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # reduction_layer.cpp: the axes from axis on are reduced away
    shape = bottoms[0]
    axis = canonical_axis(layer.reduction_param.axis, shape, "reduction_param.axis")
    return [shape[:axis]]


@rule("ArgMax", bottoms=1, tops=1)
def _argmax(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # argmax_layer.cpp: with axis, that axis becomes top_k; without, (N, 1 or 2, top_k, 1...)
    p = layer.argmax_param
    shape = bottoms[0]
    k = p.top_k
    if k < 1:
        raise _err("top k must not be less than 1.", "argmax_param.top_k")
    if p.HasField("axis"):
        axis = canonical_axis(p.axis, shape, "argmax_param.axis")
        if k > shape[axis]:
            raise _err("top_k %d must be less than or equal to the dimension of the axis (%d)"
                       % (k, shape[axis]), "argmax_param.top_k")
        return [shape[:axis] + (k,) + shape[axis + 1:]]
    if k > count(shape, 1):
        raise _err("top_k %d must be less than or equal to the dimension of the flattened bottom "
                   "blob per instance (%d)" % (k, count(shape, 1)), "argmax_param.top_k")
    out = [1] * max(len(shape), 3)
    out[0] = shape[0]
    out[2] = k
    if p.out_max_val:
        out[1] = 2
    return [tuple(out)]


@rule("BatchReindex", bottoms=2, tops=1)
def _batch_reindex(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # batch_reindex_layer.cpp: (len(indices),) + bottom[0].shape[1:]
    if len(bottoms[1]) != 1:
        raise _err("the index blob (bottom[1]) must have 1 axis; got %s" % shape_str(bottoms[1]))
    return [(bottoms[1][0],) + bottoms[0][1:]]


@rule("Filter", bottoms=(2, None), tops=(1, None))
def _filter(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # filter_layer.cpp: the kept items depend on the selector's values; at set-up Caffe
    # shapes each top like its bottom (the full batch)
    if ntop != len(bottoms) - 1:
        raise _err("Filter takes one top per bottom except the selector: %d bottoms, %d tops"
                   % (len(bottoms), ntop))
    sel = bottoms[-1]
    for i in range(1, len(sel)):
        if sel[i] != 1:
            raise _err("Selector blob dimensions must be singletons (1), except the first; "
                       "selector %s" % shape_str(sel))
    for i, b in enumerate(bottoms[:-1]):
        if not b or b[0] != sel[0]:
            raise _err("Each bottom should have the same 0th dimension as the selector blob: "
                       "bottom[%d] %s vs selector %s" % (i, shape_str(b), shape_str(sel)))
    return _Noted([(bottoms[0][0],) + b[1:] for b in bottoms[:-1]],
                  "the first dimension depends on the selector at run time; shown is the "
                  "set-up shape (the whole batch)")


@rule("Silence", bottoms=(1, None), tops=0)
def _silence(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    return []


@rule("HDF5Output", bottoms=2, tops=0)
def _hdf5_output(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # hdf5_output_layer.cpp: data and label with the same num
    if legacy_dim(bottoms[0], 0) != legacy_dim(bottoms[1], 0):
        raise _err("data and label must have the same num: %s vs %s"
                   % (shape_str(bottoms[0]), shape_str(bottoms[1])))
    return []


# -- element-wise and normalisation ------------------------------------------------------

NEURON_TYPES = ("AbsVal", "BNLL", "Clip", "Dropout", "ELU", "Exp", "Log", "Power", "ReLU",
                "Sigmoid", "Swish", "TanH", "Threshold")


@rule(*NEURON_TYPES, bottoms=1, tops=1)
def _neuron(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # neuron_layer.cpp: top shaped like bottom
    if layer.type in ("Exp", "Log"):
        p = layer.exp_param if layer.type == "Exp" else layer.log_param
        if p.base != -1 and not p.base > 0:
            raise _err("base must be strictly positive (or -1 for e); got %g" % p.base,
                       "%s_param.base" % layer.type.lower())
    return [bottoms[0]]


@rule("Softmax", bottoms=1, tops=1)
def _softmax(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    canonical_axis(layer.softmax_param.axis, bottoms[0], "softmax_param.axis")
    return [bottoms[0]]


@rule("PReLU", bottoms=1, tops=1)
def _prelu(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # prelu_layer.cpp: at least 2 axes; slopes per channel (legacy channels())
    _prelu_channels(bottoms[0])
    return [bottoms[0]]


def _prelu_channels(shape: Shape) -> int:
    if len(shape) < 2:
        raise _err("Number of axes of bottom blob must be >=2 (got %s)" % shape_str(shape))
    return legacy_dim(shape, 1)


@param_rule("PReLU")
def _prelu_params(layer: Message, bottoms: List[Shape]) -> List[Shape]:
    c = _prelu_channels(bottoms[0])
    return [()] if layer.prelu_param.channel_shared else [(c,)]


@rule("BatchNorm", bottoms=1, tops=1)
def _batch_norm(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # batch_norm_layer.cpp: channels = shape(1); statistics are not learnable
    if len(bottoms[0]) < 2:
        raise _err("BatchNorm needs at least 2 axes (it reads the channel count from axis 1); "
                   "got %s" % shape_str(bottoms[0]))
    for i, ps in enumerate(layer.param):
        if i < 3 and ps.lr_mult != 0:
            raise _err("Cannot configure batch normalization statistics as layer parameters: "
                       "param %d has lr_mult %g; Caffe requires lr_mult 0 (or no param)"
                       % (i, ps.lr_mult), "param.lr_mult")
    return [bottoms[0]]


@param_rule("BatchNorm")
def _batch_norm_params(layer: Message, bottoms: List[Shape]) -> List[Shape]:
    # mean (C,), variance (C,), moving-average factor (1,)
    c = bottoms[0][1] if len(bottoms[0]) > 1 else 1
    return [(c,), (c,), (1,)]


@rule("LRN", bottoms=1, tops=1)
def _lrn(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # lrn_layer.cpp: 4 axes, odd local_size
    _need_rank(bottoms[0], 4, "LRN (num, channels, height, width)")
    if layer.lrn_param.local_size % 2 != 1:
        raise _err("LRN only supports odd values for local_size (got %d)"
                   % layer.lrn_param.local_size, "lrn_param.local_size")
    return [bottoms[0]]


@rule("MVN", bottoms=1, tops=1)
def _mvn(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # mvn_layer.cpp: top is (num, channels, height, width) via the legacy accessors
    s = bottoms[0]
    return [tuple(legacy_dim(s, i) for i in range(4))]


def _scale_like_blob(layer: Message, shape: Shape, p: Message, what: str) -> Shape:
    # scale_layer.cpp / bias_layer.cpp LayerSetUp with one bottom
    axis = canonical_axis(p.axis, shape, what + "_param.axis")
    na = p.num_axes
    if na < -1:
        raise _err("num_axes must be non-negative, or -1 to extend to the end of bottom[0]",
                   what + "_param.num_axes")
    if na >= 0 and len(shape) < axis + na:
        raise _err("%s blob's shape extends past bottom[0]'s shape when applied starting with "
                   "bottom[0] axis = %d (num_axes %d, bottom %s)"
                   % (what, axis, na, shape_str(shape)), what + "_param.num_axes")
    return shape[axis:] if na == -1 else shape[axis:axis + na]


def _check_operand(shape: Shape, operand: Shape, p: Message, what: str) -> None:
    # Reshape: bottom[0] must contain the operand's shape from axis
    axis = 0 if len(operand) == 0 else canonical_axis(p.axis, shape, what + "_param.axis")
    if len(shape) < axis + len(operand):
        raise _err("%s blob's shape extends past bottom[0]'s shape when applied starting with "
                   "bottom[0] axis = %d: bottom[0] %s, %s %s"
                   % (what, axis, shape_str(shape), what, shape_str(operand)), what + "_param.axis")
    for i, d in enumerate(operand):
        if shape[axis + i] != d:
            raise _err("dimension mismatch between bottom[0]->shape(%d) = %d and %s->shape(%d) "
                       "= %d (bottom[0] %s, %s %s)" % (axis + i, shape[axis + i], what, i, d,
                                                        shape_str(shape), what, shape_str(operand)),
                       what + "_param.axis")


@rule("Scale", "Bias", bottoms=(1, 2), tops=1)
def _scale(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    what = layer.type.lower()
    p = layer.scale_param if what == "scale" else layer.bias_param
    operand = bottoms[1] if len(bottoms) > 1 else _scale_like_blob(layer, bottoms[0], p, what)
    _check_operand(bottoms[0], operand, p, what)
    return [bottoms[0]]


@param_rule("Scale", "Bias")
def _scale_params(layer: Message, bottoms: List[Shape]) -> List[Shape]:
    # one bottom: the scale (or bias) blob; Scale with bias_term adds a bias blob
    # (shape from bias num_axes = num_axes, or bottom[1]'s axis count)
    what = layer.type.lower()
    shape = bottoms[0]
    if what == "bias":
        return [] if len(bottoms) > 1 else [_scale_like_blob(layer, shape, layer.bias_param, what)]
    p = layer.scale_param
    out = [] if len(bottoms) > 1 else [_scale_like_blob(layer, shape, p, what)]
    if p.bias_term:
        axis = canonical_axis(p.axis, shape, "scale_param.axis")
        na = len(bottoms[1]) if len(bottoms) > 1 else p.num_axes
        out.append(shape[axis:] if na == -1 else shape[axis:axis + na])
    return out


# -- losses and accuracy ---------------------------------------------------------------

LOSS_TYPES = ("ContrastiveLoss", "EuclideanLoss", "HingeLoss", "InfogainLoss",
              "MultinomialLogisticLoss", "SigmoidCrossEntropyLoss", "SoftmaxWithLoss")


def _loss_base(bottoms: List[Shape]) -> None:
    # loss_layer.cpp Reshape
    a, b = bottoms[0], bottoms[1]
    if not a or not b or a[0] != b[0]:
        raise _err("The data and label should have the same first dimension: %s vs %s"
                   % (shape_str(a), shape_str(b)))


def _labels_match(pred: Shape, label: Shape, axis_value: int, field: str, what: str) -> int:
    axis = canonical_axis(axis_value, pred, field)
    outer, inner = count(pred, 0, axis), count(pred, axis + 1)
    if outer * inner != count(label):
        raise _err("Number of labels must match number of predictions: with %s axis %d and "
                   "prediction shape %s, the label count must be %d x %d = %d; label %s has %d"
                   % (what, axis, shape_str(pred), outer, inner, outer * inner,
                      shape_str(label), count(label)), field)
    return axis


@rule("SoftmaxWithLoss", bottoms=2, tops=(1, 2), loss=True)
def _softmax_loss(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # softmax_loss_layer.cpp: scalar loss; optional second top is the softmax output
    _loss_base(bottoms)
    _labels_match(bottoms[0], bottoms[1], layer.softmax_param.axis, "softmax_param.axis", "softmax")
    return [()] + [bottoms[0]] * (ntop - 1)


@rule("InfogainLoss", bottoms=(2, 3), tops=(1, 2), loss=True)
def _infogain_loss(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # infogain_loss_layer.cpp: the infogain matrix (bottom[2] or a file) is labels x labels
    _loss_base(bottoms)
    axis = _labels_match(bottoms[0], bottoms[1], layer.infogain_loss_param.axis,
                         "infogain_loss_param.axis", "infogain")
    if len(bottoms) > 2:
        k = bottoms[0][axis]
        if count(bottoms[2]) != k * k:
            raise _err("the infogain matrix (bottom[2]) %s must have %d x %d = %d elements"
                       % (shape_str(bottoms[2]), k, k, k * k))
    return [()] + [bottoms[0]] * (ntop - 1)


@rule("EuclideanLoss", "HingeLoss", "MultinomialLogisticLoss", "SigmoidCrossEntropyLoss",
      bottoms=2, tops=1, loss=True)
def _loss(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    _loss_base(bottoms)
    a, b = bottoms
    if layer.type == "EuclideanLoss" and count(a, 1) != count(b, 1):
        raise _err("Inputs must have the same dimension: count(1) %d vs %d (%s, %s)"
                   % (count(a, 1), count(b, 1), shape_str(a), shape_str(b)))
    if layer.type == "SigmoidCrossEntropyLoss" and count(a) != count(b):
        raise _err("SIGMOID_CROSS_ENTROPY_LOSS layer inputs must have the same count: %d vs %d"
                   % (count(a), count(b)))
    if layer.type == "MultinomialLogisticLoss":
        if any(legacy_dim(b, i) != 1 for i in (1, 2, 3)):
            raise _err("the label blob must be (N, 1, 1, 1) in legacy terms; got %s" % shape_str(b))
    return [()]


@rule("ContrastiveLoss", bottoms=3, tops=1, loss=True)
def _contrastive_loss(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # contrastive_loss_layer.cpp: two (N, C, 1, 1) features and an (N, 1, 1, 1) similarity
    _loss_base(bottoms)
    a, b, s = bottoms
    ok = (legacy_dim(a, 1) == legacy_dim(b, 1) and legacy_dim(a, 2) == 1 and legacy_dim(a, 3) == 1
          and legacy_dim(b, 2) == 1 and legacy_dim(b, 3) == 1
          and all(legacy_dim(s, i) == 1 for i in (1, 2, 3)))
    if not ok:
        raise _err("ContrastiveLoss needs two (N, C, 1, 1) features and an (N, 1, 1, 1) "
                   "similarity; got %s, %s, %s" % (shape_str(a), shape_str(b), shape_str(s)))
    return [()]


@rule("Accuracy", bottoms=2, tops=(1, 2))
def _accuracy(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # accuracy_layer.cpp: scalar accuracy; optional second top has one entry per class
    p = layer.accuracy_param
    pred, label = bottoms
    if count(label) == 0 or p.top_k > count(pred) // count(label):
        raise _err("top_k must be less than or equal to the number of classes (top_k %d, %d "
                   "predictions per label)" % (p.top_k, count(pred) // max(count(label), 1)),
                   "accuracy_param.top_k")
    axis = _labels_match(pred, label, p.axis, "accuracy_param.axis", "label")
    return [()] + [(pred[axis],)] * (ntop - 1)


# -- recurrent ----------------------------------------------------------------------------

def _recurrent_counts(layer: Message) -> Tuple[int, int]:
    # recurrent_layer.hpp: x, cont, optional x_static, plus exposed hidden state
    exposed = _num_hidden(layer) if layer.recurrent_param.expose_hidden else 0
    return (2 + exposed, 3 + exposed)


def _recurrent_tops(layer: Message) -> int:
    return 1 + (_num_hidden(layer) if layer.recurrent_param.expose_hidden else 0)


def _num_hidden(layer: Message) -> int:
    return 2 if layer.type == "LSTM" else 1   # LSTM: h and c; RNN: h


def _recurrent_setup(layer: Message, bottoms: List[Shape]) -> Tuple[int, int, int, bool]:
    # recurrent_layer.cpp LayerSetUp/Reshape and the unrolled nets of lstm_layer.cpp,
    # rnn_layer.cpp (InnerProduct with axis 2 over x)
    x, cont = bottoms[0], bottoms[1]
    h = layer.recurrent_param.num_output
    if h <= 0:
        raise _err("num_output must be positive", "recurrent_param.num_output")
    if len(x) < 3:
        raise _err("bottom[0] must have at least 3 axes -- (#timesteps, #streams, input...) "
                   "(the unrolled net's InnerProduct reads axis 2); got %s" % shape_str(x))
    if len(cont) != 2:
        raise _err("bottom[1] must have exactly 2 axes -- (#timesteps, #streams); got %s"
                   % shape_str(cont))
    t, n = x[0], x[1]
    if cont != (t, n):
        raise _err("bottom[1] %s must be (T, N) = (%d, %d) like bottom[0] %s"
                   % (shape_str(cont), t, n, shape_str(x)))
    exposed = _num_hidden(layer) if layer.recurrent_param.expose_hidden else 0
    static = len(bottoms) > 2 + exposed
    if static:
        xs = bottoms[2]
        if len(xs) < 1 or xs[0] != n:
            raise _err("the static input bottom[2] %s must start with the %d streams"
                       % (shape_str(xs), n))
    for j in range(exposed):
        hb = bottoms[2 + int(static) + j]
        if hb != (1, n, h):
            raise _err("shape mismatch - recurrent input %d must be %s; bottom[%d] is %s"
                       % (j, shape_str((1, n, h)), 2 + int(static) + j, shape_str(hb)))
    return t, n, h, static


@rule("LSTM", "RNN", bottoms=_recurrent_counts, tops=_recurrent_tops)
def _recurrent(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    t, n, h, _ = _recurrent_setup(layer, bottoms)
    return [(t, n, h)] + [(1, n, h)] * (ntop - 1)


@param_rule("LSTM", "RNN")
def _recurrent_params(layer: Message, bottoms: List[Shape]) -> List[Shape]:
    # owners in unrolled-net order: LSTM W_xc, b_c, [W_xc_static], W_hc;
    # RNN W_xh, b_h, [W_xh_static], W_hh, W_ho, b_o
    _, _, h, static = _recurrent_setup(layer, bottoms)
    g = 4 * h if layer.type == "LSTM" else h
    out = [(g, count(bottoms[0], 2)), (g,)]
    if static:
        out.append((g, count(bottoms[2], 1)))
    out.append((g, h))
    if layer.type == "RNN":
        out += [(h, h), (h,)]
    return out


@rule("LSTMUnit", bottoms=3, tops=2)
def _lstm_unit(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # lstm_unit_layer.cpp: c_prev (1, N, H), gates (1, N, 4H), cont (1, N)
    c, gates, cont = bottoms
    if len(c) != 3 or len(gates) != 3 or len(cont) != 2:
        raise _err("LSTMUnit takes c_prev (1, N, H), gates (1, N, 4H) and cont (1, N); got %s, %s, "
                   "%s" % (shape_str(c), shape_str(gates), shape_str(cont)))
    n = c[1]
    for b in bottoms:
        if b[0] != 1 or b[1] != n:
            raise _err("every LSTMUnit bottom must be (1, %d, ...); got %s" % (n, shape_str(b)))
    if gates[2] != 4 * c[2]:
        raise _err("gate input has %d channels; LSTMUnit needs 4 x %d = %d"
                   % (gates[2], c[2], 4 * c[2]))
    return [c, c]


# -- parameter shapes -----------------------------------------------------------------------

def param_shapes(layer: Message, bottom_shapes: Sequence[Sequence[int]]) -> List[Shape]:
    """The shapes of a layer's learnable blobs (``layer.blobs`` in a caffemodel), in order.

    Types without learnable blobs give ``[]``.  Raises NetdslError for a type
    netdsl has no rule for.
    """
    bottoms = [tuple(int(d) for d in s) for s in bottom_shapes]
    fn = PARAM_RULES.get(layer.type)
    if fn is not None:
        _geometry_memo[0] = None
        try:
            return fn(layer, bottoms)
        except NetdslError as exc:
            raise exc.located(layer=layer.name or None)
        finally:
            _geometry_memo[0] = None
    if layer.type in SHAPE_RULES:
        return []
    raise NetdslError("no parameter rule for layer type `%s`" % layer.type,
                      layer=layer.name or None, field="type",
                      hint=did_you_mean(layer.type, list(SHAPE_RULES)) or
                      "register one with @netdsl.shapes.param_rule(%r)" % layer.type)


def _nparams(shapes: List[Shape]) -> int:
    return sum(count(s) for s in shapes)


# -- the walk ------------------------------------------------------------------------------

def _as_shape(value: Any, what: str) -> Shape:
    try:
        shape = tuple(value)
    except TypeError:
        raise NetdslError("%s: a shape is a sequence of ints, got %r" % (what, value)) from None
    for d in shape:
        if isinstance(d, bool) or not isinstance(d, int):
            try:
                import numpy as np
                if isinstance(d, np.integer):
                    continue
            except ImportError:  # pragma: no cover
                pass
            raise NetdslError("%s: a shape is a sequence of ints, got %r" % (what, value))
    shape = tuple(int(d) for d in shape)
    try:
        check_blob_shape(shape, what)
    except NetdslError as exc:
        raise NetdslError(exc.message) from None
    return shape


def _is_shape_list(value: Any) -> bool:
    if isinstance(value, (str, bytes)):
        return False
    try:
        items = list(value)
    except TypeError:
        return False
    return bool(items) and all(not isinstance(x, (int, str, bytes)) and hasattr(x, "__iter__")
                               for x in items)


_WINDOW_TYPES = frozenset(("Convolution", "Deconvolution", "Im2col"))


def _auto_tops(spec: BlobCounts, layer: Message, ntop: int) -> List[str]:
    # Net::Init: a layer with AutoTopBlobs() gets anonymous tops up to its required count
    if not spec.auto_top:
        return []
    lo, _ = _count_spec(spec.tops, layer)
    return ["(automatic)"] * max((lo or 0) - ntop, 0)


def _count_spec(spec: Any, layer: Message) -> Tuple[Optional[int], Optional[int]]:
    if callable(spec):
        spec = spec(layer)
    if spec is None:
        return None, None
    if isinstance(spec, int):
        return spec, spec
    return spec


def _check_counts(layer: Message, spec: BlobCounts, nb: int, nt: int) -> None:
    # layer.hpp CheckBlobCounts
    if not callable(spec.bottoms) and not callable(spec.tops):
        key = (spec.bottoms, spec.tops)
        ok = _counts_ok.get(key)
        if ok is not None and (nb, nt) in ok:
            return
    t = layer.type
    for what, n, cs in (("bottom", nb, spec.bottoms), ("top", nt, spec.tops)):
        lo, hi = _count_spec(cs, layer)
        if lo is not None and lo == hi and n != lo and not (what == "top" and spec.auto_top
                                                            and n < lo):
            raise NetdslError("%s takes exactly %d %s blob%s; got %d"
                              % (t, lo, what, "" if lo == 1 else "s", n), field=what)
        if lo is not None and n < lo and not (what == "top" and spec.auto_top):
            raise NetdslError("%s takes at least %d %s blob%s; got %d"
                              % (t, lo, what, "" if lo == 1 else "s", n), field=what)
        if hi is not None and n > hi:
            raise NetdslError("%s takes at most %d %s blob%s; got %d"
                              % (t, hi, what, "" if hi == 1 else "s", n), field=what)
    if spec.equal and nb != nt:
        raise NetdslError("%s takes as many top blobs as bottom blobs; got %d bottoms, %d tops"
                          % (t, nb, nt), field="top")
    if not spec.equal and not callable(spec.bottoms) and not callable(spec.tops):
        _counts_ok.setdefault((spec.bottoms, spec.tops), set()).add((nb, nt))


_counts_ok: Dict[Any, set] = {}   # (bottoms spec, tops spec) -> counts already accepted


def _num(x) -> Union[int, float]:
    from fractions import Fraction
    if isinstance(x, Fraction):
        if x.denominator == 1:
            return int(x)
        return float(x)
    return x


def _layer_names(net: Message) -> Tuple[set, set]:
    names, tops = set(), set()
    for layer in net.layer:
        names.add(layer.name)
        tops.update(layer.top)
    tops.update(net.input)
    return names, tops


def _missing_field(exc: Exception, layer: Message, ltype: str, lname: str) -> Exception:
    """A NetdslError when ``exc`` comes from a BVLC field that the (fork) schema of
    ``layer`` lacks; else ``exc`` itself."""
    import re
    from .proto import caffe_pb2
    if layer.DESCRIPTOR.file is caffe_pb2.DESCRIPTOR:
        return exc
    text = str(exc.args[0]) if exc.args else ""
    m = re.match(r'Protocol message (\w+) has no "(\w+)" field', text)
    if m:
        message, name = m.groups()
    elif isinstance(exc, AttributeError) and re.fullmatch(r"\w+", text):
        message, name = None, text
    else:
        return exc
    known = [d for d in caffe_pb2.DESCRIPTOR.message_types_by_name.values()
             if (message is None or d.name == message) and name in d.fields_by_name]
    if not known:
        return exc
    return NetdslError("the schema has no field `%s`%s, which a %s layer needs"
                       % (name, " in %s" % message if message else "", ltype),
                       layer=lname or None, field=name)


def _infer(net: Message, inputs: Optional[Mapping[str, Sequence[int]]], phase, declared,
           level, stages, strict: bool) -> NetShapes:
    from .plugins import ensure_env_plugins
    ensure_env_plugins()  # custom layers' rules named in NETDSL_PLUGINS
    # The walk allocates many small objects and no reference cycles; pausing the
    # cyclic garbage collector keeps its full passes from dominating on deep nets.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _walk(net, inputs, phase, declared, level, stages, strict)
    finally:
        if enabled:
            gc.enable()


def _walk(net: Message, inputs: Optional[Mapping[str, Sequence[int]]], phase, declared,
          level, stages, strict: bool) -> NetShapes:
    from .coord_map import IDENTITY, _compose, _same, layer_coord_map, stride_offset, window_map
    from .netstate import included_layers, make_state

    if "layers" in net.DESCRIPTOR.fields_by_name and len(net.layers) and not len(net.layer):
        raise NetdslError("this is a legacy (V1) net with `layers` entries; upgrade it first "
                          "(netdsl.upgrade.upgrade_net, or `netdsl upgrade`)", field="layers")
    state = make_state(net, phase, level, stages)
    layers = included_layers(net, state)

    given: Dict[str, Shape] = {}
    for k, v in (inputs or {}).items():
        given[k] = _as_shape(v, "inputs['%s']" % k)
    decl_layer: Dict[str, Any] = {}
    decl_top: Dict[str, Shape] = {}
    for k, v in (declared or {}).items():
        if _is_shape_list(v):
            decl_layer[k] = [_as_shape(s, "declared['%s']" % k) for s in v]
        else:
            decl_top[k] = _as_shape(v, "declared['%s']" % k)
    used_inputs: set = set()
    used_decl: set = set()

    blobs: Dict[str, Shape] = {}
    producer: Dict[str, str] = {}
    fmaps: Dict[str, Any] = {}
    out_layers: List[LayerShapes] = []
    placed: Dict[Any, Tuple[Any, Any]] = {}    # map -> (stride, offset), computed once
    overrides = bool(given or decl_layer or decl_top)

    def add_top(ls: LayerShapes, i: int, name: str, shape: Shape, in_place: bool, fmap) -> None:
        if not in_place and name in blobs:
            raise NetdslError("top blob '%s' is produced by multiple sources (also by layer '%s'); "
                              "Caffe reuses a name only in place, as top i equal to bottom i"
                              % (name, producer[name]), layer=ls.name or None, field="top")
        blobs[name] = shape
        producer[name] = ls.name
        fmaps[name] = fmap
        if fmap is not None:
            so = placed.get(fmap)
            if so is None:
                st, off = stride_offset(fmap)
                so = placed[fmap] = (tuple(_num(x) for x in st), tuple(_num(x) for x in off))
            ls.strides.append(so[0])
            ls.offsets.append(so[1])
        else:
            ls.strides.append(None)
            ls.offsets.append(None)
        ls.in_place.append(in_place)

    # legacy NetParameter input / input_shape / input_dim (upgrade_proto.cpp UpgradeNetInput)
    if len(net.input):
        names = list(net.input)
        shapes: List[Optional[Shape]] = []
        ns, nd = len(net.input_shape), len(net.input_dim)
        if ns and ns != len(names):
            raise NetdslError("%d input_shape entries for %d inputs (give one per input)"
                              % (ns, len(names)), field="input_shape")
        if not ns and nd and nd != 4 * len(names):
            raise NetdslError("%d input_dim values for %d inputs (give 4 per input)"
                              % (nd, len(names)), field="input_dim")
        for i, nm in enumerate(names):
            if nm in given:
                shapes.append(given[nm])
                used_inputs.add(nm)
            elif nm in decl_top:
                shapes.append(decl_top[nm])
                used_decl.add(nm)
            elif ns:
                shapes.append(_dims(net.input_shape[i]))
            elif nd:
                shapes.append(tuple(int(d) for d in net.input_dim[4 * i:4 * i + 4]))
            else:
                raise NetdslError("net input '%s' has no shape (no input_shape or input_dim)" % nm,
                                  field="input", hint="pass inputs={'%s': (N, C, H, W)}" % nm)
        ls = LayerShapes("input", "Input", [], names, [], list(shapes), [], 0)
        for i, nm in enumerate(names):
            ls.loss_weights.append(0.0)
            add_top(ls, i, nm, shapes[i], False, IDENTITY)
        out_layers.append(ls)

    for layer in layers:
        lname = layer.name
        ltype = layer.type
        bnames = list(layer.bottom)
        tnames = list(layer.top)
        bshapes = []
        for bi, b in enumerate(bnames):
            s = blobs.get(b)
            if s is None:
                raise NetdslError("unknown bottom blob '%s' (bottom %d): no earlier layer produces "
                                  "it" % (b, bi), layer=lname or None, field="bottom",
                                  hint=did_you_mean(b, blobs))
            bshapes.append(s)
        ntop = len(tnames)
        spec = BLOB_COUNTS.get(ltype)
        note = None
        is_declared = False
        try:
            # shapes given by the caller: inputs for bottomless layers, declarations anywhere
            fixed: Dict[int, Shape] = {}
            if not overrides:
                pass
            elif lname in decl_layer:
                ds = decl_layer[lname]
                used_decl.add(lname)
                if len(ds) != ntop:
                    raise NetdslError("declared %d shapes for a layer with %d tops"
                                      % (len(ds), ntop), field="top")
                fixed.update(enumerate(ds))
                is_declared = True
            elif lname in decl_top and lname not in tnames:
                if ntop != 1:
                    raise NetdslError("declared one shape for a layer with %d tops (give a list "
                                      "of %d shapes, or declare each top by name)" % (ntop, ntop),
                                      field="top")
                fixed[0] = decl_top[lname]
                used_decl.add(lname)
                is_declared = True
            for i, t in enumerate(tnames if overrides else ()):
                if not bnames and t in given:
                    fixed[i] = given[t]
                    used_inputs.add(t)
                elif t in decl_top:
                    fixed[i] = decl_top[t]
                    used_decl.add(t)
                    is_declared = True
            fn = SHAPE_RULES.get(ltype)
            auto: List[str] = []
            if len(fixed) == ntop and (ntop or fn is None or ltype == "Python"):
                tshapes = [fixed[i] for i in range(ntop)]
            else:
                if fn is None:
                    missing = [t for i, t in enumerate(tnames) if i not in fixed]
                    close = did_you_mean(ltype, list(SHAPE_RULES))
                    raise NetdslError(
                        "no shape rule for layer type `%s` (not a BVLC layer type), so the shapes "
                        "of %s are unknown" % (ltype, ", ".join("'%s'" % m for m in missing)),
                        field="type",
                        hint=(close + "; otherwise " if close else "") + _declare_hint(layer)
                        + " (`--declare TOP=N,C,H,W` on the command line), or give the type "
                        "rules: `custom_layers:` in a spec, a plugin (`--plugin`, "
                        "netdsl.plugins.register_layer(%r, ...))" % ltype)
                spec = spec or BlobCounts()
                _check_counts(layer, spec, len(bnames), ntop)
                if not spec.in_place:
                    for i, t in enumerate(tnames):
                        if i < len(bnames) and t == bnames[i]:
                            raise NetdslError("%s Layer does not allow in-place computation "
                                              "(top '%s' is its bottom)" % (ltype, t), field="top")
                auto = _auto_tops(spec, layer, ntop)
                tshapes = fn(layer, bshapes, ntop + len(auto))
                note = getattr(tshapes, "note", None)
                tshapes = list(tshapes)
                for i, s in fixed.items():
                    tshapes[i] = s
            for s in tshapes:
                check_blob_shape(s, "top")
            # learnable blobs
            pshapes: List[Shape] = []
            nparam = len(layer.param)
            prule = PARAM_RULES.get(ltype)
            if prule is not None:
                pshapes = prule(layer, bshapes)
                if nparam > len(pshapes):
                    raise NetdslError("Too many params specified for layer: %d param entries, "
                                      "%d learnable blobs" % (nparam, len(pshapes)), field="param")
            elif nparam and ltype in SHAPE_RULES and ltype != "Python":
                raise NetdslError("Too many params specified for layer: %d param entries, %s has "
                                  "no learnable blobs" % (nparam, ltype), field="param")
            npd = len(layer.propagate_down)
            if npd and npd != len(bnames):
                raise NetdslError("propagate_down param must be specified either 0 or bottom_size "
                                  "times (%d given, %d bottoms)" % (npd, len(bnames)),
                                  field="propagate_down")
            # anonymous tops of loss layers and loss weights (layer.hpp SetLossWeights)
            lw = layer.loss_weight
            weights = [float(w) for w in lw] if len(lw) else []
            if spec is not None and spec.loss and not weights:
                weights = [1.0]   # loss_layer.cpp LayerSetUp
            nall = ntop + len(auto)
            if weights and len(weights) != nall:
                raise NetdslError("loss_weight must be unspecified or specified once per top blob "
                                  "(%d loss_weight values for %d tops%s)"
                                  % (len(weights), nall, "; Caffe gives loss layers a single "
                                     "loss_weight 1 when none is set" if spec is not None and
                                     spec.loss and not len(layer.loss_weight) else ""),
                                  field="loss_weight")
        except NetdslError as exc:
            _geometry_memo[0] = None
            raise exc.located(layer=lname or None)
        except (AttributeError, ValueError) as exc:  # a fork schema lacking a BVLC field
            _geometry_memo[0] = None
            raise _missing_field(exc, layer, ltype, lname)

        ls = LayerShapes(lname, ltype, bnames, tnames + auto if auto else tnames, bshapes,
                         tshapes, pshapes, _nparams(pshapes) if pshapes else 0,
                         weights or [0.0] * nall, declared=is_declared, note=note, layer=layer)
        # coordinate maps from the net input
        if not bnames:
            fm = IDENTITY
        else:
            fm = None
            first = fmaps.get(bnames[0])
            if first is None or is_declared:
                m = None
            elif ltype in _WINDOW_TYPES and _geometry_memo[0] is layer:
                m = window_map(ltype, *_geometry_memo[2])   # geometry already parsed
            else:
                m = layer_coord_map(layer, bshapes)
            if m is not None:
                ok = True
                if len(bnames) > 1 and ltype != "Crop":   # Crop maps its first bottom only
                    for b in bnames[1:]:
                        other = fmaps.get(b)
                        if other is None or (other is not first and not _same(other, first)):
                            ok = False
                            break
                if ok:
                    try:
                        fm = _compose(m, first)
                    except NetdslError:
                        fm = None
        _geometry_memo[0] = None
        for i, t in enumerate(tnames):
            ip = i < len(bnames) and t == bnames[i]
            try:
                add_top(ls, i, t, tshapes[i], ip, fm)
            except NetdslError as exc:
                raise exc.located(layer=lname or None)
        for _ in auto:
            ls.strides.append(None)
            ls.offsets.append(None)
            ls.in_place.append(False)
        if strict:
            _check_nonempty(ls, layer)
        out_layers.append(ls)

    if given.keys() - used_inputs or (decl_layer.keys() | decl_top.keys()) - used_decl:
        names, tops = _layer_names(net)
        input_names = [t for ls in out_layers if not ls.bottoms for t in ls.tops]
        for k in given.keys() - used_inputs:
            if k in tops and k not in blobs:
                continue   # a top of a layer this phase leaves out
            raise NetdslError("no net input named '%s'%s" % (
                k, " ('%s' is computed by layer '%s'; use declared= to override it)"
                % (k, producer[k]) if k in producer else ""), field="inputs",
                hint=did_you_mean(k, input_names))
        for k in (decl_layer.keys() | decl_top.keys()) - used_decl:
            if (k in names or k in tops) and k not in blobs:
                continue
            raise NetdslError("declared shape for '%s', which is neither a layer nor a top of this "
                              "net" % k, field="declared",
                              hint=did_you_mean(k, list(names) + list(tops)))
    return NetShapes(blobs, out_layers)


def _check_nonempty(ls: LayerShapes, layer: Message) -> None:
    for t, s in zip(ls.tops, ls.top_shapes):
        if 0 in s:
            axis = s.index(0)
            detail = _explain_size(layer, ls.bottom_shapes, axis)
            raise NetdslError("output size below 1: top '%s' is %s, empty on axis %d%s"
                              % (t, shape_str(s), axis, detail), layer=ls.name or None,
                              field=_size_field(layer))


def _size_field(layer: Message) -> Optional[str]:
    if layer.type in ("Convolution", "Deconvolution", "Im2col"):
        return "convolution_param.kernel_size"
    if layer.type == "Pooling":
        return "pooling_param.kernel_size"
    if layer.type == "InnerProduct":
        return "inner_product_param.num_output"
    return None


def _explain_size(layer: Message, bottoms: List[Shape], axis: int) -> str:
    try:
        if layer.type in ("Convolution", "Deconvolution", "Im2col") and bottoms:
            ca, k, s, p, d = conv_geometry(layer, bottoms[0])
            i = axis - ca - 1
            if 0 <= i < len(k):
                o = (deconv_out if layer.type == "Deconvolution" else conv_out)(
                    bottoms[0][axis], k[i], s[i], p[i], d[i])
                return ": " + _conv_formula(layer.type, bottoms[0][axis], k[i], s[i], p[i], d[i], o)
        if layer.type == "Pooling" and bottoms and axis in (2, 3):
            kh, kw, sh, sw, ph, pw = _pool_geometry(layer, bottoms[0])
            k, s, p = (kh, sh, ph) if axis == 2 else (kw, sw, pw)
            size = bottoms[0][axis]
            return (": ceil((in + 2*pad - kernel) / stride) + 1 = ceil((%d + 2*%d - %d) / %d) + 1 "
                    "(pooling_layer.cpp)" % (size, p, k, s))
    except NetdslError:
        pass
    if bottoms:
        return " (input %s)" % shape_str(bottoms[0])
    return ""


def infer_shapes(net: Message, inputs: Optional[Mapping[str, Sequence[int]]] = None, *,
                 phase=None, declared: Optional[Mapping[str, Any]] = None,
                 level: Optional[int] = None, stages: Optional[Iterable[str]] = None) -> NetShapes:
    """Every blob's and layer's shapes as Caffe's Net set-up computes them.

    The net is first filtered as Caffe's Net does (netdsl.netstate): with
    ``phase``/``level``/``stages`` when given, else with ``net.state`` (TEST
    unless set), so an already filtered net is left as it is.  Input shapes
    come from Input and DummyData layers, data layers whose parameters fix
    them, the legacy ``input``/``input_shape``/``input_dim`` fields, or
    ``inputs`` (top name -> shape), which overrides them.  ``declared`` maps
    a layer name (to a list of shapes, one per top) or a top name (to one
    shape) for layers Caffe cannot shape statically (Python, HDF5Data, fork
    types); it overrides the computed shapes.
    """
    return _infer(net, inputs, phase, declared, level, stages, strict=False)


def check_net(net: Message, inputs: Optional[Mapping[str, Sequence[int]]] = None, *,
              phase=None, declared: Optional[Mapping[str, Any]] = None,
              level: Optional[int] = None, stages: Optional[Iterable[str]] = None) -> NetShapes:
    """:func:`infer_shapes`, and also reject empty blobs (an output size below 1).

    Everything Caffe CHECKs while setting a net up (crop bounds, Eltwise and
    Concat shapes, group divisibility, Reshape counts, ...) raises in both;
    Caffe accepts a zero-sized top, this does not.
    """
    return _infer(net, inputs, phase, declared, level, stages, strict=True)


# -- reporting ---------------------------------------------------------------------------

def _shape_text(s: Shape) -> str:
    return "(" + ",".join(str(d) for d in s) + ")"


def _vec_text(v) -> str:
    if v is None:
        return ""
    vals = ["%g" % x if isinstance(x, float) else str(x) for x in v]
    if len(set(vals)) == 1:
        return vals[0]
    return ",".join(vals)


def format_table(net_shapes: NetShapes, crops: Optional[Mapping[str, Any]] = None) -> str:
    """A text table: layer, type, parameter count, stride and offset of the first
    top on the net input (spatial tops), then bottoms -> tops with shapes.

    ``crops`` (from :func:`netdsl.coord_map.offsets_for`) adds a section comparing
    each Crop layer's offsets with those the coordinate maps give.
    """
    rows = []
    for ls in net_shapes.layers:
        ins = ", ".join("%s %s" % (b, _shape_text(s)) for b, s in zip(ls.bottoms, ls.bottom_shapes))
        outs = []
        for i, (t, s) in enumerate(zip(ls.tops, ls.top_shapes)):
            extra = []
            if i < len(ls.in_place) and ls.in_place[i]:
                extra.append("in place")
            if ls.loss_weights and i < len(ls.loss_weights) and ls.loss_weights[i]:
                extra.append("loss x%g" % ls.loss_weights[i])
            outs.append("%s %s%s" % (t, _shape_text(s), " [%s]" % ", ".join(extra) if extra else ""))
        io = (ins + " -> " if ins else "-> ") + (", ".join(outs) if outs else "(none)")
        if ls.declared:
            io += "  (declared)"
        if ls.note:
            io += "  (%s)" % ls.note
        stride = offset = ""
        if ls.tops and ls.strides and ls.strides[0] is not None and len(ls.top_shapes[0]) >= 3:
            stride, offset = _vec_text(ls.strides[0]), _vec_text(ls.offsets[0])
        rows.append((ls.name, ls.type, "{:,}".format(ls.param_count) if ls.param_count else "-",
                     stride, offset, io))
    head = ("layer", "type", "params", "stride", "offset", "bottoms -> tops")
    widths = [len(h) for h in head[:5]]
    for r in rows:
        for i in range(5):
            if len(r[i]) > widths[i]:
                widths[i] = len(r[i])
    fmt = "%-{0}s  %-{1}s  %{2}s  %{3}s  %{4}s  %s".format(*widths)
    lines = [fmt % head]
    lines.extend(fmt % r for r in rows)
    total = net_shapes.param_count
    lines.append("%d layers, %d blobs, %s learnable parameters"
                 % (len(net_shapes.layers), len(net_shapes.blobs), "{:,}".format(total)))
    if crops:
        lines.append("")
        lines.append("crop offsets (from coordinate maps):")
        for name, rec in crops.items():
            given = "axis %d offset %s" % (rec.given_axis, _offsets_text(rec.given_offsets))
            if rec.error is not None:
                lines.append("  %s: %s; cannot check: %s" % (name, given, rec.error))
            elif rec.matches:
                lines.append("  %s: axis %d offset %s (matches)"
                             % (name, rec.axis, _offsets_text(rec.offsets)))
            else:
                lines.append("  %s: %s, but the maps give axis %d offset %s"
                             % (name, given, rec.axis, _offsets_text(rec.offsets)))
    return "\n".join(lines) + "\n"


def _offsets_text(offsets: Sequence[int]) -> str:
    if not offsets:
        return "0"
    return ",".join(str(o) for o in offsets)


def to_json(net_shapes: NetShapes, crops: Optional[Mapping[str, Any]] = None) -> dict:
    """``{"blobs": {name: [dims]}, "layers": [...]}`` (JSON-serialisable).

    With ``crops`` (from :func:`netdsl.coord_map.offsets_for`) a ``"crops"`` entry
    maps each Crop layer to its given and computed axis/offsets.
    """
    def vec(v):
        return None if v is None else list(v)
    layers = []
    for ls in net_shapes.layers:
        d = {
            "name": ls.name, "type": ls.type,
            "bottoms": list(ls.bottoms), "tops": list(ls.tops),
            "bottom_shapes": [list(s) for s in ls.bottom_shapes],
            "top_shapes": [list(s) for s in ls.top_shapes],
            "param_shapes": [list(s) for s in ls.param_shapes],
            "param_count": ls.param_count,
            "loss_weights": list(ls.loss_weights),
            "strides": [vec(v) for v in ls.strides],
            "offsets": [vec(v) for v in ls.offsets],
            "in_place": list(ls.in_place),
        }
        if ls.declared:
            d["declared"] = True
        if ls.note:
            d["note"] = ls.note
        layers.append(d)
    out = {"blobs": {k: list(v) for k, v in net_shapes.blobs.items()}, "layers": layers}
    if crops is not None:
        out["crops"] = {
            name: {"axis": rec.axis, "offsets": rec.offsets, "given_axis": rec.given_axis,
                   "given_offsets": list(rec.given_offsets), "matches": rec.matches,
                   "error": rec.error}
            for name, rec in crops.items()}
    return out
