"""Normalisation and affine layers: BatchNorm, Scale, Bias, LRN, MVN and Softmax.
"""
from __future__ import annotations

from typing import List, Sequence

from google.protobuf.message import Message

from ..maps import Map, channel_axis_map
from ..errors import NetdslError
from .blob import (Shape, canonical_axis, elementwise_cost, err, identity_map, legacy_dim,
                   need_rank, shape_str)
from .blob import f32_code
from .registry import declare
from .runtime import TEST, Context, blob_as, np


def _softmax(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    canonical_axis(layer.softmax_param.axis, bottoms[0], "softmax_param.axis")
    return [bottoms[0]]


def _batch_norm(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # batch_norm_layer.cpp: channels = shape(1); statistics are not learnable
    if len(bottoms[0]) < 2:
        raise err("BatchNorm needs at least 2 axes (it reads the channel count from axis 1); "
                  "got %s" % shape_str(bottoms[0]))
    for i, ps in enumerate(layer.param):
        if i < 3 and ps.lr_mult != 0:
            raise err("Cannot configure batch normalization statistics as layer parameters: "
                      "param %d has lr_mult %g; Caffe requires lr_mult 0 (or no param)"
                      % (i, ps.lr_mult), "param.lr_mult")
    return [bottoms[0]]


def _batch_norm_params(layer: Message, bottoms: List[Shape]) -> List[Shape]:
    # mean (C,), variance (C,), moving-average factor (1,)
    c = bottoms[0][1] if len(bottoms[0]) > 1 else 1
    return [(c,), (c,), (1,)]


def _lrn(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # lrn_layer.cpp: 4 axes, odd local_size
    need_rank(bottoms[0], 4, "LRN (num, channels, height, width)")
    if layer.lrn_param.local_size % 2 != 1:
        raise err("LRN only supports odd values for local_size (got %d)"
                  % layer.lrn_param.local_size, "lrn_param.local_size")
    return [bottoms[0]]


def _mvn(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # mvn_layer.cpp: top is (num, channels, height, width) via the legacy accessors
    s = bottoms[0]
    return [tuple(legacy_dim(s, i) for i in range(4))]


def _scale_like_blob(layer: Message, shape: Shape, p: Message, what: str) -> Shape:
    # scale_layer.cpp / bias_layer.cpp LayerSetUp with one bottom
    axis = canonical_axis(p.axis, shape, what + "_param.axis")
    na = p.num_axes
    if na < -1:
        raise err("num_axes must be non-negative, or -1 to extend to the end of bottom[0]",
                  what + "_param.num_axes")
    if na >= 0 and len(shape) < axis + na:
        raise err("%s blob's shape extends past bottom[0]'s shape when applied starting with "
                  "bottom[0] axis = %d (num_axes %d, bottom %s)"
                  % (what, axis, na, shape_str(shape)), what + "_param.num_axes")
    return shape[axis:] if na == -1 else shape[axis:axis + na]


def _check_operand(shape: Shape, operand: Shape, p: Message, what: str) -> None:
    # Reshape: bottom[0] must contain the operand's shape from axis
    axis = 0 if len(operand) == 0 else canonical_axis(p.axis, shape, what + "_param.axis")
    if len(shape) < axis + len(operand):
        raise err("%s blob's shape extends past bottom[0]'s shape when applied starting with "
                  "bottom[0] axis = %d: bottom[0] %s, %s %s"
                  % (what, axis, shape_str(shape), what, shape_str(operand)), what + "_param.axis")
    for i, d in enumerate(operand):
        if shape[axis + i] != d:
            raise err("dimension mismatch between bottom[0]->shape(%d) = %d and %s->shape(%d) "
                      "= %d (bottom[0] %s, %s %s)" % (axis + i, shape[axis + i], what, i, d,
                                                        shape_str(shape), what, shape_str(operand)),
                      what + "_param.axis")


def _scale(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    what = layer.type.lower()
    p = layer.scale_param if what == "scale" else layer.bias_param
    operand = bottoms[1] if len(bottoms) > 1 else _scale_like_blob(layer, bottoms[0], p, what)
    _check_operand(bottoms[0], operand, p, what)
    return [bottoms[0]]


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


def _softmax_map(layer: Message, shapes=None) -> Map:
    return channel_axis_map(layer.softmax_param.axis, layer, shapes, "softmax_param.axis")




def batch_norm(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
               ctx: Context) -> List[np.ndarray]:
    """``(x - mean) / sqrt(var + eps)`` per channel (axis 1).

    With ``use_global_stats`` (default: the TEST phase) mean and variance are
    blobs 0 and 1 times ``1 / blob2`` (0 when blob 2 is 0: the moving-average
    factor); otherwise they are the batch's, over N and the spatial axes.
    """
    p = layer.batch_norm_param
    x = bottoms[0]
    channels = 1 if x.ndim == 1 else x.shape[1]
    use_global = p.use_global_stats if p.HasField("use_global_stats") else ctx.phase == TEST
    axes = tuple(i for i in range(x.ndim) if i != 1)
    shape = [1] * x.ndim
    if x.ndim > 1:
        shape[1] = channels
    eps = np.float32(p.eps)
    if use_global:
        if len(blobs) < 3:
            raise NetdslError("BatchNorm needs 3 blobs (mean, variance, moving-average factor), "
                              "the weights have %d" % len(blobs))
        factor = blob_as(blobs[2], (1,), layer, 2, "blob")[0]
        sf = np.float32(0) if factor == 0 else np.float32(1) / factor
        mean = sf * blob_as(blobs[0], (channels,), layer, 0, "mean blob")
        var = sf * blob_as(blobs[1], (channels,), layer, 1, "variance blob")
        xc = np.subtract(x, mean.reshape(shape), out=x if ctx.inplace else None)
    else:
        mean = x.mean(axis=axes, dtype=np.float32)
        xc = x - mean.reshape(shape)
        var = (xc * xc).mean(axis=axes, dtype=np.float32)
    return [np.divide(xc, np.sqrt(var + eps).reshape(shape), out=xc)]


def mvn(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
        ctx: Context) -> List[np.ndarray]:
    """``x - mean`` over each (n, c) (or each n with ``across_channels``), divided
    by ``sqrt(var) + eps`` with ``normalize_variance`` (note: eps added to the
    standard deviation, not the variance)."""
    p = layer.mvn_param
    x = bottoms[0]
    rows = x.shape[0] if p.across_channels else x.shape[0] * (x.shape[1] if x.ndim > 1 else 1)
    flat = x.reshape(rows, -1)
    xc = flat - flat.mean(axis=1, dtype=np.float32, keepdims=True)
    if p.normalize_variance:
        var = (xc * xc).mean(axis=1, dtype=np.float32, keepdims=True)
        xc = xc / (np.sqrt(var) + np.float32(p.eps))
    return [xc.reshape(x.shape)]


def lrn(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
        ctx: Context) -> List[np.ndarray]:
    """ACROSS_CHANNELS: ``x (k + alpha/n sum x^2)^-beta`` over ``n`` neighbouring
    channels (zero-padded).  WITHIN_CHANNEL: ``x (1 + alpha avg x^2)^-beta``, the
    average over an n x n window by AVE pooling with pad (n-1)/2 (k unused)."""
    p = layer.lrn_param
    x = bottoms[0]
    if x.ndim != 4:
        raise NetdslError("LRN needs a 4-D input, got shape %s" % (x.shape,))
    size = int(p.local_size)
    if size % 2 != 1:
        raise NetdslError("local_size must be odd, got %d" % size, field="local_size")
    pre = (size - 1) // 2
    alpha, beta = np.float32(p.alpha), np.float32(p.beta)
    sq = x * x
    n, c, h, w = x.shape
    if p.norm_region == 0:
        padded = np.zeros((n, c + size - 1, h, w), dtype=np.float32)
        padded[:, pre:pre + c] = sq
        acc = np.zeros_like(x)
        for i in range(size):
            acc += padded[:, i:i + c]
        scale = np.float32(p.k) + (alpha / np.float32(size)) * acc
        return [x * np.power(scale, -beta)]
    if p.norm_region != 1:
        raise NetdslError("unknown norm_region %d" % p.norm_region, field="norm_region")
    padded = np.zeros((n, c, h + 2 * pre, w + 2 * pre), dtype=np.float32)
    padded[:, :, pre:pre + h, pre:pre + w] = sq
    acc = np.zeros_like(x)
    for i in range(size):
        for j in range(size):
            acc += padded[:, :, i:i + h, j:j + w]
    avg = acc / np.float32(size * size)
    return [x * np.power(np.float32(1) + alpha * avg, -beta)]


def softmax(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
            ctx: Context) -> List[np.ndarray]:
    """``exp(x - max) / sum exp(x - max)`` along ``axis``."""
    x = bottoms[0]
    axis = layer.softmax_param.axis
    axis = axis + x.ndim if axis < 0 else axis
    if not 0 <= axis < x.ndim:
        raise NetdslError("axis %d is out of range for a %d-D input"
                          % (layer.softmax_param.axis, x.ndim), field="axis")
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return [e / e.sum(axis=axis, keepdims=True, dtype=np.float32)]


def _axis(axis: int, ndim: int, field: str = "axis") -> int:
    a = axis + ndim if axis < 0 else axis
    if not 0 <= a <= ndim:
        raise NetdslError("axis %d is out of range for a %d-D blob" % (axis, ndim), field=field)
    return a


def _broadcast_shape(x: np.ndarray, axis: int, param_shape: Sequence[int]) -> List[int]:
    return [1] * axis + list(param_shape) + [1] * (x.ndim - axis - len(param_shape))


def _operand(layer: Message, x: np.ndarray, bottoms: List[np.ndarray],
             blobs: List[np.ndarray], axis_field: int, num_axes: int, what: str
             ) -> tuple:
    """(operand reshaped to broadcast against x, number of blobs used)."""
    if len(bottoms) > 1:
        other = bottoms[1]
        axis = _axis(axis_field, x.ndim)
        pshape = list(other.shape)
        used = 0
    else:
        axis = _axis(axis_field, x.ndim)
        if num_axes < -1:
            raise NetdslError("num_axes must be >= -1", field="num_axes")
        end = x.ndim if num_axes == -1 else axis + num_axes
        if end > x.ndim:
            raise NetdslError("axis %d + num_axes %d exceed the input's %d axes"
                              % (axis, num_axes, x.ndim), field="num_axes")
        pshape = list(x.shape[axis:end])
        if not blobs:
            raise NetdslError("%s with one bottom needs its blob in the weights" % layer.type)
        other = blob_as(blobs[0], pshape, layer, 0, what)
        used = 1
    if list(x.shape[axis:axis + len(pshape)]) != pshape:
        raise NetdslError("%s shape %s does not match the input shape %s from axis %d"
                          % (what, tuple(pshape), x.shape, axis))
    return other.reshape(_broadcast_shape(x, axis, pshape)), used


def scale(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
          ctx: Context) -> List[np.ndarray]:
    """``x * s (+ b)``, ``s`` (bottom 1 or blob 0) broadcast over the axes from
    ``axis``; the bias is the next blob when ``bias_term``."""
    p = layer.scale_param
    x = bottoms[0]
    s, used = _operand(layer, x, bottoms, blobs, p.axis, p.num_axes, "scale")
    if p.bias_term and len(blobs) <= used:
        raise NetdslError("bias_term is set but the weights have no bias blob")
    y = np.multiply(x, s, out=x if ctx.inplace and x.shape == np.broadcast_shapes(
        x.shape, s.shape) else None)
    if p.bias_term:
        y += blob_as(blobs[used], s.shape, layer, used, "bias blob")
    return [y]


def bias(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
         ctx: Context) -> List[np.ndarray]:
    """``x + b``, ``b`` (bottom 1 or blob 0) broadcast over the axes from ``axis``."""
    p = layer.bias_param
    x = bottoms[0]
    b, _ = _operand(layer, x, bottoms, blobs, p.axis, p.num_axes, "bias")
    return [x + b]


# -- fillers (batch_norm_layer.cpp, scale_layer.cpp, bias_layer.cpp) -----------------

_ZERO = {"type": "constant", "value": 0.0}
_ONE = {"type": "constant", "value": 1.0}


def _batch_norm_fillers(layer: Message, shapes: List[Shape]) -> list:
    # mean, variance and the moving-average factor all start at 0
    return [_ZERO] * len(shapes)


def _batch_norm_unit_fillers(layer: Message, shapes: List[Shape]) -> list:
    """Statistics under which a fresh net's TEST forward is usable: mean 0, variance 1
    and moving-average factor 1, so batch_norm_layer.cpp's TEST forward computes
    (x - 0/1) / sqrt(1/1 + eps), i.e. x / sqrt(1 + eps), instead of Caffe's default
    zeros, whose factor 0 makes it x / sqrt(eps)."""
    values = (0.0, 1.0, 1.0)
    return [{"type": "constant", "value": values[i] if i < 3 else 0.0}
            for i in range(len(shapes))]


def _scale_fillers(layer: Message, shapes: List[Shape]) -> list:
    # the scale blob (absent with two bottoms) takes `filler`, constant 1 when unset;
    # the bias (bias_term) takes `bias_filler`
    p = layer.scale_param
    scale = p.filler if p.HasField("filler") else _ONE
    fillers = [p.bias_filler] if len(layer.bottom) > 1 else [scale, p.bias_filler]
    return fillers[:len(shapes)]


def _bias_fillers(layer: Message, shapes: List[Shape]) -> list:
    return [layer.bias_param.filler] * len(shapes)   # unset: constant 0


# -- ONNX export -------------------------------------------------------------------------

def _batch_norm_onnx(layer: Message, ctx) -> List[str]:
    """batch_norm_layer.cpp with global statistics (the TEST default): mean and
    variance are blobs 0 and 1 times ``1 / blob 2`` (0 when it is 0), then ONNX
    BatchNormalization with scale 1 and bias 0.  ``use_global_stats: false``: the
    batch's own mean and variance over every axis but 1."""
    p = layer.batch_norm_param
    shape = ctx.in_shapes[0]
    c = 1 if len(shape) == 1 else shape[1]
    eps = float(np.float32(p.eps))
    x = ctx.inputs[0]
    if p.HasField("use_global_stats") and not p.use_global_stats:
        axes = [i for i in range(len(shape)) if i != 1]
        xc = ctx.node("Sub", [x, ctx.reduce("ReduceMean", x, axes)])
        var = ctx.reduce("ReduceMean", ctx.node("Mul", [xc, xc]), axes)
        std = ctx.node("Sqrt", [ctx.node("Add", [var, ctx.scalar(eps, "eps")])])
        return [ctx.node("Div", [xc, std], out=ctx.top(0))]
    factor = ctx.blob(2, (1,))[0]
    sf = np.float32(0) if factor == 0 else np.float32(1) / factor
    mean = ctx.weight(0, (c,), lambda a: sf * a)
    var = ctx.weight(1, (c,), lambda a: sf * a)
    one = ctx.const(np.ones(c, np.float32), "scale")
    zero = ctx.const(np.zeros(c, np.float32), "bias")
    return [ctx.node("BatchNormalization", [x, one, zero, mean, var], out=ctx.top(0),
                     epsilon=eps)]


def _operand_onnx(ctx, layer: Message, axis_field: int, num_axes: int, what: str):
    """The scale/bias operand (bottom 1, or blob 0) shaped to broadcast against
    bottom 0 from ``axis`` (scale_layer.cpp, bias_layer.cpp); returns (value,
    operand shape, blobs used)."""
    shape = ctx.in_shapes[0]
    axis = canonical_axis(axis_field, shape, what + "_param.axis") if shape else 0
    if len(ctx.inputs) > 1:
        pshape = tuple(ctx.in_shapes[1])
    else:
        end = len(shape) if num_axes == -1 else axis + num_axes
        pshape = tuple(shape[axis:end])
    trailing = (1,) * (len(shape) - axis - len(pshape))
    if len(ctx.inputs) > 1:
        value = ctx.inputs[1] if not trailing else ctx.reshape(
            ctx.inputs[1], pshape + trailing, in_shape=ctx.in_shapes[1])
        return value, pshape + trailing, 0
    return ctx.weight(0, pshape + trailing), pshape + trailing, 1


def _scale_onnx(layer: Message, ctx) -> List[str]:
    """``x * s (+ b)``, broadcast over the axes from ``axis`` (``num_axes`` of them)."""
    p = layer.scale_param
    s, bshape, used = _operand_onnx(ctx, layer, p.axis, p.num_axes, "scale")
    y = ctx.node("Mul", [ctx.inputs[0], s], out=None if p.bias_term else ctx.top(0))
    if p.bias_term:
        y = ctx.node("Add", [y, ctx.weight(used, bshape)], out=ctx.top(0))
    return [y]


def _bias_onnx(layer: Message, ctx) -> List[str]:
    p = layer.bias_param
    b, _, _ = _operand_onnx(ctx, layer, p.axis, p.num_axes, "bias")
    return [ctx.node("Add", [ctx.inputs[0], b], out=ctx.top(0))]


def _lrn_onnx(layer: Message, ctx) -> List[str]:
    """lrn_layer.cpp.  ACROSS_CHANNELS is ONNX LRN: both divide alpha by the size
    and centre an odd window.  WITHIN_CHANNEL: ``x (1 + alpha avg(x^2))^-beta``,
    avg over a size x size window with pad (size-1)/2, padding counted (Caffe's
    AVE pooling with stride 1 never clips it)."""
    p = layer.lrn_param
    size = int(p.local_size)
    alpha, beta = float(np.float32(p.alpha)), float(np.float32(p.beta))
    x = ctx.inputs[0]
    if p.norm_region == 0:
        return [ctx.node("LRN", [x], out=ctx.top(0), alpha=alpha, beta=beta,
                         bias=float(np.float32(p.k)), size=size)]
    pre = (size - 1) // 2
    avg = ctx.node("AveragePool", [ctx.node("Mul", [x, x])], kernel_shape=[size, size],
                   strides=[1, 1], pads=[pre] * 4, count_include_pad=1)
    scale = ctx.node("Add", [ctx.node("Mul", [avg, ctx.scalar(alpha, "alpha")]),
                             ctx.scalar(1.0, "one")])
    return [ctx.node("Mul", [x, ctx.node("Pow", [scale, ctx.scalar(-beta, "beta")])],
                     out=ctx.top(0))]


def _mvn_onnx(layer: Message, ctx) -> List[str]:
    """mvn_layer.cpp: subtract the mean over each (n, c) (each n with
    ``across_channels``); with ``normalize_variance`` divide by ``sqrt(var) + eps``."""
    p = layer.mvn_param
    nd = len(ctx.in_shapes[0])
    axes = list(range(1 if p.across_channels else 2, nd))
    if not axes:
        raise ctx.refuse("MVN over a %d-D input has nothing to average" % nd)
    x = ctx.inputs[0]
    xc = ctx.node("Sub", [x, ctx.reduce("ReduceMean", x, axes)],
                  out=None if p.normalize_variance else ctx.top(0))
    if not p.normalize_variance:
        return [xc]
    var = ctx.reduce("ReduceMean", ctx.node("Mul", [xc, xc]), axes)
    den = ctx.node("Add", [ctx.node("Sqrt", [var]), ctx.scalar(float(np.float32(p.eps)), "eps")])
    return [ctx.node("Div", [xc, den], out=ctx.top(0))]


def _softmax_onnx(layer: Message, ctx) -> List[str]:
    """Softmax along ``axis``: ONNX's own from opset 13 (earlier ones flatten to 2-D)."""
    axis = canonical_axis(layer.softmax_param.axis, ctx.in_shapes[0], "softmax_param.axis")
    return [ctx.node("Softmax", ctx.inputs, out=ctx.top(0), axis=axis)]


def _scale_follows(layer: Message, ctx):
    """The next step when it is a per-channel Scale with a bias, this BatchNorm's
    top its one bottom and that Scale its one reader (BatchNorm + Scale is one
    nn.BatchNorm2d); else None."""
    nxt = ctx.next_step()
    if nxt is None or nxt.layer.type != "Scale" or len(nxt.layer.bottom) != 1:
        return None
    shape = ctx.in_shapes[0]
    sp = nxt.layer.scale_param
    per_channel = sp.num_axes == 1 or (sp.num_axes == -1 and len(shape) == 2)
    if not sp.bias_term or len(shape) < 2 or not per_channel or \
            canonical_axis(sp.axis, shape, "scale_param.axis") != 1:
        return None
    return nxt if ctx.only_reader(nxt) else None


def _batch_norm_torch(layer: Message, ctx) -> str:
    """batch_norm_layer.cpp with global statistics (the TEST default): mean and
    variance are blobs 0 and 1 times ``1 / blob 2`` (0 when it is 0), which
    nn.BatchNorm{1,2,3}d's running statistics hold; momentum is Caffe's
    ``1 - moving_average_fraction``.  Followed by a per-channel Scale with a bias
    (ResNet's BatchNorm + Scale), the Scale's blobs are its weight and bias;
    else ``affine=False``.  ``use_global_stats: false``: the batch's own statistics."""
    p = layer.batch_norm_param
    shape = ctx.in_shapes[0]
    if not 2 <= len(shape) <= 5:
        raise ctx.refuse("BatchNorm of a %d-D input has no PyTorch module" % len(shape))
    c = shape[1]
    kind = "nn.BatchNorm%dd" % (1 if len(shape) <= 3 else len(shape) - 2)
    args = [str(c)]
    if np.float32(p.eps) != np.float32(1e-5):
        args.append("eps=%s" % f32_code(p.eps))
    momentum = float("%.7g" % (1 - float(np.float32(p.moving_average_fraction))))
    args.append("momentum=%r" % momentum)
    if p.HasField("use_global_stats") and not p.use_global_stats:
        mod = ctx.module("%s(%s, affine=False, track_running_stats=False)"
                         % (kind, ", ".join(args)))
        return "%s(%s)" % (mod, ctx.x[0])
    factor = ctx.blob(2, (1,))[0]
    sf = np.float32(0) if factor == 0 else np.float32(1) / factor
    state = {"running_mean": sf * ctx.blob(0, (c,)), "running_var": sf * ctx.blob(1, (c,)),
             "num_batches_tracked": np.zeros((), np.int64)}
    scale = _scale_follows(layer, ctx)
    if scale is None:
        mod = ctx.module("%s(%s, affine=False)" % (kind, ", ".join(args)), state)
        return "%s(%s)" % (mod, ctx.x[0])
    mod = ctx.module("%s(%s)" % (kind, ", ".join(args)), state)
    blobs = ctx.fold(scale, mod)
    ctx.code.state[mod[5:] + ".weight"] = blobs[0].reshape(c)
    ctx.code.state[mod[5:] + ".bias"] = blobs[1].reshape(c)
    ctx.note = ", with %s's scale and bias" % scale.layer.name
    return "%s(%s)" % (mod, ctx.x[0])


def _scale_bias_torch(layer: Message, ctx) -> str:
    """scale_layer.cpp / bias_layer.cpp: ``x * s (+ b)`` / ``x + b``, the operand
    (bottom 1, or blob 0) broadcast over x's axes from ``axis``."""
    folded = ctx.folded_into()
    if folded is not None:
        ctx.note = ": done by %s above" % folded
        return ctx.x[0]
    scale = layer.type == "Scale"
    p = layer.scale_param if scale else layer.bias_param
    shape = ctx.in_shapes[0]
    axis = canonical_axis(p.axis, shape, ("scale" if scale else "bias") + "_param.axis")
    end = len(shape) if p.num_axes == -1 else axis + p.num_axes
    pshape = tuple(ctx.in_shapes[1]) if len(ctx.x) > 1 else tuple(shape[axis:end])
    arrays = []
    if len(ctx.x) == 1:
        arrays.append(ctx.blob(0, pshape))
    if scale and p.bias_term:
        arrays.append(ctx.blob(len(arrays), pshape))
    mod = ctx.blobs_module(arrays) if arrays else None
    fn = ctx.helper("caffe_broadcast")
    x = ctx.x[0]
    operand = ctx.x[1] if len(ctx.x) > 1 else "%s.blob0" % mod
    y = "%s %s %s(%s, %s, %d)" % (x, "*" if scale else "+", fn, operand, x, axis)
    if scale and p.bias_term:
        y += " + %s(%s.blob%d, %s, %d)" % (fn, mod, len(arrays) - 1, x, axis)
    return y


def _lrn_torch(layer: Message, ctx) -> str:
    """lrn_layer.cpp.  ACROSS_CHANNELS is F.local_response_norm: both divide alpha
    by the size and centre the (odd, as Caffe checks) window over the channels.
    WITHIN_CHANNEL: the helper (Caffe's AVE pooling of x^2, k unused)."""
    p = layer.lrn_param
    if p.norm_region == 0:
        return "F.local_response_norm(%s, %d, %s, %s, %s)" % (
            ctx.x[0], p.local_size, f32_code(p.alpha), f32_code(p.beta), f32_code(p.k))
    return "%s(%s, %d, %s, %s)" % (ctx.helper("caffe_lrn_within"), ctx.x[0], p.local_size,
                                   f32_code(p.alpha), f32_code(p.beta))


def _mvn_torch(layer: Message, ctx) -> str:
    p = layer.mvn_param
    return "%s(%s, %r, %r, %s)" % (ctx.helper("caffe_mvn"), ctx.x[0], bool(p.normalize_variance),
                                   bool(p.across_channels), f32_code(p.eps))


def _softmax_torch(layer: Message, ctx) -> str:
    axis = canonical_axis(layer.softmax_param.axis, ctx.in_shapes[0], "softmax_param.axis")
    return "torch.softmax(%s, %d)" % (ctx.x[0], axis)




# -- declarations ----------------------------------------------------------------------

declare("BatchNorm", family="norm", bottoms=1, tops=1, shape=_batch_norm,
        params=_batch_norm_params, fillers=_batch_norm_fillers, coord_map=identity_map,
        forward=batch_norm, needs_weights=True, cost=elementwise_cost, onnx=_batch_norm_onnx,
        torch=_batch_norm_torch,
        extra={"statistics": True, "unit_statistics": _batch_norm_unit_fillers})
declare("Scale", family="norm", bottoms=(1, 2), tops=1, shape=_scale, params=_scale_params,
        fillers=_scale_fillers, coord_map=identity_map, forward=scale,
        needs_weights=lambda layer: len(layer.bottom) == 1 or layer.scale_param.bias_term,
        cost=elementwise_cost, onnx=_scale_onnx, torch=_scale_bias_torch)
declare("Bias", family="norm", bottoms=(1, 2), tops=1, shape=_scale, params=_scale_params,
        fillers=_bias_fillers, coord_map=identity_map, forward=bias,
        needs_weights=lambda layer: len(layer.bottom) == 1, cost=elementwise_cost,
        onnx=_bias_onnx, torch=_scale_bias_torch)
declare("LRN", family="norm", bottoms=1, tops=1, shape=_lrn, coord_map=identity_map,
        forward=lrn, onnx=_lrn_onnx, torch=_lrn_torch)
declare("MVN", family="norm", bottoms=1, tops=1, shape=_mvn, coord_map=identity_map,
        forward=mvn, onnx=_mvn_onnx, torch=_mvn_torch)
declare("Softmax", family="norm", bottoms=1, tops=1, shape=_softmax, coord_map=_softmax_map,
        forward=softmax, onnx=_softmax_onnx, torch=_softmax_torch)
