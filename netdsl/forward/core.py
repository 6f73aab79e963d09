"""The forward pass: layers in order, each computed by its type's numpy forward
in the layer registry (:mod:`netdsl.layers`).  :func:`prepare` reads a net and
its weights once for many forwards; :func:`forward` is one prepare and run.

A forward rule is ``fn(layer, bottoms, blobs, ctx[, geometry]) -> list of top
arrays``: ``layer`` is the LayerParameter, ``bottoms`` the float32 input
arrays, ``blobs`` the layer's parameter arrays (from the weights, possibly
empty) and ``ctx`` a :class:`Context` (phase, random generator, number of
tops).  Every top is checked against the type's shape rule (once per bottom
shape).  Rules change their inputs only when ``ctx.inplace`` says the engine
owns the bottom of an in-place layer (top and bottom of one name); otherwise
the top replaces the blob of the same name.  Either way the blobs are what
``net.blobs`` holds after Caffe's ``Forward``.
"""
from __future__ import annotations

import os
import warnings
from typing import Any, Collection, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from google.protobuf.message import Message

from ..errors import NetdslError, NetdslTypeError, did_you_mean
from ..layers import current, lookup
from ..layers.registry import LayerType
from ..layers.runtime import TEST, TRAIN, Context, blob_as  # noqa: F401  (re-exported)
from ..weights.caffemodel.shape_check import copy_mismatch, shape_equals
from .finite import FiniteCheck, NonFinite, NonFiniteWarning  # noqa: F401

__all__ = ["forward", "prepare", "PreparedNet", "NonFiniteWarning", "Context", "ForwardResult",
           "random_inputs", "input_shapes", "blob_as"]


class ForwardResult(dict):
    """Blob name -> array after the forward pass, in order of first appearance.

    ``outputs`` names the net's outputs as Caffe's ``net.outputs`` does: the
    blobs produced and not consumed afterwards, in sorted order (Caffe keeps
    them in a ``std::set``).
    """

    outputs: List[str]
    nonfinite: Any = None   # the first top holding inf or NaN (a NonFinite), or None

    @property
    def output(self) -> Dict[str, np.ndarray]:
        """The output blobs only."""
        return {k: self[k] for k in self.outputs}


# -- weights ------------------------------------------------------------------

WeightsArg = Union[None, str, "os.PathLike[str]", Any, Mapping[str, Sequence[np.ndarray]]]


class _Weights:
    """Layer name -> blob arrays, from a caffemodel (path or open) or a dict."""

    def __init__(self, weights: WeightsArg, pb2: Any = None) -> None:
        self._model = None
        self._dict: Optional[Mapping[str, Sequence[np.ndarray]]] = None
        self.stored: Dict[str, List[Tuple[Tuple[int, ...], bool]]] = {}   # caffemodel shapes
        self.as_stored = False   # get(): the arrays as read, without aligned copies
        self._close = False
        if weights is None:
            self._dict = {}
        elif isinstance(weights, (str, os.PathLike)):
            from ..weights import open_caffemodel
            self._model = open_caffemodel(os.fspath(weights), pb2=pb2)
            self._close = True
        elif isinstance(weights, Mapping):
            self._dict = weights
        elif hasattr(weights, "arrays") and hasattr(weights, "names"):
            self._model = weights
        else:
            raise NetdslError("weights must be a caffemodel path, an open CaffeModel or a dict "
                              "of layer name -> list of arrays, not %s" % type(weights).__name__)

    def get(self, name: str, copy: bool = False) -> Optional[List[np.ndarray]]:
        """The layer's arrays, float32, C-ordered and aligned (an array read in place
        from a caffemodel may sit at any byte offset, which BLAS cannot take);
        with ``copy`` each is a copy of its own."""
        if self._dict is not None:
            blobs = self._dict.get(name)
        elif name in self._model:
            blobs = self._model.arrays(name)
            self.stored[name] = [(tuple(e.shape), e.legacy)
                                 for e in self._model.layer(name).blobs]
        else:
            return None
        if blobs is None:
            return None
        if copy:
            return [np.array(b, dtype=np.float32, order="C") for b in blobs]
        if self.as_stored:   # for a reader that copies the bytes anyway (an exporter)
            return [np.asarray(b) for b in blobs]
        return [np.require(b, np.float32, ("C", "A")) for b in blobs]

    def names(self) -> List[str]:
        return list(self._dict) if self._dict is not None else self._model.names()

    def check(self, lt: LayerType, lp: Message, bottoms: List[np.ndarray]) -> None:
        """Caffe's CopyTrainedLayersFrom on a caffemodel's blobs of ``lp``: each must
        pass Blob::ShapeEquals with the layer's parameter (same count is not enough)."""
        stored = self.stored.get(lp.name)
        if stored is None or lt.params is None:
            return
        want = lt.param_shapes(lp, [tuple(b.shape) for b in bottoms])
        for j, (target, (shape, legacy)) in enumerate(zip(want, stored)):
            if not shape_equals(target, shape, legacy):
                raise copy_mismatch(lp.name, j, shape, target)

    def release(self, name: str) -> None:
        """Drop the file pages of a layer whose arrays were copied (a caffemodel)."""
        if self._model is not None and hasattr(self._model, "release"):
            self._model.release(name)

    def close(self) -> None:
        if self._close and self._model is not None:
            self._model.close()


