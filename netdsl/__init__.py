"""netdsl: author, check and initialise Caffe networks without Caffe.

Public API::

    from netdsl import NetSpec, layers as L, params as P, to_proto
    from netdsl.proto import caffe_pb2
    from netdsl import prototxt      # read_net, parse_net, to_text, write

The names are offered lazily (PEP 562): importing any ``netdsl.x`` module runs
this file first, so it imports nothing itself and every floor stays below.
"""
from typing import Any

__all__ = ["NetSpec", "layers", "params", "to_proto", "use_schema", "NetdslError"]
__version__ = "0.2.0"


def __getattr__(name: str) -> Any:
    if name == "NetdslError":
        from .errors import NetdslError
        return NetdslError
    if name == "layers":   # not `from . import layers`: that asks this __getattr__ again
        import netdsl.layers
        return netdsl.layers
    if name in ("NetSpec", "params", "to_proto", "use_schema"):
        from . import netspec
        return getattr(netspec, name)
    raise AttributeError("module 'netdsl' has no attribute %r" % name)
