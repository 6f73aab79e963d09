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
        self._zero_bn: List[str] = []   # BatchNorm layers so far with default statistics
        self._eps: List[float] = []

    def check(self, lp: Message, tops: List[np.ndarray], bottoms: List[np.ndarray],
              blobs: List[np.ndarray], phase_test: bool = True) -> None:
        if self.first is not None:
            return
        if lp.type == "BatchNorm" and phase_test:
            why = _default_stats(lp, blobs)
            if why is not None:
                self._zero_bn.append("%s (%s)" % (lp.name, why))
                self._eps.append(float(lp.batch_norm_param.eps))
        for name, a in zip(lp.top, tops):
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
        if self._zero_bn:
            eps = self._eps[0]
            return ("%d BatchNorm layer%s before it ha%s Caffe's default statistics (%s): "
                    "Caffe's batch_norm_layer.cpp then takes mean and variance as 0 (a factor "
                    "of 0 gives scale_factor 0, not a division by zero) and divides by "
                    "sqrt(eps), so each multiplies by 1/sqrt(eps) = %.4g; give the net trained "
                    "statistics, or mean 0, variance 1, factor 1"
                    % (len(self._zero_bn), "s" if len(self._zero_bn) > 1 else "",
                       "ve" if len(self._zero_bn) > 1 else "s",
                       ", ".join(self._zero_bn[:3]) + (", ..." if len(self._zero_bn) > 3
                                                       else ""),
                       1 / np.sqrt(np.float32(eps))))
        big = max((float(np.abs(b).max()) for b in bottoms if b.size and b.dtype.kind == "f"),
                  default=0.0)
        if not nan and big:
            return "its inputs reach %.3g, and the result passes float32's range" % big
        if nan and lp.type in ("Log", "Power", "Sqrt"):
            return "a negative input (or 0 to a negative power) has no real result"
        return ""
