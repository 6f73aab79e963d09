"""The first layer of a forward whose top holds inf or NaN, and why when the
cause is recognisable.

Each top is checked once, right after its layer ran, by one float32 sum (a
sum that is not finite is confirmed element by element, as finite values can
overflow a sum); once a non-finite top is found nothing more is checked.

The cause named most often is BatchNorm statistics left at Caffe's defaults.
BVLC batch_norm_layer.cpp (Forward_cpu, ``use_global_stats``) computes
``scale_factor = blobs_[2][0] == 0 ? 0 : 1 / blobs_[2][0]`` and takes
``mean = scale_factor * blobs_[0]``, ``variance = scale_factor * blobs_[1]``:
a moving-average factor of 0 does not divide by zero, it makes mean and
variance 0, and the top is ``x / sqrt(0 + eps)``.  So does a variance blob of
zeros.  Each such layer multiplies its input by ``1 / sqrt(eps)`` (316.2 at the
default eps 1e-5), and a deep net's values pass float32's range (3.4e38) after
some 15 of them.
"""
from __future__ import annotations

from typing import Any, List, NamedTuple, Optional

import numpy as np
from google.protobuf.message import Message

__all__ = ["FiniteCheck", "NonFinite", "NonFiniteWarning"]


class NonFiniteWarning(UserWarning):
    """A forward produced inf or NaN (``result.nonfinite`` tells where)."""


class NonFinite(NamedTuple):
    """Where inf or NaN first appeared: the layer, its top, what it holds, why."""
    layer: str
    layer_type: str
    top: str
    what: str
    reason: str

    @property
    def message(self) -> str:
        """One line naming the layer (for a warning)."""
        return "layer '%s': %s" % (self.layer, self.detail)

    @property
    def detail(self) -> str:
        """The same without the layer's name (for an error located at the layer)."""
        text = "the forward's first %s: top '%s' of this %s layer holds %s" % (
            self.what, self.top, self.layer_type, self.what)
        return text + ("; " + self.reason if self.reason else "")


def is_finite(a: np.ndarray) -> bool:
    """Whether every value of the float array ``a`` is finite, by one sum."""
    if a.dtype.kind != "f" or a.size == 0:
        return True
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.add.reduce(a, axis=None)):
            return True
    return bool(np.isfinite(a).all())


def _default_stats(lp: Message, blobs: List[np.ndarray]) -> Optional[str]:
    """How a BatchNorm layer's statistics are Caffe's defaults, or None."""
    if len(blobs) < 3 or blobs[2].size < 1:
        return None
    p = lp.batch_norm_param
    if p.HasField("use_global_stats") and not p.use_global_stats:
        return None
    if float(blobs[2].reshape(-1)[0]) == 0:
        return "moving-average factor 0"
    if not np.any(blobs[1]):
        return "variance all 0"
    return None


class FiniteCheck:
    """Checks each layer's tops in turn; ``first`` is the first non-finite one."""

    def __init__(self) -> None:
        self.first: Optional[NonFinite] = None
        self._bn: List[Any] = []   # (layer, blobs) of the BatchNorm layers so far

    def check(self, lp: Message, tops: List[np.ndarray], bottoms: List[np.ndarray],
              blobs: List[np.ndarray], phase_test: bool = True, inplace: bool = False) -> None:
        """Check the tops of ``lp`` (its bottoms were checked as earlier tops).  Tops
        that cannot be newly non-finite are skipped: a view or the array of a bottom
        not written in place (Reshape, Flatten, Split, Dropout at test time) holds
        the bottom's values, and a ReLU without slope gives max(x, 0)."""
        if self.first is not None:
            return
        if lp.type == "BatchNorm" and phase_test:
            self._bn.append((lp, blobs))   # looked at only when a top is not finite
        if lp.type == "ReLU" and not lp.relu_param.negative_slope:
            return
        for name, a in zip(lp.top, tops):
            if not inplace and any(np.may_share_memory(a, b) for b in bottoms):
                continue
            if not is_finite(a):
                nan = bool(np.isnan(a).any())
                what = "NaN" if nan else "inf"
                self.first = NonFinite(lp.name, lp.type, name, what,
                                       self._reason(lp, bottoms, blobs, nan))
                return

    def _reason(self, lp: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
                nan: bool) -> str:
        bad = [i for i, b in enumerate(blobs) if not is_finite(np.asarray(b))]
        if bad:
            return "its weights hold inf or NaN (blob %s)" % ", ".join(map(str, bad))
        zero_bn, eps = [], 1e-5
        for bn, bn_blobs in self._bn:
            why = _default_stats(bn, bn_blobs)
            if why is not None:
                zero_bn.append("%s (%s)" % (bn.name, why))
                eps = float(bn.batch_norm_param.eps) if len(zero_bn) == 1 else eps
        if zero_bn:
            return ("%d BatchNorm layer%s up to here ha%s Caffe's default statistics (%s): "
                    "Caffe's batch_norm_layer.cpp then takes mean and variance as 0 (a factor "
                    "of 0 gives scale_factor 0, not a division by zero) and divides by "
                    "sqrt(eps), so each multiplies by 1/sqrt(eps) = %.4g; give the net trained "
                    "statistics, or mean 0, variance 1, factor 1"
                    % (len(zero_bn), "s" if len(zero_bn) > 1 else "",
                       "ve" if len(zero_bn) > 1 else "s",
                       ", ".join(zero_bn[:3]) + (", ..." if len(zero_bn) > 3
                                                       else ""),
                       1 / np.sqrt(np.float32(eps))))
        big = max((float(np.abs(b).max()) for b in bottoms if b.size and b.dtype.kind == "f"),
                  default=0.0)
        if not nan and big:
            return "its inputs reach %.3g, and the result passes float32's range" % big
        if nan and lp.type in ("Log", "Power", "Sqrt"):
            return "a negative input (or 0 to a negative power) has no real result"
        return ""
