"""``caffe.proto``: ``caffe.proto.caffe_pb2`` is the schema in use (set by
netdsl.compat.install_caffe_alias: BVLC's, or the one given with --proto)."""
from netdsl.netspec import current_schema as _current

caffe_pb2 = _current()
