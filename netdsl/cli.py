"""The ``netdsl`` command: argparse verbs, each a thin call into the library.

User errors (:class:`~netdsl.errors.NetdslError`) print one located line and
exit with status 2; nothing is written when a verb fails.
"""
from __future__ import annotations

import argparse
import contextvars
import json
import os
import sys
from typing import Callable, Dict, List, Optional

from .errors import NetdslError

EXIT_USER_ERROR = 2


def _schema(args: argparse.Namespace):
    """The schema module selected with --proto (bundled BVLC schema by default);
    also loads the layer plugins of --plugin and $NETDSL_PLUGINS."""
    from .proto import load_schema
    from .netspec import use_schema
    from .plugin_loading import ensure_env_plugins, load_plugin
    pb2 = load_schema(getattr(args, "proto", None),
                      strict=getattr(args, "strict_proto", False))
    use_schema(pb2 if getattr(args, "proto", None) else None)
    ensure_env_plugins()
    for plugin in getattr(args, "plugin", None) or ():
        load_plugin(plugin)
    return pb2


def _warn_written(msg, what: str = "prototxt") -> None:
    """One warning line when ``msg``, about to be written, sets fields its fork
    schema numbers differently from BVLC (netdsl.fork.warn_on_write)."""
    from .fork import warn_on_write
    warn_on_write(msg, what)


def _emit(text: str, out: Optional[str]) -> None:
    from .fileio import atomic_write
    if out and out != "-":
        atomic_write(out, text)
    else:
        sys.stdout.write(text)


# -- verbs -----------------------------------------------------------------

def cmd_pycaffe(args: argparse.Namespace) -> int:
    from .compat import run_module, run_script
    _schema(args)
    if not args.module and not args.script:
        raise NetdslError("give a script to run, or -m MODULE")
    argv = list(args.module[1:] if args.module else args.args or [])
    import os
    cwd = os.getcwd()     # a script may change directory: paths are kept absolute
    dirs = _watched_dirs(None if args.module else args.script, argv)
    before = _snapshot(dirs)
    try:
        if args.module:
            run_module(args.module[0], args.module[1:])
        else:
            run_script(args.script, args.args)
    finally:
        written = _changed(before, _snapshot(dirs))
        for path in written:
            print("wrote %s" % os.path.relpath(path, cwd), file=sys.stderr)
    _check_written_crops(written, [os.path.relpath(p, cwd) for p in written])
    return 0


def _check_written_crops(paths: List[str], shown: List[str]) -> None:
    """Warn about the explicit crop offsets of the nets a script wrote that the coordinate
    maps disagree with (pycaffe's NetSpec accepts any offset); ``shown`` are the
    paths as the warnings name them."""
    from .crop_check import check_crop_offsets
    from .prototxt import read_net
    for path, name in zip(paths, shown):
        if not path.endswith(".prototxt"):
            continue
        try:
            net = read_net(path)
        except (NetdslError, OSError, UnicodeDecodeError):
            continue   # a solver, or not a net netdsl reads
        if not any(layer.type == "Crop" for layer in net.layer):
            continue
        try:
            check_crop_offsets(net, locate=lambda err, p=name: err.located(file=p))
        except NetdslError:   # a net whose maps cannot be followed: shapes will say why
            continue


def _watched_dirs(script: Optional[str], argv: List[str]) -> List[str]:
    """Where a script's outputs are looked for: the working directory, the script's own
    directory and the directories named by its arguments (or holding them)."""
    import os
    dirs = [os.curdir]
    if script:
        dirs.append(os.path.dirname(script) or os.curdir)
    for a in argv:
        if a.startswith("-"):
            a = a.partition("=")[2]
        if not a:
            continue
        d = a if os.path.isdir(a) else os.path.dirname(a)
        if d and os.path.isdir(d):
            dirs.append(d)
    out: List[str] = []
    seen = set()
    for d in dirs:
        key = os.path.realpath(d)
        if key not in seen:
            seen.add(key)
            out.append(os.path.abspath(d))
    return out


def _snapshot(dirs: List[str]) -> Dict[str, tuple]:
    """{path: (mtime_ns, size)} of the files directly in ``dirs``."""
    import os
    out: Dict[str, tuple] = {}
    for d in dirs:
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for e in entries:
            try:
                if e.is_file():
                    st = e.stat()
                    path = os.path.normpath(e.path)
                    out[path] = (st.st_mtime_ns, st.st_size)
            except OSError:
                continue
    return out


def _changed(before: Dict[str, tuple], after: Dict[str, tuple]) -> List[str]:
    """Files new or changed between two snapshots (Python's bytecode caches left out)."""
    return sorted(p for p, sig in after.items()
                  if before.get(p) != sig and not p.endswith((".pyc", ".pyo")))


