"""``convert(model_or_path)``: read an ONNX graph, fold what is constant, map
every other node through the one op table, emit a Caffe NetParameter and its
weights, check parity against onnxruntime."""
from __future__ import annotations

import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from netdsl.convert import table
from netdsl.convert.emit import Conversion, Emitter
from netdsl.convert.graph import Blob, Context, caffe_name
from netdsl.convert.refusal import Blocker, refusal, stand_in
from netdsl.errors import NetdslError, did_you_mean
from netdsl.netspec import Top
import netdsl.onnx.model as M
from netdsl.onnx.adapters import ADAPTERS, MOVEMENT, PASS_THROUGH, ONode

__all__ = ["convert", "OnnxConversion"]

Shapes = Mapping[str, Sequence[int]]


class OnnxConversion(Conversion):
    """A :class:`~netdsl.convert.emit.Conversion` of an ONNX model: also
    ``model`` (the ModelProto), ``onnx_inputs`` / ``onnx_outputs`` (the graph's
    own names, in the order of ``inputs`` / ``outputs``) and ``opset``."""

    model: Any
    onnx_inputs: List[str]
    onnx_outputs: List[str]
    opset: int


class Moved:
    """A value made only by moving the values of ``blob`` (a Transpose that moves
    the batch axis, GatherND, ...) that has no exact layer of its own:
    ``index`` holds, for each of its elements, the flat position in ``blob`` it
    comes from.  It becomes a blob when a reader needs one: exact copies
    (Reshape, Slice, Concat) when every batch item takes its values from its own
    item at the same places; otherwise ``error``, the first mover's."""

    __slots__ = ("blob", "index", "error", "value", "lname", "node", "done")

    def __init__(self, blob: Blob, index: np.ndarray, error: NetdslError, value: str,
                 lname: str, node: Any) -> None:
        self.blob, self.index, self.error = blob, np.asarray(index, np.int64), error
        self.value, self.lname, self.node = value, lname, node
        self.done: Optional[Blob] = None


#: most runs of consecutive source positions a moved value is copied from
MAX_PIECES = 4096


def _copies(cx: Context, m: Moved) -> Blob:
    """``m`` as a blob.  The most leading axes of the source (the batch axis at
    least) that ``m`` keeps as its own leading axes, each item taking its values
    from its own item at the same places, stay; the source's other axes are
    viewed as one, its runs of consecutive positions cut out and joined in
    order (gather_points), and the result reshaped."""
    from netdsl.convert.graph import Op
    from netdsl.convert.families.common import reshape
    from netdsl.convert.families.shape import gather_points
    x, idx = m.blob, m.index
    for k in range(min(x.ndim, idx.ndim), 0, -1):
        if idx.shape[:k] != x.shape[:k] or idx.size == 0:
            continue
        lead, rest = int(np.prod(x.shape[:k])), int(np.prod(x.shape[k:]))
        rows = idx.reshape(lead, -1) - (np.arange(lead, dtype=np.int64) * rest)[:, None]
        if (rows == rows[:1]).all() and (rows[0] >= 0).all() and (rows[0] < rest).all():
            break
    else:
        raise m.error
    flat = rows[0]
    pieces = 1 + int(np.count_nonzero(np.diff(flat) != 1))
    if pieces > MAX_PIECES:
        raise NetdslError("%s (as copies it would take %d pieces; limit %d)"
                          % (m.error.message, pieces, MAX_PIECES), layer=m.error.layer)
    op = Op("aten.index", {}, tuple(idx.shape), m.lname, target=m.node.op_type)
    v = reshape(cx, x, x.shape[:k] + (rest,))
    return gather_points(cx, op, v, [k], flat[:, None], idx.shape[k:])


