"""Time ``netdsl build`` on a generated spec of 10,000 layers; print the figures.

    python bench/build_spec.py [--layers 10000] [--repeat-form] [--keep DIR]

The spec is written out layer by layer (Input, then Convolution / ReLU / Pooling
... with variables and per-layer params), so loading, expansion, the NetSpec
builder, shape checks and prototxt output all see every layer.  The build runs
in-process (``netdsl.spec.build``, with a breakdown per stage) and as a
subprocess (``python -m netdsl build``).  Target: well under 10 s.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time


def make_spec(layers: int, repeat_form: bool = False) -> str:
    """YAML text of a spec whose train net has ``layers`` layers: a Python data layer
    (train and val, with a per-phase ``param_str``), Convolution / in-place ReLU pairs
    with variables and per-layer params, and a loss; deploy has an Input layer instead
    of the data layer and no loss."""
    body = layers - 2
    out = ["name: bench%d" % layers,
           "variables:",
           "  width: 8",
           "  lr: 1",
           "inputs:",
           "  data: [1, 8, 16, 16]",
           "  label: [1, 1, 16, 16]",
           "layers:",
           "  - Python: [data, label]",
           "    module: bench_layers",
           "    layer: Data",
           "    phases: [train, val]",
           "    param_str: \"split: ${phase}\""]
    if repeat_form:
        out += ["  - repeat: %d" % (body // 2),
                "    layers:",
                "      - Convolution: conv${i}",
                "        num_output: ${width}",
                "        kernel_size: 3",
                "        pad: 1",
                "        param: [{lr_mult: \"${lr}\"}, {lr_mult: 2}]",
                "        weight_filler: {type: xavier}",
                "      - ReLU: relu${i}",
                "        in_place: true"]
    else:
        for i in range(1, body + 1):
            if i % 2 == 1:
                out += ["  - Convolution: conv%d" % i,
                        "    num_output: ${width}",
                        "    kernel_size: 3",
                        "    pad: 1",
                        "    param: [{lr_mult: \"${lr}\"}, {lr_mult: 2}]",
                        "    weight_filler: {type: xavier}"]
            else:
                out += ["  - ReLU: relu%d" % i,
                        "    in_place: true"]
    last = body // 2 if repeat_form else (body - 1 if body % 2 == 0 else body)
    out += ["  - SoftmaxWithLoss: loss",
            "    bottom: [conv%d, label]" % last]
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, default=10000)
    ap.add_argument("--repeat-form", action="store_true",
                    help="write the layers as one `repeat` instead of one item each")
    ap.add_argument("--keep", metavar="DIR", help="leave the spec and outputs here")
    args = ap.parse_args(argv)

    work = args.keep or tempfile.mkdtemp(prefix="netdsl-bench-")
    os.makedirs(work, exist_ok=True)
    spec_path = os.path.join(work, "bench.yaml")
    text = make_spec(args.layers, args.repeat_form)
    with open(spec_path, "w") as fh:
        fh.write(text)
    print("spec: %s (%d layers in the train net, %d lines, %d bytes)"
          % (spec_path, args.layers, text.count("\n"), len(text)))

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from netdsl.spec import build, build_all, load_spec
    from netdsl.spec.compile import compile_records
    from netdsl.spec.expand import expand

    t0 = time.perf_counter()
    spec = load_spec(spec_path)
    t1 = time.perf_counter()
    records = expand(spec, "train")
    t2 = time.perf_counter()
    compiled = compile_records(records, spec.inputs, "train")
    t3 = time.perf_counter()
    from netdsl.prototxt import to_text
    to_text(compiled.net)
    t4 = time.perf_counter()
    try:
        from netdsl.shapes import check_net
        check_net(compiled.net, compiled.inputs or None)
        t5 = time.perf_counter()
    except ImportError:  # pragma: no cover
        t5 = t4
    print("one phase, by stage: load %.3f s, expand %.3f s, NetSpec build %.3f s, "
          "prototxt text %.3f s, shape check %.3f s"
          % (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4))
    built = build_all(spec)
    assert len(built.nets["train"].layer) == args.layers
    assert len(built.nets["deploy"].layer) == args.layers - 1

    out_dir = os.path.join(work, "out")
    t0 = time.perf_counter()
    build(spec_path, out_dir)
    t_in = time.perf_counter() - t0
    print("in-process  netdsl.spec.build (3 nets, checked, written): %.3f s" % t_in)

    t0 = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "netdsl", "build", spec_path, "-o", out_dir],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    t_sub = time.perf_counter() - t0
    if run.returncode != 0:
        sys.stderr.write(run.stderr.decode())
        return 1
    print("subprocess  netdsl build (3 nets, checked, written):      %.3f s" % t_sub)
    print("target: well under 10 s -> %s" % ("ok" if max(t_in, t_sub) < 10 else "SLOW"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
