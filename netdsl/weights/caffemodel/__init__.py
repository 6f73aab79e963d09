"""Caffe weight files (``.caffemodel``): a streaming writer and a lazy reader.

A caffemodel is a binary ``NetParameter``.  Caffe's ``Net::CopyTrainedLayersFrom``
reads it, matches layers by name and copies each ``BlobProto`` into the layer's
parameter blobs.  Both directions speak the protobuf wire format directly:

* :mod:`.writer` -- :func:`write_caffemodel`, streamed from the arrays' buffers;
* :mod:`.reader` -- :func:`open_caffemodel`, a lazy, memory-mapped reader of the
  current, V1 and V0 formats;
* :mod:`.report` -- :func:`inspect` / :func:`format_inspect`, what a file holds;
* :mod:`.fields` -- the field numbers both read from the schema in use.

The V0/V1 layer-type names are in :mod:`netdsl.layers.legacy`.
"""
from .fields import PROTO_LIMIT
from .reader import BlobEntry, CaffeModel, LayerEntry, open_caffemodel
from .report import format_inspect, inspect
from .writer import write_caffemodel

__all__ = ["write_caffemodel", "open_caffemodel", "CaffeModel", "LayerEntry", "BlobEntry",
           "inspect", "format_inspect", "PROTO_LIMIT"]
