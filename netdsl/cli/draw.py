"""``netdsl draw NET -o NET.svg``: the net drawn with Graphviz (layers, blob shapes,
crop offsets); ``.dot`` needs no Graphviz."""
from __future__ import annotations

import argparse
import os
import sys

from .common import caffe_phase, defines, load_net, parse_declared, parse_inputs

NAME = "draw"
HELP = "draw the net with Graphviz: layers, blob shapes, crop offsets (.svg/.png/.pdf/.dot)"
UNUSED_DECLARE_WARNING = False   # an unused --declare is an error of the shape inference


def add_arguments(p: argparse.ArgumentParser) -> None:
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


def run(args: argparse.Namespace) -> int:
    from ..draw import draw, output_format
    output_format(args.output)   # a bad suffix fails before any work
    net = load_net(args.net, args.pb2, phase=args.phase, variables=defines(args))
    name = os.path.basename(args.net)
    drawing = draw(net, args.output, parse_inputs(args.input), phase=caffe_phase(args),
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
