"""PyTorch-parity recipes: stock Caffe layer groups that compute what a PyTorch op
computes, to float rounding, in Caffe and in OpenCV dnn alike.

Every recipe takes a NetSpec top ``x``, the ``(N, C, H, W)`` shape of ``x``
(slice points and group counts depend on it) and the op's PyTorch arguments,
adds layers through the layer factory ``L`` (NetSpec's ``layers``; the spec
ops of :mod:`netdsl.ops.pytorch` swap in one that records) and returns the
result top.  Only layers
both Caffe and OpenCV's Caffe importer run are used: Slice instead of a Crop
against a DummyData reference (OpenCV has no DummyData), Scale instead of
Bias (OpenCV has no Bias), no ``round_mode`` in ``pooling_param``.  Where
PyTorch's output is shorter than Caffe's, the surplus is cut with a Slice whose
other parts stay unused tops (a NetSpec emits only the layers its tops need, so
a Silence would be dropped; Caffe lists unused tops as net outputs; the
converters of netdsl.torch / netdsl.onnx give them to a Silence layer, so their
nets' outputs are the model's); a result taken from a Slice is passed
through a one-top Split, so that the layer producing it has a single top
(OpenCV finds outputs by layer name and gives a layer's first top).

Recipes with learned or computed weights put the weight layer under ``name``
and, when a ``weights`` dict is given, store its blobs there
(``weights[name] = [arrays]``) for :func:`netdsl.weights.write_caffemodel`.
Fixed upsampling kernels come from Caffe's own fillers (``bilinear``,
``constant``), so a Caffe net built from the prototxt alone is already right.

docs/pytorch-parity.md explains why each recipe is exact.

=====================================  ==========================================
PyTorch                                recipe
=====================================  ==========================================
F.interpolate bilinear, integer f      :func:`interpolate` -> :func:`bilinear_upsample`
F.interpolate nearest, integer f       :func:`interpolate` -> :func:`nearest_upsample`
F.interpolate, any size/align_corners  :func:`interpolate` -> :func:`resize_matrix`
nn.ConvTranspose2d                     :func:`conv_transpose2d`
nn.MaxPool2d / nn.AvgPool2d            :func:`max_pool2d` / :func:`avg_pool2d`
F.pad (constant) [+ nn.Conv2d]         :func:`pad` / :func:`pad_conv2d`
nn.InstanceNorm2d                      :func:`instance_norm`
nn.GELU() / F.gelu (erf), torch.erf    :func:`gelu_erf` / :func:`erf`
x + c, x * c                           :func:`add_constant` / :func:`mul_constant`
=====================================  ==========================================
"""
from __future__ import annotations

import contextvars
import math
from typing import Any, Dict, List, MutableMapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import NetdslError
from ..netspec import Top, layers as _netspec_layers, params as P


#: the layer factory in use in this thread or task: NetSpec's ``layers``, or, while a
#: spec op expands, one that records spec Records (:mod:`netdsl.ops.pytorch`)
FACTORY: contextvars.ContextVar[Any] = contextvars.ContextVar("netdsl_recipe_layers",
                                                              default=_netspec_layers)


class _LayerProxy:
    """``L.<Type>(...)`` through the layer factory in use."""

    def __getattr__(self, name: str) -> Any:
        return getattr(FACTORY.get(), name)


L = _LayerProxy()

__all__ = ["interpolate", "bilinear_upsample", "nearest_upsample", "resize_matrix",
           "interp_matrix", "conv_transpose2d", "dilate_kernel", "max_pool2d", "avg_pool2d", "pad",
           "pad_conv2d", "instance_norm", "gelu_erf", "erf", "add_constant", "mul_constant", "replicate_pad",
           "pool_output_size", "conv_transpose_output_size", "RECIPES",
           "MATRIX_WARN_VALUES"]

Shape = Sequence[int]
Weights = Optional[MutableMapping[str, List[np.ndarray]]]
IntPair = Union[int, Sequence[int]]

#: past this many values in one interpolation matrix, resize_matrix resizes one axis
#: at a time
MATRIX_WARN_VALUES = 1 << 20

_FROZEN = [{"lr_mult": 0, "decay_mult": 0}]


def _store(weights: Weights, name: str, weight: Any, bias: Any, out_channels: int,
           has_bias: bool) -> None:
    """Put a converted layer's blobs (weight, then bias when it has one) in ``weights``."""
    if weights is None or weight is None:
        return
    blobs = [weight]
    if has_bias:
        blobs.append(np.asarray(bias if bias is not None else np.zeros(out_channels),
                                dtype=np.float32).reshape(out_channels))
    weights[name] = blobs


def pair(v: Any, what: Optional[str] = None, n: int = 2) -> Tuple[int, ...]:
    """``n`` integers from an integer or a sequence.  With ``what`` (a recipe's
    argument name) exactly two integers or an integer, else an error naming it;
    without (a converter's ATen argument, already checked by PyTorch) one value
    of a sequence is repeated and a longer one kept."""
    if what is None:
        if isinstance(v, (list, tuple)):
            vals = [int(x) for x in v]
            return tuple(vals * n if len(vals) == 1 else vals)
        return (int(v),) * n
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return int(v), int(v)
    vals = list(v)
    if len(vals) != 2 or not all(isinstance(a, (int, np.integer)) for a in vals):
        raise NetdslError("`%s` takes an integer or two, got %r" % (what, v), field=what)
    return int(vals[0]), int(vals[1])


