"""``netdsl shapes NET``: every blob's shape, Caffe-exact, with parameter counts and
crop geometry (``--cost``: operations and memory per layer)."""
from __future__ import annotations

import argparse

from ..errors import NetdslError
from .common import (caffe_phase, defines, emit, is_spec, json_text, load_net, load_spec_net,
                     parse_declared, parse_inputs)

NAME = "shapes"
HELP = "every blob's shape, Caffe-exact, with parameter counts and crop geometry"
UNUSED_DECLARE_WARNING = False   # an unused --declare is an error of the shape inference

SHAPES_LEGEND = ("stride, offset: top pixel x is centred on input pixel stride * x + offset, "
                 "per spatial axis (Caffe's coordinate maps; a negative offset: the top reaches "
                 "beyond the input's border, through padding or upsampling)")


def add_arguments(p: argparse.ArgumentParser) -> None:
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


def run(args: argparse.Namespace) -> int:
    net, compiled, inputs, declared = _net_and_shapes(args)
    phase = caffe_phase(args)
    if compiled is None:   # a spec's crops were checked as it was built
        from ..crop_check import check_crop_offsets
        check_crop_offsets(net, strict=args.strict, phase=phase,
                           locate=lambda err: err.located(file=args.net))
    result = infer_with_hints(net, inputs, phase, declared, compiled)
    if args.cost:
        from ..cost import cost_to_json, format_cost_table, net_cost
        cost = net_cost(result)
        emit(json_text(cost_to_json(cost)) if args.format == "json"
             else format_cost_table(cost), args.output)
        return 0
    from .. import shapes
    from ..coord_walk import offsets_for
    crops = offsets_for(net, shapes=result, phase=phase)
    if args.format == "json":
        text = json_text(shapes.to_json(result, crops=crops))
    else:
        text = with_legend(shapes.format_table(result, crops=crops))
        if not text.endswith("\n"):
            text += "\n"
    emit(text, args.output)
    return 0


def _net_and_shapes(args: argparse.Namespace):
    """(net, the spec's Compiled or None, input shapes, declared shapes): a spec's own
    ``inputs:`` apply, under the command line's."""
    inputs = parse_inputs(args.input)
    declared = parse_declared(args.declare)
    if not is_spec(args.net):
        return load_net(args.net, args.pb2, phase=args.phase, variables=defines(args)), \
            None, inputs, declared
    net, compiled = load_spec_net(args.net, phase=args.phase, variables=defines(args),
                                  strict=args.strict or None)
    given, inputs = inputs, dict(compiled.inputs)
    if compiled.declared or declared:
        declared = dict(compiled.declared, **(declared or {}))
    for k, v in given.items():   # --input of a top a layer makes (a Python data layer)
        if k in compiled.declared:
            declared[k] = v
        else:
            inputs[k] = v
    return net, compiled, inputs, declared


def with_legend(table: str) -> str:
    """The shapes table with the legend of its stride and offset columns after its summary."""
    import re
    lines = table.split("\n")
    for i, line in enumerate(lines):
        if re.match(r"\d+ layers, \d+ blobs", line):
            lines.insert(i + 1, SHAPES_LEGEND)
            break
    return "\n".join(lines)


def infer_with_hints(net, inputs, phase, declared, compiled=None):
    """``shapes.infer_shapes``, with the hint for a layer whose tops Caffe cannot infer
    (a Python layer) given as this command's flags rather than Python keywords; a
    spec's layer error points at its line (``compiled``: the spec's compiled net)."""
    from .. import shapes
    try:
        return shapes.infer_shapes(net, inputs, phase=phase, declared=declared)
    except NetdslError as exc:
        if compiled is not None and exc.line is None and exc.layer in compiled.layers:
            from ..spec.compile import find_field, locate
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