def cmd_fmt(args: argparse.Namespace) -> int:
    from . import prototxt
    pb2 = _schema(args)
    for path in args.files:
        text = prototxt.read_text(path)
        msg = _parse_any(text, path, pb2, upgrade=False)
        out = prototxt.to_text(msg)
        if not args.check:
            _warn_written(msg)
        if args.check:
            if out != text:
                print("%s: not in canonical form" % path)
                return 1
            continue
        if args.output:
            _emit(out, args.output)
        elif args.in_place:
            prototxt.atomic_write(path, out)
        else:
            sys.stdout.write(out)
    return 0


def _parse_any(text: str, path: str, pb2, upgrade: bool):
    """A net or, when it only parses as one, a solver prototxt."""
    from . import prototxt
    try:
        return prototxt.parse_net(text, path, upgrade=upgrade, schema=pb2)
    except NetdslError as net_err:
        try:
            return prototxt.parse_solver(text, path, upgrade=upgrade, schema=pb2)
        except NetdslError:
            raise net_err from None


def cmd_upgrade(args: argparse.Namespace) -> int:
    from . import prototxt, upgrade
    pb2 = _schema(args)
    text = prototxt.read_text(args.input)
    try:
        msg = prototxt.parse_message(text, pb2.NetParameter(), args.input)
        notes_fn = getattr(upgrade, "upgrade_net_with_notes", None)
        if notes_fn is not None:
            msg, notes = notes_fn(msg, filename=args.input)
        else:
            msg, notes = upgrade.upgrade_net(msg, filename=args.input), []
    except NetdslError as net_err:
        try:
            msg = prototxt.parse_solver(text, args.input, schema=pb2)
        except NetdslError:
            raise net_err from None
        notes = []
    for note in notes:
        print("netdsl: note: %s" % note, file=sys.stderr)
    _warn_written(msg)
    _emit(prototxt.to_text(msg), args.output)
    return 0


def parse_inputs(items: Optional[List[str]]) -> Dict[str, List[int]]:
    """``--input name=N,C,H,W`` (repeatable) -> {name: [N, C, H, W]}."""
    out: Dict[str, List[int]] = {}
    for item in items or ():
        name, sep, dims = item.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            out[name] = [int(d) for d in dims.replace("x", ",").split(",") if d.strip()]
            if not out[name]:
                raise ValueError
        except ValueError:
            raise NetdslError("bad --input %r: expected NAME=N,C,H,W (e.g. data=1,3,500,500)"
                              % item) from None
    return out


def parse_declared(items: Optional[List[str]]) -> Optional[Dict[str, List[int]]]:
    """``--declare top=N,C,H,W`` (repeatable): shapes of tops Caffe cannot infer."""
    return parse_inputs(items) or None


def _is_spec(path: str) -> bool:
    return path.endswith((".yaml", ".yml", ".yaml.j2", ".yml.j2"))


def load_net(path: str, pb2=None, *, phase: Optional[str] = None, variables=None,
             strict: Optional[bool] = None):
    """A NetParameter from a prototxt (read with ``pb2``, default the schema in
    use), or from a spec's net for ``phase`` (train, val or deploy; default deploy).
    A spec's explicit crop offsets are checked (a warning, an error when ``strict``)."""
    from . import prototxt
    from .netspec import current_schema
    pb2 = pb2 or current_schema()
    if _is_spec(path):
        return load_spec_net(path, phase=phase, variables=variables, strict=strict)[0]
    return prototxt.read_net(path, schema=pb2)


def load_spec_net(path: str, *, phase: Optional[str] = None, variables=None,
                  strict: Optional[bool] = None):
    """(NetParameter, Compiled) of a spec's net for ``phase`` (default deploy): the
    Compiled carries the spec's ``inputs`` shapes, including those of tops other
    layers make (``declared``, e.g. a Python data layer's)."""
    from .layers.registry import activate
    from .spec import build_all, load_spec
    spec = load_spec(path, variables=variables)
    built = build_all(spec, check=False, strict=strict)
    activate(spec.registry)   # its custom_layers, for the rest of this verb
    want = {"test": "val", None: "deploy"}.get(phase, phase)
    if want not in built.nets:
        raise NetdslError("the spec has no %s net (it has %s)"
                          % (want, ", ".join(built.nets)), file=path)
    return built.nets[want], built.compiled[want]


