"""YAML specs: describe a net once, get its train, val and deploy prototxt.

::

    from netdsl.spec import load_spec, build_nets, build
    spec = load_spec("specs/fcn32s.yaml", {"num_classes": 59})
    nets = build_nets(spec)              # {"train": NetParameter, "val": ..., "deploy": ...}
    build("specs/fcn32s.yaml", "out/fcn32s")   # writes train/val/deploy(.prototxt), solver

The format is described in docs/spec.md.  Reading files is :mod:`.load` (YAML
nodes with marks, Jinja2 templates, include paths), a spec's top level
:mod:`.document` (variables, libraries, blocks, inputs, schema, plugins),
``${...}`` values :mod:`.interpolate`, expansion :mod:`.expand` (blocks,
repeats, layer includes, ops, phases), compilation :mod:`.compile` (records ->
NetSpec builder calls -> NetParameter); :mod:`.schema_json` gives the JSON
Schema of the format.  Every user error is a
:class:`~netdsl.errors.NetdslError` located in the spec (file:line:column).
"""
from __future__ import annotations

import contextlib
import os
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from google.protobuf.message import Message

from ..errors import NetdslError, did_you_mean
from .compile import Compiled, compile_records, locate
from .document import Spec, load_spec, parse_define, parse_defines
from .expand import expand
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
    """Make the spec's fork schema (``proto:``) the builder's schema, and its
    ``custom_layers`` the layer types in use, while inside."""
    from .. import netspec
    from ..layers import use_layers
    with use_layers(spec.registry):
        if spec.schema is None:
            yield
            return
        previous = netspec.explicit_schema()
        if previous is not None and previous is not spec.schema:
            raise NetdslError("the spec's `proto:` names %s but --proto gives %s"
                              % (spec.schema.SOURCE, previous.SOURCE), file=spec.path,
                              hint="drop --proto, or make both name the same file")
        with netspec.schema_in_use(spec.schema):
            yield


def build_all(spec: Spec, phases: Optional[Iterable[str]] = None, *,
              check: bool = True, strict: Optional[bool] = None) -> Built:
    """Build the nets of ``phases`` (default: all) and the solver; shape-check each net
    with :func:`netdsl.shapes.check_net` when ``check``.  A spec with ``proto:``
    builds with that schema.

    A Crop whose explicit offset (``offset:`` or ``crop_param``) disagrees with the
    offset the coordinate maps give is a :class:`netdsl.crop_check.CropOffsetWarning`
    (once per layer), and an error when ``strict`` (default: the spec's ``strict:``).
    """
    built = Built(spec)
    if strict is None:
        strict = spec.strict
    with schema_of(spec):
        _build_phases(built, spec, phases, check, strict)
        built.solver = build_solver(spec)
    return built


def _build_phases(built: Built, spec: Spec, phases: Optional[Iterable[str]], check: bool,
                  strict: bool = False) -> None:
    seen: set = set()
    for phase in _phases(spec, phases):
        records = expand(spec, phase)
        if not records:
            raise NetdslError("the %s net has no layers" % phase, file=spec.path)
        compiled = compile_records(records, spec.inputs, phase, spec.inputs_node)
        built.compiled[phase] = compiled
        built.nets[phase] = compiled.net
        _check_crops(compiled, phase, strict, seen)
        if check:
            built.shapes[phase] = _check(compiled, phase)


def _check_crops(compiled: Compiled, phase: str, strict: bool, seen: set) -> None:
    """Explicit crop offsets against the coordinate maps (netdsl.crop_check)."""
    from ..crop_check import check_crop_offsets
    explicit = {name: rec for name, rec in compiled.layers.items()
                if rec.type == "Crop" and not (rec.reference is not None and rec.offset is None)}
    if not explicit:
        return

    def place(err: NetdslError) -> NetdslError:
        rec = explicit.get(err.layer or "")
        if rec is None or rec.node is None:
            return err
        err.field = "offset" if rec.reference is not None else "crop_param"
        err.hint = ("drop `offset:` and the maps' offset is used"
                    if rec.reference is not None and not getattr(err, "unconfirmed", False)
                    else err.hint)
        return locate(err, rec)

    check_crop_offsets(compiled.net, strict=strict, phase=caffe_phase(phase),
                       only=list(explicit), locate=place, seen=seen)


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
               check: bool = False, strict: Optional[bool] = None) -> Dict[str, Message]:
    """``{phase: NetParameter}`` for the spec's phases (train, val, deploy by default)."""
    return build_all(spec, phases, check=check, strict=strict).nets


def build_solver(spec: Spec) -> Optional[Message]:
    """The SolverParameter of the spec's ``solver`` section (None without one)."""
    if spec.solver is None:
        return None
    from ..netspec import assign, current_schema
    from .interpolate import value
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
    from ..layers import lookup
    out: Dict[str, List[str]] = {"interp": [], "nearest": []}
    for layer in net.layer:
        lt = lookup(layer.type)
        if lt is None or lt.surgery is None:
            continue
        try:
            kind = lt.surgery(layer, lt.parse(layer, None))
        except NetdslError:
            continue
        if kind in out:
            out[kind].append(layer.name)
    return out["interp"], out["nearest"]