def nchw(shape: Shape, op: Any = None) -> Tuple[int, int, int, int]:
    """``shape`` as (N, C, H, W).  A recipe's ``shape`` argument may be 3-D
    (N = 1); a converter's input (``op``, the op converted) must be 4-D, else the
    error is located at the op."""
    s = [int(d) for d in shape]
    if op is not None:
        if len(s) != 4:
            raise op.error("needs a 4-D (N, C, H, W) input, got shape %s" % (tuple(s),))
        return s[0], s[1], s[2], s[3]
    if len(s) == 3:
        s = [1] + s
    if len(s) != 4 or min(s) <= 0:
        raise NetdslError("shape must be (N, C, H, W) with positive sizes, got %r" % (shape,),
                          field="shape")
    return s[0], s[1], s[2], s[3]


def _named(params: Dict[str, Any], name: Optional[str], suffix: str = "") -> Dict[str, Any]:
    if name:
        params["name"] = name + suffix
    return params


def _need_name(name: Optional[str], weights: Weights, what: str) -> None:
    if weights is not None and not name:
        raise NetdslError("%s: give `name` so the weights can be stored under the layer's name"
                          % what, field="name")


def _keep(x: Top, axis: int, size: int, start: int, length: int,
          name: Optional[str] = None) -> Top:
    """``x[start:start + length]`` along ``axis`` (of length ``size``) with a Slice;
    the parts cut off stay unused tops (net outputs in Caffe, ignored by OpenCV)."""
    if start < 0 or length <= 0 or start + length > size:
        raise NetdslError("cannot keep [%d, %d) of an axis of %d" % (start, start + length, size))
    if start == 0 and length == size:
        return x
    points = [p for p in (start, start + length) if 0 < p < size]
    tops = L.Slice(x, **_named({"axis": axis, "slice_point": points, "ntop": len(points) + 1},
                               name))
    return tops[1 if start > 0 else 0]


def own(x: Top) -> Top:
    """``x`` as the only top of its layer: a one-top Split (a copy) after a kept
    Slice part, so the result's layer carries the result's name (OpenCV looks
    outputs up by layer name and returns a layer's first top)."""
    if x.fn.ntop > 1 or x.fn.type_name in ("Slice", "Split"):
        return L.Split(x)
    return x


def _edges(x: Top, axis: int, size: int) -> Tuple[Top, Top, Optional[Top]]:
    """(first, last, middle) one-wide slices of ``x`` along ``axis`` (middle None
    when nothing is left between)."""
    if size == 1:
        return x, x, None
    if size == 2:
        first, last = L.Slice(x, axis=axis, slice_point=[1], ntop=2)
        return first, last, None
    first, mid, last = L.Slice(x, axis=axis, slice_point=[1, size - 1], ntop=3)
    return first, last, mid


def replicate_pad(x: Top, shape: Shape) -> Top:
    """``F.pad(x, (1, 1, 1, 1), mode='replicate')``: the first and last row, then
    column, repeated once, by Slice + Concat (exact copies)."""
    n, c, h, w = nchw(shape)
    for axis, size in ((2, h), (3, w)):
        first, last, mid = _edges(x, axis, size)
        parts = [first, first] + ([mid] if mid is not None else []) + [last, last]
        if size == 1:
            parts = [x, x, x]
        x = L.Concat(*parts, axis=axis)
    return x