def cmd_shapes(args: argparse.Namespace) -> int:
    from . import shapes
    pb2 = _schema(args)
    spec = _is_spec(args.net)
    inputs = parse_inputs(args.input)
    declared = parse_declared(args.declare)
    if spec:   # the spec's own `inputs:` apply, under the command line's
        net, compiled = load_spec_net(args.net, phase=args.phase, variables=_defines(args),
                                      strict=args.strict or None)
        given, inputs = inputs, dict(compiled.inputs)
        if compiled.declared or declared:
            declared = dict(compiled.declared, **(declared or {}))
        for k, v in given.items():   # --input of a top a layer makes (a Python data layer)
            if k in compiled.declared:
                declared[k] = v
            else:
                inputs[k] = v
    else:
        net, compiled = load_net(args.net, pb2, phase=args.phase, variables=_defines(args)), None
    caffe_phase = None if spec else ("TRAIN" if args.phase == "train" else "TEST")
    if not spec:   # a spec's crops were checked as it was built
        from .crop_check import check_crop_offsets
        check_crop_offsets(net, strict=args.strict, phase=caffe_phase,
                           locate=lambda err: err.located(file=args.net))
    result = _infer_with_hints(net, inputs, caffe_phase, declared, compiled)
    if getattr(args, "cost", False):
        from .cost import cost_to_json, format_cost_table, net_cost
        cost = net_cost(result)
        _emit(_json_text(cost_to_json(cost)) if args.format == "json"
              else format_cost_table(cost), args.output)
        return 0
    from .coord_map import offsets_for
    crops = offsets_for(net, shapes=result, phase=caffe_phase)
    if args.format == "json":
        text = _json_text(shapes.to_json(result, crops=crops))
    else:
        text = _with_legend(shapes.format_table(result, crops=crops))
        if not text.endswith("\n"):
            text += "\n"
    _emit(text, args.output)
    return 0


SHAPES_LEGEND = ("stride, offset: top pixel x is centred on input pixel stride * x + offset, "
                 "per spatial axis (Caffe's coordinate maps; a negative offset: the top reaches "
                 "beyond the input's border, through padding or upsampling)")


def _with_legend(table: str) -> str:
    """The shapes table with the legend of its stride and offset columns after its summary."""
    import re
    lines = table.split("\n")
    for i, line in enumerate(lines):
        if re.match(r"\d+ layers, \d+ blobs", line):
            lines.insert(i + 1, SHAPES_LEGEND)
            break
    return "\n".join(lines)


def _infer_with_hints(net, inputs, phase, declared, compiled=None):
    """``shapes.infer_shapes``, with the hint for a layer whose tops Caffe cannot infer
    (a Python layer) given as this command's flags rather than Python keywords; a
    spec's layer error points at its line (``compiled``: the spec's compiled net)."""
    from . import shapes
    try:
        return shapes.infer_shapes(net, inputs, phase=phase, declared=declared)
    except NetdslError as exc:
        if compiled is not None and exc.line is None and exc.layer in compiled.layers:
            from .spec.compile import find_field, locate
            rec, field = compiled.layers[exc.layer], exc.field
            if field and find_field(rec, field) is None:   # a spec writes fields flat
                exc.field = field.rsplit(".", 1)[-1]
            locate(exc, rec)
            exc.field = field
        if exc.hint and "declared={" in exc.hint and exc.layer:
            layer = next((l for l in net.layer if l.name == exc.layer), None)
            tops = list(layer.top) if layer is not None else []
            if tops:
                flags = " ".join("--declare %s=N,C,H,W" % t for t in tops)
                exc.hint = "give its tops' shapes: %s" % flags
                if layer is not None and not len(layer.bottom):
                    exc.hint += " (or, for a data layer, %s)" % " ".join(
                        "--input %s=..." % t for t in tops)
        raise


def cmd_draw(args: argparse.Namespace) -> int:
    import os
    from .draw import draw, output_format
    pb2 = _schema(args)
    output_format(args.output)   # a bad suffix fails before any work
    spec = _is_spec(args.net)
    net = load_net(args.net, pb2, phase=args.phase, variables=_defines(args))
    caffe_phase = None if spec else ("TRAIN" if args.phase == "train" else "TEST")
    name = os.path.basename(args.net)
    drawing = draw(net, args.output, parse_inputs(args.input), phase=caffe_phase,
                   declared=parse_declared(args.declare), rankdir=args.rankdir,
                   title=net.name or name.split(".")[0])
    if drawing.error is not None:
        print("netdsl: wrote %s, %s" % (args.output, "with layer %s marked in red"
                                        % ", ".join("'%s'" % n for n in drawing.failed)
                                        if drawing.failed else "without shapes"),
              file=sys.stderr)
        raise drawing.error
    print("wrote %s" % args.output, file=sys.stderr)
    return 0


def _defines(args: argparse.Namespace) -> Optional[Dict[str, str]]:
    """The ``-D NAME=VALUE`` items of a verb (None when there are none)."""
    return _spec_defines(getattr(args, "define", None)) or None


