"""Time `netdsl draw` on FCN-8s, a 500-layer net and ResNet-152; print the figures.

    python bench/draw.py [--repeat 3] [--formats svg png]

Each figure is the best of --repeat runs of the whole verb (spec or prototxt
read, shapes, DOT text, Graphviz layout and rendering, atomic write), run in
process through netdsl.cli.main, and beside it the part spent before Graphviz
(netdsl.draw.net_dot).  The acceptance bound is 5 s per picture.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

import zoo_nets  # noqa: E402  (the test nets)
from netdsl.cli import load_net, main  # noqa: E402
from netdsl.draw import net_dot  # noqa: E402
from netdsl.prototxt import to_text  # noqa: E402


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main_(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--formats", nargs="+", default=["svg", "png"])
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        cases = [("FCN-8s (specs/fcn8s.yaml)", os.path.join(ROOT, "specs", "fcn8s.yaml"))]
        for name, net in (("500-layer chain", zoo_nets.chain(500)),
                          ("ResNet-152", zoo_nets.resnet(152))):
            path = os.path.join(tmp, name.split()[0] + ".prototxt")
            with open(path, "w") as fh:
                fh.write(to_text(net))
            cases.append(("%s (%d layers)" % (name, len(net.layer)), path))
        print("%-34s %8s %10s %10s" % ("net", "format", "total s", "DOT s"))
        for label, path in cases:
            net = load_net(path)
            dot_time = best(lambda: net_dot(net), args.repeat)
            for fmt in args.formats:
                out = os.path.join(tmp, "out." + fmt)

                def run() -> None:
                    with contextlib.redirect_stderr(io.StringIO()):   # "wrote ..." lines
                        status = main(["draw", path, "-o", out])
                    if status != 0:
                        raise SystemExit("draw failed on %s" % path)
                total = best(run, args.repeat)
                print("%-34s %8s %10.3f %10.3f" % (label, fmt, total, dot_time))
    return 0


if __name__ == "__main__":
    sys.exit(main_())
