"""The ``netdsl`` command, one module per verb.  This is its dispatcher: parse the
command line, set up the schema (``--proto``) and the layer plugins (``--plugin``) once,
run the verb in a context of its own, render an error once.

A verb is a module of this package with ``NAME``, ``HELP``, ``add_arguments(parser)``
and ``run(args) -> exit status``; it may add ``adjust_error(exc)`` (its words for a
hint) and ``UNUSED_DECLARE_WARNING = False`` (an unused ``--declare`` is its error).
User errors (:class:`~netdsl.errors.NetdslError`) print one located line and exit
with status 2; nothing is written when a verb fails.
"""
from __future__ import annotations

import argparse
import contextvars
import os
import sys
from types import ModuleType
from typing import List, Optional

from ..errors import NetdslError
from . import (build, draw, fmt, from_onnx, from_torch, init, inspect, pycaffe, render, run,
               schema, shapes, to_onnx, to_torch, upgrade)
from .common import (is_spec, load_net, load_spec_net, parse_declared, parse_inputs,
                     spec_defines)

_spec_defines = spec_defines   # the name netdsl 0.1 offered
__all__ = ["main", "build_parser", "setup_schema", "VERBS", "EXIT_USER_ERROR", "load_net",
           "load_spec_net", "parse_inputs", "parse_declared"]

EXIT_USER_ERROR = 2

# in the order `netdsl --help` lists them
VERBS: List[ModuleType] = [pycaffe, fmt, upgrade, shapes, draw, init, inspect, run, build,
                           render, schema, from_torch, from_onnx, to_onnx, to_torch]


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line, like every other netdsl error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        verb = self.prog.split(" ", 1)[1] if " " in self.prog else None
        self.exit(EXIT_USER_ERROR, "netdsl: error: %s%s; see `%s --help`\n"
                  % ("%s: " % verb if verb else "", " ".join(message.split()), self.prog))


def _common_options(p: argparse.ArgumentParser) -> None:
    """The options every verb takes: the schema and the plugins."""
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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="netdsl", description="Author, check and initialise Caffe networks without Caffe.")
    parser.add_argument("--version", action="version", version="netdsl 0.1.0")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    for module in VERBS:
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        _common_options(p)
        module.add_arguments(p)
        p.set_defaults(verb_module=module)
    return parser


def setup_schema(args: argparse.Namespace) -> ModuleType:
    """The schema module selected with --proto (bundled BVLC schema by default), made
    the schema in use; the layer plugins of --plugin and $NETDSL_PLUGINS loaded."""
    from ..netspec import use_schema
    from ..plugin_loading import ensure_env_plugins, load_plugin
    from ..proto import load_schema
    pb2 = load_schema(args.proto, strict=args.strict_proto)
    use_schema(pb2 if args.proto else None)
    ensure_env_plugins()
    for plugin in args.plugin or ():
        load_plugin(plugin)
    return pb2


def _run_verb(args: argparse.Namespace):
    """The verb, under its schema and plugins, with its ``--declare`` shapes applying to
    every shape inference it makes."""
    from ..shapes import declared_shapes
    module = args.verb_module
    args.pb2 = setup_schema(args)
    declared = parse_declared(getattr(args, "declare", None))
    try:
        with declared_shapes(declared) as used:
            code = module.run(args)
        if getattr(module, "UNUSED_DECLARE_WARNING", True):
            for name in sorted(set(declared or ()) - used):
                print("netdsl: warning: --declare %s: no layer or top of that name in the "
                      "net(s) shaped" % name, file=sys.stderr)
        return code
    except NetdslError as exc:
        _declare_hint(exc)
        adjust = getattr(module, "adjust_error", None)
        if adjust is not None:
            adjust(exc)
        raise


def _declare_hint(exc: NetdslError) -> None:
    """A hint asking for Python keywords (``declared={...}``) in the command line's words."""
    tops, data = getattr(exc, "declare_tops", ((), False))
    if tops and exc.hint and "declared={" in exc.hint:
        exc.hint = "give its tops' shapes: %s" % " ".join(
            "--declare %s=N,C,H,W" % t for t in tops)
        if data:
            exc.hint += " (or, for a data layer, %s)" % " ".join(
                "--input %s=..." % t for t in tops)


def _locate_field(err: NetdslError, net: Optional[str]) -> None:
    """A layer's parameter error from a prototxt NET (``convolution_param.kernel_size``
    0, which parses and fails at set-up) gets the file, line and column of the value."""
    if (err.line is not None or not err.layer or "." not in (err.field or "")
            or not isinstance(net, str)
            or is_spec(net) or err.file not in (None, net) or not os.path.isfile(net)):
        return
    from ..fileio import read_text
    from ..numrange import field_position
    try:
        pos = field_position(read_text(net), err.layer, err.field)
    except (OSError, NetdslError, UnicodeError):
        return
    if pos is not None:
        err.located(file=net, line=pos[0], column=pos[1])


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print("netdsl: warning: %s" % message, file=sys.stderr)


def _report(err: NetdslError, args: argparse.Namespace) -> int:
    """The one rendering of a user error: ``netdsl: error: ...`` and the source line."""
    _locate_field(err, getattr(args, "net", None))
    print("netdsl: error: %s" % err.explain(), file=sys.stderr)
    if getattr(err, "detail", None):   # the offending source line with a caret
        print("\n".join("    " + ln for ln in err.detail.splitlines()), file=sys.stderr)
    return EXIT_USER_ERROR


def main(argv: Optional[List[str]] = None) -> int:
    import warnings
    parser = build_parser()
    args = parser.parse_args(argv)
    shown = warnings.showwarning
    warnings.showwarning = _show_warning  # one plain line, no source location
    try:
        with warnings.catch_warnings():
            from ..crop_check import CropOffsetWarning
            warnings.simplefilter("always", CropOffsetWarning)   # every run says it again
            # each verb runs in a context of its own: the schema (--proto) and the layer
            # types it selects (a spec's custom_layers) do not outlive it
            return int(contextvars.copy_context().run(_run_verb, args) or 0)
    except NetdslError as err:
        return _report(err, args)
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
