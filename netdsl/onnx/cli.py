"""``netdsl from-onnx MODEL.onnx -o DIR [--input NAME=N,C,H,W ...]``: convert,
check against onnxruntime, write ``deploy.prototxt``, ``model.caffemodel``,
``parity.json``.  Exit status as ``from-torch``: 0 parity holds, 1 parity
fails (the files are written, parity.json says where the outputs diverge),
2 user error or unsupported op (nothing written)."""
from __future__ import annotations

from typing import Any

from netdsl.errors import NetdslError


def run(args: Any) -> int:
    import numpy as np
    from netdsl.onnx.convert import convert
    from netdsl.convert.options import parse_inputs
    shapes = dict(parse_inputs(args.input)) if args.input else None
    if args.tolerance is not None and not args.tolerance > 0:
        raise NetdslError("--tolerance must be positive")
    from netdsl.convert.options import split_names
    result = convert(args.model, shapes, target=args.target, fold_bn=args.fold_bn,
                     check=False, tolerance=args.tolerance or 1e-4, seed=args.seed,
                     outputs=split_names(args.outputs))
    if not args.no_check:
        from netdsl.onnx.parity import check_parity
        rng = np.random.default_rng(args.seed)
        examples = {n: rng.standard_normal(result.inputs[c]).astype(np.float32)
                    for n, c in zip(result.onnx_inputs, result.inputs)}
        result.parity = check_parity(result, examples, tolerance=args.tolerance or 1e-4,
                                     seed=args.seed + 1)
    from netdsl.convert.options import save_and_report
    return save_and_report(result, args.output, "onnxruntime's")


def add_arguments(p: Any) -> None:
    p.add_argument("model", metavar="MODEL.onnx",
                   help="an ONNX file (external data next to it is read)")
    p.add_argument("--input", action="append", metavar="NAME=N,C,H,W",
                   help="an input's shape, needed when the graph's is not static "
                        "(repeatable)")
    p.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="write deploy.prototxt, model.caffemodel and parity.json here")
    p.add_argument("--target", choices=["caffe", "opencv"], default="caffe",
                   help="caffe: stock BVLC layers; opencv: only layers OpenCV dnn runs")
    p.add_argument("--outputs", metavar="NAME,...",
                   help="end the net at these values of the graph (e.g. before the box "
                        "decoding); the check compares them")
    p.add_argument("--fold-bn", action="store_true",
                   help="fold batch norms into the convolution before them")
    p.add_argument("--no-check", action="store_true",
                   help="skip the parity check (which needs onnxruntime)")
    p.add_argument("--tolerance", type=float, metavar="REL",
                   help="largest relative error accepted (default 1e-4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the example inputs")
