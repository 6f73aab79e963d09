"""``netdsl build SPEC.yaml``: a spec's train/val/deploy prototxt (and solver;
``--weights``: init.caffemodel), checked, written atomically."""
from __future__ import annotations

import argparse
import sys
from typing import List

from .common import declare_option, spec_defines, weights_options

NAME = "build"
HELP = "build a YAML spec into train/val/deploy prototxt (and solver, --weights)"


def add_arguments(p: argparse.ArgumentParser) -> None:
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
    weights_options(p)
    declare_option(p)


def run(args: argparse.Namespace) -> int:
    from ..spec import build
    report: List[str] = []
    written = build(args.spec, args.output, spec_defines(args.define), args.phase,
                    weights=args.weights or bool(args.source), source=args.source,
                    seed=args.seed, check=not args.no_check, double=args.double,
                    allow_large=args.allow_large, strict=args.strict or None, report=report,
                    max_memory=args.max_memory, bn_stats=args.bn_stats)
    for line in report:   # what init.caffemodel holds, as `netdsl init` says it
        print(line, file=sys.stderr)
    for path in written:
        print("wrote %s" % path, file=sys.stderr)
    return 0
