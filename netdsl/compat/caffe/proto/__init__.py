"""``caffe.proto``: the schema's message classes as ``caffe.proto.caffe_pb2``."""
import sys

from netdsl.netspec import current_schema as _current

caffe_pb2 = _current()
sys.modules[__name__ + ".caffe_pb2"] = caffe_pb2
