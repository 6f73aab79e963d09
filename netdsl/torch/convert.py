"""``convert(model, example_inputs)``: trace with ``torch.export``, map every ATen
op through the op table, emit a Caffe NetParameter and its weights, check parity."""
from __future__ import annotations

import operator
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from netdsl.convert import table
from netdsl.convert.emit import Conversion, Emitter
from netdsl.convert.graph import (Blob, Context, Op, caffe_name, located_error, module_path,
                                  module_paths, source_line)
from netdsl.convert.refusal import blocker, module_before, no_stock_form, refusal, stand_in
from netdsl.errors import NetdslError
from netdsl.netspec import Top

__all__ = ["convert", "Conversion", "trace"]   # Conversion: netdsl.convert.emit


def _torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise NetdslError("PyTorch is not installed (%s); pip install 'netdsl[torch]'" % exc)
    return torch


def trace(model: Any, example_inputs: Sequence[Any]) -> Any:
    """``torch.export.export`` of ``model`` on ``example_inputs`` (non-strict,
    when this torch has the option); an ExportedProgram is returned as is."""
    torch = _torch()
    if isinstance(model, torch.export.ExportedProgram):
        return model
    if not isinstance(model, torch.nn.Module):
        raise NetdslError("the model must be a torch.nn.Module or an ExportedProgram, not %s"
                          % type(model).__name__)
    if model.training:
        raise NetdslError("the model is in training mode; call model.eval() first "
                          "(batch norm and dropout convert with their eval behaviour)")
    args = tuple(example_inputs)
    import inspect
    kwargs = {"strict": False} if "strict" in inspect.signature(
        torch.export.export).parameters else {}
    try:
        return torch.export.export(model, args, **kwargs)
    except NetdslError:
        raise
    except Exception as exc:  # tracing failures are the model's, not ours
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "DataDependent" in type(exc).__name__ or "data-dependent" in str(exc):
            raise NetdslError("the model's shapes or control flow depend on the input's values "
                              "(data-dependent: %s); no stock Caffe form exists, as every "
                              "Caffe blob shape is fixed when the net is built" % first,
                              hint="convert up to the part before it with --outputs NAME"
                              ) from None
        raise NetdslError("torch.export could not trace the model: %s: %s"
                          % (type(exc).__name__, first)) from None


def _bind(node: Any) -> Dict[str, Any]:
    """The node's arguments by schema name, defaults filled in."""
    target = node.target
    schema = getattr(target, "_schema", None)
    if schema is None:
        return {"arg%d" % i: a for i, a in enumerate(node.args)} | dict(node.kwargs)
    out: Dict[str, Any] = {}
    args = list(node.args)
    for i, a in enumerate(schema.arguments):
        # ATen calls the first tensor `self`; converters see it as `input`
        key = "input" if a.name == "self" else a.name
        if i < len(args) and not a.kwarg_only:
            out[key] = args[i]
        elif a.name in node.kwargs:
            out[key] = node.kwargs[a.name]
        elif a.has_default_value():
            out[key] = a.default_value
        else:
            out[key] = None
    return out


def _shape_of(val: Any) -> Any:
    if hasattr(val, "shape"):
        return tuple(int(d) for d in val.shape)
    if isinstance(val, (list, tuple)):
        return [_shape_of(v) for v in val]
    return None


def _has_blob(value: Any) -> bool:
    if isinstance(value, Blob):
        return True
    if isinstance(value, (list, tuple)):
        return any(_has_blob(v) for v in value)
    return False


def _to_torch(value: Any) -> Any:
    torch = _torch()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_to_torch(v) for v in value)
    return value


def _to_numpy(value: Any) -> Any:
    torch = _torch()
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, (list, tuple)):
        return type(value)(_to_numpy(v) for v in value)
    return value


def _output_names(spec: Any, count: int, given: Optional[Sequence[str]]) -> List[str]:
    if given is not None:
        if len(given) != count:
            raise NetdslError("output_names has %d names for %d outputs" % (len(given), count),
                              field="output_names")
        return [caffe_name(n) for n in given]
    from torch.utils import _pytree as pytree
    tree = pytree.tree_unflatten(list(range(count)), spec)
    names: List[Optional[str]] = [None] * count

    def walk(t: Any, prefix: str) -> None:
        if isinstance(t, int):
            names[t] = prefix
        elif isinstance(t, Mapping):
            for k, v in t.items():
                walk(v, "%s_%s" % (prefix, k) if prefix else str(k))
        elif isinstance(t, (list, tuple)):
            for i, v in enumerate(t):
                walk(v, "%s_%d" % (prefix, i) if prefix else "output_%d" % i)
    walk(tree, "")
    if count == 1 and names[0] in ("", "output_0"):
        names[0] = "output"
    return [caffe_name(n or "output_%d" % i) for i, n in enumerate(names)]