def _scatter_nd(cx: Context, node: Any, vals: List[Any], ev: Any, lname: str, record: Any,
                opset: int, path: Optional[str]) -> Moved:
    """ScatterND / ScatterElements (plain assignment) with constant indices: every
    output value is one of the data's or the updates', so it is a :class:`Moved`
    value of the two joined (each viewed as one row, Concat): the node run on
    their positions.
    How both exporters write ``y[..., 0:2] = v`` (the dynamo one between two
    Transposes, which stay moves too); exact copies once a reader needs a blob."""
    from netdsl.convert.families.common import concat, reshape
    data, idx, upd = (vals + [None, None])[:3]
    if M.attributes(node).get("reduction", "none") != "none" or not isinstance(
            idx, np.ndarray):
        raise _unsupported(node, opset, path, ": only plain assignment with constant indices "
                           "is exact (a computed index is data-dependent, which no stock "
                           "Caffe layer takes)")
    some = next(v for v in (data, upd) if isinstance(v, (Blob, Moved)))
    some = some.blob if isinstance(some, Moved) else some
    data, upd = [v if isinstance(v, (Blob, Moved)) else _const_row(cx, some, v, lname)
                 for v in (data, upd)]
    sources: List[Blob] = []
    starts: Dict[Any, int] = {}
    maps = []
    for v in (data, upd):
        src = v.blob if isinstance(v, Moved) else v
        if src.top not in starts:
            starts[src.top] = sum(int(np.prod(b.shape)) for b in sources)
            sources.append(src)
        own = v.index if isinstance(v, Moved) else np.arange(
            int(np.prod(src.shape)), dtype=np.int64).reshape(src.shape)
        maps.append(own + starts[src.top])
    rows = [reshape(cx, b, (1, int(np.prod(b.shape)))) for b in sources]
    joined = concat(cx, rows, 1)
    record(joined, lname)
    index = ev.fold(node, [maps[0], idx, maps[1]])[0]
    err = NetdslError("%s node '%s' (opset %d): its values cannot be copied into place "
                      "exactly (they cross batch items)" % (node.op_type, node.name, opset),
                      layer=lname, **_where(path))
    return Moved(joined, index, err, node.output[0], lname, node)


def _cut(model: Any, outputs: Sequence[str], path: Optional[str]) -> Any:
    """A copy of ``model`` whose graph outputs are the values ``outputs`` and
    whose nodes are only those they need (ONNX's own extractor order kept)."""
    made = {o for n in model.graph.node for o in n.output if o}
    made |= {i.name for i in model.graph.input}
    for o in outputs:
        if o not in made:
            raise NetdslError("--outputs: the graph has no value '%s'" % o, field="outputs",
                              hint=did_you_mean(o, sorted(made)), **_where(path))
    producer = {o: n for n in model.graph.node for o in n.output if o}
    need, stack = set(), list(outputs)
    while stack:
        v = stack.pop()
        n = producer.get(v)
        if n is None or id(n) in need:
            continue
        need.add(id(n))
        stack.extend(i for i in n.input if i)
    out = type(model)()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(n for n in model.graph.node if id(n) in need)
    del out.graph.output[:]
    onnx = M.onnx_module()
    out.graph.output.extend(onnx.helper.make_empty_tensor_value_info(o) for o in outputs)
    return out


#: ONNX ops that stock BVLC Caffe has no form for at all, and why
NO_STOCK_FORM = {"NonZero": "a data-dependent shape", "Unique": "a data-dependent shape",
                 "NonMaxSuppression": "a data-dependent shape",
                 "TopK": "positions decided by the values (data-dependent)"}


def _onnx_blocker(err: NetdslError, node: Any) -> Blocker:
    impossible = bool(getattr(err, "no_stock_form", False))
    if node.op_type in NO_STOCK_FORM and not impossible:
        err = NetdslError("ONNX op %s (node '%s'): %s: no stock Caffe form exists"
                          % (node.op_type, node.name, NO_STOCK_FORM[node.op_type]),
                          layer=err.layer, file=err.file)
        impossible = True
    return Blocker(err, node.op_type, "node '%s'" % node.name, None, impossible)


def _stand_ins(cx: Context, ev: Any, node: Any, vals: List[Any], env: Dict[str, Any],
               shapes: Optional[List[Any]] = None) -> None:
    """Blobs of the node's output shapes standing for a node that did not map,
    so the walk goes on to find the blockers after it (never emitted)."""
    if shapes is None:
        try:
            shapes = ev.shapes(node, vals)
        except NetdslError:
            shapes = [None] * len(node.output)
    for o, sh in zip(node.output, shapes):
        if o:
            env[o] = stand_in(cx, tuple(sh)) if sh is not None else None


def _const_row(cx: Context, like: Blob, value: np.ndarray, lname: str) -> Blob:
    """A constant input of a scatter as a blob (:func:`constant_blob`)."""
    from netdsl.convert.graph import Op
    from netdsl.convert.families.shape import constant_blob
    return constant_blob(cx, Op("aten.add", {}, np.shape(value), lname), like, value)


def _where(path: Optional[str]) -> Dict[str, Any]:
    return {"file": path} if path else {}


def _unsupported(node: Any, opset: int, path: Optional[str], why: str = "") -> NetdslError:
    dom = node.domain if node.domain not in ("", "ai.onnx") else ""
    what = "%s%s" % (dom + "." if dom else "", node.op_type)
    return NetdslError("ONNX op %s (node '%s', opset %d) has no exact Caffe mapping%s"
                       % (what, node.name, opset, why),
                       hint="docs/from-onnx.md lists the ops that convert", **_where(path))


