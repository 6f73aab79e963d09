"""Benchmark: opening a caffemodel past 2 GiB (a sparse file) is a scan, not a read.

The file holds one blob of 2**29 + 8 floats (2 GiB + 32 bytes).  open_caffemodel
maps it and walks the wire format, so opening takes milliseconds whatever the
size; the script prints the best of --repeat opens and exits 1 past --budget
seconds (default 1.0), a wall-clock figure kept out of the unit tests.

    python bench/open_large.py [--repeat 5] [--budget 1.0]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def write_sparse(path: str) -> int:
    n = 2 ** 29 + 8
    shape = b"\x0a" + _varint(len(_varint(n))) + _varint(n)
    blob_head = b"\x2a" + _varint(4 * n)
    blob_len = len(blob_head) + 4 * n + 2 + len(shape)
    layer_head = b"\x0a\x03big" + b"\x3a" + _varint(blob_len)
    head = b"\xa2\x06" + _varint(len(layer_head) + blob_len) + layer_head + blob_head
    with open(path, "wb") as f:
        f.write(head)
        f.write(np.float32([1, 2]).tobytes())
        f.seek(len(head) + 4 * n - 4)
        f.write(np.float32([3]).tobytes())
        f.write(b"\x3a" + _varint(len(shape)) + shape)
    return n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--budget", type=float, default=1.0, help="seconds allowed for one open")
    args = ap.parse_args(argv)
    from netdsl.weights import open_caffemodel
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "big.caffemodel")
        n = write_sparse(path)
        st = os.stat(path)
        print("file %d bytes (%d on disk), one blob of %d floats" % (
            st.st_size, st.st_blocks * 512, n))
        best = float("inf")
        for _ in range(args.repeat):
            t = time.perf_counter()
            with open_caffemodel(path) as m:
                best = min(best, time.perf_counter() - t)
                assert m.layers[0].shapes == [(n,)]
        print("open: best of %d %.2f ms (budget %.0f ms)" % (args.repeat, best * 1e3,
                                                            args.budget * 1e3))
    return 0 if best < args.budget else 1


if __name__ == "__main__":
    sys.exit(main())
