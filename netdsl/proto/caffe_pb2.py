"""BVLC Caffe's message classes, compiled from the bundled caffe.proto.

Drop-in for pycaffe's ``caffe.proto.caffe_pb2``: ``caffe_pb2.NetParameter``,
``caffe_pb2.LayerParameter``, ``caffe_pb2.TRAIN`` and so on.
"""
from .compiler import BUNDLED as _BUNDLED, populate as _populate

with open(_BUNDLED, encoding="utf-8") as _fh:
    _populate(globals(), _fh.read(), _BUNDLED)
del _fh