def _input_shapes(model: Any, given: Optional[Shapes], path: Optional[str]
                  ) -> List[Tuple[str, Tuple[int, ...]]]:
    declared = M.graph_inputs(model)
    names = [n for n, _, _ in declared]
    given = dict(given or {})
    for k in given:
        if k not in names:
            raise NetdslError("the graph has no input '%s' (inputs: %s)" % (k, ", ".join(names)),
                              hint=did_you_mean(k, names), **_where(path))
    out = []
    for name, dims, elem in declared:
        if elem != 1:
            raise NetdslError("input '%s' is not float32 (ONNX type %d); Caffe blobs are float"
                              % (name, elem), **_where(path))
        if name in given:
            shape = tuple(int(d) for d in given[name])
            if len(shape) != len(dims) or any(d is not None and d != s
                                               for d, s in zip(dims, shape)):
                raise NetdslError("input '%s' is %s in the graph, not %s"
                                  % (name, ["?" if d is None else d for d in dims],
                                     list(shape)), **_where(path))
        else:
            if any(d is None for d in dims) or not dims:
                raise NetdslError("input '%s' has a dynamic shape %s; give it: --input %s=%s"
                                  % (name, ["?" if d is None else d for d in dims], name,
                                     ",".join(("NCHW"[i] if len(dims) == 4 else "D%d" % i)
                                              if d is None else str(d)
                                              for i, d in enumerate(dims))),
                                  **_where(path))
            shape = tuple(int(d) for d in dims)
        out.append((name, shape))
    return out