# -- the net ------------------------------------------------------------------

def load_net(net: Any) -> Message:
    """The NetParameter of ``net``: a prototxt path (read with the schema in use), a
    NetSpec, or a NetParameter (a V0/V1 one upgraded, as Caffe's ``ReadNetParamsFrom
    TextFileOrDie`` does).  The forward and ``caffe.Net`` both load nets here."""
    if isinstance(net, (str, os.PathLike)):
        from ..prototxt import read_net
        return read_net(os.fspath(net))
    if hasattr(net, "to_proto") and not hasattr(net, "layer"):
        net = net.to_proto()
    if not hasattr(net, "layer"):
        raise NetdslTypeError("net must be a NetParameter, a NetSpec or a prototxt path, "
                              "not %s" % type(net).__name__)
    if len(getattr(net, "layers", ())) or len(getattr(net, "input", ())):
        from ..upgrade import upgrade_net
        net = upgrade_net(net)
    return net


_load_net = load_net   # the name netdsl.export.walk imports


def select_layers(net: Message, phase: Any, level: Optional[int] = None,
                  stages: Optional[Sequence[str]] = None) -> Tuple[Message, List[Message]]:
    """(NetState, layers Caffe keeps for it): ``Net::Init``'s ``FilterNet`` for
    ``phase`` (a number), and ``level`` and ``stages`` when given (netdsl.netstate)."""
    from ..netstate import included_layers, make_state
    state = make_state(net, phase, level, stages)
    return state, included_layers(net, state)


def _fork_schema(net: Message) -> Any:
    """The schema ``net`` was read with when it is not BVLC's (a caffemodel of the
    net is then read with the fork's field numbers too), else None."""
    from ..proto import caffe_pb2, schema_of
    pb2 = schema_of(net)
    return None if pb2 is caffe_pb2 else pb2


def _phase_number(phase: Any) -> int:
    if isinstance(phase, str) and phase.strip().upper() in ("TRAIN", "TEST"):
        return TRAIN if phase.strip().upper() == "TRAIN" else TEST
    if phase in (TRAIN, TEST) and not isinstance(phase, bool):
        return int(phase)
    raise NetdslError("phase must be TRAIN or TEST, not %r" % (phase,), field="phase")


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
    net = load_net(net)
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


def prepare(net: Any, weights: WeightsArg = None, *, phase: Any = "TEST") -> "PreparedNet":
    """``net`` made ready for repeated forwards: parsed, filtered for ``phase``
    and with every layer's weights read once into memory (the caffemodel is
    closed again).  ``prepare(net, weights).forward(inputs)`` gives what
    :func:`forward` gives, without reading the weights again on each call."""
    return PreparedNet(net, weights, phase=phase)


