"""Build and emit deep layer chains with the NetSpec builder; print the times.

    python bench/build_deep.py [--sizes 10000 100000] [--pycaffe DIR]

A chain is Input -> Convolution -> ReLU -> Convolution -> ... .  "named" assigns
every top to the NetSpec (as scripts usually do); "anonymous" passes only the
last top to to_proto, so every name is automatic and emission walks the whole
depth from one root.  With --pycaffe DIR (a directory holding pycaffe's
``caffe`` package, e.g. a Caffe checkout's python/ folder), the same named
script also runs with pycaffe's net_spec.py for comparison.  Each configuration
runs --repeat times in a fresh interpreter and the best run is shown.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

SCRIPT = r'''
import sys, time
sys.setrecursionlimit(10000)
{imports}
def chain(size, named):
    t0 = time.perf_counter()
    if named:
        n = NetSpec()
        n.data = L.Input(shape=dict(dim=[1, 8, 32, 32]))
        prev = n.data
        for i in range(size - 1):
            if i % 2 == 0:
                prev = L.Convolution(prev, num_output=8, kernel_size=3, pad=1)
            else:
                prev = L.ReLU(prev)
            setattr(n, "l%d" % i, prev)
        net = n.to_proto()
    else:
        prev = L.Input(shape=dict(dim=[1, 8, 32, 32]))
        for i in range(size - 1):
            prev = (L.Convolution(prev, num_output=8, kernel_size=3, pad=1) if i % 2 == 0
                    else L.ReLU(prev))
        net = to_proto(prev)
    t1 = time.perf_counter()
    text = str(net)
    t2 = time.perf_counter()
    assert len(net.layer) == size
    return t1 - t0, t2 - t1, len(text)
size, named = int(sys.argv[1]), sys.argv[2] == "named"
try:
    build, emit, nbytes = chain(size, named)
    print("%.3f %.3f %d" % (build, emit, nbytes))
except RecursionError:
    print("RecursionError")
'''

NETDSL = "from netdsl import NetSpec, layers as L, to_proto"
PYCAFFE = "from caffe import NetSpec, layers as L, to_proto"


def run(imports: str, size: int, mode: str, env=None) -> str:
    code = SCRIPT.replace("{imports}", imports)
    out = subprocess.run([sys.executable, "-c", code, str(size), mode], capture_output=True,
                         text=True, env=env)
    if out.returncode != 0:
        return "failed: " + (out.stderr.strip().splitlines() or ["?"])[-1]
    return out.stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10000, 100000])
    ap.add_argument("--pycaffe", metavar="DIR", help="directory containing pycaffe's caffe package")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs per configuration, each in a fresh interpreter; the best is shown")
    args = ap.parse_args()
    print("%-9s %-10s %-8s %10s %10s %12s" % ("builder", "chain", "layers", "build s", "emit s",
                                              "bytes"))
    rows = [("netdsl", NETDSL, None)]
    if args.pycaffe:
        env = dict(os.environ, PYTHONPATH=os.path.abspath(args.pycaffe))
        rows.append(("pycaffe", PYCAFFE, env))
    totals = {}
    for label, imports, env in rows:
        for mode in ("named", "anonymous"):
            for size in args.sizes:
                best = None
                for _ in range(max(1, args.repeat)):
                    res = run(imports, size, mode, env)
                    parts = res.split()
                    if len(parts) != 3:
                        best = res
                        break
                    if best is None or float(parts[0]) + float(parts[1]) < sum(
                            float(x) for x in best.split()[:2]):
                        best = res
                parts = best.split()
                if len(parts) == 3:
                    print("%-9s %-10s %-8d %10s %10s %12s" % (label, mode, size, *parts))
                    totals[label, mode, size] = float(parts[0]) + float(parts[1])
                else:
                    print("%-9s %-10s %-8d %s" % (label, mode, size, best))
    for size in args.sizes:
        ours, theirs = totals.get(("netdsl", "named", size)), totals.get(("pycaffe", "named", size))
        if ours and theirs:
            print("named %d: netdsl build+emit %.3f s = %.2f of pycaffe's %.3f s"
                  % (size, ours, ours / theirs, theirs))


if __name__ == "__main__":
    main()