def convert(model: Any, example_inputs: Union[Any, Sequence[Any]], *,
            input_names: Optional[Sequence[str]] = None,
            output_names: Optional[Sequence[str]] = None, target: str = "caffe",
            fold_bn: bool = False, check: bool = True, tolerance: float = 1e-4,
            seed: int = 0, name: Optional[str] = None,
            outputs: Optional[Sequence[str]] = None) -> Conversion:
    """Convert a PyTorch module (eval mode) to a Caffe net of stock layers.

    ``example_inputs`` is a tensor or a tuple of tensors (their shapes become the
    Input shapes).  Outputs may be a tensor, a tuple/list or a dict; output blobs
    are named by ``output_names``, the dict keys, or ``output`` /
    ``output_0, output_1, ...``; inputs by ``input_names`` (else the argument
    names of ``forward``).  ``target='opencv'`` keeps to the layers OpenCV dnn
    4.x's Caffe importer runs.  ``fold_bn`` folds a batch norm into the
    convolution before it.  With ``check`` (default), the numpy forward of the
    result is compared with PyTorch on the example inputs and on one seeded
    random input (see :mod:`netdsl.torch.parity`).  ``outputs`` cuts the net at
    named intermediate tensors instead (module paths such as ``model.22.m.0``,
    or the exported graph's node names): the net ends there, later ops are not
    converted, and the check compares those tensors.
    """
    torch = _torch()
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    example_inputs = tuple(example_inputs)
    timings: Dict[str, float] = {}
    t0 = time.perf_counter()
    program = trace(model, example_inputs)
    timings["trace"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    conv = _map(program, input_names, output_names, target, fold_bn, name, outputs)
    timings["map"] = time.perf_counter() - t0
    conv.timings = timings
    if check:
        from netdsl.torch.parity import check_parity
        t0 = time.perf_counter()
        reference = model if isinstance(model, torch.nn.Module) else program.module()
        conv.parity = check_parity(conv, reference, example_inputs, tolerance=tolerance,
                                   seed=seed)
        timings["check"] = time.perf_counter() - t0
    return conv


def _signature(program: Any, input_names: Optional[Sequence[str]],
               output_names: Optional[Sequence[str]], cut: Optional[Sequence[str]]) -> Any:
    """(constants by placeholder name, user input placeholders, input blob names,
    output nodes, output blob names) of an exported program."""
    from torch.export.graph_signature import InputKind
    sig = program.graph_signature
    graph = program.graph
    consts: Dict[str, Any] = {}
    user_inputs: List[str] = []
    for spec in sig.input_specs:
        arg = getattr(spec.arg, "name", None)
        if spec.kind == InputKind.USER_INPUT:
            if hasattr(spec.arg, "name"):
                user_inputs.append(arg)
            continue
        tgt = spec.target
        if tgt in program.state_dict:
            consts[arg] = program.state_dict[tgt]
        elif tgt in getattr(program, "constants", {}):
            consts[arg] = program.constants[tgt]
        else:
            raise NetdslError("cannot find the value of %s (%s)" % (tgt, spec.kind))
    if input_names is not None and len(input_names) != len(user_inputs):
        raise NetdslError("input_names has %d names for %d inputs"
                          % (len(input_names), len(user_inputs)), field="input_names")
    in_names = [caffe_name(n) for n in (input_names or user_inputs)]
    out_node = next(n for n in graph.nodes if n.op == "output")
    out_args = list(out_node.args[0]) if isinstance(out_node.args[0], (list, tuple)) \
        else [out_node.args[0]]
    out_specs = [s for s in sig.output_specs]
    user_out = [a for a, s in zip(out_args, out_specs) if s.kind.name == "USER_OUTPUT"]
    if cut:
        user_out = [cut_node(graph, c, user_out) for c in cut]
        if output_names is not None and len(output_names) != len(cut):
            raise NetdslError("output_names has %d names for %d outputs"
                              % (len(output_names), len(cut)), field="output_names")
        out_names = [caffe_name(n) for n in (output_names or cut)]
    else:
        out_names = _output_names(program.call_spec.out_spec, len(user_out), output_names)
    clash = set(in_names) & set(out_names)
    if clash or len(set(out_names)) != len(out_names) or len(set(in_names)) != len(in_names):
        raise NetdslError("input and output names must be distinct: %s"
                          % ", ".join(sorted(clash or set(out_names))))
    return consts, user_inputs, in_names, user_out, out_names


def _map(program: Any, input_names: Optional[Sequence[str]],
         output_names: Optional[Sequence[str]], target: str, fold_bn: bool,
         net_name: Optional[str], cut: Optional[Sequence[str]] = None) -> Conversion:
    table.lookup("aten.relu")   # load the built-in converters
    cx = Context(target, fold_bn)
    consts, user_inputs, in_names, user_out, out_names = _signature(
        program, input_names, output_names, cut)
    walk = _Walk(cx, program, consts, user_inputs, in_names, user_out, out_names)
    for node in program.graph.nodes:
        if cut and all(a in walk.env for a in user_out):
            break      # the net ends at the requested tensors
        walk.visit(node)
    if walk.blocked:
        raise refusal(walk.blocked, walk.before or None)
    final = walk.outputs(user_out, out_names)
    net, weights = walk.finish(final, net_name)
    conv = Conversion(net, weights, walk.inputs, out_names, walk.blob_of_node, program)
    conv.cut = [a.name for a in user_out] if cut else None
    return conv


class _Walk(Emitter):
    """The walk over an exported graph in node order: ``env`` (node -> Blob,
    constant array, or a list of them), the layers made (an
    :class:`~netdsl.convert.emit.Emitter`), the blockers met and the views of
    in-place writes."""

    def __init__(self, cx: Context, program: Any, consts: Dict[str, Any],
                 user_inputs: List[str], in_names: List[str], user_out: List[Any],
                 out_names: List[str]) -> None:
        torch = _torch()
        super().__init__(cx, list(in_names) + list(out_names))
        self.program, self.consts = program, consts
        self.user_inputs, self.in_names = user_inputs, in_names
        self.env: Dict[Any, Any] = {}
        self.views: Dict[Any, Tuple[Any, List[Tuple[str, int, Any]]]] = {}
        self.blocked_nodes: set = set()         # nodes of the blockers (refusal.Blocker)
        self.seen: List[List[str]] = []         # module stacks of the ops mapped so far
        self.before: Optional[str] = None       # the module before the first blocker
        self.uses: Dict[Any, int] = {}
        for node in program.graph.nodes:
            for a in node.all_input_nodes:
                self.uses[a] = self.uses.get(a, 0) + 1
        self.out_of_node: Dict[Any, str] = {}
        for a, oname in zip(user_out, out_names):
            if isinstance(a, torch.fx.Node) and a not in self.out_of_node:
                self.out_of_node[a] = oname

    def visit(self, node: Any) -> None:
        env = self.env
        if node.op == "placeholder":
            if node.name in self.consts:
                c = self.consts[node.name]
                env[node] = c.detach().cpu().numpy() if hasattr(c, "detach") else np.asarray(c)
                return
            shape = _shape_of(node.meta.get("val"))
            iname = self.in_names[self.user_inputs.index(node.name)]
            env[node] = self.add_input(iname, shape)
        elif node.op == "get_attr":
            obj = self.program.graph_module
            for part in node.target.split("."):
                obj = getattr(obj, part)
            env[node] = _to_numpy(obj)
        elif node.op == "output":
            return
        elif node.op != "call_function":
            raise NetdslError("unexpected graph node %s (%s)" % (node.name, node.op))
        elif node.target is operator.getitem:
            seq, index = node.args
            if seq in self.blocked_nodes and env.get(seq) is None:
                self.blocked_nodes.add(node)
                return
            v = env[node] = env[seq][index]
            if isinstance(v, Blob):
                self.blob_of_node[node.name] = (self.topname.get(v.top, ""), node)
        elif any(a in self.blocked_nodes and env.get(a) is None for a in node.all_input_nodes):
            self.blocked_nodes.add(node)    # after a blocker with no stand-in: not a new one
        else:
            self.call(node)

    def _resolve(self, node: Any, a: Any) -> Any:
        torch = _torch()
        if isinstance(a, torch.fx.Node):
            if self.env.get(a) is None:
                path, cls = module_path(node)
                tname = str(node.target)
                raise located_error(
                    "uses %s, which has no Caffe blob (the indices of a max pooling, "
                    "or a value the converter of %s does not give)" % (a.name, a.target),
                    Op(table.op_key(tname), {}, None, a.name,
                       "%s (%s)" % (path, cls) if path else "", source_line(node),
                       tname.replace("::", ".")))
            return self.env[a]
        if isinstance(a, (list, tuple)):
            return type(a)(self._resolve(node, x) for x in a)
        return a

    def _op(self, node: Any) -> Optional[Op]:
        """The node as an :class:`Op` with its arguments resolved; None when its
        inputs are all constants (PyTorch computes it once, here) or its shape is
        data-dependent (a blocker)."""
        torch = _torch()
        tname = str(node.target)
        key = table.op_key(tname)
        args = {k: self._resolve(node, v) for k, v in _bind(node).items()}
        if not _has_blob(list(args.values())):
            cargs = [_to_torch(self._resolve(node, a)) for a in node.args]
            ckw = {k: _to_torch(self._resolve(node, v)) for k, v in node.kwargs.items()}
            with torch.no_grad():
                self.env[node] = _to_numpy(node.target(*cargs, **ckw))
            if node.args and isinstance(node.args[0], torch.fx.Node):
                _track_view(self.views, node, key, node.args[0], args)  # a constant's slice
            return None
        lname = self.out_of_node.get(node) or self.names.for_node(
            node, key.split(".", 1)[-1].lstrip("_"))
        path, cls = module_path(node)
        try:
            out_shape, dynamic = _shape_of(node.meta.get("val")), False
        except Exception:   # an unbacked size: how many values depends on the values
            out_shape, dynamic = None, True
        op = Op(key, args, out_shape, lname, module="%s (%s)" % (path, cls) if path else "",
                source=source_line(node), target=tname.replace("::", "."),
                users=self.uses.get(node, 0))
        if dynamic:
            self.blocked.append(blocker(no_stock_form(op, "a data-dependent shape (the "
                                                      "values decide how many there are)"), op))
            self.blocked_nodes.add(node)
            self.env[node] = None
            return None
        return op

    def call(self, node: Any) -> None:
        """Convert one call_function node through the op table."""
        torch = _torch()
        op = self._op(node)
        if op is None:
            return
        tname, args, lname = str(node.target), op.args, op.name
        if op.key in table.IDENTITY:
            first = next(iter(args.values()))
            result = first[0] if isinstance(first, (list, tuple)) else first
        else:
            fn = table.lookup(tname)
            try:
                if fn is None:
                    raise located_error("no converter for this op", op,
                                        hint="register one with "
                                             "netdsl.torch.register_converter")
                result = fn(self.cx, op)
            except NetdslError as err:
                if err.layer is None and not err.file:
                    err = _relocated(err, op)
                # go on past it with a stand-in blob: the refusal lists every blocker
                self.blocked.append(blocker(err, op))
                if not self.blocked[-1].impossible or self.before is None:
                    self.before = self.before or module_before(
                        self.seen, module_paths(node)) or ""
                self.env[node] = stand_in(self.cx, op.out_shape)
                self.blocked_nodes.add(node)
                return
            except Exception as exc:  # a converter's bug must still name the op
                raise located_error("the converter failed: %s: %s"
                                    % (type(exc).__name__, exc), op) from exc
        if isinstance(result, np.ndarray):
            self.env[node] = result
            return
        self.seen.append(module_paths(node))
        if isinstance(result, Blob):
            if result.top not in self.topname:
                self.topname[result.top] = lname
        elif isinstance(result, (list, tuple)):
            for i, r in enumerate(result):
                if isinstance(r, Blob) and r.top not in self.topname:
                    self.topname[r.top] = "%s_%d" % (lname, i)
        else:
            raise located_error("the converter returned %s" % type(result).__name__, op)
        self.record(result, lname)
        self.env[node] = result
        first = node.args[0] if node.args else None
        if (isinstance(first, torch.fx.Node) and isinstance(result, Blob)
                and table.is_inplace(tname)):
            # an in-place op: later uses of its operand see the new value, and so
            # do later uses of the tensor it is a slice of (y[..., 0:2] = v)
            self.env[first] = result
            _write_back(self.cx, op, self.env, self.views, first, result, self.record)
        if isinstance(result, Blob) and isinstance(first, torch.fx.Node):
            _track_view(self.views, node, op.key, first, args)
        if isinstance(result, Blob):
            self.blob_of_node[node.name] = (self.topname[result.top], node)

    def outputs(self, user_out: List[Any], out_names: List[str]) -> List[Top]:
        """The output tops, each its own blob under its own name (a one-top Split
        where the value is a multi-top layer's part, an input, or named else)."""
        torch = _torch()
        final: List[Top] = []
        for a, oname in zip(user_out, out_names):
            v = self.env.get(a) if isinstance(a, torch.fx.Node) else None
            if not isinstance(v, Blob):
                raise NetdslError("output '%s' is not computed from the inputs (a constant or "
                                  "a non-tensor); Caffe nets output blobs only" % oname)
            final.append(self.output_top(v, oname))
        return final


def cut_node(graph: Any, name: str, outputs: Sequence[Any]) -> Any:
    """The graph node that ``name`` means: a node of that name, or the output of
    the module at that dotted path (the last node inside it, in graph order,
    read by a node outside it or returned; else its last node)."""
    from netdsl.convert.graph import module_paths
    nodes = [n for n in graph.nodes if n.op in ("call_function", "placeholder")]
    for n in nodes:
        if n.name == name and hasattr(n.meta.get("val"), "shape"):
            return n
    inside = [n for n in nodes if name in module_paths(n) and hasattr(n.meta.get("val"), "shape")]
    if not inside:
        from netdsl.errors import did_you_mean
        paths = sorted({p for n in nodes for p in module_paths(n) if p})
        raise NetdslError("--outputs: no module or node named '%s'" % name, field="outputs",
                          hint=did_you_mean(name, paths + [n.name for n in nodes]))
    scope = set(inside)
    for n in reversed(inside):
        if n in outputs or any(u not in scope for u in n.users):
            return n
    return inside[-1]


def _relocated(err: NetdslError, op: Op) -> NetdslError:
    """A converter's unlocated error at the op's source line, keeping whether
    no stock Caffe form exists."""
    new = located_error(err.message, op, hint=err.hint)
    if getattr(err, "no_stock_form", False):
        new.no_stock_form = True     # type: ignore[attr-defined]
    return new


def _track_view(views: Dict[Any, Any], node: Any, key: str, base: Any,
                args: Dict[str, Any]) -> None:
    """Remember that ``node`` (a ``slice`` or ``select`` of ``base``) is a view:
    its root tensor and the steps that take it, for :func:`_write_back`."""
    if key not in ("aten.slice", "aten.select"):
        return
    x = args.get("input")
    if not isinstance(x, (Blob, np.ndarray)):
        return
    shape = tuple(x.shape)
    ax = int(args.get("dim") or 0)
    ax = ax + len(shape) if ax < 0 else ax
    if key == "aten.select":
        i = int(args["index"])
        step: Tuple[str, int, Any] = ("select", ax, i + shape[ax] if i < 0 else i)
    else:
        from netdsl.convert.families.shape import slice_positions
        step = ("slice", ax, slice_positions(shape[ax], args.get("start"), args.get("end"),
                                             args.get("step") or 1))
    root, steps = views.get(base, (base, []))
    views[node] = (root, steps + [step])


def _write_back(cx: Context, op: Op, env: Dict[Any, Any], views: Dict[Any, Any],
                target: Any, value: Blob, record: Any) -> None:
    """An in-place op wrote ``value`` into ``target``: when ``target`` is a view
    (slices and selects) of another tensor, that tensor becomes itself with the
    view's positions replaced (Slice + Concat, exact; torch.export keeps
    ``y[..., 0:2] = v`` as ``copy_`` into ``slice(y)``)."""
    if target not in views:
        return
    from netdsl.convert.families.shape import scatter
    root, steps = views[target]
    base = env.get(root)
    if isinstance(base, np.ndarray):     # a constant canvas (torch.zeros(...)) written into
        from netdsl.convert.families.shape import constant_blob
        base = constant_blob(cx, op, value, base)
    if not isinstance(base, Blob):
        raise op.error("writes into a slice of a tensor that has no Caffe blob")
    new = scatter(cx, op, base, steps, value)
    record(new, op.name)
    env[root] = new