class PreparedNet:
    """A net ready to run: its layers for one phase, their weights and the
    engine's reusable buffers.  ``keep_weights=False`` reads each layer's
    weights when the walk reaches it instead (a single forward)."""

    def __init__(self, net: Any, weights: WeightsArg = None, *, phase: Any = "TEST",
                 keep_weights: bool = True) -> None:
        from ..plugins import ensure_env_plugins
        ensure_env_plugins()  # custom layers' rules named in NETDSL_PLUGINS
        self.net = load_net(net)
        self.phase = _phase_number(phase)
        self.layers = select_layers(self.net, self.phase)[1]
        self.tops = {t for lp in self.layers for t in lp.top} | set(self.net.input)
        self.read = {b for lp in self.layers for b in lp.bottom}
        self.work: Dict[str, Any] = {}            # buffers reused across layers and calls
        self._cache: Dict[int, Dict[str, Any]] = {}   # per layer: type, geometry, checks
        self._weights = _Weights(weights, _fork_schema(self.net))
        if keep_weights:
            wanted = {lp.name for lp in self.layers}
            kept = {}
            try:
                for n in dict.fromkeys(self._weights.names()):   # a repeated name: the last
                    if n in wanted:
                        kept[n] = self._weights.get(n, copy=True)
                        self._weights.release(n)
            finally:
                self._weights.close()
            stored = self._weights.stored
            self._weights = _Weights(kept)
            self._weights.stored = stored

    def close(self) -> None:
        self._weights.close()

    def forward(self, inputs: Optional[Mapping[str, Any]] = None, *, seed: int = 0,
                keep: Optional[Sequence[str]] = None) -> ForwardResult:
        """Run the net on ``inputs`` (see :func:`forward`).  With ``keep`` (blob
        names), a blob is freed once no later layer reads it unless it is kept or
        is an output: the result then holds only those."""
        given: Dict[str, np.ndarray] = {}
        for k, v in (inputs or {}).items():
            given[k] = np.ascontiguousarray(v, dtype=np.float32)
        for k in given:
            if k not in self.tops:
                raise NetdslError("input '%s' is not a blob of the net" % k,
                                  hint=did_you_mean(k, sorted(self.tops)))
        walk = _Walk(self, given, seed, keep)
        for name in self.net.input:   # legacy input fields (schemas without Input layers)
            if name not in given:
                raise NetdslError("no array for input '%s'" % name)
            walk.store(name, given[name], None)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for i, lp in enumerate(self.layers):   # inf and NaN: reported once, at the end
                walk.step(i, lp)
        return walk.finish()

    def blobs_of(self, i: int, lp: Message, lt: LayerType, bottoms: List[np.ndarray]
                 ) -> List[np.ndarray]:
        """The parameter arrays of layer ``i``: by layer name, from a named-param
        owner, or from fixed fillers (Caffe's layer set-up; kept per bottom shape)."""
        blobs = self._weights.get(lp.name)
        if blobs is not None:
            cache = self._cache.setdefault(i, {})
            key = ("checked", tuple(tuple(b.shape) for b in bottoms))
            if key not in cache:
                self._weights.check(lt, lp, bottoms)
                cache[key] = True
        if blobs is None:
            blobs = _shared_owner(lp, self.layers, self._weights)
        if blobs is not None or not lt.wants_weights(lp):
            return blobs or []
        cache = self._cache.setdefault(i, {})
        key = ("setup", tuple(tuple(b.shape) for b in bottoms))
        if key not in cache:
            cache[key] = layer_blobs(lp, lt, None, bottoms, self._weights.names)
        return cache[key]


