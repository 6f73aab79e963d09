"""Caffe's weight fillers (``include/caffe/filler.hpp``), in numpy.

:func:`fill` takes a ``FillerParameter`` (a message of any Caffe schema, or a
dict with its field names) and a blob shape and returns a float32 array.

The deterministic fillers (``constant``, ``bilinear``) give exactly Caffe's
values: the arithmetic is done in float32 as Caffe's ``Filler<float>`` does.
The random ones draw from the same distributions with the same parameters
(``uniform`` on [min, max), ``gaussian`` N(mean, std^2) with the optional
Bernoulli ``sparse`` mask, ``positive_unitball``, ``xavier``, ``msra``), from a
numpy ``Generator``: a seed makes them reproducible, but not equal to Caffe's
numbers, which come from Caffe's own boost/MKL random stream and cannot be
reproduced without Caffe.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Mapping, Sequence, Union

from ..errors import NetdslError, did_you_mean
from .runtime import np

__all__ = ["fill", "filler_params", "bilinear_kernel", "is_fixed", "FILLERS", "FILLER_DEFAULTS"]

#: FillerParameter's fields and their defaults in caffe.proto.
FILLER_DEFAULTS: Dict[str, Any] = {
    "type": "constant", "value": 0.0, "min": 0.0, "max": 1.0, "mean": 0.0, "std": 1.0,
    "sparse": -1, "variance_norm": "FAN_IN",
}

_NORMS = {0: "FAN_IN", 1: "FAN_OUT", 2: "AVERAGE"}

FILLERS = ("constant", "gaussian", "positive_unitball", "uniform", "xavier", "msra",
           "bilinear")

FillerSpec = Union[None, Mapping[str, Any], Any]


def filler_params(filler: FillerSpec) -> Dict[str, Any]:
    """The filler's fields as a dict, defaults filled in as Caffe's proto gives them.

    ``filler`` is a ``FillerParameter`` message, a dict of its fields or None
    (an unset ``FillerParameter``: constant 0).  ``variance_norm`` comes back as
    its enum name.
    """
    out = dict(FILLER_DEFAULTS)
    if filler is None:
        return out
    if isinstance(filler, Mapping):
        unknown = [k for k in filler if k not in FILLER_DEFAULTS]
        if unknown:
            raise NetdslError("unknown FillerParameter field `%s`" % unknown[0],
                              hint=did_you_mean(unknown[0], FILLER_DEFAULTS))
        out.update(filler)
    elif hasattr(filler, "DESCRIPTOR"):
        for fd in filler.DESCRIPTOR.fields:
            if fd.name in out:
                out[fd.name] = getattr(filler, fd.name)
    else:
        raise NetdslError("a filler is a FillerParameter message or a dict, not %s"
                          % type(filler).__name__)
    norm = out["variance_norm"]
    if isinstance(norm, (int, np.integer)) and not isinstance(norm, bool):
        if int(norm) not in _NORMS:
            raise NetdslError("variance_norm %d is not FAN_IN (0), FAN_OUT (1) or AVERAGE (2)"
                              % norm)
        norm = _NORMS[int(norm)]
    elif not isinstance(norm, str) or norm.upper() not in _NORMS.values():
        raise NetdslError("variance_norm %r is not FAN_IN, FAN_OUT or AVERAGE" % (norm,))
    out["variance_norm"] = norm.upper()
    out["type"] = str(out["type"])
    return out


#: fillers whose values depend on nothing but their parameters and the blob's shape
FIXED_FILLERS = ("constant", "bilinear")


def is_fixed(filler: FillerSpec) -> bool:
    """Whether ``filler`` gives fixed values (constant or bilinear), no random draw."""
    return filler_params(filler)["type"] in FIXED_FILLERS


def bilinear_kernel(size: int) -> np.ndarray:
    """Caffe's ``BilinearFiller`` kernel for a ``size`` x ``size`` filter (float32).

    With ``f = ceil(size / 2)`` and ``c = (size - 1) / (2 f)``, the weight at
    column ``x`` and row ``y`` is ``(1 - |x / f - c|) * (1 - |y / f - c|)``: the
    kernel of ``2f - f % 2``-wide upsampling by ``f`` (the same as FCN's
    ``upsample_filt``, whose centre is ``c * f``).
    """
    if size < 1:
        raise NetdslError("a bilinear kernel needs a size of at least 1, not %d" % size)
    f = math.ceil(size / 2.0)
    c = np.float32((size - 1) / (2.0 * f))  # computed in double, stored as Dtype
    x = np.arange(size, dtype=np.float32)
    one = np.float32(1)
    w = one - np.abs(x / np.float32(f) - c)  # float arithmetic, as Filler<float>
    return (w[None, :] * w[:, None]).astype(np.float32)


def _count(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def fill(filler: FillerSpec, shape: Sequence[int],
         rng: Union[None, int, np.random.Generator] = None) -> np.ndarray:
    """A float32 array of ``shape`` filled as Caffe's filler ``filler`` would.

    ``rng`` is a ``numpy.random.Generator`` (or a seed for one; None: seed 0).
    Caffe's rules, per ``type``:

    * ``constant``: every value ``value``.
    * ``uniform``: U[min, max).
    * ``gaussian``: N(mean, std^2); with ``sparse >= 0`` each value is kept with
      probability ``sparse / shape[0]`` (shape[0] = number of outputs), else 0.
    * ``positive_unitball``: U[0, 1), then each of the ``shape[0]`` rows divided
      by its sum.
    * ``xavier``: U[-s, s), ``s = sqrt(3 / n)``; ``msra``: N(0, 2 / n), where
      ``n`` is fan_in = count / shape[0], fan_out = count / shape[1] (count for
      1-D blobs) or their mean, per ``variance_norm``.
    * ``bilinear``: :func:`bilinear_kernel` in every (i, j) slice of a 4-D blob
      with square kernels.

    ``sparse`` on a filler other than gaussian is refused, as Caffe's
    ``CHECK_EQ(sparse, -1)`` does; so are empty blobs for the fillers that
    ``CHECK(count)``.
    """
    p = filler_params(filler)
    shape = tuple(int(d) for d in shape)
    if any(d < 0 for d in shape):
        raise NetdslError("cannot fill a blob of shape %s" % (shape,))
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(0 if rng is None else rng)
    kind = p["type"]
    count = _count(shape)
    sparse = int(p["sparse"])
    if kind not in FILLERS:
        raise NetdslError("unknown filler type '%s' (Caffe knows %s)" % (kind, ", ".join(FILLERS)),
                          hint=did_you_mean(kind, FILLERS))
    if kind != "gaussian" and sparse != -1:
        raise NetdslError("filler '%s' does not support sparse (Caffe: \"Sparsity not "
                          "supported by this Filler\")" % kind)
    if kind == "bilinear":
        if len(shape) != 4:
            raise NetdslError("the bilinear filler needs a 4-D blob, not shape %s" % (shape,))
        if shape[2] != shape[3]:
            raise NetdslError("the bilinear filler needs square kernels, not %d x %d"
                              % (shape[2], shape[3]))
        out = np.empty(shape, dtype=np.float32)
        out[...] = bilinear_kernel(shape[3]) if shape[3] else 0
        return out
    if count == 0:
        raise NetdslError("cannot fill an empty blob of shape %s (Caffe checks count > 0)"
                          % (shape,))
    f32 = np.float32
    if kind == "constant":
        return np.full(shape, f32(p["value"]), dtype=np.float32)
    if kind == "uniform":
        return _uniform(rng, f32(p["min"]), f32(p["max"]), shape)
    if kind == "gaussian":
        mean, std = f32(p["mean"]), f32(p["std"])
        if not std > 0:
            raise NetdslError("gaussian filler needs std > 0, not %g" % std)
        out = rng.normal(mean, std, size=shape).astype(np.float32)
        if sparse < -1:
            raise NetdslError("sparse must be -1 (off) or >= 0, not %d" % sparse)
        if sparse >= 0:
            if len(shape) < 1:
                raise NetdslError("sparse gaussian filling needs at least one axis")
            prob = f32(sparse) / f32(shape[0])
            if not 0 <= prob <= 1:
                raise NetdslError("sparse %d over %d outputs is a probability of %g, not in "
                                  "[0, 1]" % (sparse, shape[0], prob))
            out *= rng.random(size=shape) < prob
        return out
    if kind == "positive_unitball":
        out = _uniform(rng, f32(0), f32(1), shape)
        rows = out.reshape(shape[0], -1)
        rows /= rows.sum(axis=1, dtype=np.float32, keepdims=True)
        return out
    # xavier / msra
    fan_in = count // shape[0]
    fan_out = count // shape[1] if len(shape) > 1 else count
    norm = p["variance_norm"]
    if norm == "AVERAGE":
        n = f32(fan_in + fan_out) / f32(2)
    elif norm == "FAN_OUT":
        n = f32(fan_out)
    else:
        n = f32(fan_in)
    if kind == "xavier":
        scale = np.sqrt(f32(3) / n, dtype=np.float32)
        return _uniform(rng, -scale, scale, shape)
    std = np.sqrt(f32(2) / n, dtype=np.float32)
    return rng.normal(0.0, std, size=shape).astype(np.float32)


def _uniform(rng: np.random.Generator, low: np.float32, high: np.float32,
             shape: tuple) -> np.ndarray:
    if not low <= high:
        raise NetdslError("uniform filler needs min <= max, not %g > %g" % (low, high))
    out = rng.uniform(low, high, size=shape).astype(np.float32)
    # rounding to float32 could reach `high`; keep the interval half-open as Caffe's
    if high > low:
        np.minimum(out, np.nextafter(high, low, dtype=np.float32), out=out)
    return out
