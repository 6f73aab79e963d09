"""Convolution, Deconvolution and Im2col (BVLC base_conv_layer.cpp, conv_layer.cpp,
deconv_layer.cpp, im2col_layer.cpp).

:func:`conv_geometry` parses a ConvolutionParameter once per layer into a
:class:`ConvGeometry`; the shape, parameter, coordinate-map and forward rules
below all read that value.
"""
from __future__ import annotations

import functools
from typing import Any, List, NamedTuple, Optional, Sequence, Tuple

from google.protobuf.message import Message

from ..maps import Map, canon_axis, down_map, exact
from ..errors import NetdslError
from .blob import (Shape, canonical_axis, count, err, fixed_weight_bias, same_shapes, shape_str,
                   tdiv,
                   weight_bias_fillers)
from .registry import Ops, declare
from .runtime import Context, blob_as, np

_F = "convolution_param."


# -- geometry -------------------------------------------------------------------------

class ConvGeometry(NamedTuple):
    """A convolution window per spatial axis: ``axis`` is the channel axis."""
    axis: int
    kernel: Tuple[int, ...]
    stride: Tuple[int, ...]
    pad: Tuple[int, ...]
    dilation: Tuple[int, ...]

    @property
    def extent(self) -> Tuple[int, ...]:
        """The receptive extent ``dilation * (kernel - 1) + 1`` per axis."""
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel, self.dilation))

    def pair(self, what: str) -> Tuple[int, int]:
        """(h, w) of a 2-D geometry's ``kernel``/``stride``/``pad``/``dilation``."""
        v = getattr(self, what)
        return int(v[0]), int(v[1])


def _per_axis(values: Sequence[int], n: int, default: Optional[int], field: str) -> Tuple[int, ...]:
    k = len(values)
    allowed = (1, n) if default is None else (0, 1, n)
    if k not in allowed:
        raise err("%s must be specified once, or once per spatial dimension (%s specified %d "
                  "times; %d spatial dims)" % (field, field, k, n), _F + field)
    if k == 0:
        return (default,) * n
    return tuple(int(values[0 if k == 1 else i]) for i in range(n))


def _dims(cp: Message, n: int, base: str, field: str, default: Optional[int],
          note: str = "") -> Tuple[int, ...]:
    """base_conv_layer.cpp: ``<base>_h``/``<base>_w`` (2-D only, exclusive with the
    repeated ``field``) or ``field`` given once or per spatial axis."""
    if cp.HasField(base + "_h") or cp.HasField(base + "_w"):
        if n != 2:
            raise err("%s_h & %s_w can only be used for 2D convolution%s" % (base, base, note),
                      "%s%s_h" % (_F, base))
        if len(getattr(cp, field)):
            raise err("Either %s or %s_h/w should be specified; not both" % (field, base),
                      _F + field)
        return (getattr(cp, base + "_h"), getattr(cp, base + "_w"))
    return _per_axis(getattr(cp, field), n, default, field)


def _spatial_axes(cp: Message) -> int:
    # without an input shape (pycaffe's coord_map on a NetSpec function): as many
    # spatial axes as the parameters spell out
    if any(cp.HasField(f) for f in ("kernel_h", "kernel_w", "stride_h", "stride_w", "pad_h",
                                    "pad_w")):
        return 2
    return max(len(cp.kernel_size), len(cp.stride), len(cp.pad), len(cp.dilation), 1)


class _ScalarConvParam:
    """An old fork's 2-D ConvolutionParameter (SegNet's, DeconvNet's: scalar
    kernel_size, stride and pad, no axis or dilation) read as BVLC's repeated
    fields; the channel axis is 1 and dilation 1, as in those forks' code."""

    axis = 1
    dilation = ()

    def __init__(self, cp: Message) -> None:
        self._cp = cp

    def __getattr__(self, name: str) -> Any:
        if name in ("kernel_size", "stride", "pad"):
            return [getattr(self._cp, name)] if self._cp.HasField(name) else []
        return getattr(self._cp, name)

    def HasField(self, name: str) -> bool:
        return self._cp.HasField(name)


def _conv_param(layer: Message) -> Any:
    cp = layer.convolution_param
    # an old fork's scalar kernel_size (not whether `axis` is there: a schema may lack
    # BVLC's axis or dilation and still have the repeated fields)
    return _ScalarConvParam(cp) if isinstance(cp.kernel_size, int) else cp


