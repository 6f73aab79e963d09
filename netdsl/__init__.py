"""netdsl: author, check and initialise Caffe networks without Caffe.

Public API::

    from netdsl import NetSpec, layers as L, params as P, to_proto
    from netdsl.proto import caffe_pb2
    from netdsl import prototxt      # read_net, parse_net, to_text, write
"""
from .errors import NetdslError
from .netspec import NetSpec, params, to_proto, use_schema
from . import layers  # L.<Type>(...) as pycaffe's caffe.layers; also the layer registry

__all__ = ["NetSpec", "layers", "params", "to_proto", "use_schema", "NetdslError"]
__version__ = "0.2.0"
