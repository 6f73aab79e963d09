"""YAML specs: describe a net once, get its train, val and deploy prototxt.

::

    from netdsl.spec import load_spec, build_nets, build
    spec = load_spec("specs/fcn32s.yaml", {"num_classes": 59})
    nets = build_nets(spec)              # {"train": NetParameter, "val": ..., "deploy": ...}
    build("specs/fcn32s.yaml", "out/fcn32s")   # writes train/val/deploy(.prototxt), solver

The format is described in docs/spec.md.  Loading is :mod:`.load` (YAML nodes
with marks, Jinja2 templates), expansion :mod:`.expand` (variables, blocks,
repeats, includes, ops, phases), compilation :mod:`.compile` (records ->
NetSpec builder calls -> NetParameter); :mod:`.schema_json` gives the JSON
Schema of the format.  Every user error is a
:class:`~netdsl.errors.NetdslError` located in the spec (file:line:column).
"""
from __future__ import annotations

import contextlib
import gc
import os
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from google.protobuf.message import Message

from ..errors import NetdslError, did_you_mean
from .compile import Compiled, compile_records, locate
from .expand import Spec, expand, load_spec, parse_define, parse_defines
from .phases import caffe_phase

__all__ = ["Spec", "load_spec", "build_nets", "build_solver", "build_all", "build", "Built",
           "surgery_layers", "parse_define", "render", "expand", "compile_records"]


