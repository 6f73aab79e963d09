"""``caffe.proto.caffe_pb2`` (replaced in sys.modules by the schema in use)."""
from netdsl.proto.caffe_pb2 import *  # noqa: F401,F403
from netdsl.proto.caffe_pb2 import DESCRIPTOR  # noqa: F401