def cmd_init(args: argparse.Namespace) -> int:
    from .weights import init_weights, write_caffemodel
    from .proto import load_schema, schema_of
    _schema(args)
    declared = None
    if _is_spec(args.net):   # a spec's `inputs` may name a Python data layer's tops
        net, compiled = load_spec_net(args.net, phase=args.phase, variables=_defines(args))
        declared = compiled.declared or None
    else:
        net = load_net(args.net, None, phase=args.phase, variables=_defines(args))
    pb2 = schema_of(net)  # --proto, or a spec's own `proto:`
    interp_layers = list(args.interp or [])
    nearest_layers = list(args.nearest or [])
    if _is_spec(args.net):
        from .spec import surgery_layers
        auto_interp, auto_nearest = surgery_layers(net)
        interp_layers += [n for n in auto_interp if n not in interp_layers]
        nearest_layers += [n for n in auto_nearest if n not in nearest_layers]
    from .memory import guard_init, resolve_limit
    guard_init(net, parse_inputs(args.input) or None, limit=resolve_limit(args.max_memory),
               file=args.net, declared=declared)
    report: list = []
    source = args.source
    if source and pb2 is not load_schema(None):  # a fork: read the source with it too
        from .weights import open_caffemodel
        source = open_caffemodel(source, pb2=pb2)
    try:
        weights = init_weights(net, seed=args.seed, source=source,
                               interp_layers=interp_layers, nearest_layers=nearest_layers,
                               inputs=parse_inputs(args.input) or None, report=report,
                               bn_stats=args.bn_stats, declared=declared)
    finally:
        if source is not args.source:
            source.close()
    size = write_caffemodel(args.output, weights, types=net, name=net.name or None, pb2=pb2,
                            double=args.double, allow_large=args.allow_large)
    from .init_report import init_report_lines
    for line in init_report_lines(net, weights, transplants=report, interp_layers=interp_layers,
                                  nearest_layers=nearest_layers, bn_stats=args.bn_stats):
        print(line, file=sys.stderr)
    print("wrote %s: %d layers with parameters, %d bytes" % (args.output, len(weights), size),
          file=sys.stderr)
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from .weights import format_inspect, inspect
    pb2 = _schema(args)
    info = inspect(args.model, stats=args.stats, pb2=pb2)
    if args.format == "json":
        _emit(_json_text(info), None)
    else:
        text = format_inspect(info)
        _emit(text if text.endswith("\n") else text + "\n", None)
    return 0


def _json_text(obj) -> str:
    """Indented JSON with lists of numbers kept on one line."""
    import re
    text = json.dumps(obj, indent=2, default=_json_default)
    text = re.sub(r"\[\s*([-0-9.eE,\s]*?)\s*\]",
                  lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",") if x.strip())
                  + "]", text)
    return text + "\n"


def _json_default(obj):
    import numpy as np
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(type(obj).__name__)


# -- parser ----------------------------------------------------------------

VERBS: Dict[str, Callable[[argparse.ArgumentParser], None]] = {}


def verb(name: str, help: str):
    def deco(fn):
        VERBS[name] = (help, fn)
        return fn
    return deco


@verb("pycaffe", "run an existing pycaffe script (NetSpec, caffe.Net inference) with no Caffe")
def _p_pycaffe(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", dest="module", nargs=argparse.REMAINDER, metavar="MODULE ARGS",
                   help="run a module as `python -m MODULE ARGS` does (e.g. unittest); "
                        "everything after it goes to the module")
    _declare_option(p)
    p.add_argument("script", nargs="?", help="the script (e.g. FCN's net.py)")
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the script")
    p.set_defaults(func=cmd_pycaffe)


@verb("fmt", "rewrite a prototxt in canonical form")
def _p_fmt(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="FILE")
    g = p.add_mutually_exclusive_group()
    g.add_argument("-i", "--in-place", action="store_true", help="rewrite the files")
    g.add_argument("-o", "--output", help="write here (one input file)")
    g.add_argument("--check", action="store_true",
                   help="exit 1 when a file is not in canonical form")
    p.set_defaults(func=cmd_fmt)


@verb("upgrade", "convert a V0/V1 net (or old solver) prototxt to the current format")
def _p_upgrade(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="OLD.prototxt")
    p.add_argument("-o", "--output", metavar="NEW.prototxt", help="default: standard output")
    p.set_defaults(func=cmd_upgrade)


