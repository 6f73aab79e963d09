"""``netdsl upgrade OLD.prototxt``: a V0/V1 net (or an old solver) in the current
format, by Caffe's upgrade rules (netdsl.upgrade)."""
from __future__ import annotations

import argparse
import sys

from ..errors import NetdslError
from .common import emit, warn_written

NAME = "upgrade"
HELP = "convert a V0/V1 net (or old solver) prototxt to the current format"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="OLD.prototxt")
    p.add_argument("-o", "--output", metavar="NEW.prototxt", help="default: standard output")


def run(args: argparse.Namespace) -> int:
    from .. import prototxt, upgrade
    pb2 = args.pb2
    text = prototxt.read_text(args.input)
    try:
        msg = prototxt.parse_message(text, pb2.NetParameter(), args.input)
        msg, notes = upgrade.upgrade_net_with_notes(msg, filename=args.input)
    except NetdslError as net_err:
        try:
            msg = prototxt.parse_solver(text, args.input, schema=pb2)
        except NetdslError:
            raise net_err from None
        notes = []
    for note in notes:
        print("netdsl: note: %s" % note, file=sys.stderr)
    warn_written(msg)
    emit(prototxt.to_text(msg), args.output)
    return 0
