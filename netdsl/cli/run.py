"""``netdsl run NET [WEIGHTS]``: the numpy forward (netdsl.forward.run) on .npy
inputs, a summary line per blob, the blobs saved as .npz."""
from __future__ import annotations

import argparse
import os
import re
import sys

from ..errors import NetdslError
from .common import declare_option, memory_option

NAME = "run"
HELP = "run a net forward in numpy (Caffe's layer semantics) and save blobs as .npz"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("net", metavar="NET.prototxt")
    p.add_argument("weights", nargs="?", metavar="WEIGHTS.caffemodel")
    p.add_argument("--input", action="append", metavar="NAME=FILE.npy",
                   help="an input array (repeatable)")
    p.add_argument("--random-input", action="store_true",
                   help="fill inputs without a file with uniform [-1, 1) values")
    p.add_argument("--seed", type=int, default=0, help="for --random-input and Dropout")
    p.add_argument("--phase", choices=["train", "test", "val", "deploy"], default="test",
                   type=str.lower,
                   help="Caffe phase (default test; val and deploy mean test; TRAIN and TEST "
                        "work too): Dropout, and include/exclude rules")
    p.add_argument("--blobs", metavar="A,B", help="blobs to save (default: the net's outputs)")
    p.add_argument("-o", "--output", metavar="OUT.npz", help="write the blobs here")
    p.add_argument("--strict", action="store_true",
                   help="a blob holding inf or NaN is an error (exit 2, nothing written), "
                        "not a warning")
    memory_option(p)
    declare_option(p)


def run(args: argparse.Namespace) -> int:
    from ..forward.run import parse_input_args, run as run_net, summary
    blobs = [b for b in (args.blobs or "").split(",") if b] or None
    try:
        result = run_net(args.net, args.weights, parse_input_args(args.input or []),
                         output=args.output, blobs=blobs, random_input=args.random_input,
                         seed=args.seed, phase="TRAIN" if args.phase == "train" else "TEST",
                         max_memory=args.max_memory, strict=args.strict)
    except NetdslError as exc:
        if args.weights is None and exc.message.startswith("no weights for this"):
            exc.hint = _init_hint(args.net)
        raise
    sys.stdout.write(summary(result, blobs or result.outputs))
    return 0


def adjust_error(exc: NetdslError) -> None:
    """run's ``--input`` takes arrays, not shapes: a hint's ``--input X=N,C,H,W`` becomes
    ``--input X=X.npy``."""
    if exc.hint:
        exc.hint = re.sub(r"--input (\S+)=N,C,H,W", r"--input \1=\1.npy", exc.hint)


def _init_hint(net: str) -> str:
    """What to do when ``run`` has no caffemodel for a net that needs one."""
    beside = os.path.join(os.path.dirname(net), "init.caffemodel")
    if os.path.isfile(beside):
        return ("no caffemodel was given; %s is beside the net: `netdsl run %s %s`"
                % (beside, net, beside))
    return ("no caffemodel was given; make one with fillers (and --from a trained model) "
            "with `netdsl init %s -o init.caffemodel`, then `netdsl run %s init.caffemodel`"
            % (net, net))