@verb("shapes", "every blob's shape, Caffe-exact, with parameter counts and crop geometry")
def _p_shapes(p: argparse.ArgumentParser) -> None:
    p.add_argument("net", metavar="SPEC|PROTOTXT")
    p.add_argument("--input", action="append", metavar="NAME=N,C,H,W",
                   help="input shape (overrides the net's own); repeatable")
    p.add_argument("--phase", choices=["train", "test", "val", "deploy"],
                   help="prototxt: Caffe phase for include/exclude rules (default test; "
                        "val and deploy mean test); spec: which net (default deploy)")
    p.add_argument("--declare", action="append", metavar="TOP=N,C,H,W",
                   help="shape of a top Caffe cannot infer (Python or fork layers); repeatable")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.add_argument("--cost", action="store_true",
                   help="per layer MACs, element-wise and pooling operations, parameters and "
                        "activation bytes, with totals and peak activation memory")
    p.add_argument("-D", "--define", action="append", metavar="NAME=VALUE",
                   help="spec variable")
    p.add_argument("--strict", action="store_true",
                   help="a crop offset the coordinate maps disagree with is an error, not a "
                        "warning (a spec can say `strict: true`)")
    p.add_argument("-o", "--output", help="write here instead of standard output")
    p.set_defaults(func=cmd_shapes)


@verb("draw", "draw the net with Graphviz: layers, blob shapes, crop offsets (.svg/.png/.pdf/.dot)")
def _p_draw(p: argparse.ArgumentParser) -> None:
    p.add_argument("net", metavar="SPEC|PROTOTXT")
    p.add_argument("-o", "--output", required=True, metavar="NET.svg",
                   help="the picture; its suffix picks the format: .svg, .png, .pdf, or .dot "
                        "(DOT text, no Graphviz needed)")
    p.add_argument("--input", action="append", metavar="NAME=N,C,H,W",
                   help="input shape (overrides the net's own); repeatable")
    p.add_argument("--phase", choices=["train", "test", "val", "deploy"],
                   help="prototxt: Caffe phase for include/exclude rules (default test); "
                        "spec: which net (default deploy)")
    p.add_argument("--declare", action="append", metavar="TOP=N,C,H,W",
                   help="shape of a top Caffe cannot infer (Python or fork layers); repeatable")
    p.add_argument("--rankdir", choices=["TB", "LR"], default="TB", type=str.upper,
                   help="layout direction: top to bottom (default) or left to right")
    p.add_argument("-D", "--define", action="append", metavar="NAME=VALUE",
                   help="spec variable")
    p.set_defaults(func=cmd_draw)


@verb("init", "initialise a caffemodel: fillers, then --from transplant, then interp surgery")
def _p_init(p: argparse.ArgumentParser) -> None:
    p.add_argument("net", metavar="SPEC|PROTOTXT")
    p.add_argument("-o", "--output", required=True, metavar="MODEL.caffemodel")
    p.add_argument("--from", dest="source", metavar="SOURCE.caffemodel",
                   help="copy blobs by layer name from this model (reshaping fc -> conv)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--interp", action="append", metavar="LAYER",
                   help="put per-channel bilinear kernels on this Deconvolution (repeatable)")
    p.add_argument("--nearest", action="append", metavar="LAYER",
                   help="put per-channel constant kernels on this Deconvolution (repeatable)")
    p.add_argument("--input", action="append", metavar="NAME=N,C,H,W")
    p.add_argument("--phase", choices=["train", "test", "val", "deploy"])
    p.add_argument("-D", "--define", action="append", metavar="NAME=VALUE")
    _weights_options(p)
    _declare_option(p)
    p.set_defaults(func=cmd_init)


def _declare_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--declare", action="append", metavar="TOP=N,C,H,W",
                   help="shape of a top Caffe cannot infer (Python or fork layers), or a "
                        "layer's: LAYER=N,C,H,W; repeatable")


def _weights_options(p: argparse.ArgumentParser) -> None:
    _memory_option(p)
    p.add_argument("--bn-stats", choices=["zero", "unit"], default="zero",
                   help="BatchNorm statistics: zero (Caffe's default; a TEST forward then "
                        "divides by sqrt(eps)) or unit (mean 0, variance 1, moving-average "
                        "factor 1: a fresh net's TEST forward is usable)")
    p.add_argument("--double", action="store_true",
                   help="store double_data (Caffe reads it; OpenCV's importer rejects it)")
    p.add_argument("--allow-large", action="store_true",
                   help="write a caffemodel of 2 GiB or more (protobuf and Caffe cannot "
                        "parse it)")


