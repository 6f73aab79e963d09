"""``caffe.Net`` in numpy: pycaffe's object model over netdsl's forward, fillers
and caffemodel I/O.

The net is set up as Caffe's ``Net::Init`` does it: the layers are filtered
for the NetState (phase, level, stages; netdsl.netstate), Caffe's automatic
Split layers are inserted (``InsertSplits``), every blob gets its shape
(netdsl.shapes.infer_shapes) and every learnable blob its filler's values
(netdsl.weights.init_weights).  ``forward`` runs each layer's numpy rule
(netdsl.forward.core.run_layer) on the bottoms' blobs and writes the tops back
into them (an in-place layer computes in its blob, as Caffe does), so blobs
set by hand (``net.blobs['conv'].data[...] = x``) are what the next layer
sees, exactly as in pycaffe.  Nothing trains here.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from google.protobuf.message import Message

from netdsl.errors import (NetdslError, NetdslKeyError, NetdslRuntimeError, NetdslTypeError,
                           NetdslValueError, did_you_mean)

__all__ = ["Net", "Blob", "Layer", "TRAIN", "TEST", "insert_splits", "training_error"]

TRAIN, TEST = 0, 1

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def training_error(what: str) -> NetdslRuntimeError:
    """The error every training entry point raises."""
    return NetdslRuntimeError(
        "%s: training needs Caffe; netdsl's caffe.Net runs the forward pass only "
        "(inference and weight surgery)" % what,
        hint="train with Caffe itself; here use forward(), copy_from(), save()")


class _Named(OrderedDict):
    """An OrderedDict whose missing keys raise a KeyError naming the close ones."""

    what = "blob"

    def __missing__(self, key: Any) -> Any:
        raise NetdslKeyError("no %s named %r in the net" % (self.what, key),
                             hint=did_you_mean(str(key), [str(k) for k in self]))


class _LayerNames(_Named):
    what = "layer"


class Blob:
    """pycaffe's Blob: ``data`` and ``diff`` numpy arrays of ``shape`` (float32).

    As in Caffe, memory is allocated when a reshape needs more than the blob
    holds (``Blob::Reshape``: capacity only grows); a smaller reshape reuses
    it.  ``data`` is the same writable array until the next reshape changes the
    shape, so a view taken from it stays valid.  ``diff`` is all zeros,
    allocated on first use (Caffe's SyncedMemory allocates lazily too).
    """

    __slots__ = ("_buf", "_data", "_dbuf", "_diff", "__weakref__")

    def __init__(self, shape: Sequence[int] = (), array: Optional[np.ndarray] = None) -> None:
        self._dbuf: Optional[np.ndarray] = None
        self._diff: Optional[np.ndarray] = None
        if array is not None:
            self._adopt(array)
        else:
            self._buf = np.zeros(max(1, _count(shape)), dtype=np.float32)
            self._data = self._buf[:_count(shape)].reshape(tuple(shape))

    def _adopt(self, array: np.ndarray) -> None:
        # use ``array``'s memory as this blob's (a parameter's filled values, a
        # shared parameter); it must be a writable float32 C-contiguous array
        if array.dtype != np.float32 or not array.flags.c_contiguous \
                or not array.flags.writeable:
            array = np.array(array, dtype=np.float32, order="C")
        self._buf = array.reshape(-1)
        self._data = array
        self._dbuf = self._diff = None

    def reshape(self, *shape: Any) -> None:
        """Change the shape (Caffe's ``Blob::Reshape``): reallocate only when it grows."""
        if len(shape) == 1 and isinstance(shape[0], (list, tuple)):
            shape = tuple(shape[0])
        dims = tuple(int(d) for d in shape)
        if any(d < 0 for d in dims):
            raise NetdslValueError("blob dimensions must be >= 0, got %s" % (dims,))
        if dims == self._data.shape:
            return
        n = _count(dims)
        if n > self._buf.size:
            self._buf = np.zeros(n, dtype=np.float32)
            self._dbuf = None
        self._data = self._buf[:n].reshape(dims)
        self._diff = None

    @property
    def data(self) -> np.ndarray:
        """The values, a writable float32 array of ``shape``."""
        return self._data

    @property
    def diff(self) -> np.ndarray:
        """The gradient, zeros here (nothing runs backward)."""
        if self._diff is None or self._diff.shape != self._data.shape:
            n = self._data.size
            if self._dbuf is None or self._dbuf.size < n:
                self._dbuf = np.zeros(max(n, self._buf.size), dtype=np.float32)
            self._diff = self._dbuf[:n].reshape(self._data.shape)
        return self._diff

    @property
    def shape(self) -> Tuple[int, ...]:
        return self._data.shape

    @property
    def count(self) -> int:
        return int(self._data.size)

    def _legacy(self, i: int) -> int:
        # Caffe's LegacyShape(i): the axis when it exists, else 1
        s = self._data.shape
        return int(s[i]) if i < len(s) else 1

    @property
    def num(self) -> int:
        return self._legacy(0)

    @property
    def channels(self) -> int:
        return self._legacy(1)

    @property
    def height(self) -> int:
        return self._legacy(2)

    @property
    def width(self) -> int:
        return self._legacy(3)

    def __repr__(self) -> str:
        return "<Blob %s>" % "x".join(map(str, self.shape))


class BlobVec(list):
    """pycaffe's BlobVec: a list of Blobs; ``add_blob(*shape)`` appends a new one."""

    def add_blob(self, *shape: int) -> None:
        self.append(Blob(tuple(int(d) for d in shape)))


class Layer:
    """pycaffe's Layer: its ``type`` string and its learnable ``blobs``.

    Also the base of Python layers (``class MyLayer(caffe.Layer)``): a net
    builds one with its LayerParameter, sets ``param_str`` and ``phase``, calls
    ``setup(bottom, top)`` and ``reshape(bottom, top)`` at set-up, then
    ``reshape`` and ``forward`` each forward pass (Caffe's PythonLayer).
    """

    def __init__(self, param: Optional[Message] = None) -> None:
        self.name = getattr(param, "name", "")
        self.type = getattr(param, "type", "") or "Python"
        self.blobs = BlobVec()

    @classmethod
    def _make(cls, name: str, type_: str, blobs: List[Blob]) -> "Layer":
        layer = cls.__new__(cls)
        layer.name, layer.type, layer.blobs = name, type_, BlobVec(blobs)
        return layer

    def setup(self, bottom: List[Blob], top: List[Blob]) -> None:
        """A Python layer's one-time set-up (nothing by default)."""

    def reshape(self, bottom: List[Blob], top: List[Blob]) -> None:
        """A Python layer's top shapes from its bottoms (a Python layer must define it)."""
        raise NetdslRuntimeError("Layer.reshape is for Python layers to define; call "
                                 "net.reshape() to reshape a net")

    def forward(self, bottom: List[Blob], top: List[Blob]) -> None:
        raise NetdslRuntimeError("a Python layer must define forward(bottom, top)")

    def backward(self, top: Any, propagate_down: Any, bottom: Any) -> None:
        raise training_error("Layer.backward")

    def __repr__(self) -> str:
        return "<Layer %s '%s'>" % (self.type, self.name)


def _cached(fn: Any) -> property:
    """A property computed once per net, as pycaffe caches its dicts."""
    key = "_cache_" + fn.__name__

    def get(self: Any) -> Any:
        value = self.__dict__.get(key)
        if value is None:
            value = self.__dict__[key] = fn(self)
        return value
    get.__doc__ = fn.__doc__
    return property(get)


def _count(shape: Iterable[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


# -- set-up -------------------------------------------------------------------------

def insert_splits(layers: Sequence[Message]) -> List[Message]:
    """Caffe's ``InsertSplits`` (src/caffe/util/insert_splits.cpp).

    A top read by more than one bottom (a top with a nonzero ``loss_weight``
    counts as one more reader) gets a Split layer right after its producer,
    named ``<blob>_<layer>_<top index>_split``, with one top per reader
    ``<blob>_<layer>_<top index>_split_<k>``; readers take their own top in
    order.  A loss weight moves to the Split's first top.  Returns new
    LayerParameters (the inputs are not changed).
    """
    last_top: Dict[str, Tuple[int, int]] = {}
    source: Dict[Tuple[int, int], Tuple[int, int]] = {}
    readers: Dict[Tuple[int, int], int] = {}
    loss: Dict[Tuple[int, int], float] = {}
    for i, lp in enumerate(layers):
        for j, b in enumerate(lp.bottom):
            if b not in last_top:
                raise NetdslError("unknown bottom blob '%s' (bottom index %d)" % (b, j),
                                  layer=lp.name, hint=did_you_mean(b, list(last_top)))
            source[(i, j)] = last_top[b]
            readers[last_top[b]] = readers.get(last_top[b], 0) + 1
        for j, t in enumerate(lp.top):
            last_top[t] = (i, j)
        for j in range(min(len(lp.loss_weight), len(lp.top))):
            idx = last_top[lp.top[j]]
            loss[idx] = lp.loss_weight[j]
            if loss[idx]:
                readers[idx] = readers.get(idx, 0) + 1
    taken: Dict[Tuple[int, int], int] = {}
    out: List[Message] = []
    for i, lp in enumerate(layers):
        new = type(lp)()
        new.CopyFrom(lp)
        out.append(new)
        for j in range(len(new.bottom)):
            idx = source[(i, j)]
            if readers.get(idx, 0) > 1:
                k = taken.get(idx, 0)
                taken[idx] = k + 1
                new.bottom[j] = _split_blob(layers[idx[0]].name, new.bottom[j], idx[1], k)
        for j in range(len(new.top)):
            n = readers.get((i, j), 0)
            if n <= 1:
                continue
            split = type(lp)()
            split.name = "%s_%s_%d_split" % (new.top[j], new.name, j)
            split.type = "Split"
            split.bottom.append(new.top[j])
            w = loss.get((i, j), 0.0)
            for k in range(n):
                split.top.append(_split_blob(new.name, new.top[j], j, k))
                if w:
                    split.loss_weight.append(w if k == 0 else 0.0)
            if w:
                del new.loss_weight[:]
                taken[(i, j)] = taken.get((i, j), 0) + 1
            out.append(split)
    return out


def _split_blob(layer: str, blob: str, index: int, k: int) -> str:
    return "%s_%s_%d_split_%d" % (blob, layer, index, k)


def _read_net(net: Any) -> Message:
    """The net as the forward loads it (netdsl.forward.core.load_net); a path that
    names no file is pycaffe's error."""
    from netdsl.forward.core import load_net
    if isinstance(net, (str, os.PathLike)) and not os.path.isfile(os.fspath(net)):
        raise NetdslError("no such net prototxt", file=os.fspath(net))
    return load_net(net)


def _legacy_input_layer(net: Message) -> Tuple[Message, Dict[str, Tuple[int, ...]]]:
    """A schema without InputParameter (PSPNet's, DeepLab v2's, SegNet's) keeps a
    net's legacy ``input`` fields; Caffe of that time made them the net's input
    blobs, and InsertSplits named their splits after the layer "input".  Here
    they become the tops of a layer "input" of type Input, put first (the form
    UpgradeNetInput gives where the schema allows it), with their shapes."""
    from netdsl.forward import input_shapes
    if not len(net.input):
        return net, {}
    shapes = input_shapes(net)
    out = type(net)()
    out.CopyFrom(net)
    for name in ("input", "input_shape", "input_dim"):
        if name in out.DESCRIPTOR.fields_by_name:
            out.ClearField(name)
    out.ClearField("layer")
    feed = out.layer.add()
    feed.name, feed.type = "input", "Input"
    feed.top.extend(net.input)
    out.layer.extend(net.layer)
    return out, {k: tuple(v) for k, v in shapes.items() if k in net.input}


def _phase(value: Any) -> int:
    from netdsl.netstate import parse_phase
    return parse_phase(int(value) if isinstance(value, np.integer) else value)


# -- the net ---------------------------------------------------------------------------

class Net:
    """pycaffe's ``caffe.Net``, numpy-backed.

    ``Net(prototxt, phase, level=0, stages=None, weights=None)`` or the legacy
    ``Net(prototxt, weights, phase)``.  Parameters are filled by their fillers
    (as Caffe's layer set-up does), then ``weights`` are copied in by layer name
    (``CopyTrainedLayersFrom``).
    """

    def __init__(self, network_file: Any, *args: Any, level: int = 0,
                 stages: Optional[Sequence[str]] = None, weights: Optional[str] = None,
                 phase: Any = None) -> None:
        args = list(args)
        if args and isinstance(args[0], (str, os.PathLike)) and not isinstance(args[0], bool):
            # legacy Net(network_file, pretrained_param_file, phase)
            if weights is not None:
                raise NetdslValueError("weights given twice (the legacy second argument "
                                       "and weights=)")
            weights = os.fspath(args.pop(0))
        if args:
            if phase is not None:
                raise NetdslValueError("phase given twice")
            phase = args.pop(0)
        if args and weights is None and len(args) <= 3:
            # pycaffe's positional order: (network_file, phase, level, stages, weights)
            level = args.pop(0)
            stages = args.pop(0) if args else stages
            weights = args.pop(0) if args else weights
        if args:
            raise NetdslTypeError("caffe.Net takes (network_file, phase, level=0, stages=None, "
                                  "weights=None) or (network_file, weights, phase)")
        if phase is None:
            raise NetdslTypeError("caffe.Net needs a phase: caffe.TRAIN or caffe.TEST")
        param = _read_net(network_file)
        param, self._legacy_inputs = _legacy_input_layer(param)
        from netdsl.forward.core import select_layers
        state, kept = select_layers(param, _phase(phase), int(level), list(stages or ()))
        layers = insert_splits(kept)
        self._param = type(param)()
        self._param.name = param.name
        self._param.state.CopyFrom(state)
        for lp in layers:
            lp.ClearField("include")
            lp.ClearField("exclude")
        self._param.layer.extend(layers)
        self._phase = self._state_phase = state.phase
        self._forwards = 0
        from .runtime import next_seed
        self._seed = next_seed()
        self._caches: Dict[int, Dict[Any, Any]] = {}   # per layer: geometry, shape checks
        self._work: Dict[str, Any] = {}                # buffers reused across layers and calls
        self._setup(weights)

    # -- construction

    def _setup(self, weights: Optional[str]) -> None:
        from netdsl.shapes import infer_shapes
        from netdsl.weights import init_weights
        param = self._param
        declared = self._setup_python_layers()
        shapes = infer_shapes(param, self._legacy_inputs or None, declared=declared or None)
        layer_shapes = _by_layer(param, shapes)
        model = None
        if weights is not None and not _is_hdf5(weights):
            from netdsl.weights import open_caffemodel
            model = open_caffemodel(weights)
        try:
            # parameters the weights will overwrite need no random draw first
            init_param = param
            if model is not None or declared:
                init_param = type(param)()
                init_param.CopyFrom(param)
                for lp in init_param.layer:
                    if lp.type == "Python":
                        # init_weights shapes the net itself: a Python layer's tops, known
                        # from its reshape(), enter as an Input there (its blobs are its own)
                        shapes_of, tops = declared[lp.name], list(lp.top)
                        lp.Clear()
                        lp.name, lp.type = "(tops of a Python layer)", "Input"
                        lp.top.extend(tops)
                        for shape in shapes_of:
                            lp.input_param.shape.add().dim.extend(shape)
            unfilled = [lp.name for lp in param.layer if model is not None and lp.name in model]
            filled = init_weights(init_param, inputs=self._legacy_inputs or None,
                                  seed=self._seed, unfilled=unfilled)
            self._build(shapes, layer_shapes, filled)
            self._init_data_layers()
            if model is not None:
                self._copy_from_model(model)
        finally:
            if model is not None:
                model.close()
        if weights is not None and _is_hdf5(weights):
            self.load_hdf5(weights)

    def _build(self, shapes: Any, layer_shapes: Mapping[int, Any],
               filled: Mapping[str, List[np.ndarray]]) -> None:
        self.blobs: "OrderedDict[str, Blob]" = _Named()
        self.layers: List[Layer] = []
        self._layer_names: List[str] = []
        self._blob_names: List[str] = []
        self._tops: List[List[str]] = []
        self._bottoms: List[List[str]] = []
        self._loss: Dict[str, float] = {}
        self.inputs: List[str] = []
        available: Dict[str, None] = {}
        final = shapes.blobs
        for lp in self._param.layer:
            entry = layer_shapes.get(id(lp))
            for b in lp.bottom:
                available.pop(b, None)
            for j, t in enumerate(lp.top):
                if t not in self.blobs:
                    shape = final.get(t)
                    if shape is None and entry is not None and j < len(entry.top_shapes):
                        shape = entry.top_shapes[j]
                    made = self._python_tops.get(t)
                    if made is not None:
                        made.reshape(*(shape or made.shape))
                        self.blobs[t] = made
                    else:
                        self.blobs[t] = Blob(tuple(shape or ()))
                    self._blob_names.append(t)
                    if lp.type == "Input":
                        self.inputs.append(t)
                available[t] = None
                if entry is not None and j < len(entry.loss_weights):
                    self._loss[t] = float(entry.loss_weights[j])
            arrays = filled.get(lp.name, []) if entry is not None and entry.param_shapes else []
            py = self._python.get(len(self.layers))
            if py is not None:
                self.layers.append(py)
            else:
                self.layers.append(Layer._make(lp.name, lp.type,
                                               [Blob(array=a) for a in arrays]))
            self._layer_names.append(lp.name)
            self._tops.append(list(lp.top))
            self._bottoms.append(list(lp.bottom))
        self.outputs: List[str] = sorted(available)  # Caffe keeps them in a std::set

    def _setup_python_layers(self) -> Dict[str, List[Tuple[int, ...]]]:
        """Build and set up each Python layer in order (PythonLayer::LayerSetUp: set
        ``param_str`` and ``phase``, ``setup``, then ``reshape``); their top shapes
        are declared to shape inference for the layers after them."""
        from netdsl.shapes import infer_shapes
        self._python: Dict[int, Any] = {}
        self._python_tops: Dict[str, Blob] = {}
        declared: Dict[str, List[Tuple[int, ...]]] = {}
        layers = self._param.layer
        for i, lp in enumerate(layers):
            if lp.type != "Python":
                continue
            bottoms = []
            if lp.bottom:
                prefix = type(self._param)()
                prefix.state.CopyFrom(self._param.state)
                prefix.layer.extend(layers[:i])
                known = infer_shapes(prefix, declared=declared or None).blobs
                bottoms = [self._python_tops.get(b) or Blob(tuple(known[b]))
                           for b in lp.bottom]
            tops = [self._python_tops.setdefault(t, Blob(())) for t in lp.top]
            layer = _python_layer(lp)
            layer.param_str = lp.python_param.param_str
            layer.phase = self._state_phase
            try:
                layer.setup(bottoms, tops)
                layer.reshape(bottoms, tops)
            except NetdslError as err:
                raise err.located(layer=lp.name)
            declared[lp.name] = [tuple(b.shape) for b in tops]
            self._python[i] = layer
        return declared

    def _init_data_layers(self) -> None:
        # DummyData fills its constant tops once, at set-up (DummyDataLayer::LayerSetUp)
        for i, lp in enumerate(self._param.layer):
            if lp.type == "DummyData" and any(_constant_tops(lp)):
                self._run(i, setup=True)

    # -- pycaffe's properties

    @_cached
    def params(self) -> "OrderedDict[str, List[Blob]]":
        """Layer name -> learnable blobs, for layers that have some (in order)."""
        out = _LayerNames()
        for name, layer in zip(self._layer_names, self.layers):
            if len(layer.blobs):
                out[name] = layer.blobs
        return out

    @_cached
    def layer_dict(self) -> "OrderedDict[str, Layer]":
        out = _LayerNames()
        for name, layer in zip(self._layer_names, self.layers):
            out[name] = layer
        return out

    @_cached
    def top_names(self) -> "OrderedDict[str, List[str]]":
        out = _LayerNames()
        for name, tops in zip(self._layer_names, self._tops):
            out[name] = list(tops)
        return out

    @_cached
    def bottom_names(self) -> "OrderedDict[str, List[str]]":
        out = _LayerNames()
        for name, bottoms in zip(self._layer_names, self._bottoms):
            out[name] = list(bottoms)
        return out

    @_cached
    def blob_loss_weights(self) -> "OrderedDict[str, float]":
        """Blob name -> loss weight (0 for blobs that are no loss), in blob order."""
        out = _Named()
        for name in self._blob_names:
            out[name] = self._loss.get(name, 0.0)
        return out

    @property
    def _inputs(self) -> List[int]:
        """Blob indices of the inputs (pycaffe's ``Net._inputs``)."""
        return [self._blob_names.index(n) for n in self.inputs]

    @property
    def _outputs(self) -> List[int]:
        return [self._blob_names.index(n) for n in self.outputs]

    def _top_ids(self, i: int) -> List[int]:
        return [self._blob_names.index(n) for n in self._tops[i]]

    def _bottom_ids(self, i: int) -> List[int]:
        return [self._blob_names.index(n) for n in self._bottoms[i]]

    @property
    def _blob_loss_weights(self) -> List[float]:
        return list(self.blob_loss_weights.values())

    @property
    def name(self) -> str:
        return self._param.name

    @property
    def phase(self) -> int:
        return self._phase

    # -- forward

    def forward(self, blobs: Optional[Sequence[str]] = None, start: Optional[str] = None,
                end: Optional[str] = None, **kwargs: Any) -> Dict[str, np.ndarray]:
        """pycaffe's ``Net.forward``: set the inputs given as keywords, run the layers
        from ``start`` to ``end`` (inclusive, by name), return ``{blob: data}`` for
        the net's outputs (``end``'s tops when ``end`` is given) and ``blobs``."""
        blobs = list(blobs or [])
        start_ind = self._layer_index(start) if start is not None else 0
        if end is not None:
            end_ind = self._layer_index(end)
            outputs = set(self.top_names[end] + blobs)
        else:
            end_ind = len(self.layers) - 1
            outputs = set(self.outputs + blobs)
        if kwargs:
            if set(kwargs) != set(self.inputs):
                raise NetdslError("Input blob arguments do not match net inputs.",
                                  hint="the inputs are %s, given %s"
                                  % (sorted(self.inputs), sorted(kwargs)))
            for name, arr in kwargs.items():
                arr = np.asarray(arr)
                if arr.shape[0] != self.blobs[name].shape[0]:
                    raise NetdslError("Input is not batch sized",
                                      hint="input '%s' has %d items, the blob %d; reshape the "
                                      "blob first" % (name, arr.shape[0],
                                                      self.blobs[name].shape[0]))
                self.blobs[name].data[...] = arr
        for out in outputs:
            if out not in self.blobs:
                raise NetdslKeyError("no blob named %r in the net" % out,
                                     hint=did_you_mean(out, self._blob_names))
        self._forwards += 1
        for i in range(start_ind, end_ind + 1):
            self._run(i)
        return {out: self.blobs[out].data for out in outputs}

    def _forward(self, start: int, end: int) -> float:
        """pycaffe's ``Net._forward(start_index, end_index)``."""
        self._forwards += 1
        for i in range(start, end + 1):
            self._run(i)
        return 0.0

    def forward_all(self, blobs: Optional[Sequence[str]] = None, **kwargs: Any
                    ) -> Dict[str, np.ndarray]:
        """pycaffe's ``forward_all``: inputs of any batch count, run in net-sized batches."""
        names = set(self.outputs + list(blobs or []))
        if not kwargs:
            return {k: v.copy() for k, v in self.forward(blobs=blobs).items()}
        if set(kwargs) != set(self.inputs):
            raise NetdslError("Input blob arguments do not match net inputs.")
        n = len(next(iter(kwargs.values())))
        collected: Dict[str, List[np.ndarray]] = {k: [] for k in names}
        batch = self.blobs[self.inputs[0]].shape[0]
        for lo in range(0, n, batch):
            chunk = {}
            for k, v in kwargs.items():
                part = np.asarray(v[lo:lo + batch])
                if len(part) < batch:  # pad the last batch as pycaffe does
                    pad = np.zeros((batch - len(part),) + part.shape[1:], dtype=part.dtype)
                    part = np.concatenate([part, pad])
                chunk[k] = part
            out = self.forward(blobs=blobs, **chunk)
            for k in names:
                collected[k].append(out[k].copy())
        return {k: np.concatenate(v)[:n] for k, v in collected.items()}

    def _layer_index(self, name: str) -> int:
        try:
            return self._layer_names.index(name)
        except ValueError:
            raise NetdslValueError("no layer named %r in the net" % name,
                                   hint=did_you_mean(name, self._layer_names),
                                   pycaffe="%r is not in list" % name) from None

    def _run(self, i: int, setup: bool = False) -> None:
        """Run layer ``i``'s numpy forward on its bottom blobs and store its tops in
        the blobs (an in-place layer writes into its blob, as in Caffe)."""
        from netdsl.forward.core import Context, layer_blobs, layer_type, run_layer
        lp = self._param.layer[i]
        layer = self.layers[i]
        if lp.type == "Input":
            return  # Input's Forward does nothing: the blob holds what was set
        if lp.type == "Python":  # Layer::Forward: Reshape, then Forward
            bottoms = [self.blobs[b] for b in lp.bottom]
            tops = [self.blobs[t] for t in lp.top]
            layer.reshape(bottoms, tops)
            layer.forward(bottoms, tops)
            return
        bottoms = [self.blobs[b].data for b in lp.bottom]
        if lp.type == "Dropout" or not lp.bottom:
            seed = self._seed + self._forwards  # a new Dropout mask / DummyData draw
        else:
            seed = 0
        inplace = len(lp.top) == 1 and bool(lp.bottom) and lp.top[0] == lp.bottom[0]
        try:
            lt = layer_type(lp)
            blobs = layer_blobs(lp, lt, [b.data for b in layer.blobs] or None, bottoms)
            ctx = Context(phase=self._phase, ntop=len(lp.top),
                          rng=np.random.default_rng(seed), inputs={}, inplace=inplace,
                          work=self._work)
            outs = run_layer(lp, lt, bottoms, blobs, ctx, self._caches.setdefault(i, {}))
        except NetdslError as err:
            if not lp.bottom and lp.type != "DummyData":
                raise NetdslError("data layer of type '%s' reads its data inside Caffe, which "
                                  "netdsl does not run (%s)" % (lp.type, err.message),
                                  layer=lp.name,
                                  hint="set net.blobs[...].data yourself and call "
                                       "forward(start='<the next layer>')") from None
            else:
                raise err.located(layer=lp.name)
        result = dict(zip(lp.top, outs))
        keep = _constant_tops(lp) if lp.type == "DummyData" else [True] * len(lp.top)
        for j, t in enumerate(lp.top):
            if lp.type == "DummyData" and keep[j] != setup:
                continue  # constant tops are filled once, at set-up; others every forward
            out = result[t]
            blob = self.blobs[t]
            if blob.shape != out.shape:
                blob.reshape(*out.shape)
            if blob.data is not out:
                np.copyto(blob.data, out, casting="same_kind")

    def reshape(self) -> None:
        """Caffe's ``Net::Reshape``: every blob's shape from the inputs' current shapes.

        Parameter shapes are fixed at set-up; an input that would change them is
        an error, as Caffe's layer Reshape checks make it."""
        from netdsl.shapes import infer_shapes
        given = {}
        declared = {}
        for i, lp in enumerate(self._param.layer):
            if lp.type == "Python":
                tops = [self.blobs[t] for t in lp.top]
                self.layers[i].reshape([self.blobs[b] for b in lp.bottom], tops)
                declared[lp.name] = [tuple(b.shape) for b in tops]
            elif not lp.bottom:
                for t in lp.top:
                    given[t] = tuple(self.blobs[t].shape)
        shapes = infer_shapes(self._param, given, declared=declared or None)
        by_layer = _by_layer(self._param, shapes)
        for lp, layer in zip(self._param.layer, self.layers):
            entry = by_layer.get(id(lp))
            if entry is None:
                continue
            want = [tuple(int(d) for d in s) for s in (entry.param_shapes or ())]
            have = [b.shape for b in layer.blobs]
            if want and [_count(s) for s in want] != [_count(s) for s in have]:
                raise NetdslValueError("the new input shapes change this layer's parameter "
                                       "shapes from %s to %s" % (have, want),
                                       layer=layer.name,
                                       hint="Caffe's layer Reshape checks this (\"Input size "
                                            "incompatible with ... parameters\")")
        for name, shape in shapes.blobs.items():
            if name in self.blobs:
                self.blobs[name].reshape(*shape)

    # -- training entry points

    def backward(self, *args: Any, **kwargs: Any) -> Any:
        raise training_error("Net.backward")

    def _backward(self, *args: Any, **kwargs: Any) -> Any:
        raise training_error("Net._backward")

    def forward_backward_all(self, *args: Any, **kwargs: Any) -> Any:
        raise training_error("Net.forward_backward_all")

    def clear_param_diffs(self) -> None:
        """Set every parameter diff to zero (Caffe's ``ClearParamDiffs``)."""
        for layer in self.layers:
            for b in layer.blobs:
                b.diff[...] = 0

    def set_input_arrays(self, *args: Any, **kwargs: Any) -> Any:
        raise NetdslRuntimeError("set_input_arrays feeds a MemoryData layer inside Caffe; "
                                 "netdsl runs no data layers",
                                 hint="give inputs to forward(**inputs) or set "
                                      "net.blobs[...].data")

    # -- weights

    def copy_from(self, filename: str) -> None:
        """Caffe's ``CopyTrainedLayersFrom``: blobs by layer name from a caffemodel
        (or an HDF5 file); source layers the net lacks are ignored; the blob count
        and each blob's shape must match."""
        filename = os.fspath(filename)
        if _is_hdf5(filename):
            self.load_hdf5(filename)
            return
        from netdsl.weights import open_caffemodel
        with open_caffemodel(filename) as model:
            self._copy_from_model(model)

    def _copy_from_model(self, model: Any) -> None:
        index = {}
        for i, name in enumerate(self._layer_names):
            index.setdefault(name, i)  # Caffe takes the first layer of that name
        with open(model.path, "rb") as fh:
            for entry in model.layers:
                i = index.get(entry.name)
                if i is None:
                    continue  # "Ignoring source layer"
                targets = self.layers[i].blobs
                if len(targets) != len(entry.blobs):
                    raise NetdslError("Incompatible number of blobs for layer %s: the "
                                      "caffemodel has %d, the net %d"
                                      % (entry.name, len(entry.blobs), len(targets)),
                                      file=model.path, layer=entry.name)
                for j, (src, dst) in enumerate(zip(entry.blobs, targets)):
                    if not _shape_equals(dst.shape, src.shape):
                        raise NetdslError(
                            "Cannot copy param %d weights from layer '%s'; shape mismatch.  "
                            "Source param shape is %s; target param shape is %s"
                            % (j, entry.name, _shape_text(src.shape), _shape_text(dst.shape)),
                            file=model.path, layer=entry.name,
                            hint="to learn this layer's parameters from scratch rather than "
                                 "copying from a saved net, rename the layer")
                    _read_blob(fh, model, entry, j, src, dst.data)

    def share_with(self, other: "Net") -> None:
        """Caffe's ``ShareTrainedLayersWith``: use ``other``'s parameter memory,
        layer by name; counts and shapes must match."""
        index = {}
        for i, name in enumerate(self._layer_names):
            index.setdefault(name, i)
        for name, layer in zip(other._layer_names, other.layers):
            i = index.get(name)
            if i is None:
                continue
            targets = self.layers[i].blobs
            if len(targets) != len(layer.blobs):
                raise NetdslError("Incompatible number of blobs for layer %s" % name,
                                  layer=name)
            for src, dst in zip(layer.blobs, targets):
                if src.shape != dst.shape:
                    raise NetdslError("cannot share a %s blob with a %s one"
                                      % (_shape_text(src.shape), _shape_text(dst.shape)),
                                      layer=name)
                dst._adopt(src.data)

    def save(self, filename: str) -> None:
        """Write the parameters as a caffemodel (Caffe's ``Net::ToProto`` without
        diffs), every layer by name and type, atomically."""
        from netdsl.weights import write_caffemodel
        items = ((n, l.type, [b.data for b in l.blobs])
                 for n, l in zip(self._layer_names, self.layers))
        write_caffemodel(os.fspath(filename), items, name=self._param.name or None)

    def save_hdf5(self, filename: str) -> None:
        """Caffe's ``Net::ToHDF5``: group ``data``, one group per layer, datasets
        ``0``, ``1``... for the parameters a layer owns (shared ones are left to
        their owner).  Needs h5py (``pip install netdsl[hdf5]``)."""
        h5py = _h5py()
        from netdsl.fileio import atomic_open
        owners = self._owned()
        with atomic_open(os.fspath(filename), "w+b") as fh:
            with h5py.File(fh, "w") as f:
                data = f.create_group("data")
                for i, (name, layer) in enumerate(zip(self._layer_names, self.layers)):
                    g = data.require_group(name)
                    for j, b in enumerate(layer.blobs):
                        if owners[(i, j)]:
                            g.create_dataset(str(j), data=b.data)

    def load_hdf5(self, filename: str) -> None:
        """Caffe's ``CopyTrainedLayersFromHDF5``."""
        h5py = _h5py()
        index = {name: i for i, name in enumerate(self._layer_names)}  # a std::map: last wins
        owners = self._owned()
        filename = os.fspath(filename)
        with h5py.File(filename, "r") as f:
            if "data" not in f:
                raise NetdslError("Error reading weights: no group 'data'", file=filename)
            for name, group in f["data"].items():
                i = index.get(name)
                if i is None:
                    continue
                targets = self.layers[i].blobs
                if len(group) > len(targets):
                    raise NetdslError("Incompatible number of blobs for layer %s" % name,
                                      file=filename, layer=name)
                for j, dst in enumerate(targets):
                    if str(j) not in group:
                        if not owners[(i, j)]:
                            continue
                        raise NetdslError("Incompatible number of blobs for layer %s" % name,
                                          file=filename, layer=name)
                    ds = group[str(j)]
                    if tuple(ds.shape) != dst.shape:
                        raise NetdslError("Cannot load blob from hdf5; dimensions mismatch: "
                                          "%s in the file, %s in the net"
                                          % (_shape_text(ds.shape), _shape_text(dst.shape)),
                                          file=filename, layer=name)
                    ds.read_direct(dst.data) if ds.dtype == np.float32 else \
                        np.copyto(dst.data, ds[...], casting="unsafe")

    def _owned(self) -> Dict[Tuple[int, int], bool]:
        # Caffe's param_owners_: a named param's first appearance owns it
        seen: Dict[str, None] = {}
        owners = {}
        for i, lp in enumerate(self._param.layer):
            for j in range(len(self.layers[i].blobs)):
                pname = lp.param[j].name if j < len(lp.param) else ""
                owners[(i, j)] = not pname or pname not in seen
                if pname:
                    seen[pname] = None
        return owners

    def __repr__(self) -> str:
        return "<caffe.Net '%s': %d layers, %d blobs>" % (self._param.name, len(self.layers),
                                                        len(self.blobs))


def _python_layer(lp: Message) -> Any:
    """The Python layer object for ``lp``: ``python_param.module``'s class
    ``python_param.layer``, built with the LayerParameter."""
    import importlib
    p = lp.python_param
    try:
        module = importlib.import_module(p.module)
    except ImportError as exc:
        raise NetdslError("cannot import the Python layer's module '%s': %s" % (p.module, exc),
                          layer=lp.name, field="python_param.module",
                          hint="the module must be importable (the script's directory and "
                               "the current directory are on sys.path)") from None
    cls = getattr(module, p.layer, None)
    if cls is None:
        raise NetdslError("module '%s' has no layer class '%s'" % (p.module, p.layer),
                          layer=lp.name, field="python_param.layer",
                          hint=did_you_mean(p.layer, [n for n in dir(module)
                                                      if not n.startswith("_")]))
    layer = cls(lp)
    if not getattr(layer, "type", None):
        layer.type = "Python"
    if not hasattr(layer, "blobs"):
        layer.blobs = BlobVec()
    return layer


def _by_layer(param: Message, shapes: Any) -> Dict[int, Any]:
    """id(LayerParameter) -> its LayerShapes entry (by identity, else by name in order)."""
    out = {id(e.layer): e for e in shapes.layers if e.layer is not None}
    if all(id(lp) in out for lp in param.layer):
        return out
    queue: Dict[str, List[Any]] = {}
    for e in shapes.layers:
        queue.setdefault(e.name, []).append(e)
    return {id(lp): queue[lp.name].pop(0) for lp in param.layer if queue.get(lp.name)}


def _constant_tops(lp: Message) -> List[bool]:
    """Per top of a DummyData layer: is its filler constant (filled once at set-up)?"""
    fillers = list(lp.dummy_data_param.data_filler)
    n = len(lp.top)
    if not fillers:
        return [True] * n
    if len(fillers) == 1:
        fillers = fillers * n
    return [(f.type or "constant") == "constant" for f in fillers[:n]]


def _is_hdf5(path: Any) -> bool:
    try:
        with open(os.fspath(path), "rb") as fh:
            return fh.read(8) == _HDF5_MAGIC
    except OSError:
        return False


def _h5py() -> Any:
    try:
        import h5py
    except ImportError:
        raise NetdslError("HDF5 weights need h5py, which is not installed",
                          hint="pip install 'netdsl[hdf5]'") from None
    return h5py


def _shape_text(shape: Sequence[int]) -> str:
    return " ".join(str(int(d)) for d in shape) + " (%d)" % _count(shape)


def _shape_equals(target: Tuple[int, ...], source: Tuple[int, ...]) -> bool:
    """Caffe's ``Blob::ShapeEquals``: the same shape, or, for a blob stored with the
    legacy num/channels/height/width fields, the same 4-D legacy shape (the
    target's axes padded with 1s in front)."""
    source = tuple(int(d) for d in source)
    if tuple(target) == source:
        return True
    if len(source) == 4 and len(target) <= 4:
        return (1,) * (4 - len(target)) + tuple(target) == source
    return False


def _read_blob(fh: Any, model: Any, entry: Any, j: int, src: Any, dst: np.ndarray) -> None:
    """Copy stored blob ``j`` into ``dst``: packed float32 straight from the file
    (no mapping, no temporary), anything else through the reader's arrays."""
    segs = src.segments
    if src.dtype == np.float32 and len(segs) == 1 and segs[0][2] == 4 \
            and segs[0][1] == dst.size and dst.flags.c_contiguous:
        off, n, _ = segs[0]
        fh.seek(off)
        view = memoryview(dst.reshape(-1)).cast("B")
        got = fh.readinto(view)
        if got != view.nbytes:
            raise NetdslError("the caffemodel ends inside blob %d" % j, file=model.path,
                              layer=entry.name)
        if np.little_endian is False:  # pragma: no cover - big-endian hosts
            dst.byteswap(inplace=True)
        return
    arr = model.arrays(entry)[j]
    np.copyto(dst, np.asarray(arr).reshape(dst.shape), casting="unsafe")
