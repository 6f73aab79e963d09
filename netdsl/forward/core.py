"""The forward pass: layers in order, each computed by its type's numpy forward
in the layer registry (:mod:`netdsl.layers`).

A forward rule is ``fn(layer, bottoms, blobs, ctx[, geometry]) -> list of top
arrays``: ``layer`` is the LayerParameter, ``bottoms`` the float32 input
arrays, ``blobs`` the layer's parameter arrays (from the weights, possibly
empty) and ``ctx`` a :class:`Context` (phase, random generator, number of
tops).  Every top is checked against the type's shape rule.  Rules never
change their inputs: an in-place layer's top simply replaces the blob of
the same name, which gives what ``net.blobs`` holds after Caffe's ``Forward``.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
from google.protobuf.message import Message

from ..errors import NetdslError, did_you_mean
from ..layers import current, lookup
from ..layers.registry import LayerType
from ..layers.runtime import TEST, TRAIN, Context, blob_as  # noqa: F401  (re-exported)

__all__ = ["forward", "Context", "ForwardResult", "random_inputs", "input_shapes", "blob_as"]


class ForwardResult(dict):
    """Blob name -> array after the forward pass, in order of first appearance.

    ``outputs`` names the net's outputs as Caffe's ``net.outputs`` does: the
    blobs produced and not consumed afterwards, in sorted order (Caffe keeps
    them in a ``std::set``).
    """

    outputs: List[str]

    @property
    def output(self) -> Dict[str, np.ndarray]:
        """The output blobs only."""
        return {k: self[k] for k in self.outputs}


# -- weights ------------------------------------------------------------------

WeightsArg = Union[None, str, "os.PathLike[str]", Any, Mapping[str, Sequence[np.ndarray]]]


class _Weights:
    """Layer name -> blob arrays, from a caffemodel (path or open) or a dict."""

    def __init__(self, weights: WeightsArg) -> None:
        self._model = None
        self._dict: Optional[Mapping[str, Sequence[np.ndarray]]] = None
        self._close = False
        if weights is None:
            self._dict = {}
        elif isinstance(weights, (str, os.PathLike)):
            from ..weights import open_caffemodel
            self._model = open_caffemodel(os.fspath(weights))
            self._close = True
        elif isinstance(weights, Mapping):
            self._dict = weights
        elif hasattr(weights, "arrays") and hasattr(weights, "names"):
            self._model = weights
        else:
            raise NetdslError("weights must be a caffemodel path, an open CaffeModel or a dict "
                              "of layer name -> list of arrays, not %s" % type(weights).__name__)

    def get(self, name: str) -> Optional[List[np.ndarray]]:
        if self._dict is not None:
            blobs = self._dict.get(name)
            return None if blobs is None else [np.asarray(b) for b in blobs]
        if name in self._model:
            return self._model.arrays(name)
        return None

    def names(self) -> List[str]:
        return list(self._dict) if self._dict is not None else self._model.names()

    def check(self, lt: LayerType, lp: Message, bottoms: List[np.ndarray]) -> None:
        """Caffe's CopyTrainedLayersFrom on a caffemodel's blobs of ``lp``: each must
        pass Blob::ShapeEquals with the layer's parameter (same count is not enough)."""
        if self._model is None or lt.params is None or lp.name not in self._model:
            return
        from ..weights.caffemodel.shape_check import copy_mismatch, shape_equals
        want = lt.param_shapes(lp, [tuple(b.shape) for b in bottoms])
        for j, (target, entry) in enumerate(zip(want, self._model.layer(lp.name).blobs)):
            if not shape_equals(target, entry.shape, entry.legacy):
                raise copy_mismatch(lp.name, j, entry.shape, target)

    def close(self) -> None:
        if self._close and self._model is not None:
            self._model.close()


# -- the net ------------------------------------------------------------------

def _load_net(net: Any) -> Message:
    if isinstance(net, (str, os.PathLike)):
        from ..prototxt import read_net
        return read_net(os.fspath(net))
    if hasattr(net, "to_proto") and not hasattr(net, "layer"):
        net = net.to_proto()
    if not hasattr(net, "layer"):
        raise NetdslError("net must be a NetParameter, a NetSpec or a prototxt path, not %s"
                          % type(net).__name__)
    if len(getattr(net, "layers", ())) or len(getattr(net, "input", ())):
        from ..upgrade import upgrade_net
        net = upgrade_net(net)
    return net


def _phase_number(phase: Any) -> int:
    if isinstance(phase, str) and phase.strip().upper() in ("TRAIN", "TEST"):
        return TRAIN if phase.strip().upper() == "TRAIN" else TEST
    if phase in (TRAIN, TEST) and not isinstance(phase, bool):
        return int(phase)
    raise NetdslError("phase must be TRAIN or TEST, not %r" % (phase,), field="phase")