@verb("inspect", "list a caffemodel's layers and blob shapes (--stats: min/max/mean)")
def _p_inspect(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL.caffemodel")
    p.add_argument("--stats", action="store_true")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.set_defaults(func=cmd_inspect)


def cmd_run(args: argparse.Namespace) -> int:
    from .forward.run import parse_input_args, run, summary
    pb2 = _schema(args)
    args.phase = "TRAIN" if args.phase == "train" else "TEST"
    blobs = [b for b in (args.blobs or "").split(",") if b] or None
    try:
        if getattr(args, "proto", None):
            result = _run_with_schema(args, pb2, blobs)
        else:
            result = run(args.net, args.weights, parse_input_args(args.input or []),
                         output=args.output, blobs=blobs, random_input=args.random_input,
                         seed=args.seed, phase=args.phase, max_memory=args.max_memory)
    except NetdslError as exc:
        if args.weights is None and exc.message.startswith("no weights for this"):
            exc.hint = _init_hint(args.net)
        raise
    sys.stdout.write(summary(result, blobs or result.outputs))
    return 0


def _init_hint(net: str) -> str:
    """What to do when ``run`` has no caffemodel for a net that needs one."""
    import os
    beside = os.path.join(os.path.dirname(net), "init.caffemodel")
    if os.path.isfile(beside):
        return ("no caffemodel was given; %s is beside the net: `netdsl run %s %s`"
                % (beside, net, beside))
    return ("no caffemodel was given; make one with fillers (and --from a trained model) "
            "with `netdsl init %s -o init.caffemodel`, then `netdsl run %s init.caffemodel`"
            % (net, net))


def _run_with_schema(args: argparse.Namespace, pb2, blobs: Optional[List[str]]):
    """What ``run`` does, with the net and the caffemodel read through a fork's schema."""
    import io
    import numpy as np
    from .errors import did_you_mean
    from .fileio import atomic_write
    from .forward import forward, input_shapes, random_inputs
    from .forward.run import _load_npy, parse_input_args
    from .prototxt import read_net
    from .weights import open_caffemodel
    net = read_net(args.net, schema=pb2)
    arrays = {n: _load_npy(p) for n, p in parse_input_args(args.input or []).items()}
    missing = [n for n in input_shapes(net) if n not in arrays]
    if missing and not args.random_input:
        raise NetdslError("no array for %s; give --input NAME=FILE.npy or --random-input"
                          % ", ".join("'%s'" % n for n in missing), file=args.net)
    from .memory import guard_forward, resolve_limit
    guard_forward(net, {n: a.shape for n, a in arrays.items()}, missing, phase=args.phase,
                  limit=resolve_limit(args.max_memory), file=args.net)
    rand = random_inputs(net, args.seed) if missing else {}
    arrays.update({n: rand[n] for n in missing})
    model = open_caffemodel(args.weights, pb2=pb2) if args.weights else None
    try:
        result = forward(net, model, arrays, phase=args.phase, seed=args.seed)
    finally:
        if model is not None:
            model.close()
    for n in blobs or ():
        if n not in result:
            raise NetdslError("no blob '%s' in the net" % n, hint=did_you_mean(n, list(result)))
    if args.output:
        buf = io.BytesIO()
        np.savez(buf, **{n: result[n] for n in (blobs or result.outputs)})
        atomic_write(args.output, buf.getvalue())
    return result


@verb("run", "run a net forward in numpy (Caffe's layer semantics) and save blobs as .npz")
def _p_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("net", metavar="NET.prototxt")
    p.add_argument("weights", nargs="?", metavar="WEIGHTS.caffemodel")
    p.add_argument("--input", action="append", metavar="NAME=FILE.npy",
                   help="an input array (repeatable)")
    p.add_argument("--random-input", action="store_true",
                   help="fill inputs without a file with uniform [-1, 1) values")
    p.add_argument("--seed", type=int, default=0, help="for --random-input and Dropout")
    p.add_argument("--phase", choices=["train", "test", "val", "deploy"], default="test",
                   type=str.lower,
                   help="Caffe phase (default test; val and deploy mean test; TRAIN and TEST "
                        "work too): Dropout, and include/exclude rules")
    p.add_argument("--blobs", metavar="A,B", help="blobs to save (default: the net's outputs)")
    p.add_argument("-o", "--output", metavar="OUT.npz", help="write the blobs here")
    _memory_option(p)
    _declare_option(p)
    p.set_defaults(func=cmd_run)


def _memory_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-memory", metavar="SIZE",
                   help="refuse to start when the estimated peak memory is larger "
                        "(e.g. 2G, 512M; default: half the available memory)")


# -- spec verbs: build, render, schema (netdsl.spec) ---------------------------

def _spec_defines(items: Optional[List[str]]) -> Dict[str, str]:
    """``-D NAME=VALUE`` items, checked, as raw text (read as YAML by the spec loader)."""
    from .spec import parse_define
    out: Dict[str, str] = {}
    for item in items or ():
        key, _ = parse_define(item)
        out[key] = item.partition("=")[2]
    return out


