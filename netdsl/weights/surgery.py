"""Net surgery on weight dicts, after FCN's ``surgery.py``.

Weights here are ``{layer_name: [array, ...]}`` dicts (what
:func:`~netdsl.weights.init.init_weights` returns and
:func:`~netdsl.weights.caffemodel.write_caffemodel` writes); a source may also
be an open :class:`~netdsl.weights.caffemodel.CaffeModel` or a caffemodel path.

* :func:`interp` / :func:`nearest` put fixed upsampling kernels on
  Deconvolution weights, grouped ``(C, 1, k, k)`` or dense ``(C, C, k, k)``.
* :func:`transplant` copies blobs by layer name, reshaping when only the shape
  differs (fully connected -> convolution).
* :func:`expand_score` copies a score layer with fewer classes into the first
  classes of a larger one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Mapping, MutableMapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import NetdslError
from .caffemodel import CaffeModel, open_caffemodel
from .fillers import bilinear_kernel

__all__ = ["interp", "nearest", "transplant", "expand_score", "TransplantReport",
           "upsample_filt"]

Weights = MutableMapping[str, List[np.ndarray]]
Source = Union[CaffeModel, Mapping[str, Sequence[np.ndarray]], str]


def upsample_filt(size: int) -> np.ndarray:
    """The 2-D bilinear upsampling kernel of side ``size`` (FCN's ``upsample_filt``).

    ``factor = (size + 1) // 2``, centre ``factor - 1`` for odd sizes and
    ``factor - 0.5`` for even ones, weight ``(1 - |x - centre| / factor)`` times
    the same in y: the kernel of Caffe's ``bilinear`` filler.
    """
    return bilinear_kernel(size)


def _weight(target: Any, what: str) -> np.ndarray:
    if isinstance(target, np.ndarray):
        arr = target
    elif isinstance(target, (list, tuple)) and target and isinstance(target[0], np.ndarray):
        arr = target[0]
    else:
        raise NetdslError("%s needs a weight array or a layer's list of arrays, not %s"
                          % (what, type(target).__name__))
    if arr.ndim != 4:
        raise NetdslError("%s needs a 4-D Deconvolution weight (C_in, C_out/group, kh, kw), "
                          "not shape %s" % (what, arr.shape))
    if not arr.flags.writeable:
        raise NetdslError("%s: the weight array is read-only (a view of a caffemodel?); "
                          "pass a copy" % what)
    return arr


def _per_channel(arr: np.ndarray, kernel: np.ndarray, what: str) -> np.ndarray:
    m, k = arr.shape[:2]
    if k == 1:  # grouped: (C, 1, kh, kw), one kernel per channel
        arr[:, 0] = kernel
    elif m == k:  # dense: kernel on the diagonal, zeros elsewhere
        arr[...] = 0
        idx = np.arange(m)
        arr[idx, idx] = kernel
    else:
        raise NetdslError("%s needs a grouped (C, 1, k, k) or dense (C, C, k, k) weight; "
                          "shape %s has %d inputs and %d outputs per group, and a per-channel "
                          "kernel cannot map them" % (what, arr.shape, m, k))
    return arr


def interp(target: Any) -> np.ndarray:
    """Bilinear upsampling kernels on a Deconvolution weight, in place; returns it.

    ``target`` is the weight array or a layer's blob list (its first blob).
    Grouped ``(C, 1, k, k)``: every channel gets the kernel.  Dense
    ``(C, C, k, k)``: channel ``i`` -> ``i`` gets it, all other pairs 0.  The
    kernel is :func:`upsample_filt` (= Caffe's ``bilinear`` filler), so kernels
    must be square.
    """
    arr = _weight(target, "interp")
    if arr.shape[2] != arr.shape[3]:
        raise NetdslError("interp needs square kernels, not %d x %d" % arr.shape[2:])
    return _per_channel(arr, upsample_filt(arr.shape[3]), "interp")


def nearest(target: Any) -> np.ndarray:
    """Nearest-neighbour upsampling kernels (all ones) on a Deconvolution weight.

    Same layouts as :func:`interp`; with ``kernel_size == stride`` each input
    pixel is copied to a ``stride`` block.  Kernels need not be square here.
    """
    arr = _weight(target, "nearest")
    return _per_channel(arr, np.ones(arr.shape[2:], dtype=arr.dtype), "nearest")


@dataclass
class TransplantReport:
    """What :func:`transplant` did, blob by blob.

    ``copied``: (layer, blob index); ``reshaped``: (layer, blob index, source
    shape, target shape); ``skipped``: (layer, blob index or None, reason).
    """

    copied: List[Tuple[str, int]] = field(default_factory=list)
    reshaped: List[Tuple[str, int, Tuple[int, ...], Tuple[int, ...]]] = field(
        default_factory=list)
    skipped: List[Tuple[str, Optional[int], str]] = field(default_factory=list)

    def __str__(self) -> str:
        lines = []
        for name, i in self.copied:
            lines.append("copied    %s[%d]" % (name, i))
        for name, i, src, dst in self.reshaped:
            lines.append("reshaped  %s[%d] %s -> %s" % (name, i, _fmt(src), _fmt(dst)))
        for name, i, why in self.skipped:
            lines.append("skipped   %s%s: %s" % (name, "" if i is None else "[%d]" % i, why))
        return "\n".join(lines)


def _fmt(shape: Tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape) or "scalar"


def _source_items(source: Source) -> Tuple[List[Tuple[str, Sequence[np.ndarray]]], Any]:
    """(name, arrays) pairs of a source, and a model to close afterwards (or None)."""
    if isinstance(source, str):
        model = open_caffemodel(source)
        return [(e.name, model.arrays(e)) for e in model.layers if e.blobs], model
    if isinstance(source, CaffeModel):
        return [(e.name, source.arrays(e)) for e in source.layers if e.blobs], None
    if isinstance(source, Mapping):
        return [(str(k), list(v)) for k, v in source.items()], None
    raise NetdslError("a transplant source is a caffemodel path, a CaffeModel or a dict, not %s"
                      % type(source).__name__)


def transplant(target: Weights, source: Source, *, suffix: str = "") -> TransplantReport:
    """Copy blobs from ``source`` into ``target`` by layer name, in place.

    Source layer ``name`` goes to target layer ``name + suffix``.  Blobs of equal
    shape are copied; blobs whose element counts match but shapes differ are
    copied in C order and reshaped (e.g. an InnerProduct ``fc6`` 4096 x 25088
    into a Convolution 4096 x 512 x 7 x 7, as FCN's ``transplant`` coerces);
    anything else is skipped with the reason: layer absent in the target,
    extra source blobs, element counts that differ.  Values are cast to the
    target's dtype.  Unlike FCN's version, which fills by flat iteration and so
    silently repeats or truncates, a count mismatch is never copied.
    """
    items, owned = _source_items(source)
    report = TransplantReport()
    try:
        for name, blobs in items:
            dst_name = name + suffix
            if dst_name not in target:
                report.skipped.append((name, None, "no layer '%s' in the target" % dst_name))
                continue
            dst_blobs = target[dst_name]
            for i, src in enumerate(blobs):
                if i >= len(dst_blobs):
                    report.skipped.append((name, i, "target layer '%s' has only %d blob(s)"
                                           % (dst_name, len(dst_blobs))))
                    continue
                dst = dst_blobs[i]
                src = np.asarray(src)
                if src.shape == dst.shape:
                    _assign(dst, src, dst_name, i)
                    report.copied.append((name, i))
                elif src.size == dst.size:
                    _assign(dst, src.reshape(dst.shape), dst_name, i)
                    report.reshaped.append((name, i, tuple(src.shape), tuple(dst.shape)))
                else:
                    report.skipped.append((name, i, "%s (%d values) cannot fill %s (%d values)"
                                           % (_fmt(src.shape), src.size, _fmt(dst.shape),
                                              dst.size)))
    finally:
        if owned is not None:
            owned.close()
    return report


def _assign(dst: np.ndarray, src: np.ndarray, layer: str, index: int) -> None:
    if not dst.flags.writeable:
        raise NetdslError("blob %d is read-only; pass writable arrays" % index, layer=layer)
    np.copyto(dst, src, casting="unsafe")


def expand_score(target: Weights, new_layer: str, source: Source, layer: str) -> None:
    """Put a k'-class score layer's blobs into the first k' classes of a k-class one.

    As FCN's ``expand_score``: the source weight (k', ...) goes into rows
    ``[:k']`` of the target weight (k, ...) and its bias into ``[:k']`` of the
    target bias; the other classes keep their values.  Legacy 4-D biases
    (1, 1, 1, k) are taken by their last axis.
    """
    items, owned = _source_items(source)
    try:
        found = [blobs for name, blobs in items if name == layer]
        if not found:
            raise NetdslError("no layer '%s' with blobs in the source" % layer)
        src = [np.asarray(b) for b in found[-1]]
        if new_layer not in target:
            raise NetdslError("no layer '%s' in the target" % new_layer)
        dst = target[new_layer]
        if not src or not dst:
            raise NetdslError("score layers need a weight blob", layer=new_layer)
        w_src, w_dst = src[0], dst[0]
        k_old = w_src.shape[0] if w_src.ndim else 0
        if w_src.ndim != w_dst.ndim or w_src.shape[1:] != w_dst.shape[1:]:
            raise NetdslError("weight %s does not fit %s apart from the class axis"
                              % (_fmt(w_src.shape), _fmt(w_dst.shape)), layer=new_layer)
        if k_old > w_dst.shape[0]:
            raise NetdslError("the source has %d classes, more than the target's %d"
                              % (k_old, w_dst.shape[0]), layer=new_layer)
        _assign(w_dst[:k_old], w_src, new_layer, 0)
        if len(src) > 1:
            if len(dst) < 2:
                raise NetdslError("the source has a bias but the target has none",
                                  layer=new_layer)
            b_src, b_dst = src[1].reshape(-1), dst[1]
            flat = b_dst.reshape(-1)
            if b_src.size != k_old or flat.size != w_dst.shape[0]:
                raise NetdslError("bias of %d values does not match %d classes"
                                  % (b_src.size, k_old), layer=new_layer)
            if not np.shares_memory(flat, b_dst):
                raise NetdslError("the target bias is not contiguous", layer=new_layer)
            _assign(flat[:k_old], b_src, new_layer, 1)
    finally:
        if owned is not None:
            owned.close()
