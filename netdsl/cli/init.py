"""``netdsl init NET -o MODEL.caffemodel``: fillers, then ``--from`` transplant, then
interpolation surgery, written as a caffemodel."""
from __future__ import annotations

import argparse
import sys

from .common import (declare_option, defines, is_spec, load_net, load_spec_net, parse_inputs,
                     weights_options)

NAME = "init"
HELP = "initialise a caffemodel: fillers, then --from transplant, then interp surgery"


def add_arguments(p: argparse.ArgumentParser) -> None:
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
    weights_options(p)
    declare_option(p)


def run(args: argparse.Namespace) -> int:
    from ..init_report import init_report_lines
    from ..memory import guard_init, resolve_limit
    from ..proto import schema_of
    from ..weights import write_caffemodel
    net, declared = _net(args)
    pb2 = schema_of(net)  # --proto, or a spec's own `proto:`
    interp_layers, nearest_layers = _surgery_layers(args, net)
    guard_init(net, parse_inputs(args.input) or None, limit=resolve_limit(args.max_memory),
               file=args.net, declared=declared)
    report: list = []
    weights = _fill(args, net, pb2, interp_layers, nearest_layers, declared, report)
    size = write_caffemodel(args.output, weights, types=net, name=net.name or None, pb2=pb2,
                            double=args.double, allow_large=args.allow_large)
    for line in init_report_lines(net, weights, transplants=report, interp_layers=interp_layers,
                                  nearest_layers=nearest_layers, bn_stats=args.bn_stats):
        print(line, file=sys.stderr)
    print("wrote %s: %d layers with parameters, %d bytes" % (args.output, len(weights), size),
          file=sys.stderr)
    return 0


def _net(args: argparse.Namespace):
    """(net, declared shapes or None): a spec's `inputs` may name a Python data layer's
    tops."""
    if is_spec(args.net):
        net, compiled = load_spec_net(args.net, phase=args.phase, variables=defines(args))
        return net, compiled.declared or None
    return load_net(args.net, None, phase=args.phase, variables=defines(args)), None


def _surgery_layers(args: argparse.Namespace, net):
    """The Deconvolutions given bilinear and constant kernels: ``--interp`` and
    ``--nearest``, and for a spec those its layers ask for."""
    interp_layers = list(args.interp or [])
    nearest_layers = list(args.nearest or [])
    if is_spec(args.net):
        from ..spec import surgery_layers
        auto_interp, auto_nearest = surgery_layers(net)
        interp_layers += [n for n in auto_interp if n not in interp_layers]
        nearest_layers += [n for n in auto_nearest if n not in nearest_layers]
    return interp_layers, nearest_layers


def _fill(args, net, pb2, interp_layers, nearest_layers, declared, report):
    """``init_weights`` with the source model (``--from``) read through the net's schema."""
    from ..proto import load_schema
    from ..weights import init_weights
    source = args.source
    if source and pb2 is not load_schema(None):  # a fork: read the source with it too
        from ..weights import open_caffemodel
        source = open_caffemodel(source, pb2=pb2)
    try:
        return init_weights(net, seed=args.seed, source=source,
                            interp_layers=interp_layers, nearest_layers=nearest_layers,
                            inputs=parse_inputs(args.input) or None, report=report,
                            bn_stats=args.bn_stats, declared=declared)
    finally:
        if source is not args.source:
            source.close()
