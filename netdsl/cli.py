"""The ``netdsl`` command: argparse verbs, each a thin call into the library.

User errors (:class:`~netdsl.errors.NetdslError`) print one located line and
exit with status 2; nothing is written when a verb fails.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Callable, Dict, List, Optional

from .errors import NetdslError

EXIT_USER_ERROR = 2


def _schema(args: argparse.Namespace):
    """The schema module selected with --proto (bundled BVLC schema by default)."""
    from .proto import load_schema
    from .netspec import use_schema
    pb2 = load_schema(getattr(args, "proto", None))
    use_schema(pb2 if getattr(args, "proto", None) else None)
    return pb2


def _emit(text: str, out: Optional[str]) -> None:
    from .fileio import atomic_write
    if out and out != "-":
        atomic_write(out, text)
    else:
        sys.stdout.write(text)


# -- verbs -----------------------------------------------------------------

def cmd_pycaffe(args: argparse.Namespace) -> int:
    from .compat import run_script
    _schema(args)
    run_script(args.script, args.args)
    return 0


def cmd_fmt(args: argparse.Namespace) -> int:
    from . import prototxt
    pb2 = _schema(args)
    for path in args.files:
        text = prototxt.read_text(path)
        msg = _parse_any(text, path, pb2, upgrade=False)
        out = prototxt.to_text(msg)
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
    _emit(prototxt.to_text(msg), args.output)
    return 0


# -- parser ----------------------------------------------------------------

VERBS: Dict[str, Callable[[argparse.ArgumentParser], None]] = {}


def verb(name: str, help: str):
    def deco(fn):
        VERBS[name] = (help, fn)
        return fn
    return deco


@verb("pycaffe", "run an existing pycaffe NetSpec script with no Caffe installed")
def _p_pycaffe(p: argparse.ArgumentParser) -> None:
    p.add_argument("script", help="the script (e.g. FCN's net.py)")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netdsl", description="Author, check and initialise Caffe networks without Caffe.")
    parser.add_argument("--version", action="version", version="netdsl 0.1.0")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    for name, (help_text, setup) in VERBS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--proto", metavar="FORK.proto",
                       help="use this caffe.proto (a fork's) instead of BVLC's")
        setup(p)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except NetdslError as err:
        print("netdsl: error: %s" % err, file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