def bilinear_upsample(x: Top, shape: Shape, factor: int, *, name: Optional[str] = None) -> Top:
    """``F.interpolate(x, scale_factor=f, mode='bilinear', align_corners=False)``.

    Replicate-pad by one pixel, grouped bilinear Deconvolution (kernel
    ``2f - f % 2``, stride ``f``, pad ``ceil((f - 1) / 2)``, Caffe's bilinear
    filler), then drop ``f`` rows and columns on each side.  Output ``fH x fW``.
    """
    n, c, h, w = nchw(shape)
    f = int(factor)
    if f < 1:
        raise NetdslError("factor must be a positive integer, got %r" % (factor,), field="factor")
    if f == 1:
        return x
    k, p = 2 * f - f % 2, -(-(f - 1) // 2)
    padded = replicate_pad(x, shape)
    up = L.Deconvolution(padded, **_named({
        "convolution_param": {"num_output": c, "group": c, "kernel_size": k, "stride": f,
                              "pad": p, "bias_term": False,
                              "weight_filler": {"type": "bilinear"}},
        "param": _FROZEN}, name))
    # deconvolution of the (H + 2)-long padded input: f (H + 1) + k - 2p = f H + 2 f rows
    up = _keep(up, 2, f * h + 2 * f, f, f * h)
    return own(_keep(up, 3, f * w + 2 * f, f, f * w))


def nearest_upsample(x: Top, shape: Shape, factor: int, *, name: Optional[str] = None) -> Top:
    """``F.interpolate(x, scale_factor=f, mode='nearest')``: a grouped Deconvolution
    with kernel ``f``, stride ``f`` and a kernel of ones (each pixel copied to an
    f x f block)."""
    n, c, h, w = nchw(shape)
    f = int(factor)
    if f < 1:
        raise NetdslError("factor must be a positive integer, got %r" % (factor,), field="factor")
    if f == 1:
        return x
    return L.Deconvolution(x, **_named({
        "convolution_param": {"num_output": c, "group": c, "kernel_size": f, "stride": f,
                              "bias_term": False,
                              "weight_filler": {"type": "constant", "value": 1.0}},
        "param": _FROZEN}, name))


def _axis_matrix(n_in: int, n_out: int, mode: str, align_corners: bool,
                 scale: Optional[float], coordinate_mode: Optional[str] = None,
                 nearest_mode: str = "floor") -> np.ndarray:
    """The (n_out, n_in) 1-D interpolation matrix.

    The source coordinate of output ``o`` follows ONNX Resize's
    ``coordinate_transformation_mode`` (``half_pixel``: ``(o + 0.5) / s - 0.5``;
    ``pytorch_half_pixel``: the same, 0 for a length-1 output;
    ``align_corners``: ``o (in - 1) / (out - 1)``; ``asymmetric``: ``o / s``),
    with ``s`` the scale factor when given, else ``out / in``.  Without
    ``coordinate_mode`` it is PyTorch's ``F.interpolate``: nearest is
    ``asymmetric`` with ``floor`` (in float32), bilinear ``half_pixel`` or
    ``align_corners``.  Linear weights use the source clamped at 0 and the
    neighbours clamped to the input; nearest rounds by ``nearest_mode``
    (``floor``, ``ceil``, ``round_prefer_floor``, ``round_prefer_ceil``)."""
    a = np.zeros((n_out, n_in), dtype=np.float64)
    o = np.arange(n_out, dtype=np.float64)
    if coordinate_mode is None:
        if mode == "nearest":
            # PyTorch: src = floor(o * s) in float32, s = 1 / scale_factor or in / out
            s = np.float32(1.0 / scale) if scale else np.float32(n_in) / np.float32(n_out)
            src = np.minimum(np.floor(o.astype(np.float32) * s).astype(np.int64), n_in - 1)
            a[np.arange(n_out), src] = 1.0
            return a
        coordinate_mode = "align_corners" if align_corners else "half_pixel"
    ratio = 1.0 / scale if scale else n_in / n_out
    if coordinate_mode == "align_corners":
        src = o * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
    elif coordinate_mode == "asymmetric":
        src = o * ratio
    elif coordinate_mode in ("half_pixel", "pytorch_half_pixel"):
        src = (o + 0.5) * ratio - 0.5
        if coordinate_mode == "pytorch_half_pixel" and n_out == 1:
            src = np.zeros_like(o)
    else:
        raise NetdslError("coordinate transformation %r has no recipe" % (coordinate_mode,),
                          field="coordinate_transformation_mode")
    if mode == "nearest":
        if nearest_mode == "floor":
            idx = np.floor(src)
        elif nearest_mode == "ceil":
            idx = np.ceil(src)
        elif nearest_mode == "round_prefer_ceil":
            idx = np.floor(src + 0.5)
        elif nearest_mode == "round_prefer_floor":
            idx = np.ceil(src - 0.5)
        else:
            raise NetdslError("nearest_mode %r has no recipe" % (nearest_mode,),
                              field="nearest_mode")
        idx = np.clip(idx.astype(np.int64), 0, n_in - 1)
        a[np.arange(n_out), idx] = 1.0
        return a
    src = np.maximum(src, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    l1 = src - i0
    rows = np.arange(n_out)
    np.add.at(a, (rows, i0), 1.0 - l1)
    np.add.at(a, (rows, i1), l1)
    return a


def interp_matrix(in_hw: Tuple[int, int], out_hw: Tuple[int, int], *, mode: str = "bilinear",
                  align_corners: bool = False,
                  scale_factor: Optional[Tuple[float, float]] = None,
                  coordinate_mode: Optional[str] = None,
                  nearest_mode: str = "floor") -> np.ndarray:
    """The (Ho*Wo, H*W) float32 matrix ``M`` with ``vec(y) = M vec(x)`` for
    PyTorch's ``F.interpolate`` (bilinear or nearest) or, with
    ``coordinate_mode``, ONNX's Resize: the Kronecker product of the row and
    column interpolation matrices (:func:`_axis_matrix`)."""
    sh, sw = scale_factor if scale_factor else (None, None)
    ah = _axis_matrix(in_hw[0], out_hw[0], mode, align_corners, sh, coordinate_mode,
                      nearest_mode)
    aw = _axis_matrix(in_hw[1], out_hw[1], mode, align_corners, sw, coordinate_mode,
                      nearest_mode)
    return np.kron(ah, aw).astype(np.float32)


def resize_matrix(x: Top, shape: Shape, size: Tuple[int, int], *, mode: str = "bilinear",
                  align_corners: bool = False,
                  scale_factor: Optional[Tuple[float, float]] = None,
                  name: Optional[str] = None, weights: Weights = None,
                  coordinate_mode: Optional[str] = None, nearest_mode: str = "floor") -> Top:
    """Any ``F.interpolate`` (bilinear with or without ``align_corners``, nearest,
    any output size) as Reshape -> InnerProduct(axis 2) with the interpolation
    matrix (``Ho*Wo x H*W`` values) -> Reshape.  Past :data:`MATRIX_WARN_VALUES`
    values the resize is done one axis at a time instead (it is separable in
    every mode): along W an InnerProduct(axis 3) with the (Wo, W) matrix, along
    H a Convolution grouped by channel with C*Ho kernels of (H, 1) (each the
    row of the (Ho, H) matrix), giving (N, C*Ho, 1, Wo), then Reshape to
    (N, C, Ho, Wo): ``Wo*W + C*Ho*H`` values."""
    n, c, h, w = nchw(shape)
    ho, wo = pair(size, "size")
    _need_name(name, weights, "resize_matrix")
    values = ho * wo * h * w
    if values > MATRIX_WARN_VALUES:
        sh, sw = scale_factor if scale_factor else (None, None)
        y = L.InnerProduct(x, **_named({
            "inner_product_param": {"num_output": wo, "axis": 3, "bias_term": False},
            "param": _FROZEN}, name, "/cols"))
        y = L.Convolution(y, **_named({
            "convolution_param": {"num_output": c * ho, "group": c, "kernel_h": h,
                                  "kernel_w": 1, "bias_term": False},
            "param": _FROZEN}, name))
        if weights is not None:
            aw = _axis_matrix(w, wo, mode, align_corners, sw, coordinate_mode, nearest_mode)
            ah = _axis_matrix(h, ho, mode, align_corners, sh, coordinate_mode, nearest_mode)
            weights[name + "/cols"] = [aw.astype(np.float32)]
            weights[name] = [np.ascontiguousarray(np.broadcast_to(
                ah.astype(np.float32)[None, :, None, :, None], (c, ho, 1, h, 1)).reshape(
                c * ho, 1, h, 1))]
        return L.Reshape(y, shape={"dim": [0, c, ho, wo]})
    flat = L.Reshape(x, shape={"dim": [0, 0, -1]})
    y = L.InnerProduct(flat, **_named({
        "inner_product_param": {"num_output": ho * wo, "axis": 2, "bias_term": False},
        "param": _FROZEN}, name))
    if weights is not None:
        weights[name] = [interp_matrix((h, w), (ho, wo), mode=mode, align_corners=align_corners,
                                       scale_factor=scale_factor,
                                       coordinate_mode=coordinate_mode,
                                       nearest_mode=nearest_mode)]
    return L.Reshape(y, shape={"dim": [0, 0, ho, wo]})


def interpolate(x: Top, shape: Shape, *, size: Optional[IntPair] = None,
                scale_factor: Optional[Union[float, Sequence[float]]] = None,
                mode: str = "bilinear", align_corners: Optional[bool] = None,
                name: Optional[str] = None, weights: Weights = None,
                coordinate_mode: Optional[str] = None, nearest_mode: str = "floor") -> Top:
    """``F.interpolate`` for ``mode`` 'bilinear' or 'nearest' (or ONNX Resize's
    sampling, with ``coordinate_mode`` / ``nearest_mode``: see
    :func:`_axis_matrix`).

    Integer ``scale_factor`` (or a size that is an integer multiple):
    :func:`nearest_upsample`, or :func:`bilinear_upsample` when
    ``align_corners`` is false, provided the requested sampling picks the same
    sources as those (compared matrix to matrix); everything else
    :func:`resize_matrix`.
    """
    n, c, h, w = nchw(shape)
    if mode not in ("bilinear", "nearest"):
        raise NetdslError("mode must be 'bilinear' or 'nearest', got %r" % (mode,), field="mode")
    if mode == "nearest" and align_corners:
        raise NetdslError("align_corners only goes with bilinear", field="align_corners")
    scales: Optional[Tuple[float, float]] = None
    if (size is None) == (scale_factor is None):
        raise NetdslError("give exactly one of size and scale_factor", field="size")
    if scale_factor is not None:
        sf = (scale_factor, scale_factor) if isinstance(scale_factor, (int, float)) \
            else tuple(scale_factor)
        scales = (float(sf[0]), float(sf[1]))
        out = (int(math.floor(h * scales[0])), int(math.floor(w * scales[1])))
    else:
        out = pair(size, "size")
    fh, fw = out[0] // h, out[1] // w
    integer = out == (fh * h, fw * w) and fh == fw and fh >= 1 and (
        scales is None or scales == (float(fh), float(fw)))
    if integer and coordinate_mode is not None:
        for n_in, n_out in ((h, out[0]), (w, out[1])):
            if not np.array_equal(
                    _axis_matrix(n_in, n_out, mode, False, None, coordinate_mode, nearest_mode),
                    _axis_matrix(n_in, n_out, mode, False, None)):
                integer = False
    if integer and mode == "nearest":
        return nearest_upsample(x, shape, fh, name=name)
    if integer and mode == "bilinear" and not align_corners:
        return bilinear_upsample(x, shape, fh, name=name)
    return resize_matrix(x, shape, out, mode=mode, align_corners=bool(align_corners),
                         scale_factor=scales, name=name, weights=weights,
                         coordinate_mode=coordinate_mode, nearest_mode=nearest_mode)


# -- transposed convolution --------------------------------------------------------

def conv_transpose_output_size(size: int, kernel: int, stride: int, padding: int,
                               output_padding: int, dilation: int) -> int:
    """PyTorch's ``(H - 1) s - 2 p + d (k - 1) + output_padding + 1``."""
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def _zeros_like_rows(x: Top, axis: int, size: int, count: int) -> List[Top]:
    """``count`` references to one zero slice (one wide along ``axis``) of ``x``:
    the first slice times 0 by Power (scale 0: Caffe fills 0^1 without reading x)."""
    first = x if size == 1 else L.Slice(x, axis=axis, slice_point=[1], ntop=2)[0]
    zero = L.Power(first, power=1.0, scale=0.0, shift=0.0)
    return [zero] * count


def dilate_kernel(weight: np.ndarray, dilation: IntPair) -> np.ndarray:
    """A 4-D kernel with ``d - 1`` zeros between taps: size ``d (k - 1) + 1``; a
    convolution with it equals the dilated convolution with ``weight``."""
    dh, dw = pair(dilation, "dilation")
    w = np.asarray(weight, dtype=np.float32)
    kh, kw = w.shape[2], w.shape[3]
    out = np.zeros(w.shape[:2] + (dh * (kh - 1) + 1, dw * (kw - 1) + 1), dtype=np.float32)
    out[:, :, ::dh, ::dw] = w
    return out


def conv_transpose2d(x: Top, shape: Shape, weight: Optional[np.ndarray] = None,
                     bias: Optional[np.ndarray] = None, *, out_channels: Optional[int] = None,
                     kernel_size: Optional[IntPair] = None, stride: IntPair = 1,
                     padding: IntPair = 0, output_padding: IntPair = 0, groups: int = 1,
                     dilation: IntPair = 1, bias_term: Optional[bool] = None,
                     name: Optional[str] = None, weights: Weights = None) -> Top:
    """``nn.ConvTranspose2d``: Deconvolution with pad 0 (PyTorch's weight layout
    (C_in, C_out / groups, kh, kw) is Caffe's), then ``padding`` rows and columns
    sliced off the start and the output cut to PyTorch's size.  When
    ``output_padding > padding`` the input first gets zero rows/columns at the
    end, so the extra outputs hold the bias, as in PyTorch.  A dilated kernel
    is written out with zeros between its taps (:func:`dilate_kernel`), since
    OpenCV's Deconvolution ignores ``dilation``; the stored weight is that one."""
    n, c, h, w = nchw(shape)
    _need_name(name, weights, "conv_transpose2d")
    if weight is not None:
        weight = np.asarray(weight, dtype=np.float32)
        if weight.ndim != 4 or weight.shape[0] != c:
            raise NetdslError("weight must be (C_in=%d, C_out/groups, kh, kw), got %s"
                              % (c, weight.shape), field="weight")
        out_channels = weight.shape[1] * groups
        kernel_size = (weight.shape[2], weight.shape[3])
    if out_channels is None or kernel_size is None:
        raise NetdslError("give the weight, or out_channels and kernel_size",
                          field="kernel_size")
    (kh, kw), (sh, sw) = pair(kernel_size, "kernel_size"), pair(stride, "stride")
    (ph, pw), (oph, opw) = pair(padding, "padding"), pair(output_padding, "output_padding")
    (dh, dw) = pair(dilation, "dilation")
    for op, s, d in ((oph, sh, dh), (opw, sw, dw)):
        if op >= max(s, d) or op < 0:
            raise NetdslError("output_padding must be smaller than stride or dilation",
                              field="output_padding")
    has_bias = (bias is not None) if bias_term is None else bool(bias_term)
    if (dh, dw) != (1, 1):
        # OpenCV's Deconvolution ignores dilation: use the dilated kernel itself
        # (zeros between the taps add exact zeros)
        if weight is not None:
            weight = dilate_kernel(weight, (dh, dw))
        kh, kw = dh * (kh - 1) + 1, dw * (kw - 1) + 1
        dh = dw = 1
    # zero rows / columns appended to the input when output_padding > padding
    eh = -(-(oph - ph) // sh) if oph > ph else 0
    ew = -(-(opw - pw) // sw) if opw > pw else 0
    if eh:
        x = L.Concat(x, *_zeros_like_rows(x, 2, h, eh), axis=2)
    if ew:
        x = L.Concat(x, *_zeros_like_rows(x, 3, w, ew), axis=3)
    conv = {"num_output": out_channels, "group": groups, "kernel_h": kh, "kernel_w": kw,
            "stride_h": sh, "stride_w": sw, "bias_term": has_bias}
    y = L.Deconvolution(x, **_named({"convolution_param": conv}, name))
    _store(weights, name, weight, bias if has_bias else None, out_channels, has_bias)
    full_h = (h + eh - 1) * sh + dh * (kh - 1) + 1
    full_w = (w + ew - 1) * sw + dw * (kw - 1) + 1
    th = conv_transpose_output_size(h, kh, sh, ph, oph, 1)
    tw = conv_transpose_output_size(w, kw, sw, pw, opw, 1)
    if th <= 0 or tw <= 0:
        raise NetdslError("PyTorch's output would be %d x %d" % (th, tw), field="padding")
    y = _keep(y, 2, full_h, ph, th)
    return own(_keep(y, 3, full_w, pw, tw))


# -- pooling -----------------------------------------------------------------------

def pool_output_size(size: int, kernel: int, stride: int, padding: int, ceil_mode: bool) -> int:
    """PyTorch's pooling output size: ``(H + 2p - k) / s + 1`` rounded down, or up
    with ``ceil_mode`` -- then, as in Caffe, one less when the last window would
    start in the padding."""
    span = size + 2 * padding - kernel
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def _pool_args(shape: Shape, kernel_size: IntPair, stride: Optional[IntPair],
               padding: IntPair, what: str):
    n, c, h, w = nchw(shape)
    (kh, kw) = pair(kernel_size, "kernel_size")
    (sh, sw) = pair(stride if stride is not None else kernel_size, "stride")
    (ph, pw) = pair(padding, "padding")
    if ph * 2 > kh or pw * 2 > kw:
        raise NetdslError("%s: PyTorch requires padding <= kernel_size / 2" % what,
                          field="padding")
    return h, w, kh, kw, sh, sw, ph, pw


def _pool(x: Top, pool: int, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int,
          name: Optional[str]) -> Top:
    params: Dict[str, Any] = {"pool": pool}
    if kh == kw:
        params["kernel_size"] = kh
    else:
        params.update(kernel_h=kh, kernel_w=kw)
    if sh == sw:
        params["stride"] = sh
    else:
        params.update(stride_h=sh, stride_w=sw)
    if (ph, pw) != (0, 0):
        if ph == pw:
            params["pad"] = ph
        else:
            params.update(pad_h=ph, pad_w=pw)
    return L.Pooling(x, **_named({"pooling_param": params}, name))


def _cut_to_torch(y: Top, h: int, w: int, kh: int, kw: int, sh: int, sw: int, ph: int,
                  pw: int, ceil_mode: bool) -> Top:
    """Caffe's pooling output (always ceil; a last window starting past the input
    dropped only when there is padding) cut to PyTorch's size."""
    from ..layers.pool import pool_dims
    caffe_h, caffe_w = pool_dims(h, w, kh, kw, sh, sw, ph, pw)
    th = pool_output_size(h, kh, sh, ph, ceil_mode)
    tw = pool_output_size(w, kw, sw, pw, ceil_mode)
    y = _keep(y, 2, caffe_h, 0, th)
    return own(_keep(y, 3, caffe_w, 0, tw))


def max_pool2d(x: Top, shape: Shape, kernel_size: IntPair, stride: Optional[IntPair] = None,
               padding: IntPair = 0, dilation: IntPair = 1, ceil_mode: bool = False, *,
               name: Optional[str] = None) -> Top:
    """``nn.MaxPool2d``: Caffe's MAX pooling (its windows are PyTorch's, padding
    never wins), with the extra last row/column of Caffe's ceil rounding sliced
    off when ``ceil_mode`` is false."""
    if pair(dilation, "dilation") != (1, 1):
        raise NetdslError("Caffe's Pooling has no dilation", field="dilation")
    h, w, kh, kw, sh, sw, ph, pw = _pool_args(shape, kernel_size, stride, padding, "max_pool2d")
    y = _pool(x, P.Pooling.MAX, kh, kw, sh, sw, ph, pw, name)
    return _cut_to_torch(y, h, w, kh, kw, sh, sw, ph, pw, ceil_mode)


def avg_pool2d(x: Top, shape: Shape, kernel_size: IntPair, stride: Optional[IntPair] = None,
               padding: IntPair = 0, ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: Optional[int] = None, *, name: Optional[str] = None) -> Top:
    """``nn.AvgPool2d``.  Caffe's AVE divides by the window clipped to
    ``H + pad`` -- PyTorch's ``count_include_pad=True`` rule exactly.  For
    ``count_include_pad=False`` the result is multiplied by ``1 / AVE(ones)``,
    the padded-window size over the in-image count, from an all-ones map made
    by Power (scale 0, shift 1).  Outputs cut to PyTorch's size as in max_pool2d."""
    if divisor_override is not None:
        raise NetdslError("divisor_override has no Caffe recipe here", field="divisor_override")
    h, w, kh, kw, sh, sw, ph, pw = _pool_args(shape, kernel_size, stride, padding, "avg_pool2d")
    y = _pool(x, P.Pooling.AVE, kh, kw, sh, sw, ph, pw, name)
    if not count_include_pad and (ph or pw):
        ones = L.Power(x, power=1.0, scale=0.0, shift=1.0)
        frac = _pool(ones, P.Pooling.AVE, kh, kw, sh, sw, ph, pw, None)
        inv = L.Power(frac, power=-1.0)
        y = L.Eltwise(y, inv, operation=P.Eltwise.PROD)
    return _cut_to_torch(y, h, w, kh, kw, sh, sw, ph, pw, ceil_mode)


# -- padding -----------------------------------------------------------------------

def _constant_rows(x: Top, axis: int, size: int, count: int, value: float) -> List[Top]:
    first = x if size == 1 else L.Slice(x, axis=axis, slice_point=[1], ntop=2)[0]
    const = L.Power(first, power=1.0, scale=0.0, shift=float(value))
    return [const] * count


def pad(x: Top, shape: Shape, pads: Sequence[int], value: float = 0.0) -> Top:
    """``F.pad(x, (left, right, top, bottom), value=value)`` (constant mode):
    constant rows/columns (Power with scale 0 and shift ``value`` on a one-wide
    Slice) concatenated on each side; negative pads cut with a Slice."""
    n, c, h, w = nchw(shape)
    pads = [int(p) for p in pads]
    if len(pads) == 2:
        pads += [0, 0]
    if len(pads) != 4:
        raise NetdslError("pads are (left, right[, top, bottom]), got %r" % (pads,), field="pads")
    left, right, top, bottom = pads
    for axis, size, lo, hi in ((2, h, top, bottom), (3, w, left, right)):
        if lo < 0 or hi < 0:
            x = _keep(x, axis, size, max(0, -lo), size - max(0, -lo) - max(0, -hi))
            size = size - max(0, -lo) - max(0, -hi)
            lo, hi = max(0, lo), max(0, hi)
        if lo or hi:
            consts = _constant_rows(x, axis, size, max(lo, hi), value)
            x = L.Concat(*(consts[:lo] + [x] + consts[:hi]), axis=axis)
    return own(x)


def pad_conv2d(x: Top, shape: Shape, pads: Sequence[int], weight: Optional[np.ndarray] = None,
               bias: Optional[np.ndarray] = None, *, out_channels: Optional[int] = None,
               kernel_size: Optional[IntPair] = None, stride: IntPair = 1,
               dilation: IntPair = 1, groups: int = 1, padding: IntPair = 0,
               bias_term: Optional[bool] = None, name: Optional[str] = None,
               weights: Weights = None) -> Top:
    """``conv(F.pad(x, (left, right, top, bottom)))`` with zero padding: the
    symmetric part (the smaller side, plus the conv's own ``padding``) is
    Caffe's ``pad``, the rest explicit zero rows/columns (:func:`pad`)."""
    n, c, h, w = nchw(shape)
    _need_name(name, weights, "pad_conv2d")
    left, right, top, bottom = [int(p) for p in pads]
    cph, cpw = pair(padding, "padding")
    if min(left, right, top, bottom) < 0:
        raise NetdslError("pad_conv2d takes non-negative pads; use pad() to crop", field="pads")
    sym_h, sym_w = min(top, bottom), min(left, right)
    extra = (left - sym_w, right - sym_w, top - sym_h, bottom - sym_h)
    if any(extra):
        x = pad(x, shape, extra)
    if weight is not None:
        weight = np.asarray(weight, dtype=np.float32)
        out_channels = weight.shape[0]
        kernel_size = (weight.shape[2], weight.shape[3])
    if out_channels is None or kernel_size is None:
        raise NetdslError("give the weight, or out_channels and kernel_size",
                          field="kernel_size")
    kh, kw = pair(kernel_size, "kernel_size")
    sh, sw = pair(stride, "stride")
    dh, dw = pair(dilation, "dilation")
    has_bias = (bias is not None) if bias_term is None else bool(bias_term)
    conv = {"num_output": out_channels, "group": groups, "kernel_h": kh, "kernel_w": kw,
            "stride_h": sh, "stride_w": sw, "pad_h": sym_h + cph, "pad_w": sym_w + cpw,
            "bias_term": has_bias}
    if (dh, dw) != (1, 1):
        conv["dilation"] = [dh, dw] if dh != dw else dh
    y = L.Convolution(x, **_named({"convolution_param": conv}, name))
    _store(weights, name, weight, bias if has_bias else None, out_channels, has_bias)
    return y


# -- normalisation and constants ---------------------------------------------------

def instance_norm(x: Top, shape: Shape, eps: float = 1e-5, weight: Optional[np.ndarray] = None,
                  bias: Optional[np.ndarray] = None, *, affine: Optional[bool] = None,
                  name: Optional[str] = None, weights: Weights = None) -> Top:
    """``nn.InstanceNorm2d`` (no running stats): ``(x - mean) / sqrt(var + eps)``
    per (n, c), var the biased variance, then ``* weight + bias`` when affine.

    MVN without variance normalisation centres x; Power(2) -> global AVE
    Pooling gives var; Power(shift eps, power -0.5) gives ``(var + eps)^-1/2``,
    flattened to (N, C) and broadcast by a two-bottom Scale (axis 0).  MVN's own
    variance step is not used: it adds eps to the standard deviation.
    """
    n, c, h, w = nchw(shape)
    affine = (weight is not None or bias is not None) if affine is None else affine
    if affine:
        _need_name(name, weights, "instance_norm")
    xc = L.MVN(x, normalize_variance=False)
    var = L.Pooling(L.Power(xc, power=2.0), pool=P.Pooling.AVE, global_pooling=True)
    inv = L.Flatten(L.Power(var, power=-0.5, shift=float(eps)))
    y = L.Scale(xc, inv, axis=0)
    if affine:
        y = L.Scale(y, **_named({"scale_param": {"bias_term": True}}, name))
        if weights is not None:
            g = np.ones(c, np.float32) if weight is None else np.asarray(weight, np.float32)
            b = np.zeros(c, np.float32) if bias is None else np.asarray(bias, np.float32)
            weights[name] = [g.reshape(c), b.reshape(c)]
    return y


# -- erf and erf GELU ------------------------------------------------------------------

#: Chebyshev fit of erfc (Numerical Recipes 2nd ed., section 6.2, ``erfcc``):
#: ``erfc(z) = t exp(-z^2 + sum_k C[k] t^k)``, ``t = 1 / (1 + z / 2)``, z >= 0,
#: fractional error below 1.2e-7 for every z >= 0 (tails included)
ERFC_COEFFS = (-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807,
               -1.13520398, 1.48851587, -0.82215223, 0.17087277)

#: ``(a + s) - s`` in float32 rounds ``a`` (>= 0, < 2**17) to a multiple of 2**-6
_SPLIT = 1.5 * 2.0 ** 17


def _erfc_parts(a: Top, scale: float, outer: float) -> Tuple[Top, Top, Top]:
    """Factors whose product is ``outer * erfc(scale * a)`` for ``a >= 0``.

    ``t`` = (1 + scale a / 2)^-1 (Power); the polynomial of ERFC_COEFFS in t by
    Horner (Power shift, Eltwise PROD); ``exp(-(scale a)^2)`` is taken apart so
    the square never rounds: ``h`` = a rounded to 2**-6 (two Power shifts by
    ``_SPLIT``: h^2 has at most 22 bits below 64, so it is exact in float32),
    ``l = a - h`` (exact), ``a^2 = h^2 + 2 l (h + l/2)`` (no overflow for huge a).  ``exp(-scale^2 h^2)`` is
    one Exp of an exact argument; the small rest and the polynomial share a second
    Exp (shift ``C0 + ln outer``).  When a runtime folds the two shifts into
    one (OpenCV dnn does), ``h = a`` and ``l = 0``: the same formula, with the
    square rounded once (relative error ~ (scale a)^2 * 6e-8 in the tail)."""
    c = ERFC_COEFFS
    k2 = float(scale) ** 2
    t = L.Power(a, power=-1.0, scale=0.5 * float(scale), shift=1.0)
    p = L.Power(t, scale=c[9], shift=c[8])
    for coeff in c[7:0:-1]:
        p = L.Power(L.Eltwise(p, t, operation=P.Eltwise.PROD), shift=coeff)
    p = L.Eltwise(p, t, operation=P.Eltwise.PROD)
    h = L.Power(L.Power(a, shift=_SPLIT), shift=-_SPLIT)
    lo = L.Eltwise(a, h, operation=P.Eltwise.SUM, coeff=[1.0, -1.0])
    mid = L.Eltwise(h, lo, operation=P.Eltwise.SUM, coeff=[1.0, 0.5])
    rest = L.Eltwise(lo, mid, operation=P.Eltwise.PROD)
    big = L.Exp(L.Power(h, power=2.0), scale=-k2)
    small = L.Exp(L.Eltwise(p, rest, operation=P.Eltwise.SUM, coeff=[1.0, -2.0 * k2]),
                  shift=c[0] + math.log(float(outer)))
    return t, big, small


def gelu_erf(x: Top, shape: Optional[Shape] = None) -> Top:
    """``F.gelu(x)`` (erf form, ``nn.GELU()``): ``x * Phi(x)``, Phi the normal
    CDF, written ``relu(x) - |x| Q(|x|)`` with ``Q(a) = erfc(a / sqrt 2) / 2``
    (the same for both signs, no step function).  Q by :func:`_erfc_parts`, so
    the result keeps a relative error near float32 rounding where GELU is tiny
    (large negative x).  Measured over 4e6 float32 points of [-13.5, 13.5] and
    the extremes against the float64 formula: at most 6.1e-7 relative wherever
    GELU is a normal float.  Finite inputs only (+-inf gives NaN)."""
    a = L.AbsVal(x)
    t, big, small = _erfc_parts(a, 1.0 / math.sqrt(2.0), 0.5)
    tail = L.Eltwise(a, t, big, small, operation=P.Eltwise.PROD)
    return L.Eltwise(L.ReLU(x), tail, operation=P.Eltwise.SUM, coeff=[1.0, -1.0])


def erf(x: Top, shape: Optional[Shape] = None) -> Top:
    """``torch.erf`` / ONNX ``Erf``: ``erf(y) = erfc(relu(-y)) - erfc(relu(y))``
    (for y >= 0 that is ``1 - erfc(y)``, for y < 0 ``erfc(-y) - 1``), each erfc
    by :func:`_erfc_parts`; absolute error below 6e-7 (measured 5.8e-7, near 0,
    where the float32 Horner sum of the erfc polynomial at t ~ 1 rounds)."""
    pos = L.ReLU(x)
    neg = L.ReLU(L.Power(x, scale=-1.0))
    sides = []
    for a in (neg, pos):
        t, big, small = _erfc_parts(a, 1.0, 1.0)
        sides.append(L.Eltwise(t, big, small, operation=P.Eltwise.PROD))
    return L.Eltwise(sides[0], sides[1], operation=P.Eltwise.SUM, coeff=[1.0, -1.0])


def add_constant(x: Top, value: float) -> Top:
    """``x + value``: Power with shift ``value`` (power 1, scale 1: one addition)."""
    return L.Power(x, shift=float(value))


def mul_constant(x: Top, value: float, add: float = 0.0) -> Top:
    """``x * value (+ add)``: Power with scale ``value`` (and shift ``add``),
    multiplied then added as PyTorch's two ops do."""
    params: Dict[str, Any] = {"scale": float(value)}
    if add:
        params["shift"] = float(add)
    return L.Power(x, **params)


#: recipe name -> function (NetSpec tops in, top out)
RECIPES = {
    "torch_interpolate": interpolate,
    "torch_conv_transpose2d": conv_transpose2d,
    "torch_max_pool2d": max_pool2d,
    "torch_avg_pool2d": avg_pool2d,
    "torch_pad": pad,
    "torch_pad_conv2d": pad_conv2d,
    "torch_instance_norm": instance_norm,
    "torch_add": add_constant,
    "torch_mul": mul_constant,
}
