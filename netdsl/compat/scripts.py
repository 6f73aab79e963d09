"""Run existing pycaffe scripts (NetSpec, ``caffe.Net`` inference and surgery) with
netdsl standing in for ``caffe``."""
from __future__ import annotations

import contextlib
import os
import runpy
import sys
from typing import Iterator, List, Optional

from ..errors import NetdslError

_ALIASES = ("caffe", "caffe.proto", "caffe.proto.caffe_pb2", "caffe.net_spec",
            "caffe.coord_map", "caffe.io", "caffe.classifier")


def install_caffe_alias() -> None:
    """Make ``import caffe`` (and its submodules) resolve to netdsl's stand-ins."""
    import importlib
    from . import caffe as alias
    sys.modules["caffe"] = alias
    for name in _ALIASES[1:]:
        if name != "caffe.proto.caffe_pb2":
            sys.modules[name] = importlib.import_module("netdsl.compat." + name)
    # caffe.proto.caffe_pb2 reads the schema in use whenever it is used
    sys.modules["caffe.proto.caffe_pb2"] = sys.modules["caffe.proto"].caffe_pb2


@contextlib.contextmanager
def _as_main(argv0: str, args: Optional[List[str]], path0: str) -> Iterator[None]:
    """``sys.argv``/``sys.path`` as ``python ARGV0 ARGS`` sets them, ``import caffe``
    giving netdsl; all three restored afterwards."""
    saved = (list(sys.argv), list(sys.path), {k: sys.modules.get(k) for k in _ALIASES})
    sys.argv = [argv0] + list(args or [])
    sys.path.insert(0, path0)
    install_caffe_alias()
    try:
        yield
    finally:
        sys.argv, sys.path[:] = saved[0], saved[1]
        for k, v in saved[2].items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def run_module(module: str, args: Optional[List[str]] = None) -> None:
    """Run ``module`` as ``python -m MODULE ARGS`` would, with no Caffe.

    The current directory comes first on ``sys.path`` and ``import caffe``
    gives netdsl.  ``SystemExit`` (unittest's way of ending) propagates.
    """
    with _as_main(module, args, os.getcwd()):
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        except ImportError as exc:
            if getattr(exc, "name", None) == module:
                raise NetdslError("no module named '%s'" % module) from None
            raise


def run_script(script: str, args: Optional[List[str]] = None) -> None:
    """Run a pycaffe NetSpec script as ``python SCRIPT ARGS`` would, with no Caffe.

    The script's directory comes first on ``sys.path`` (for its own imports)
    and ``import caffe`` gives netdsl.  Files the script writes are its own.
    """
    if not os.path.isfile(script):
        raise NetdslError("no such script", file=script)
    with _as_main(script, args, os.path.dirname(os.path.abspath(script))):
        runpy.run_path(script, run_name="__main__")
