"""Run existing pycaffe scripts (NetSpec, ``caffe.Net`` inference and surgery) with
netdsl standing in for ``caffe``.

The stand-in is :mod:`netdsl.compat.caffe`; running scripts under it is
:mod:`netdsl.compat.scripts` (offered here lazily, so that importing
:mod:`netdsl.compat.coord_map` does not load the stand-in).
"""
from typing import Any

__all__ = ["install_caffe_alias", "run_module", "run_script"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import scripts
        return getattr(scripts, name)
    raise AttributeError("module 'netdsl.compat' has no attribute %r" % name)
