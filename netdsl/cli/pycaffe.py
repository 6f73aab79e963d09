"""``netdsl pycaffe SCRIPT [ARGS]`` / ``-m MODULE``: run a pycaffe script against
netdsl's ``caffe`` stand-in; name the files it wrote and check their crop offsets."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, List, Optional

from ..errors import NetdslError
from .common import declare_option

NAME = "pycaffe"
HELP = "run an existing pycaffe script (NetSpec, caffe.Net inference) with no Caffe"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", dest="module", nargs=argparse.REMAINDER, metavar="MODULE ARGS",
                   help="run a module as `python -m MODULE ARGS` does (e.g. unittest); "
                        "everything after it goes to the module")
    declare_option(p)
    p.add_argument("script", nargs="?", help="the script (e.g. FCN's net.py)")
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the script")


def run(args: argparse.Namespace) -> int:
    from ..compat import run_module, run_script
    if not args.module and not args.script:
        raise NetdslError("give a script to run, or -m MODULE")
    argv = list(args.module[1:] if args.module else args.args or [])
    cwd = os.getcwd()     # a script may change directory: paths are kept absolute
    dirs = _watched_dirs(None if args.module else args.script, argv)
    before = _snapshot(dirs)
    try:
        if args.module:
            run_module(args.module[0], args.module[1:])
        else:
            run_script(args.script, args.args)
    finally:
        written = _changed(before, _snapshot(dirs))
        for path in written:
            print("wrote %s" % os.path.relpath(path, cwd), file=sys.stderr)
    _check_written_crops(written, [os.path.relpath(p, cwd) for p in written])
    return 0


def _check_written_crops(paths: List[str], shown: List[str]) -> None:
    """Warn about the explicit crop offsets of the nets a script wrote that the coordinate
    maps disagree with (pycaffe's NetSpec accepts any offset); ``shown`` are the
    paths as the warnings name them."""
    from ..crop_check import check_crop_offsets
    from ..prototxt import read_net
    for path, name in zip(paths, shown):
        if not path.endswith(".prototxt"):
            continue
        try:
            net = read_net(path)
        except (NetdslError, OSError, UnicodeDecodeError):
            continue   # a solver, or not a net netdsl reads
        if not any(layer.type == "Crop" for layer in net.layer):
            continue
        try:
            check_crop_offsets(net, locate=lambda err, p=name: err.located(file=p))
        except NetdslError:   # a net whose maps cannot be followed: shapes will say why
            continue


def _watched_dirs(script: Optional[str], argv: List[str]) -> List[str]:
    """Where a script's outputs are looked for: the working directory, the script's own
    directory and the directories named by its arguments (or holding them)."""
    dirs = [os.curdir]
    if script:
        dirs.append(os.path.dirname(script) or os.curdir)
    for a in argv:
        if a.startswith("-"):
            a = a.partition("=")[2]
        if not a:
            continue
        d = a if os.path.isdir(a) else os.path.dirname(a)
        if d and os.path.isdir(d):
            dirs.append(d)
    out: List[str] = []
    seen = set()
    for d in dirs:
        key = os.path.realpath(d)
        if key not in seen:
            seen.add(key)
            out.append(os.path.abspath(d))
    return out


def _snapshot(dirs: List[str]) -> Dict[str, tuple]:
    """{path: (mtime_ns, size)} of the files directly in ``dirs``."""
    out: Dict[str, tuple] = {}
    for d in dirs:
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for e in entries:
            try:
                if e.is_file():
                    st = e.stat()
                    path = os.path.normpath(e.path)
                    out[path] = (st.st_mtime_ns, st.st_size)
            except OSError:
                continue
    return out


def _changed(before: Dict[str, tuple], after: Dict[str, tuple]) -> List[str]:
    """Files new or changed between two snapshots (Python's bytecode caches left out)."""
    return sorted(p for p, sig in after.items()
                  if before.get(p) != sig and not p.endswith((".pyc", ".pyo")))