class Built:
    """Everything a build makes: per-phase nets and texts, the solver, surgery lists."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.nets: Dict[str, Message] = {}
        self.compiled: Dict[str, Compiled] = {}
        self.solver: Optional[Message] = None
        self.shapes: Dict[str, Any] = {}

    @property
    def surgery(self) -> Dict[str, List[str]]:
        """Layers whose kernels come from weight surgery: {"interp": [...], "nearest": [...]}."""
        out: Dict[str, List[str]] = {"interp": [], "nearest": []}
        for c in self.compiled.values():
            for kind, names in c.surgery.items():
                out[kind] += [n for n in names if n not in out[kind]]
        return out

    def texts(self) -> Dict[str, str]:
        """File name -> prototxt text (``<phase>.prototxt``, ``solver.prototxt``)."""
        from ..prototxt import to_text
        cache: Dict[bytes, str] = {}
        out = {"%s.prototxt" % p: net_text(net, cache) for p, net in self.nets.items()}
        if self.solver is not None:
            out["solver.prototxt"] = to_text(self.solver)
        return out


def net_text(net: Message, cache: Optional[Dict[bytes, str]] = None) -> str:
    """``prototxt.to_text(net)``, with each layer's text made once for all phases.

    A net of only ``layer`` entries prints as the concatenation of
    ``layer {`` + the layer's fields indented by two + ``}``, which is what
    protobuf's text format gives for the whole message; layers the phases share
    (same bytes) are printed once.
    """
    from ..prototxt import to_text
    if cache is None or net.ListFields()[:1] and any(fd.name != "layer"
                                                     for fd, _ in net.ListFields()):
        return to_text(net)
    parts = []
    for layer in net.layer:
        key = layer.SerializeToString(deterministic=True)
        text = cache.get(key)
        if text is None:
            body = to_text(layer)  # strings are escaped on one line: indenting lines is safe
            text = cache[key] = "layer {\n" + "".join(
                "  " + line + "\n" for line in body.splitlines()) + "}\n"
        parts.append(text)
    return "".join(parts)


@contextlib.contextmanager
def no_gc():
    """Pause the cyclic garbage collector: a big spec makes many objects and no cycles,
    so collections would only rescan them (the NetSpec builder does the same)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _phases(spec: Spec, phases: Optional[Iterable[str]]) -> List[str]:
    if phases is None:
        return list(spec.phases)
    out = []
    for p in phases:
        if p not in spec.phases:
            raise NetdslError("the spec has no phase `%s`" % p, file=spec.path,
                              hint=did_you_mean(p, spec.phases) or
                              "phases: %s" % ", ".join(spec.phases))
        if p not in out:
            out.append(p)
    return [p for p in spec.phases if p in out]


@contextlib.contextmanager
def schema_of(spec: Spec):
    """Make the spec's fork schema (``proto:``) the builder's schema while inside."""
    from .. import netspec
    if spec.schema is None:
        yield
        return
    previous = netspec._schema
    if previous is not None and previous is not spec.schema:
        raise NetdslError("the spec's `proto:` names %s but --proto gives %s"
                          % (spec.schema.SOURCE, previous.SOURCE), file=spec.path,
                          hint="drop --proto, or make both name the same file")
    netspec.use_schema(spec.schema)
    try:
        yield
    finally:
        netspec.use_schema(previous)


def build_all(spec: Spec, phases: Optional[Iterable[str]] = None, *,
              check: bool = True) -> Built:
    """Build the nets of ``phases`` (default: all) and the solver; shape-check each net
    with :func:`netdsl.shapes.check_net` when ``check``.  A spec with ``proto:``
    builds with that schema."""
    built = Built(spec)
    with schema_of(spec):
        with no_gc():
            _build_phases(built, spec, phases, check)
        built.solver = build_solver(spec)
    return built


def _build_phases(built: Built, spec: Spec, phases: Optional[Iterable[str]], check: bool) -> None:
    for phase in _phases(spec, phases):
        records = expand(spec, phase)
        if not records:
            raise NetdslError("the %s net has no layers" % phase, file=spec.path)
        compiled = compile_records(records, spec.inputs, phase, spec.inputs_node)
        built.compiled[phase] = compiled
        built.nets[phase] = compiled.net
        if check:
            built.shapes[phase] = _check(compiled, phase)


def _check(compiled: Compiled, phase: str):
    try:
        from ..shapes import check_net
    except ImportError:  # pragma: no cover - shape inference not installed
        return None
    try:
        return check_net(compiled.net, compiled.inputs or None, phase=caffe_phase(phase),
                         declared=compiled.declared or None)
    except NetdslError as exc:
        rec = compiled.layers.get(exc.layer or "")
        if rec is not None and rec.node is not None:
            exc.message = "%s net: %s" % (phase, exc.message)
            exc.args = (exc.message,)
            raise locate(exc, rec)
        exc.message = "%s net: %s" % (phase, exc.message)
        exc.args = (exc.message,)
        if exc.file is None:
            exc.file = compiled_file(compiled)
        raise


def compiled_file(compiled: Compiled) -> Optional[str]:
    for rec in compiled.layers.values():
        if rec.node is not None:
            return rec.node.start_mark.name
    return None


def build_nets(spec: Spec, phases: Optional[Iterable[str]] = None, *,
               check: bool = False) -> Dict[str, Message]:
    """``{phase: NetParameter}`` for the spec's phases (train, val, deploy by default)."""
    return build_all(spec, phases, check=check).nets


def build_solver(spec: Spec) -> Optional[Message]:
    """The SolverParameter of the spec's ``solver`` section (None without one)."""
    if spec.solver is None:
        return None
    from ..netspec import assign, current_schema
    from .expand import value
    from .load import error, pairs
    solver = current_schema().SolverParameter()
    scope = spec.scope(None)
    for key, knode, vnode in pairs(spec.solver):
        v = value(vnode, scope)
        try:
            assign(solver, key, v, where="solver")
        except NetdslError as exc:
            node = knode if exc.message.startswith("unknown field") else vnode
            raise error(node, exc.message, hint=exc.hint, field=key) from None
    return solver


def surgery_layers(net: Message) -> Tuple[List[str], List[str]]:
    """(interp, nearest): Deconvolution layers of ``net`` whose kernels come from surgery.

    An upsampling Deconvolution without a ``weight_filler`` (Caffe would start
    it at zero), one kernel size and one stride: kernel ``2f - f mod 2`` with
    stride ``f`` takes bilinear kernels (FCN's ``interp``), kernel ``f`` with
    stride ``f`` all-ones kernels (nearest).  This is the form the ``upsample``
    op writes with ``dense: true`` and FCN's published nets have.
    """
    interp: List[str] = []
    nearest: List[str] = []
    for layer in net.layer:
        if layer.type != "Deconvolution":
            continue
        p = layer.convolution_param
        if p.HasField("weight_filler"):
            continue
        ks = list(p.kernel_size) or ([p.kernel_h] if p.HasField("kernel_h") else [])
        st = list(p.stride) or ([p.stride_h] if p.HasField("stride_h") else [1])
        if p.HasField("kernel_w") and p.kernel_w not in ks:
            continue
        if p.HasField("stride_w") and p.stride_w not in st:
            continue
        if len(set(ks)) != 1 or len(set(st)) != 1:
            continue
        k, f = ks[0], st[0]
        if f > 1 and k == 2 * f - f % 2:
            interp.append(layer.name)
        elif f > 1 and k == f:
            nearest.append(layer.name)
    return interp, nearest


def build(path: str, out_dir: Optional[str] = None, variables: Optional[Dict[str, Any]] = None,
          phases: Optional[Sequence[str]] = None, *, weights: bool = False,
          source: Optional[str] = None, seed: int = 0, check: bool = True,
          custom_types: Sequence[str] = (), double: bool = False,
          allow_large: bool = False, max_memory: Optional[Any] = None) -> List[str]:
    """Build a spec and write ``<phase>.prototxt`` (and ``solver.prototxt``, and with
    ``weights`` an initialised ``init.caffemodel``) into ``out_dir``.

    Everything is built and checked before the first file is written, and each
    file is replaced atomically, so an error leaves ``out_dir`` as it was.
    ``out_dir`` defaults to ``out/<spec name>``.  Returns the paths written.
    The weights are refused past ``max_memory`` (see :mod:`netdsl.memory`).
    """
    from ..fileio import atomic_write
    with no_gc():
        spec = load_spec(path, variables, custom_types=custom_types)
        built = build_all(spec, phases, check=check)
        files = built.texts()
    if out_dir is None:
        out_dir = os.path.join("out", spec.name)
    model = None
    if weights:
        model = initial_weights(built, source=source, seed=seed, max_memory=max_memory)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise NetdslError("cannot write into %s: it is a file" % out_dir)
    written = []
    for fname, text in files.items():
        target = os.path.join(out_dir, fname)
        atomic_write(target, text)
        written.append(target)
    if model is not None:
        from ..proto import schema_of as module_of
        from ..weights import write_caffemodel
        target = os.path.join(out_dir, "init.caffemodel")
        net, blobs = model
        write_caffemodel(target, blobs, types=net, pb2=module_of(net), double=double,
                         allow_large=allow_large)
        written.append(target)
    return written


def initial_weights(built: Built, *, source: Optional[str] = None, seed: int = 0,
                    max_memory: Optional[Any] = None):
    """(net, {layer: [arrays]}): fillers, then ``source`` transplanted by layer name, then
    bilinear/nearest surgery on the upsample ops' layers (``netdsl.weights.init_weights``)."""
    from ..weights import init_weights
    phase = next(iter(built.compiled))
    compiled = built.compiled[phase]
    surgery = built.surgery
    interp = list(surgery["interp"])
    nearest = list(surgery["nearest"])
    names = {layer.name for layer in compiled.net.layer}
    interp = [n for n in interp if n in names]
    nearest = [n for n in nearest if n in names]
    from ..memory import guard_init, resolve_limit
    guard_init(compiled.net, compiled.inputs or None, limit=resolve_limit(max_memory),
               file=built.spec.path)
    try:
        if source is not None and built.spec.schema is not None:
            from ..weights import open_caffemodel
            source = open_caffemodel(source, pb2=built.spec.schema)
        blobs = init_weights(compiled.net, seed=seed, source=source, interp_layers=interp,
                             nearest_layers=nearest, inputs=compiled.inputs or None)
    except NetdslError as exc:
        rec = compiled.layers.get(exc.layer or "")
        if rec is not None and rec.node is not None:
            raise locate(exc, rec)
        raise
    return compiled.net, blobs


def render(path: str, variables: Optional[Dict[str, Any]] = None) -> str:
    """A template rendered with its front-matter defaults and ``variables`` (``-D``)."""
    from .load import front_matter, is_template, render_template
    from ..fileio import read_text
    defines = parse_defines(variables)
    if not is_template(path):
        read_text(path)
        raise NetdslError("not a template (a *.j2 file)", file=path)
    fm, fm_nodes, _ = front_matter(path)
    for k in defines:
        if k not in fm:
            raise NetdslError("-D %s: the template declares no variable `%s` in its front matter"
                              % (k, k), file=path,
                              hint=did_you_mean(k, list(fm)) or
                              ("variables: %s" % ", ".join(fm) if fm else None))
    context = dict(fm)
    context.update(defines)
    text = render_template(path, context)
    # the front matter was blanked to keep template line numbers; drop those lines here
    from .load import split_front_matter
    from ..fileio import read_text as _read
    front, body = split_front_matter(_read(path))
    blank = len(body) - len(body.lstrip("\n")) if front else 0
    i = 0
    while i < blank and i < len(text) and text[i] == "\n":
        i += 1
    text = text[i:]
    return text if not text or text.endswith("\n") else text + "\n"