def _filter(net: Message, phase: int) -> List[Message]:
    """The layers Caffe keeps for ``phase`` (include/exclude rules)."""
    from ..netstate import included_layers, make_state
    return included_layers(net, make_state(net, phase))


def _declared_shape(lp: Message, index: int) -> Optional[List[int]]:
    if lp.type == "Input":
        shapes = lp.input_param.shape
        if not shapes:
            return None
        s = shapes[0] if len(shapes) == 1 else shapes[index]
        return [int(d) for d in s.dim]
    return None


def input_shapes(net: Any) -> Dict[str, List[int]]:
    """Blob name -> declared shape of every Input layer top of ``net`` (and of the
    legacy ``input`` fields a schema without InputParameter keeps)."""
    net = _load_net(net)
    out: Dict[str, List[int]] = {}
    for i, name in enumerate(net.input):     # legacy input fields (a schema without Input)
        if len(net.input_shape) > i:
            out[name] = [int(d) for d in net.input_shape[i].dim]
        elif len(net.input_dim) >= 4 * (i + 1):
            out[name] = [int(d) for d in net.input_dim[4 * i:4 * i + 4]]
    for lp in net.layer:
        if lp.type == "Input":
            for i, top in enumerate(lp.top):
                shape = _declared_shape(lp, i)
                if shape is not None:
                    out[top] = shape
    return out


def random_inputs(net: Any, seed: int = 0, *, low: float = -1.0, high: float = 1.0
                  ) -> Dict[str, np.ndarray]:
    """Uniform random float32 arrays for every declared Input blob of ``net``."""
    rng = np.random.default_rng(seed)
    return {name: rng.uniform(low, high, size=shape).astype(np.float32)
            for name, shape in input_shapes(net).items()}


def _shared_owner(lp: Message, layers: List[Message], weights: _Weights
                  ) -> Optional[List[np.ndarray]]:
    # a layer whose blobs are all shared by name takes them from the first owner
    names = [p.name for p in lp.param]
    if not names or not all(names):
        return None
    found: List[np.ndarray] = []
    for pname in names:
        for other in layers:
            if other is lp:
                continue
            onames = [p.name for p in other.param]
            if pname in onames:
                blobs = weights.get(other.name)
                if blobs is not None and onames.index(pname) < len(blobs):
                    found.append(blobs[onames.index(pname)])
                    break
        else:
            return None
    return found


def _setup_blobs(lt: LayerType, lp: Message, bottoms: List[np.ndarray]
                 ) -> Optional[List[np.ndarray]]:
    """The blobs Caffe's own layer setup gives a layer whose fillers are fixed (a
    constant or bilinear upsampling kernel), so that it needs no caffemodel entry;
    None when the type's fillers are random or unset."""
    if lt.fixed_blobs is None or lt.fillers is None or not bottoms or not lt.fixed_blobs(lp):
        return None
    from ..weights import fill
    shapes = lt.param_shapes(lp, [tuple(b.shape) for b in bottoms])
    return [fill(f, s) for f, s in zip(lt.fillers(lp, shapes), shapes)]


def forward(net: Any, weights: WeightsArg = None,
            inputs: Optional[Mapping[str, Any]] = None, *, phase: Any = "TEST",
            seed: int = 0) -> ForwardResult:
    """Run ``net`` forward in numpy, float32, with Caffe's layer semantics.

    ``net`` is a NetParameter, NetSpec or prototxt path; ``weights`` a caffemodel
    path, open CaffeModel or ``{layer_name: [arrays]}`` (blobs are matched by
    layer name, as Caffe's ``CopyTrainedLayersFrom`` does; a layer whose
    ``param`` entries are all named shares the first owner's blobs);
    A Convolution, Deconvolution or InnerProduct missing from the weights takes
    its blobs from a constant or bilinear ``weight_filler``, as Caffe's layer
    setup gives them (fixed upsampling kernels need no caffemodel entry).
    ``inputs`` maps blob names to arrays for the Input layers (any shape, as
    after pycaffe's ``blobs[name].reshape``) and for the tops of data layers.
    Layers are kept or dropped by their include/exclude rules for ``phase``.
    ``seed`` drives Dropout's mask in the TRAIN phase.  Returns every blob's
    final value (in-place blobs hold the last layer's result).
    """
    from ..plugins import ensure_env_plugins
    ensure_env_plugins()  # custom layers' rules named in NETDSL_PLUGINS
    net = _load_net(net)
    ph = _phase_number(phase)
    layers = _filter(net, ph)
    given: Dict[str, np.ndarray] = {}
    for k, v in (inputs or {}).items():
        given[k] = np.ascontiguousarray(v, dtype=np.float32)
    known_tops = {t for lp in layers for t in lp.top} | set(net.input)
    for k in given:
        if k not in known_tops:
            raise NetdslError("input '%s' is not a blob of the net" % k,
                              hint=did_you_mean(k, sorted(known_tops)))
    wts = _Weights(weights)
    rng = np.random.default_rng(seed)
    result = ForwardResult()
    available: Dict[str, None] = {}
    for name in net.input:   # legacy input fields (kept by schemas without Input layers)
        if name not in given:
            raise NetdslError("no array for input '%s'" % name)
        result[name] = given[name]
        available[name] = None
    try:
        for lp in layers:
            bottoms = []
            for b in lp.bottom:
                if b not in result:
                    raise NetdslError("bottom '%s' is not produced by any earlier layer" % b,
                                      layer=lp.name, hint=did_you_mean(b, list(result)))
                bottoms.append(result[b])
                available.pop(b, None)
            tops = _run_layer(lp, bottoms, layers, wts, given, rng, ph)
            if len(tops) != len(lp.top):
                raise NetdslError("layer gave %d tops for %d top names" % (len(tops), len(lp.top)),
                                  layer=lp.name)
            for name, arr in zip(lp.top, tops):
                if arr is None:   # a data layer's top that no layer reads and no input gave
                    continue
                result[name] = arr
                available[name] = None
    finally:
        wts.close()
    result.outputs = sorted(available)
    return result