def conv_geometry(layer: Message, shape: Optional[Shape] = None,
                  min_spatial: int = 0) -> ConvGeometry:
    """BaseConvolutionLayer::LayerSetUp's geometry of ``layer`` on an input of ``shape``.

    kernel_size, stride, pad and dilation are given once or once per spatial
    axis (stride 1, pad 0, dilation 1 by default); kernel_h/_w, stride_h/_w and
    pad_h/_w only for 2-D.  Im2col needs at least ``min_spatial`` spatial axes.
    Without ``shape`` the axis is left as written and the number of spatial
    axes follows the parameters.
    """
    cp = _conv_param(layer)
    if shape is None:
        ca, n = cp.axis, _spatial_axes(cp)
    else:
        ca = canonical_axis(cp.axis, shape, _F + "axis")
        n = len(shape) - ca - 1
        if n < min_spatial:
            raise err("%s needs at least %d spatial axis after the channel axis %d; input %s"
                      % (layer.type, min_spatial, ca, shape_str(shape)), _F + "axis")
    if (not cp.HasField("kernel_h") and not cp.HasField("kernel_w") and len(cp.kernel_size) == 1
            and len(cp.stride) <= 1 and len(cp.pad) <= 1 and len(cp.dilation) <= 1):
        # the common spelling: one value each
        k = int(cp.kernel_size[0])
        s = int(cp.stride[0]) if len(cp.stride) else 1
        p = int(cp.pad[0]) if len(cp.pad) else 0
        d = int(cp.dilation[0]) if len(cp.dilation) else 1
        kernel, stride, pad, dilation = (k,) * n, (s,) * n, (p,) * n, (d,) * n
    else:
        kernel = _dims(cp, n, "kernel", "kernel_size", None, " (%d spatial axes here)" % n)
        stride = _dims(cp, n, "stride", "stride", 1)
        pad = _dims(cp, n, "pad", "pad", 0)
        dilation = _per_axis(cp.dilation, n, 1, "dilation")
    if any(k <= 0 for k in kernel):
        raise err("Filter dimensions must be nonzero (kernel %s)" % (list(kernel),),
                  _F + "kernel_size")
    if any(s <= 0 for s in stride):
        raise err("Stride dimensions must be nonzero (stride %s)" % (list(stride),), _F + "stride")
    return ConvGeometry(ca, kernel, stride, pad, dilation)


# -- output size ----------------------------------------------------------------------

def conv_out(size: int, kernel: int, stride: int, pad: int, dilation: int = 1) -> int:
    """conv_layer.cpp compute_output_shape: (in + 2p - (d(k-1)+1)) / s + 1, C++ division."""
    return tdiv(size + 2 * pad - (dilation * (kernel - 1) + 1), stride) + 1


def deconv_out(size: int, kernel: int, stride: int, pad: int, dilation: int = 1) -> int:
    """deconv_layer.cpp compute_output_shape: s(in - 1) + d(k-1)+1 - 2p."""
    return stride * (size - 1) + dilation * (kernel - 1) + 1 - 2 * pad


def _formula(kind: str, size: int, k: int, s: int, p: int, d: int, out: int) -> str:
    if kind == "Deconvolution":
        return ("stride*(in - 1) + dilation*(kernel - 1) + 1 - 2*pad = %d*(%d - 1) + %d*(%d - 1) "
                "+ 1 - 2*%d = %d (deconv_layer.cpp)" % (s, size, d, k, p, out))
    return ("(in + 2*pad - (dilation*(kernel - 1) + 1)) / stride + 1 = (%d + 2*%d - %d) / %d + 1 "
            "= %d (integer division, conv_layer.cpp)" % (size, p, d * (k - 1) + 1, s, out))


def _spatial_out(layer: Message, shape: Shape, g: ConvGeometry) -> List[int]:
    f = deconv_out if layer.type == "Deconvolution" else conv_out
    out = []
    for i, size in enumerate(shape[g.axis + 1:]):
        o = f(size, g.kernel[i], g.stride[i], g.pad[i], g.dilation[i])
        if o < 0:
            raise err("output size %d on axis %d: %s" % (
                o, g.axis + 1 + i, _formula(layer.type, size, g.kernel[i], g.stride[i], g.pad[i],
                                            g.dilation[i], o)), _F + "kernel_size")
        out.append(o)
    return out


def _channels(layer: Message, shape: Shape, ca: int) -> Tuple[int, int, int]:
    cp = layer.convolution_param
    c, o, g = shape[ca], cp.num_output, cp.group
    if o <= 0:
        raise err("num_output must be positive (got %d)" % o, _F + "num_output")
    if g <= 0:
        raise err("group must be positive (got %d)" % g, _F + "group")
    if c % g:
        raise err("group %d does not divide the %d input channels (Caffe: channels %% group "
                  "== 0; %d %% %d = %d)" % (g, c, c, g, c % g), _F + "group")
    if o % g:
        raise err("group %d does not divide num_output %d (Caffe: \"Number of output should be "
                  "multiples of group\"; %d %% %d = %d)" % (g, o, o, g, o % g), _F + "group")
    return c, o, g