def cmd_build(args: argparse.Namespace) -> int:
    from .spec import build
    _schema(args)
    report: List[str] = []
    written = build(args.spec, args.output, _spec_defines(args.define), args.phase,
                    weights=args.weights or bool(args.source), source=args.source,
                    seed=args.seed, check=not args.no_check, double=args.double,
                    allow_large=args.allow_large, strict=args.strict or None, report=report,
                    max_memory=args.max_memory, bn_stats=args.bn_stats)
    for line in report:   # what init.caffemodel holds, as `netdsl init` says it
        print(line, file=sys.stderr)
    for path in written:
        print("wrote %s" % path, file=sys.stderr)
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from .spec import render
    if args.list:
        from .shipped import shipped_dir, shipped_listing
        lines = []
        for kind, names in shipped_listing().items():
            lines.append("%s (shipped in %s):" % (kind, shipped_dir(kind) or "-"))
            lines.extend("  %s" % n for n in names)
        lines.append("a spec includes a shipped template by its name (`include: [vgg16.yaml]`);"
                     " `netdsl render NAME.j2` renders one")
        _emit("\n".join(lines) + "\n", args.output)
        return 0
    if not args.template:
        raise NetdslError("give a template to render (e.g. vgg16.yaml.j2), or --list")
    _schema(args)
    _emit(render(args.template, _spec_defines(args.define)), args.output)
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from .spec.schema_json import spec_schema
    pb2 = _schema(args)
    _emit(json.dumps(spec_schema(pb2), indent=1) + "\n", args.output)
    return 0


@verb("build", "build a YAML spec into train/val/deploy prototxt (and solver, --weights)")
def _p_build(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", metavar="SPEC.yaml")
    p.add_argument("-o", "--output", metavar="DIR", help="default: out/<spec name>")
    p.add_argument("-D", "--define", action="append", metavar="NAME=VALUE",
                   help="set a spec variable (VALUE is read as YAML: 59, 0.5, text, [1, 2])")
    p.add_argument("--phase", action="append", metavar="PHASE",
                   help="build only this phase's net (train, val, deploy; repeatable)")
    p.add_argument("--weights", action="store_true",
                   help="also write init.caffemodel: fillers, --from, then interp surgery")
    p.add_argument("--from", dest="source", metavar="SRC.caffemodel",
                   help="with --weights: copy trained blobs by layer name from this model")
    p.add_argument("--seed", type=int, default=0, help="filler seed (default 0)")
    p.add_argument("--no-check", action="store_true", help="skip the shape checks")
    p.add_argument("--strict", action="store_true",
                   help="a crop offset the coordinate maps disagree with is an error, not a "
                        "warning (a spec can say `strict: true`)")
    _weights_options(p)
    _declare_option(p)
    p.set_defaults(func=cmd_build)


@verb("render", "render a Jinja2 template (*.j2; a shipped one by name) with its defaults and -D "
               "values")
def _p_render(p: argparse.ArgumentParser) -> None:
    p.add_argument("template", metavar="TEMPLATE.j2", nargs="?",
                   help="a *.j2 file, or the name of a shipped template (see --list)")
    p.add_argument("--list", action="store_true",
                   help="list the templates and example specs shipped with netdsl")
    p.add_argument("-D", "--define", action="append", metavar="NAME=VALUE")
    p.add_argument("-o", "--output", help="write here (atomically) instead of standard output")
    p.set_defaults(func=cmd_render)


@verb("schema", "print the JSON Schema of the spec format (from caffe.proto)")
def _p_schema(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", help="write here instead of standard output")
    p.set_defaults(func=cmd_schema)


def cmd_from_torch(args: argparse.Namespace) -> int:
    from .torch.cli import run
    _schema(args)
    return run(args)


@verb("from-torch", "convert a PyTorch model to deploy.prototxt + model.caffemodel, "
                    "checked against PyTorch")
def _p_from_torch(p: argparse.ArgumentParser) -> None:
    from .torch.cli import add_arguments
    add_arguments(p)
    p.set_defaults(func=cmd_from_torch)


def cmd_from_onnx(args: argparse.Namespace) -> int:
    from .onnx.cli import run
    _schema(args)
    return run(args)


@verb("from-onnx", "convert an ONNX model to deploy.prototxt + model.caffemodel, "
                   "checked against onnxruntime")
def _p_from_onnx(p: argparse.ArgumentParser) -> None:
    from .onnx.cli import add_arguments
    add_arguments(p)
    p.set_defaults(func=cmd_from_onnx)
def cmd_to_onnx(args: argparse.Namespace) -> int:
    from .export.cli import run
    _schema(args)
    return run(args)


@verb("to-onnx", "export a Caffe net and its weights to ONNX, checked against netdsl's forward "
                 "with onnxruntime")
def _p_to_onnx(p: argparse.ArgumentParser) -> None:
    from .export.cli import add_arguments
    add_arguments(p)
    p.set_defaults(func=cmd_to_onnx)


def cmd_to_torch(args: argparse.Namespace) -> int:
    from .export.torch_cli import run
    _schema(args)
    return run(args)


@verb("to-torch", "export a Caffe net and its weights to PyTorch code (model.py, weights.pt), "
                  "checked against netdsl's forward")
def _p_to_torch(p: argparse.ArgumentParser) -> None:
    from .export.torch_cli import add_arguments
    add_arguments(p)
    p.set_defaults(func=cmd_to_torch)


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line, like every other netdsl error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        verb = self.prog.split(" ", 1)[1] if " " in self.prog else None
        self.exit(EXIT_USER_ERROR, "netdsl: error: %s%s; see `%s --help`\n"
                  % ("%s: " % verb if verb else "", " ".join(message.split()), self.prog))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="netdsl", description="Author, check and initialise Caffe networks without Caffe.")
    parser.add_argument("--version", action="version", version="netdsl 0.1.0")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    for name, (help_text, setup) in VERBS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--proto", metavar="FORK.proto",
                       help="use this caffe.proto (a fork's) instead of BVLC's")
        p.add_argument("--strict-proto", action="store_true",
                       help="refuse a schema that reuses one of BVLC's field numbers (for "
                            "authors of a new fork; published forks load without it)")
        p.add_argument("--allow-proto-conflicts", action="store_true",
                       help=argparse.SUPPRESS)  # former opt-in: fork schemas load as given
        p.add_argument("--plugin", action="append", metavar="MODULE",
                       help="load custom layer rules from this Python module or .py file "
                            "(repeatable; also $NETDSL_PLUGINS, comma-separated)")
        setup(p)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print("netdsl: warning: %s" % message, file=sys.stderr)