class _Walk:
    """The state of one forward over a :class:`PreparedNet`: the blobs so far, which
    arrays the walk owns (may be overwritten in place), the first non-finite top."""

    def __init__(self, prep: PreparedNet, given: Dict[str, np.ndarray], seed: int,
                 keep: Optional[Sequence[str]]) -> None:
        self.prep, self.given = prep, given
        self.rng = np.random.default_rng(seed)
        self.result = ForwardResult()
        self.available: Dict[str, None] = {}
        self.owned: Dict[int, np.ndarray] = {}
        self.finite = FiniteCheck()
        self.last: Optional[Dict[str, int]] = None
        if keep is not None:
            self.keep = set(keep)
            self.last = {}
            for i, lp in enumerate(prep.layers):
                for b in lp.bottom:
                    self.last[b] = i

    def store(self, name: str, arr: np.ndarray, owned: Optional[bool]) -> None:
        old = self.result.get(name)
        if old is not None and old is not arr and self.owned.get(id(old)) is old:
            del self.owned[id(old)]
        self.result[name] = arr
        self.available[name] = None
        if owned:
            self.owned[id(arr)] = arr

    def step(self, i: int, lp: Message) -> None:
        result = self.result
        bottoms = []
        for b in lp.bottom:
            if b not in result:
                raise NetdslError("bottom '%s' is not produced by any earlier layer" % b,
                                  layer=lp.name, hint=did_you_mean(b, list(result)))
            bottoms.append(result[b])
            self.available.pop(b, None)
        inplace = (len(lp.top) == 1 and len(lp.bottom) >= 1 and lp.top[0] == lp.bottom[0]
                   and self.owned.get(id(bottoms[0])) is bottoms[0])
        if not lp.bottom and lp.top and self._given_tops(lp):
            tops = [self.given.get(t) for t in lp.top]   # unread tops stay unmade
            lt, blobs = None, []
        else:
            lt = layer_type(lp, self.prep.read, self.given)
            ctx = Context(phase=self.prep.phase, ntop=len(lp.top), rng=self.rng,
                          inputs=self.given, inplace=inplace, work=self.prep.work)
            try:
                blobs = self.prep.blobs_of(i, lp, lt, bottoms)
            except NetdslError as err:
                raise err.located(layer=lp.name)
            tops = run_layer(lp, lt, bottoms, blobs, ctx, self.prep._cache.setdefault(i, {}))
        for name, arr in zip(lp.top, tops):
            if arr is None:   # a data layer's top that no layer reads and no input gave
                continue
            owned = lt is not None and _owns(arr, bottoms, tops, blobs, inplace, self.given)
            if not owned:   # a bottom (or a view of one) under a second name: shared now
                for b in bottoms:
                    if self.owned.get(id(b)) is b and np.may_share_memory(arr, b):
                        del self.owned[id(b)]
            self.store(name, arr, owned)
        if lt is not None:
            self.finite.check(lp, tops, bottoms, blobs, self.prep.phase == TEST, inplace)
        if self.last is not None:
            for b in lp.bottom:
                if self.last.get(b) == i and b not in self.keep and b not in lp.top:
                    if b in self.result and not self._is_output(b):
                        old = self.result.pop(b)
                        self.owned.pop(id(old), None)

    def _given_tops(self, lp: Message) -> bool:
        """A data layer whose tops are given as inputs, or read by no layer."""
        return (any(t in self.given for t in lp.top)
                and all(t in self.given or t not in self.prep.read for t in lp.top))

    def _is_output(self, name: str) -> bool:
        return name in self.available

    def finish(self) -> ForwardResult:
        self.result.outputs = sorted(self.available)
        self.result.nonfinite = self.finite.first
        if self.finite.first is not None:
            warnings.warn(self.finite.first.message, NonFiniteWarning, stacklevel=3)
        return self.result


def _owns(arr: np.ndarray, bottoms: List[np.ndarray], tops: List[np.ndarray],
          blobs: List[np.ndarray], inplace: bool, given: Mapping[str, np.ndarray]) -> bool:
    """Whether the walk may overwrite ``arr`` in place later: its own memory, not an
    input or parameter array, not also another top or (unless computed in place)
    a bottom."""
    if arr.base is not None or sum(t is arr for t in tops) > 1:
        return False
    if any(arr is g for g in given.values()) or any(arr is b for b in blobs):
        return False
    if any(arr is b for b in bottoms):
        return inplace and arr is bottoms[0]
    return True


