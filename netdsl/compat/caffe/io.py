"""``caffe.io``: the BlobProto/Datum converters (numpy only).

Image helpers (Transformer, load_image, resize_image, oversample) need
Caffe's Python dependencies and are not provided.
"""
from __future__ import annotations

import numpy as np

from netdsl.errors import NetdslError
from netdsl.netspec import current_schema


def blobproto_to_array(blob, return_diff=False):
    """BlobProto -> ndarray, with Caffe's legacy 4-D num/channels/height/width rule."""
    data = np.array(blob.diff if return_diff else blob.data)
    if blob.HasField("num") or blob.HasField("channels") or blob.HasField("height") \
            or blob.HasField("width"):
        return data.reshape(blob.num, blob.channels, blob.height, blob.width)
    return data.reshape(tuple(blob.shape.dim))


def array_to_blobproto(arr, diff=None):
    """ndarray -> BlobProto with a shape and float data."""
    blob = current_schema().BlobProto()
    blob.shape.dim.extend(arr.shape)
    blob.data.extend(np.asarray(arr, dtype=np.float32).ravel().tolist())
    if diff is not None:
        blob.diff.extend(np.asarray(diff, dtype=np.float32).ravel().tolist())
    return blob


def arraylist_to_blobprotovector_str(arraylist):
    vec = current_schema().BlobProtoVector()
    vec.blobs.extend([array_to_blobproto(arr) for arr in arraylist])
    return vec.SerializeToString()


def blobprotovector_str_to_arraylist(text):
    vec = current_schema().BlobProtoVector()
    vec.ParseFromString(text)
    return [blobproto_to_array(blob) for blob in vec.blobs]


def array_to_datum(arr, label=None):
    """A 3-D uint8 (as bytes) or float array -> Datum, as pycaffe does."""
    if arr.ndim != 3:
        raise NetdslError("array_to_datum takes a 3-D array (channels, height, width)")
    datum = current_schema().Datum()
    datum.channels, datum.height, datum.width = arr.shape
    if arr.dtype == np.uint8:
        datum.data = arr.tobytes()
    else:
        datum.float_data.extend(arr.astype(float).flat)
    if label is not None:
        datum.label = label
    return datum


def datum_to_array(datum):
    """Datum -> ndarray (uint8 from data, else float_data)."""
    if len(datum.data):
        return np.frombuffer(datum.data, dtype=np.uint8).reshape(
            datum.channels, datum.height, datum.width)
    return np.array(datum.float_data).astype(float).reshape(
        datum.channels, datum.height, datum.width)


def __getattr__(name):
    if not name.startswith("_"):
        raise NetdslError("caffe.io.%s is not provided by netdsl (it needs Caffe's image "
                          "dependencies)" % name)
    raise AttributeError(name)