def convert(model_or_path: Any, input_shapes: Optional[Shapes] = None, *,
            example_inputs: Optional[Mapping[str, np.ndarray]] = None, target: str = "caffe",
            fold_bn: bool = False, check: bool = True, tolerance: float = 1e-4,
            seed: int = 0, name: Optional[str] = None,
            outputs: Optional[Sequence[str]] = None) -> OnnxConversion:
    """Convert an ONNX model (a path, a ModelProto or its bytes) to a Caffe net
    of stock layers.

    Input shapes come from the graph when static, else from ``input_shapes``
    (name -> shape).  Nodes whose inputs are all constant (initialisers,
    Constant, Shape of a static shape, and arithmetic on those) are computed
    once; every other node goes through the op table (docs/from-onnx.md).
    With ``check`` the numpy forward of the result is compared with
    onnxruntime on ``example_inputs`` (default: seeded standard normal) and on
    one more seeded random input.  ``outputs`` (value names of the graph) ends
    the net at those values instead: later nodes are not converted and the check
    compares those values.
    """
    timings: Dict[str, float] = {}
    t0 = time.perf_counter()
    model, path = M.load(model_or_path)
    timings["load"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if outputs:
        model = _cut(model, outputs, path)
    conv = _map(model, path, input_shapes, target, fold_bn, name)
    timings["map"] = time.perf_counter() - t0
    conv.timings = timings
    if check:
        from netdsl.onnx.parity import check_parity
        t0 = time.perf_counter()
        conv.parity = check_parity(conv, example_inputs, tolerance=tolerance, seed=seed)
        timings["check"] = time.perf_counter() - t0
    return conv


def _map(model: Any, path: Optional[str], input_shapes: Optional[Shapes], target: str,
         fold_bn: bool, net_name: Optional[str]) -> OnnxConversion:
    table.lookup("aten.relu")   # load the built-in converters
    cx = Context(target, fold_bn)
    opset = M.opset_of(model)
    newest = M.newest_opset()
    if opset > newest:
        raise NetdslError("the model uses opset %d; the installed onnx knows up to %d "
                          "(upgrade onnx)" % (opset, newest), **_where(path))
    graph = model.graph
    for node in graph.node:
        if node.domain not in ("", "ai.onnx"):
            raise _unsupported(node, opset, path, " (custom domain)")
    shapes = _input_shapes(model, input_shapes, path)
    in_names = [caffe_name(n) for n, _ in shapes]
    onnx_outputs = [o.name for o in graph.output]
    out_names = [caffe_name(o) for o in onnx_outputs]
    if len(set(in_names) | set(out_names)) != len(in_names) + len(out_names):
        raise NetdslError("input and output names must be distinct after making them Caffe "
                          "names: %s" % ", ".join(in_names + out_names), **_where(path))
    walk = _OnnxWalk(cx, model, path, opset, in_names, onnx_outputs, out_names)
    for (oname, shape), iname in zip(shapes, in_names):
        walk.env[oname] = walk.add_input(iname, shape)
    for node in graph.node:
        walk.visit(node)
    if walk.blocked:
        raise refusal(walk.blocked)
    final = walk.outputs()
    net, weights = walk.finish(final, net_name or (graph.name or None))
    conv = OnnxConversion(net, weights, walk.inputs, out_names, walk.blob_of_node, model)
    conv.model = model
    conv.onnx_inputs = [n for n, _ in shapes]
    conv.onnx_outputs = onnx_outputs
    conv.opset = opset
    return conv


#: ops that make values from nothing: never folded to constants
_RANDOM = ("RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
           "Multinomial", "Bernoulli")


class _OnnxWalk(Emitter):
    """The walk over an ONNX graph in node order: ``env`` (value name -> Blob,
    constant array, :class:`Moved` or None), the layers made (an
    :class:`~netdsl.convert.emit.Emitter`), the blockers met."""

    def __init__(self, cx: Context, model: Any, path: Optional[str], opset: int,
                 in_names: List[str], onnx_outputs: List[str], out_names: List[str]) -> None:
        super().__init__(cx, list(in_names) + list(out_names))
        self.path, self.opset = path, opset
        self.ev = M.Evaluator(model)
        self.env: Dict[str, Any] = dict(M.initializers(model))
        self.onnx_outputs, self.out_names = onnx_outputs, out_names
        self.dead: set = set()     # values of blockers that have no stand-in blob
        self.uses: Dict[str, int] = {}
        for node in model.graph.node:
            for i in node.input:
                self.uses[i] = self.uses.get(i, 0) + 1
        self.out_of_value: Dict[str, str] = {}
        for o, oname in zip(onnx_outputs, out_names):
            self.out_of_value.setdefault(o, oname)

    def materialise(self, m: Moved) -> Blob:
        if m.done is None:
            m.done = _copies(self.cx, m)
            if m.done.top not in self.topname:
                self.topname[m.done.top] = m.lname
            self.record(m.done, m.lname)
            self.blob_of_node[m.value] = (self.topname[m.done.top], m.node)
        return m.done

    def _unique(self, node: Any) -> str:
        return self.names.unique(node.name or "%s_%s" % (node.op_type, node.output[0]))

    def _values(self, node: Any) -> List[Any]:
        vals = []
        for i in node.input:
            if not i:
                vals.append(None)
                continue
            if i not in self.env:
                raise NetdslError("node '%s' (%s) reads '%s', which no node before it "
                                  "produced" % (node.name, node.op_type, i),
                                  **_where(self.path))
            if self.env[i] is None:
                raise _unsupported(node, self.opset, self.path, ": it reads '%s', which has "
                                   "no Caffe blob" % i)
            vals.append(self.env[i])
        return vals

    def visit(self, node: Any) -> None:
        """One node: a move of a moved value, a scatter, a pass-through, a constant
        folded, a Shape/Size of a blob, or an adapter's layers."""
        env, ev = self.env, self.ev
        if any(i in self.dead for i in node.input):
            for o in node.output:    # after a blocker with no stand-in: not a new one
                env[o] = None
                self.dead.add(o)
            return
        vals = self._values(node)
        moved = [i for i, v in enumerate(vals) if isinstance(v, Moved)]
        if moved == [0] and node.op_type in MOVEMENT and not any(
                isinstance(v, Blob) for v in vals):
            src, lname = vals[0], self._unique(node)
            for o, r in zip(node.output, ev.fold(node, [src.index] + vals[1:])):
                env[o] = Moved(src.blob, r, src.error, o, lname, node)
            return
        if node.op_type in ("ScatterND", "ScatterElements") and any(
                isinstance(v, (Blob, Moved)) for v in vals):
            env[node.output[0]] = _scatter_nd(self.cx, node, vals, ev, self._unique(node),
                                              self.record, self.opset, self.path)
            return
        vals = [self.materialise(v) if isinstance(v, Moved) else v for v in vals]
        blobs = [v for v in vals if isinstance(v, Blob)]
        if node.op_type in PASS_THROUGH:
            env[node.output[0]] = vals[0]
            for o in node.output[1:]:
                env[o] = None
        elif not blobs and node.op_type not in _RANDOM:
            try:
                results = ev.fold(node, vals)
            except Exception as exc:
                raise _unsupported(node, self.opset, self.path, ": computing it as a constant "
                                   "failed (%s: %s)" % (type(exc).__name__, exc)) from None
            for o, r in zip(node.output, results):
                env[o] = r
        elif node.op_type in ("Shape", "Size"):
            shape = np.asarray(vals[0].shape, np.int64)
            if node.op_type == "Size":
                env[node.output[0]] = np.asarray(int(np.prod(shape)), np.int64)
            else:
                a = M.attributes(node)
                end = a.get("end")
                env[node.output[0]] = shape[int(a.get("start", 0)):
                                            None if end is None else int(end)].copy()
        else:
            self.convert(node, vals, blobs)

    def _out_shapes(self, node: Any, vals: List[Any], lname: str) -> List[Any]:
        where = (node.op_type, node.name, self.opset)
        try:
            out_shapes = self.ev.shapes(node, vals)
        except NetdslError as err:
            raise NetdslError("%s node '%s' (opset %d): %s" % (where + (err.message,)),
                              layer=lname, **_where(self.path)) from None
        for o, s in zip(node.output, out_shapes):
            if o and s is None and self.uses.get(o, 0) + self.onnx_outputs.count(o):
                raise NetdslError("%s node '%s' (opset %d): the shape of '%s' is not static "
                                  "(give fixed input shapes with --input)" % (where + (o,)),
                                  layer=lname, **_where(self.path))
        return out_shapes

    def convert(self, node: Any, vals: List[Any], blobs: List[Blob]) -> None:
        """A node through its adapter; a failure is a blocker (stand-ins let the
        walk go on) or, for a mover, a :class:`Moved` value."""
        env, path, opset = self.env, self.path, self.opset
        fn = ADAPTERS.get(node.op_type)
        if fn is None:
            # go on past it with stand-in blobs: the refusal lists every blocker
            self.blocked.append(_onnx_blocker(_unsupported(node, opset, path), node))
            _stand_ins(self.cx, self.ev, node, vals, env)
            self.dead.update(o for o in node.output if env.get(o) is None)
            return
        lname = self.out_of_value.get(node.output[0]) if node.output else None
        lname = lname or self._unique(node)
        out_shapes = self._out_shapes(node, vals, lname)
        onode = ONode(self.cx, node, vals, M.attributes(node), out_shapes, lname, opset,
                      users=self.uses.get(node.output[0], 0) if node.output else 0)
        try:
            result = fn(onode)
        except NetdslError as err:
            impossible = getattr(err, "no_stock_form", False)
            err = onode.located(err)
            if node.op_type in MOVEMENT and isinstance(vals[0], Blob) and len(blobs) == 1:
                x = vals[0]
                start = np.arange(int(np.prod(x.shape)), dtype=np.int64).reshape(x.shape)
                for o, r in zip(node.output, self.ev.fold(node, [start] + vals[1:])):
                    env[o] = Moved(x, r, NetdslError(err.message, layer=err.layer,
                                                     hint=err.hint, **_where(path)),
                                   o, lname, node)
                return
            e = NetdslError(err.message, layer=err.layer, hint=err.hint, **_where(path))
            e.no_stock_form = impossible  # type: ignore[attr-defined]
            self.blocked.append(_onnx_blocker(e, node))
            _stand_ins(self.cx, self.ev, node, vals, env, out_shapes)
            self.dead.update(o for o in node.output if env.get(o) is None)
            return
        except Exception as exc:  # a converter's bug must still name the node
            raise NetdslError("%s node '%s' (opset %d): the converter failed: %s: %s"
                              % (node.op_type, node.name, opset, type(exc).__name__, exc),
                              layer=lname, **_where(path)) from exc
        self._keep(node, result, lname)

    def _keep(self, node: Any, result: Any, lname: str) -> None:
        results = list(result) if isinstance(result, (list, tuple)) else [result]
        if isinstance(result, Blob):
            if result.top not in self.topname:
                self.topname[result.top] = lname
        else:
            for i, r in enumerate(results):
                if isinstance(r, Blob) and r.top not in self.topname:
                    o = node.output[i] if i < len(node.output) else None
                    self.topname[r.top] = self.out_of_value.get(o) or "%s_%d" % (lname, i)
        self.record(results, lname)
        for o, r in zip(node.output, results):
            if o:
                self.env[o] = r
                if isinstance(r, Blob):
                    self.blob_of_node[o] = (self.topname[r.top], node)
        for o in node.output[len(results):]:
            self.env[o] = None

    def outputs(self) -> List[Top]:
        final: List[Top] = []
        for o, oname in zip(self.onnx_outputs, self.out_names):
            v = self.env.get(o)
            if isinstance(v, Moved):
                v = self.materialise(v)
            if not isinstance(v, Blob):
                raise NetdslError("output '%s' is not computed from the inputs (a constant or "
                                  "a value with no blob); Caffe nets output blobs only" % o,
                                  **_where(self.path))
            final.append(self.output_top(v, oname))
        return final