def forward(net: Any, weights: WeightsArg = None,
            inputs: Optional[Mapping[str, Any]] = None, *, phase: Any = "TEST",
            seed: int = 0, keep: Optional[Sequence[str]] = None) -> ForwardResult:
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
    final value (in-place blobs hold the last layer's result); with ``keep``,
    only those blobs and the outputs (the others are freed on the way).
    A top that holds inf or NaN is reported once, for the first layer that
    made one, as a :class:`NonFiniteWarning` (also ``result.nonfinite``).
    To run one net many times, :func:`prepare` it once.
    """
    prep = PreparedNet(net, weights, phase=phase, keep_weights=False)
    try:
        return prep.forward(inputs, seed=seed, keep=keep)
    finally:
        prep.close()


def layer_type(lp: Message, read: Collection[str] = (),
               given: Collection[str] = ()) -> LayerType:
    """The registered type of ``lp`` with a numpy forward, or a located error
    (for a data layer, naming the tops that ``read`` needs and no input gave)."""
    lt = lookup(lp.type)
    if lt is None or lt.forward is None:
        if not lp.bottom and lp.type.endswith("Data"):
            need = [t for t in lp.top if t not in given and t in read] or list(lp.top)
            raise NetdslError("data layer of type '%s': give its top%s %s as input"
                              % (lp.type, "s" if len(need) > 1 else "",
                                 ", ".join("'%s'" % t for t in need)), layer=lp.name,
                              hint=" ".join("--input %s=%s.npy" % (t, t) for t in need))
        runnable = [n for n in current().names() if current().get(n).forward is not None]
        raise NetdslError("no numpy forward for layer type '%s'" % lp.type, layer=lp.name,
                          hint=did_you_mean(lp.type, runnable))
    return lt


def layer_blobs(lp: Message, lt: LayerType, blobs: Optional[List[np.ndarray]],
                bottoms: List[np.ndarray], names: Any = list) -> List[np.ndarray]:
    """``blobs``, or when there are none and the type needs weights, the fixed
    blobs Caffe's layer set-up gives it; an error naming the layer otherwise."""
    if blobs is None and lt.wants_weights(lp):
        blobs = _setup_blobs(lt, lp, bottoms)
        if blobs is None:
            raise NetdslError("no weights for this %s layer (looked up by layer name)"
                              % lp.type, layer=lp.name, hint=did_you_mean(lp.name, names())
                              or "give a caffemodel, or make one with `netdsl init`")
    return blobs or []


def run_layer(lp: Message, lt: LayerType, bottoms: List[np.ndarray], blobs: List[np.ndarray],
              ctx: Context, cache: Dict[str, Any]) -> List[np.ndarray]:
    """One layer's forward: the type's rule on ``bottoms``, one array per top name,
    float32 and C-ordered.  The geometry is parsed and the tops' shapes checked against the
    shape rule once per bottom shape (``cache`` is the layer's own dict)."""
    key = tuple(tuple(b.shape) for b in bottoms)
    try:
        geo = cache.get(("geo", key[0] if key else None), _MISSING)
        if geo is _MISSING:
            geo = lt.parse(lp, key[0] if key else None)
            cache[("geo", key[0] if key else None)] = geo
        out = lt.run(lp, bottoms, blobs, ctx, geo)
        if len(out) != len(lp.top):
            raise NetdslError("layer gave %d tops for %d top names" % (len(out), len(lp.top)))
        if ("checked", key) not in cache:
            _check_tops(lt, lp, bottoms, out, geo)
            if not lt.extra.get("data_dependent_axes"):
                cache[("checked", key)] = True
    except NetdslError as err:
        raise err.located(layer=lp.name)
    return [a if type(a) is np.ndarray and a.dtype == np.float32 and a.flags.c_contiguous
            else np.asarray(a, dtype=np.float32, order="C") for a in out]   # 0-d tops stay 0-d


_MISSING = object()


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
