"""``netdsl fmt FILE...``: a net or solver prototxt in canonical form (``-i``, ``-o``,
``--check``)."""
from __future__ import annotations

import argparse
import sys

from ..errors import NetdslError
from .common import emit, warn_written

NAME = "fmt"
HELP = "rewrite a prototxt in canonical form"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="FILE")
    g = p.add_mutually_exclusive_group()
    g.add_argument("-i", "--in-place", action="store_true", help="rewrite the files")
    g.add_argument("-o", "--output", help="write here (one input file)")
    g.add_argument("--check", action="store_true",
                   help="exit 1 when a file is not in canonical form")


def run(args: argparse.Namespace) -> int:
    from .. import prototxt
    for path in args.files:
        text = prototxt.read_text(path)
        msg = parse_any(text, path, args.pb2, upgrade=False)
        out = prototxt.to_text(msg)
        if args.check:
            if out != text:
                print("%s: not in canonical form" % path)
                return 1
            continue
        warn_written(msg)
        if args.output:
            emit(out, args.output)
        elif args.in_place:
            prototxt.atomic_write(path, out)
        else:
            sys.stdout.write(out)
    return 0


def parse_any(text: str, path: str, pb2, upgrade: bool):
    """A net or, when it only parses as one, a solver prototxt."""
    from .. import prototxt
    try:
        return prototxt.parse_net(text, path, upgrade=upgrade, schema=pb2)
    except NetdslError as net_err:
        try:
            return prototxt.parse_solver(text, path, upgrade=upgrade, schema=pb2)
        except NetdslError:
            raise net_err from None