def _empty_hint(layer: Message, bottoms: List[Shape], axis: int, g: ConvGeometry) -> str:
    i = axis - g.axis - 1
    if not bottoms or not 0 <= i < len(g.kernel):
        return ""
    size = bottoms[0][axis]
    f = deconv_out if layer.type == "Deconvolution" else conv_out
    o = f(size, g.kernel[i], g.stride[i], g.pad[i], g.dilation[i])
    return ": " + _formula(layer.type, size, g.kernel[i], g.stride[i], g.pad[i], g.dilation[i], o)


# -- shape rules ----------------------------------------------------------------------

def _geometry(layer: Message, shape: Optional[Shape]) -> ConvGeometry:
    return conv_geometry(layer, shape)


def _conv(layer: Message, bottoms: List[Shape], ntop: int, g: ConvGeometry) -> List[Shape]:
    # base_conv_layer.cpp Reshape: shape[:axis] + (num_output,) + spatial outputs
    shape = bottoms[0]
    same_shapes(bottoms, layer.type)
    _, o, _ = _channels(layer, shape, g.axis)
    return [shape[:g.axis] + (o,) + tuple(_spatial_out(layer, shape, g))] * ntop


def _conv_params(layer: Message, bottoms: List[Shape], g: ConvGeometry) -> List[Shape]:
    # weights (out, in/group, *kernel), out/in swapped for Deconvolution; bias (num_output,)
    c, o, grp = _channels(layer, bottoms[0], g.axis)
    if layer.type == "Deconvolution":
        w = (c, o // grp) + g.kernel
    else:
        w = (o, c // grp) + g.kernel
    return [w, (o,)] if layer.convolution_param.bias_term else [w]


def _im2col_geometry(layer: Message, shape: Optional[Shape]) -> ConvGeometry:
    return conv_geometry(layer, shape, min_spatial=1)


def _im2col(layer: Message, bottoms: List[Shape], ntop: int, g: ConvGeometry) -> List[Shape]:
    # im2col_layer.cpp Reshape: channels * prod(kernel), spatial dims as convolution
    shape = bottoms[0]
    out = list(shape)
    for k in g.kernel:
        out[g.axis] *= k
    for i, o in enumerate(_spatial_out(layer, shape, g)):
        out[g.axis + 1 + i] = o
    return [tuple(out)]


# -- FCN surgery ------------------------------------------------------------------------

def _deconv_surgery(layer: Message, g: ConvGeometry) -> Optional[str]:
    """The kernels FCN's surgery puts on an upsampling Deconvolution that has no
    ``weight_filler`` (Caffe would start it at zero), one kernel size and one
    stride: kernel ``2f - f mod 2`` with stride ``f`` takes bilinear kernels
    (``interp``), kernel ``f`` with stride ``f`` all-ones kernels (``nearest``)."""
    if layer.convolution_param.HasField("weight_filler"):
        return None
    if len(set(g.kernel)) != 1 or len(set(g.stride)) != 1:
        return None
    k, f = g.kernel[0], g.stride[0]
    if f > 1 and k == 2 * f - f % 2:
        return "interp"
    if f > 1 and k == f:
        return "nearest"
    return None


# -- coordinate maps (y = x / s + (p - (e - 1) / 2) / s; deconvolution inverts it) ---------

@functools.lru_cache(maxsize=256)
def window_map(layer_type: str, g: ConvGeometry) -> Map:
    """The map of a Convolution, Im2col or Deconvolution from its geometry (kept per
    geometry: a deep net repeats a few)."""
    _, kernel, stride, pad, dilation = g
    n = len(kernel)
    if n > 1 and all(v.count(v[0]) == n for v in (kernel, stride, pad, dilation)):
        kernel, stride, pad, dilation = kernel[:1], stride[:1], pad[:1], dilation[:1]
    extent = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
    if layer_type == "Deconvolution":
        return g.axis, tuple(stride), tuple(exact(e - 1 - 2 * p, 2) for e, p in zip(extent, pad))
    return down_map(g.axis, tuple(stride), extent, tuple(pad))


def _conv_map(layer: Message, shapes, g: ConvGeometry) -> Map:
    if shapes is None:
        g = ConvGeometry(canon_axis(g.axis, layer, None, _F + "axis"), g.kernel, g.stride,
                         g.pad, g.dilation)
    return window_map(layer.type, g)


# -- cost (netdsl.cost: one multiply-accumulate per weight per position) -------------------

def _conv_cost(ls) -> Ops:
    # conv_layer.cpp forward_cpu_gemm, per group: (Cout/g) x (Cin/g * k) times
    # (Cin/g * k) x (output positions); weights are (Cout, Cin/g, k...)
    w = ls.param_shapes[0]
    return Ops(macs=sum(count(w) * count(t) // w[0] for t in ls.top_shapes if w[0]))


def _deconv_cost(ls) -> Ops:
    # deconv_layer.cpp runs backward_cpu_gemm: per group, (Cout/g * k) x (Cin/g)
    # times (Cin/g) x (input positions); weights are (Cin, Cout/g, k...)
    w = ls.param_shapes[0]
    return Ops(macs=sum(count(w) * count(b) // w[0] for b in ls.bottom_shapes if w[0]))


# -- numpy forward ---------------------------------------------------------------------

_COL_BYTES = 64 << 20  # im2col block budget



def _check_4d(x: np.ndarray, what: str) -> None:
    if x.ndim != 4:
        raise NetdslError("%s needs a 4-D (N, C, H, W) input here, got shape %s"
                          % (what, x.shape))



def _conv_blobs(layer: Message, blobs: List[np.ndarray], shape: Sequence[int], nout: int
                ) -> Tuple[np.ndarray, np.ndarray]:
    p = layer.convolution_param
    need = 2 if p.bias_term else 1
    if len(blobs) < need:
        raise NetdslError("%s needs %d blob(s) (weights%s), the weights have %d"
                          % (layer.type, need, ", bias" if p.bias_term else "", len(blobs)))
    w = blob_as(blobs[0], shape, layer, 0, "weight blob")
    b = blob_as(blobs[1], (nout,), layer, 1, "bias blob") if p.bias_term else None
    return w, b



def conv2d(x: np.ndarray, w: np.ndarray, b: "np.ndarray | None", stride: Tuple[int, int],
           pad: Tuple[int, int], dilation: Tuple[int, int], group: int,
           work: Optional[dict] = None) -> np.ndarray:
    """Caffe's Convolution: out size ``(H + 2p - (d(k-1)+1)) / s + 1`` (floor).

    As conv_layer.cpp forward_cpu_gemm: per group one GEMM of the weights
    (out/g, in/g * kh * kw) by the im2col columns (in/g * kh * kw, positions),
    over all the images at once; a 1x1 stride-1 unpadded convolution is the
    GEMM on the input itself, a depthwise one (one input and one output channel
    per group) a multiply-add per kernel tap.  ``work`` keeps the column buffer
    for the next call."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, pad, dilation
    ho = (h + 2 * ph - (dh * (kh - 1) + 1)) // sh + 1
    wo = (wd + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1
    if ho <= 0 or wo <= 0:
        raise NetdslError("convolution output would be %d x %d (input %d x %d, kernel %d x %d, "
                          "pad %d/%d, dilation %d/%d)" % (ho, wo, h, wd, kh, kw, ph, pw, dh, dw))
    if c != cg * group:
        raise NetdslError("input has %d channels but the weights expect %d x group %d"
                          % (c, cg, group))
    x = np.ascontiguousarray(x, dtype=np.float32)
    if kh == kw == 1 and sh == sw == 1 and ph == pw == 0 and group == 1:
        out = np.matmul(w.reshape(o, c), x.reshape(n, c, h * wd)).reshape(n, o, ho, wo)
    elif group == c == o and cg == 1 and group > 1:
        out = _depthwise(x, w, (ho, wo), stride, pad, dilation)
    elif sh == sw == 1 and n == 1 and _few_dropped_columns(wd + 2 * pw, wo):
        return _shifted_gemm(x, w, b, (ho, wo), pad, dilation, group, work)
    else:
        out = _im2col_gemm(x, w, (ho, wo), stride, pad, dilation, group, work)
    if b is not None:
        out += b.reshape(1, o, 1, 1)
    return out


def _few_dropped_columns(padded_width: int, out_width: int) -> bool:
    """Whether the shifted GEMM drops at most an eighth of the columns it computes
    (``padded_width - out_width`` per output row): past that (a 7x7 map; FCN's fc6, a
    7x7 convolution on a 19-wide map at 384 x 384) im2col's copy costs less than the waste."""
    return (padded_width - out_width) * 8 <= padded_width


def _padded(x: np.ndarray, ph: int, pw: int) -> np.ndarray:
    if not ph and not pw:
        return x
    n, c, h, w = x.shape
    xp = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=np.float32)
    xp[:, :, ph:ph + h, pw:pw + w] = x
    return xp


def _depthwise(x: np.ndarray, w: np.ndarray, size: Tuple[int, int], stride: Tuple[int, int],
               pad: Tuple[int, int], dilation: Tuple[int, int]) -> np.ndarray:
    """One channel per group: the sum over kernel taps of a strided view times the
    tap's weight per channel (in tap order, as im2col's rows)."""
    (ho, wo), (sh, sw), (dh, dw) = size, stride, dilation
    xp = _padded(x, *pad)
    n, c = x.shape[:2]
    kh, kw = w.shape[2:]
    out = np.zeros((n, c, ho, wo), dtype=np.float32)
    tmp = np.empty_like(out)
    for i in range(kh):
        for j in range(kw):
            view = xp[:, :, i * dh:i * dh + sh * (ho - 1) + 1:sh,
                      j * dw:j * dw + sw * (wo - 1) + 1:sw]
            np.multiply(view, w[:, 0, i, j].reshape(1, c, 1, 1), out=tmp)
            out += tmp
    return out


def _buffer(work: Optional[dict], key: str, size: int) -> np.ndarray:
    """A float32 buffer of at least ``size`` values, kept in ``work`` for reuse."""
    buf = None if work is None else work.get(key)
    if buf is None or buf.size < size:
        buf = np.empty(size, dtype=np.float32)
        if work is not None:
            work[key] = buf
    return buf


def _shifted_gemm(x: np.ndarray, w: np.ndarray, b: "np.ndarray | None", size: Tuple[int, int],
                  pad: Tuple[int, int], dilation: Tuple[int, int], group: int,
                  work: Optional[dict]) -> np.ndarray:
    """Stride 1, one image: im2col's row (c, i, j) over output row r is the padded
    input's flat run from ``(r + i*dh) * Wp + j*dw``, so each row block of the
    columns is one contiguous copy per (channel, tap); the GEMM then gives
    ``Wp`` columns per output row, of which the first ``wo`` are the output
    (the others mix two rows and are dropped) and get the bias as they are
    copied out.  The same products and sums, in the same k order, as im2col +
    GEMM."""
    (ho, wo), (ph, pw), (dh, dw) = size, pad, dilation
    _, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    hp, wp = h + 2 * ph, wd + 2 * pw
    xp = _buffer(work, "conv.pad", c * (hp + 1) * wp)[:c * (hp + 1) * wp].reshape(c, hp + 1, wp)
    if ph or pw:
        xp[:, :ph], xp[:, ph + h:], xp[:, :, :pw], xp[:, :, pw + wd:] = 0, 0, 0, 0
    else:
        xp[:, hp:] = 0
    xp[:, ph:ph + h, pw:pw + wd] = x[0]
    src = xp.reshape(c, (hp + 1) * wp)
    og, kdim = o // group, cg * kh * kw
    rows = max(1, min(ho, _COL_BYTES // max(1, 4 * kdim * wp)))
    cols = _buffer(work, "conv.cols", kdim * rows * wp)
    res = _buffer(work, "conv.res", og * rows * wp)
    out = np.empty((1, o, ho, wo), dtype=np.float32)
    for g in range(group):
        wg = w[g * og:(g + 1) * og].reshape(og, kdim)
        for r0 in range(0, ho, rows):
            r1 = min(ho, r0 + rows)
            span = (r1 - r0) * wp
            blk = cols[:kdim * span].reshape(cg, kh, kw, span)
            for i in range(kh):
                for j in range(kw):
                    at = (r0 + i * dh) * wp + j * dw
                    blk[:, i, j] = src[g * cg:(g + 1) * cg, at:at + span]
            r = res[:og * span].reshape(og, span)
            np.matmul(wg, blk.reshape(kdim, span), out=r)
            part = r.reshape(og, r1 - r0, wp)[:, :, :wo]
            if b is None:
                out[0, g * og:(g + 1) * og, r0:r1] = part
            else:
                np.add(part, b[g * og:(g + 1) * og].reshape(og, 1, 1),
                       out=out[0, g * og:(g + 1) * og, r0:r1])
    return out


def _im2col_gemm(x: np.ndarray, w: np.ndarray, size: Tuple[int, int], stride: Tuple[int, int],
                 pad: Tuple[int, int], dilation: Tuple[int, int], group: int,
                 work: Optional[dict]) -> np.ndarray:
    """im2col by a strided view of the padded input, copied once into a column
    buffer (kept in ``work``; blocks of output rows when it would pass
    ``_COL_BYTES``), then one GEMM per group and block."""
    (ho, wo), (sh, sw), (dh, dw) = size, stride, dilation
    n, c = x.shape[:2]
    o, cg, kh, kw = w.shape
    xp = _padded(x, *pad)
    s0, s1, s2, s3 = xp.strides
    view = np.lib.stride_tricks.as_strided(xp, (n, c, kh, kw, ho, wo),
                                           (s0, s1, s2 * dh, s3 * dw, s2 * sh, s3 * sw),
                                           writeable=False)
    og = o // group
    out = np.empty((n, o, ho, wo), dtype=np.float32)
    flat = out.reshape(n, o, ho * wo)
    kdim = cg * kh * kw
    rows = max(1, min(ho, _COL_BYTES // max(1, 4 * n * kdim * wo)))
    buf = _buffer(work, "conv.cols", n * kdim * rows * wo)
    for g in range(group):
        wg = w[g * og:(g + 1) * og].reshape(og, kdim)
        for r0 in range(0, ho, rows):
            r1 = min(ho, r0 + rows)
            cols = buf[:n * kdim * (r1 - r0) * wo].reshape(n, cg, kh, kw, r1 - r0, wo)
            np.copyto(cols, view[:, g * cg:(g + 1) * cg, :, :, r0:r1, :])
            np.matmul(wg, cols.reshape(n, kdim, (r1 - r0) * wo),
                      out=flat[:, g * og:(g + 1) * og, r0 * wo:r1 * wo])
    return out


def deconv2d(x: np.ndarray, w: np.ndarray, b: "np.ndarray | None", stride: Tuple[int, int],
             pad: Tuple[int, int], dilation: Tuple[int, int], group: int) -> np.ndarray:
    """Caffe's Deconvolution: out size ``s(H - 1) + d(k-1) + 1 - 2p``; weights
    (C_in, C_out / group, kh, kw)."""
    n, c, h, wd = x.shape
    ci, og, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, pad, dilation
    fh = sh * (h - 1) + dh * (kh - 1) + 1
    fw = sw * (wd - 1) + dw * (kw - 1) + 1
    ho, wo = fh - 2 * ph, fw - 2 * pw
    if ho <= 0 or wo <= 0:
        raise NetdslError("deconvolution output would be %d x %d (input %d x %d, kernel %d x %d, "
                          "pad %d/%d)" % (ho, wo, h, wd, kh, kw, ph, pw))
    if c != ci:
        raise NetdslError("input has %d channels but the weights expect %d" % (c, ci))
    cg = c // group
    full = np.zeros((n, og * group, fh, fw), dtype=np.float32)
    for g in range(group):
        wg = w[g * cg:(g + 1) * cg].reshape(cg, og * kh * kw).T
        xg = x[:, g * cg:(g + 1) * cg].reshape(n, cg, h * wd)
        cols = np.matmul(wg, xg).reshape(n, og, kh, kw, h, wd)
        _col2im(cols, full[:, g * og:(g + 1) * og], stride, dilation)
    out = full[:, :, ph:ph + ho, pw:pw + wo]
    if b is not None:
        out = out + b.reshape(1, -1, 1, 1)
    return np.ascontiguousarray(out)



def _col2im(cols: np.ndarray, dst: np.ndarray, stride: Tuple[int, int],
            dilation: Tuple[int, int]) -> None:
    """im2col.cpp col2im: add each kernel tap's columns (n, c, kh, kw, h, w) into
    ``dst`` at its strided place, taps in (row, column) order as Caffe adds them.
    When the strides divide the kernel (FCN's upsampling: kernel 2f, stride f) the
    taps of one (row, column) block of strides land on disjoint pixels, so they
    are added block by block ((kh/sh) x (kw/sw) adds instead of kh x kw); each
    pixel still receives its taps in Caffe's order."""
    n, c, kh, kw, h, w = cols.shape
    (sh, sw), (dh, dw) = stride, dilation
    fh, fw = dst.shape[2:]
    if dh == dw == 1 and kh % sh == 0 and kw % sw == 0:
        a, b = kh // sh, kw // sw
        d6 = dst.reshape(n, c, fh // sh, sh, fw // sw, sw)
        c8 = cols.reshape(n, c, a, sh, b, sw, h, w)
        for q in range(a):
            for p in range(b):
                d6[:, :, q:q + h, :, p:p + w, :] += c8[:, :, q, :, p].transpose(0, 1, 4, 2, 5, 3)
        return
    for i in range(kh):
        for j in range(kw):
            dst[:, :, i * dh:i * dh + sh * (h - 1) + 1:sh,
                j * dw:j * dw + sw * (w - 1) + 1:sw] += cols[:, :, i, j]


def _setup(layer: Message, x: np.ndarray, g: ConvGeometry) -> Tuple[int, int]:
    _check_4d(x, layer.type)
    if g.axis != 1:
        raise NetdslError("only axis 1 (channels) is supported, got %d" % g.axis, field=_F + "axis")
    _, nout, group = _channels(layer, x.shape, 1)
    return nout, group


def _convolution(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
                 ctx: Context, g: ConvGeometry) -> List[np.ndarray]:
    """Each bottom convolved with the same weights (Caffe allows several bottom/top pairs)."""
    outs = []
    for x in bottoms:
        nout, group = _setup(layer, x, g)
        w, b = _conv_blobs(layer, blobs, (nout, x.shape[1] // group) + g.kernel, nout)
        outs.append(conv2d(x, w, b, g.pair("stride"), g.pair("pad"), g.pair("dilation"), group,
                           ctx.work))
    return outs


def _deconvolution(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
                   ctx: Context, g: ConvGeometry) -> List[np.ndarray]:
    outs = []
    for x in bottoms:
        nout, group = _setup(layer, x, g)
        w, b = _conv_blobs(layer, blobs, (x.shape[1], nout // group) + g.kernel, nout)
        outs.append(deconv2d(x, w, b, g.pair("stride"), g.pair("pad"), g.pair("dilation"), group))
    return outs


def _im2col_forward(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
                    ctx: Context, g: ConvGeometry) -> List[np.ndarray]:
    """im2col_layer.cpp Forward_cpu: the axes before the channel axis are the
    num; for each, column row ``c * prod(kernel) + flat(kernel offset)`` (channel
    major, kernel offsets in raster order) holds, at each output position, the
    input at ``out*stride - pad + offset*dilation`` (0 in the padding).
    im2col_cpu (2-D) and im2col_nd_cpu (force_nd_im2col) give the same values."""
    x = np.asarray(bottoms[0], dtype=np.float32)
    ca = g.axis
    lead, c, spatial = x.shape[:ca], x.shape[ca], x.shape[ca + 1:]
    outs = [conv_out(sz, k, s, p, d) for sz, k, s, p, d in
            zip(spatial, g.kernel, g.stride, g.pad, g.dilation)]
    xm = x.reshape((-1, c) + spatial)
    xp = np.pad(xm, ((0, 0), (0, 0)) + tuple((p, p) for p in g.pad))
    rows = []
    for offs in np.ndindex(*g.kernel):
        idx = tuple(slice(o * d, o * d + s * (n - 1) + 1, s) for o, d, s, n in
                    zip(offs, g.dilation, g.stride, outs))
        rows.append(xp[(slice(None), slice(None)) + idx])
    cols = np.stack(rows, axis=2)          # (num, C, prod(kernel), *out)
    return [cols.reshape(lead + (c * len(rows),) + tuple(outs))]


# -- ONNX export -------------------------------------------------------------------------

def _conv_onnx(layer: Message, ctx: Any, g: ConvGeometry) -> List[str]:
    """Conv / ConvTranspose with Caffe's weights as they are (ONNX keeps Caffe's
    layouts: (out, in/group, *k) and, transposed, (in, out/group, *k)); symmetric
    pads give Caffe's sizes exactly (conv_layer.cpp / deconv_layer.cpp
    compute_output_shape), so no output_shape is needed."""
    if g.axis != 1:
        raise ctx.refuse("only axis 1 (channels) maps to ONNX, got axis %d" % g.axis)
    deconv = layer.type == "Deconvolution"
    c, o, group = _channels(layer, ctx.in_shapes[0], 1)
    wshape = ((c, o // group) if deconv else (o, c // group)) + tuple(g.kernel)
    ins = [ctx.weight(0, wshape)]
    if layer.convolution_param.bias_term:
        ins.append(ctx.weight(1, (o,)))
    outs = []
    for i, x in enumerate(ctx.inputs):
        outs.append(ctx.node("ConvTranspose" if deconv else "Conv", [x] + ins, out=ctx.top(i),
                             kernel_shape=list(g.kernel), strides=list(g.stride),
                             pads=list(g.pad) * 2, dilations=list(g.dilation), group=group))
    return outs


def _im2col_onnx(layer: Message, ctx: Any, g: ConvGeometry) -> List[str]:
    """im2col_layer.cpp as a Conv with ``group`` = C and a one-hot kernel: output
    channel ``c * prod(kernel) + flat(offset)`` reads input channel c at that kernel
    offset (weight 1, the rest 0), Caffe's column order; exact (x * 1 plus zeros)."""
    if g.axis != 1:
        raise ctx.refuse("only axis 1 (channels) maps to ONNX, got axis %d" % g.axis)
    c = ctx.in_shapes[0][1]
    taps = int(np.prod(g.kernel))
    eye = np.eye(taps, dtype=np.float32).reshape((taps, 1) + tuple(g.kernel))
    kernel = ctx.const(np.tile(eye, (c,) + (1,) * (eye.ndim - 1)), "one_hot")
    return [ctx.node("Conv", [ctx.inputs[0], kernel], out=ctx.top(0),
                     kernel_shape=list(g.kernel), strides=list(g.stride), pads=list(g.pad) * 2,
                     dilations=list(g.dilation), group=c)]


def _im2col_torch(layer: Message, ctx: Any, g: ConvGeometry) -> str:
    """im2col_layer.cpp on two spatial axes as ``F.unfold``, whose rows are Caffe's
    column order (channel major, kernel offsets in raster order), reshaped to
    (N, C * kh * kw, out_h, out_w)."""
    if g.axis != 1 or len(g.kernel) != 2:
        raise ctx.refuse("only axis 1 (channels) and two spatial axes map to F.unfold")
    out = tuple(int(d) for d in ctx.out_shapes[0])
    return "F.unfold(%s, %s, dilation=%s, padding=%s, stride=%s).reshape(%s)" % (
        ctx.x[0], ctx.lit(tuple(g.kernel)), ctx.lit(tuple(g.dilation)), ctx.lit(tuple(g.pad)),
        ctx.lit(tuple(g.stride)), ctx.lit((-1,) + out[1:]))


def _conv_torch(layer: Message, ctx: Any, g: ConvGeometry) -> Any:
    """nn.Conv{1,2,3}d / nn.ConvTranspose{1,2,3}d with Caffe's weights as they are
    (PyTorch keeps Caffe's layouts, (out, in/group, *k) and, transposed, (in,
    out/group, *k)); symmetric pads give Caffe's sizes (conv_layer.cpp,
    deconv_layer.cpp compute_output_shape).  Every bottom goes through the
    same weights, as in Caffe."""
    if g.axis != 1 or len(g.kernel) > 3:
        raise ctx.refuse("only axis 1 (channels) and 1 to 3 spatial axes map to PyTorch")
    deconv = layer.type == "Deconvolution"
    c, o, group = _channels(layer, ctx.in_shapes[0], 1)
    bias = bool(layer.convolution_param.bias_term)
    wshape = ((c, o // group) if deconv else (o, c // group)) + tuple(g.kernel)
    state = {"weight": ctx.blob(0, wshape)}
    if bias:
        state["bias"] = ctx.blob(1, (o,))
    kind = "nn.%s%dd" % ("ConvTranspose" if deconv else "Conv", len(g.kernel))
    one = lambda v: ctx.lit(v[0] if len(set(v)) == 1 else tuple(v))  # noqa: E731
    args = [str(c), str(o), one(g.kernel)]
    for name, v, default in (("stride", g.stride, 1), ("padding", g.pad, 0),
                             ("dilation", g.dilation, 1), ("groups", (group,), 1)):
        if any(d != default for d in v):
            args.append("%s=%s" % (name, one(v)))
    if not bias:
        args.append("bias=False")
    mod = ctx.module("%s(%s)" % (kind, ", ".join(args)), state)
    calls = ["%s(%s)" % (mod, x) for x in ctx.x]
    return calls




# -- declarations ----------------------------------------------------------------------

_CONV = dict(family="conv", bottoms=(1, None), tops=(1, None), equal=True, geometry=_geometry,
             shape=_conv, params=_conv_params, coord_map=_conv_map,
             fillers=weight_bias_fillers("convolution_param"),
             fixed_blobs=fixed_weight_bias("convolution_param"), needs_weights=True,
             empty_hint=_empty_hint, size_field=_F + "kernel_size")
declare("Convolution", forward=_convolution, cost=_conv_cost, onnx=_conv_onnx,
        torch=_conv_torch, **_CONV)
declare("Deconvolution", forward=_deconvolution, reads=("convolution_param",),
        surgery=_deconv_surgery, cost=_deconv_cost, onnx=_conv_onnx, torch=_conv_torch,
        **_CONV)
declare("Im2col", family="conv", bottoms=1, tops=1, reads=("convolution_param",),
        geometry=_im2col_geometry, shape=_im2col, coord_map=_conv_map, empty_hint=_empty_hint,
        forward=_im2col_forward, onnx=_im2col_onnx, torch=_im2col_torch,
        size_field=_F + "kernel_size")