def _run_layer(lp: Message, bottoms: List[np.ndarray], layers: List[Message], wts: _Weights,
               given: Mapping[str, np.ndarray], rng: np.random.Generator, phase: int
               ) -> List[np.ndarray]:
    if not lp.bottom and lp.top and any(t in given for t in lp.top):
        read = {b for other in layers for b in other.bottom}
        if all(t in given or t not in read for t in lp.top):   # unread tops stay unmade
            return [given.get(t) for t in lp.top]
    lt = lookup(lp.type)
    if lt is None or lt.forward is None:
        if not lp.bottom and lp.type.endswith("Data"):
            read = {b for other in layers for b in other.bottom}
            need = [t for t in lp.top if t not in given and t in read] or list(lp.top)
            raise NetdslError("data layer of type '%s': give its top%s %s as input"
                              % (lp.type, "s" if len(need) > 1 else "",
                                 ", ".join("'%s'" % t for t in need)), layer=lp.name,
                              hint=" ".join("--input %s=%s.npy" % (t, t) for t in need))
        runnable = [n for n in current().names() if current().get(n).forward is not None]
        raise NetdslError("no numpy forward for layer type '%s'" % lp.type, layer=lp.name,
                          hint=did_you_mean(lp.type, runnable))
    blobs = wts.get(lp.name)
    if blobs is not None:
        wts.check(lt, lp, bottoms)
    if blobs is None:
        blobs = _shared_owner(lp, layers, wts)
    try:
        if blobs is None and lt.wants_weights(lp):
            blobs = _setup_blobs(lt, lp, bottoms)
            if blobs is None:
                raise NetdslError("no weights for this %s layer (looked up by layer name)"
                                  % lp.type, layer=lp.name, hint=did_you_mean(lp.name, wts.names())
                                  or "give a caffemodel, or make one with `netdsl init`")
        ctx = Context(phase=phase, ntop=len(lp.top), rng=rng, inputs=given)
        geo = lt.parse(lp, tuple(bottoms[0].shape) if bottoms else None)
        out = lt.run(lp, bottoms, blobs or [], ctx, geo)
        _check_tops(lt, lp, bottoms, out, geo)
    except NetdslError as err:
        raise err.located(layer=lp.name)
    return [np.asarray(a, dtype=np.float32, order="C") for a in out]   # keeps 0-d tops 0-d


def _check_tops(lt: LayerType, lp: Message, bottoms: List[np.ndarray], out: List[np.ndarray],
                geo: Any) -> None:
    """Each computed top must have the shape the type's shape rule gives: the two
    can never drift apart unnoticed."""
    if lt.shape is None or len(out) != len(lp.top):
        return
    want = lt.top_shapes(lp, [tuple(b.shape) for b in bottoms], len(out), geo)
    free = lt.extra.get("data_dependent_axes", ())   # sizes only the data decide
    for i, (a, w) in enumerate(zip(out, want)):
        if tuple(a.shape) != tuple(w) and not (
                free and a.ndim == len(w) and
                all(x == y for k, (x, y) in enumerate(zip(a.shape, w)) if k not in free)):
            raise NetdslError("internal error: the numpy forward of %s gave top %d ('%s') shape "
                              "%s, but its shape rule gives %s" % (lp.type, i, lp.top[i],
                                                                   tuple(a.shape), tuple(w)),
                              layer=lp.name)