def _run_verb(args: argparse.Namespace):
    """The verb, with its ``--declare`` shapes applying to every shape inference it makes."""
    from .shapes import declared_shapes
    declared = parse_declared(getattr(args, "declare", None))
    try:
        with declared_shapes(declared) as used:
            code = args.func(args)
        for name in sorted(set(declared or ()) - used):
            if args.func not in (cmd_shapes, cmd_draw):   # those two name it as an error
                print("netdsl: warning: --declare %s: no layer or top of that name in the "
                      "net(s) shaped" % name, file=sys.stderr)
        return code
    except NetdslError as exc:
        tops, data = getattr(exc, "declare_tops", ((), False))
        if tops and exc.hint and "declared={" in exc.hint:   # the command line's words
            exc.hint = "give its tops' shapes: %s" % " ".join(
                "--declare %s=N,C,H,W" % t for t in tops)
            if data:
                exc.hint += " (or, for a data layer, %s)" % " ".join(
                    "--input %s=..." % t for t in tops)
        if args.func is cmd_run and exc.hint:   # run's --input takes arrays, not shapes
            import re
            exc.hint = re.sub(r"--input (\S+)=N,C,H,W", r"--input \1=\1.npy", exc.hint)
        raise


def _locate_field(err: NetdslError, net: Optional[str]) -> None:
    """A layer's parameter error from a prototxt NET (``convolution_param.kernel_size``
    0, which parses and fails at set-up) gets the file, line and column of the value."""
    if (err.line is not None or not err.layer or "." not in (err.field or "")
            or not isinstance(net, str)
            or _is_spec(net) or err.file not in (None, net) or not os.path.isfile(net)):
        return
    from .fileio import read_text
    from .numrange import field_position
    try:
        pos = field_position(read_text(net), err.layer, err.field)
    except (OSError, NetdslError, UnicodeError):
        return
    if pos is not None:
        err.located(file=net, line=pos[0], column=pos[1])


def main(argv: Optional[List[str]] = None) -> int:
    import warnings
    parser = build_parser()
    args = parser.parse_args(argv)
    shown = warnings.showwarning
    warnings.showwarning = _show_warning  # one plain line, no source location
    try:
        with warnings.catch_warnings():
            from .crop_check import CropOffsetWarning
            warnings.simplefilter("always", CropOffsetWarning)   # every run says it again
            # each verb runs in a context of its own: the schema (--proto) and the layer
            # types it selects (a spec's custom_layers) do not outlive it
            return int(contextvars.copy_context().run(_run_verb, args) or 0)
    except NetdslError as err:
        _locate_field(err, getattr(args, "net", None))
        print("netdsl: error: %s" % err.explain(), file=sys.stderr)
        if getattr(err, "detail", None):   # the offending source line with a caret
            print("\n".join("    " + ln for ln in err.detail.splitlines()), file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        return 130
    except MemoryError:
        # the estimates in netdsl.memory should stop this first; never a traceback
        print("netdsl: error: out of memory (try --max-memory, or smaller inputs)",
              file=sys.stderr)
        return EXIT_USER_ERROR
    except BrokenPipeError:
        return 0
    finally:
        warnings.showwarning = shown


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