def build(path: str, out_dir: Optional[str] = None, variables: Optional[Dict[str, Any]] = None,
          phases: Optional[Sequence[str]] = None, *, weights: bool = False,
          source: Optional[str] = None, seed: int = 0, check: bool = True,
          custom_types: Sequence[str] = (), double: bool = False,
          allow_large: bool = False, strict: Optional[bool] = None,
          report: Optional[list] = None, max_memory: Optional[Any] = None,
          bn_stats: str = "zero") -> List[str]:
    """Build a spec and write ``<phase>.prototxt`` (and ``solver.prototxt``, and with
    ``weights`` an initialised ``init.caffemodel``) into ``out_dir``.

    Everything is built and checked before the first file is written, and each
    file is replaced atomically, so an error leaves ``out_dir`` as it was.
    ``out_dir`` defaults to ``out/<spec name>``.  Returns the paths written.
    The weights are refused past ``max_memory`` (see :mod:`netdsl.memory`);
    ``bn_stats`` as for :func:`netdsl.weights.init_weights`.
    """
    from ..fileio import atomic_write
    spec = load_spec(path, variables, custom_types=custom_types)
    built = build_all(spec, phases, check=check, strict=strict)
    files = built.texts()
    if out_dir is None:
        out_dir = os.path.join("out", spec.name)
    model = None
    if weights:
        with schema_of(spec):
            model = initial_weights(built, source=source, seed=seed, report=report,
                                    max_memory=max_memory, bn_stats=bn_stats)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise NetdslError("cannot write into %s: it is a file" % out_dir)
    written = []
    for fname, text in files.items():
        target = os.path.join(out_dir, fname)
        atomic_write(target, text)
        written.append(target)
    stale = os.path.join(out_dir, "init.caffemodel")
    if model is None and os.path.isfile(stale):
        _warn_if_stale(stale, built)
    if model is not None:
        from ..proto import schema_of as module_of
        from ..weights import write_caffemodel
        target = os.path.join(out_dir, "init.caffemodel")
        net, blobs = model
        write_caffemodel(target, blobs, types=net, pb2=module_of(net), double=double,
                         allow_large=allow_large)
        written.append(target)
    return written


def _warn_if_stale(path: str, built: Built) -> None:
    """Warn when an init.caffemodel left by an earlier build does not fit the nets just
    written (a layer with parameters missing from it, or a blob of another shape): the
    next ``netdsl run`` or Caffe's CopyTrainedLayersFrom would fail on it.  The file is
    kept: it may hold weights the user put there."""
    import warnings
    if not built.shapes:
        warnings.warn("%s is from an earlier build and was not checked against these nets "
                      "(--no-check); rebuild with --weights, or delete it" % path, stacklevel=3)
        return
    from ..weights import open_caffemodel
    why = None
    try:
        with open_caffemodel(path) as model:
            have = {e.name: [tuple(s) for s in e.shapes] for e in model.layers}
    except NetdslError as exc:
        why = "cannot be read (%s)" % exc.message
        have = {}
    if why is None:
        for net_shapes in built.shapes.values():
            for ls in getattr(net_shapes, "layers", ()):
                want = [tuple(int(d) for d in s) for s in ls.param_shapes]
                if not want:
                    continue
                got = have.get(ls.name)
                if got is None:
                    why = "has no layer '%s'" % ls.name
                elif got != want:   # Caffe's CopyTrainedLayersFrom: ShapeEquals
                    why = "has layer '%s' with blobs %s, the net needs %s" % (
                        ls.name, ", ".join("x".join(map(str, g)) for g in got),
                        ", ".join("x".join(map(str, w)) for w in want))
                if why:
                    break
            if why:
                break
    if why:
        warnings.warn("%s is left from an earlier build and does not fit this net: it %s; "
                      "rebuild with --weights, or delete it" % (path, why), stacklevel=3)


def initial_weights(built: Built, *, source: Optional[str] = None, seed: int = 0,
                    report: Optional[list] = None, max_memory: Optional[Any] = None,
                    bn_stats: str = "zero"):
    """(net, {layer: [arrays]}): fillers, then ``source`` transplanted by layer name, then
    bilinear/nearest surgery on the upsample ops' layers (``netdsl.weights.init_weights``).
    With ``report`` (a list), the lines of :func:`netdsl.init_report.init_report_lines`
    (what was copied, reshaped, skipped, given kernels, left at fillers) are appended."""
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
               file=built.spec.path, declared=compiled.declared or None)
    owned = None
    try:
        if source is not None and built.spec.schema is not None:
            from ..weights import open_caffemodel
            source = owned = open_caffemodel(source, pb2=built.spec.schema)
        transplants: list = []
        blobs = init_weights(compiled.net, seed=seed, source=source, interp_layers=interp,
                             nearest_layers=nearest, inputs=compiled.inputs or None,
                             report=transplants, bn_stats=bn_stats,
                             declared=compiled.declared or None)
    except NetdslError as exc:
        rec = compiled.layers.get(exc.layer or "")
        if rec is not None and rec.node is not None:
            raise locate(exc, rec)
        raise
    finally:
        if owned is not None:
            owned.close()
    if report is not None:
        from ..init_report import init_report_lines
        report.extend(init_report_lines(compiled.net, blobs, transplants=transplants,
                                        interp_layers=interp, nearest_layers=nearest,
                                        bn_stats=bn_stats))
    return compiled.net, blobs


def render(path: str, variables: Optional[Dict[str, Any]] = None) -> str:
    """A template rendered with its front-matter defaults and ``variables`` (``-D``)."""
    from .load import front_matter, is_template, render_template
    from ..fileio import read_text
    defines = parse_defines(variables)
    if not os.path.exists(path):
        from ..shipped import find_shipped, missing_file
        found = find_shipped(path)   # a template shipped with netdsl, by bare name
        if found is None:
            raise missing_file(path)
        path = found
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
