"""``caffe.io``: BlobProto/Datum converters, the input Transformer, image functions.

All numpy.  ``load_image`` reads files with Pillow or OpenCV, whichever is
installed; ``resize_image`` uses scikit-image and SciPy as pycaffe does (the
only way to get its exact numbers) and says so when they are missing.
"""
from __future__ import annotations

from typing import Any, Dict, Sequence

import numpy as np

from netdsl.errors import NetdslError, NetdslValueError, did_you_mean
from netdsl.schema import current_schema


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
        raise NetdslValueError("array_to_datum takes a 3-D array (channels, height, width), "
                               "not %d-D" % arr.ndim, pycaffe="Incorrect array shape.")
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


# -- pre-processing ----------------------------------------------------------------

class Transformer:
    """pycaffe's input Transformer: ``preprocess`` resizes an H x W x K image to the
    input's spatial size, transposes, swaps channels, multiplies by ``raw_scale``,
    subtracts the mean and multiplies by ``input_scale``, in that order;
    ``deprocess`` undoes it.  ``inputs`` maps input names to blob shapes
    (e.g. ``{'data': net.blobs['data'].data.shape}``)."""

    def __init__(self, inputs: Dict[str, Sequence[int]]) -> None:
        self.inputs = inputs
        self.transpose: Dict[str, Any] = {}
        self.channel_swap: Dict[str, Any] = {}
        self.raw_scale: Dict[str, Any] = {}
        self.mean: Dict[str, Any] = {}
        self.input_scale: Dict[str, Any] = {}

    def _check(self, name: str) -> None:
        if name not in self.inputs:
            raise NetdslError("%s is not one of the net inputs: %s" % (name, self.inputs),
                              hint=did_you_mean(str(name), [str(k) for k in self.inputs]))

    def preprocess(self, in_: str, data: np.ndarray) -> np.ndarray:
        """An H' x W' x K image as a K x H x W float32 input (see the class doc)."""
        self._check(in_)
        out = np.asarray(data).astype(np.float32, copy=False)
        dims = tuple(self.inputs[in_][2:])
        if tuple(out.shape[:2]) != dims:
            out = resize_image(out, dims)
        if self.transpose.get(in_) is not None:
            out = out.transpose(self.transpose[in_])
        if self.channel_swap.get(in_) is not None:
            out = out[list(self.channel_swap[in_]), :, :]
        if self.raw_scale.get(in_) is not None:
            out = out * self.raw_scale[in_]
        if self.mean.get(in_) is not None:
            out = out - self.mean[in_]
        if self.input_scale.get(in_) is not None:
            out = out * self.input_scale[in_]
        return out

    def deprocess(self, in_: str, data: np.ndarray) -> np.ndarray:
        """Undo :meth:`preprocess` (except the resize) on one (squeezed) input."""
        self._check(in_)
        out = np.array(data, copy=True).squeeze()
        if self.input_scale.get(in_) is not None:
            out /= self.input_scale[in_]
        if self.mean.get(in_) is not None:
            out += self.mean[in_]
        if self.raw_scale.get(in_) is not None:
            out /= self.raw_scale[in_]
        if self.channel_swap.get(in_) is not None:
            out = out[np.argsort(self.channel_swap[in_]), :, :]
        if self.transpose.get(in_) is not None:
            out = out.transpose(np.argsort(self.transpose[in_]))
        return out

    def set_transpose(self, in_: str, order: Sequence[int]) -> None:
        self._check(in_)
        if len(order) != len(self.inputs[in_]) - 1:
            raise NetdslError("Transpose order needs to have the same number of dimensions "
                              "as the input.")
        self.transpose[in_] = order

    def set_channel_swap(self, in_: str, order: Sequence[int]) -> None:
        self._check(in_)
        if len(order) != self.inputs[in_][1]:
            raise NetdslError("Channel swap needs to have the same number of dimensions as "
                              "the input channels.")
        self.channel_swap[in_] = order

    def set_raw_scale(self, in_: str, scale: float) -> None:
        self._check(in_)
        self.raw_scale[in_] = scale

    def set_mean(self, in_: str, mean: np.ndarray) -> None:
        """A per-channel (1-D) or per-pixel (K x H x W, resized when it differs) mean."""
        self._check(in_)
        ms = mean.shape
        if mean.ndim == 1:
            if ms[0] != self.inputs[in_][1]:
                raise NetdslValueError("the mean has %d channels, the input %d"
                                       % (ms[0], self.inputs[in_][1]),
                                       pycaffe="Mean channels incompatible with input.")
            mean = mean[:, np.newaxis, np.newaxis]
        else:
            if len(ms) == 2:
                ms = (1,) + ms
            if len(ms) != 3:
                raise NetdslValueError("a mean is 1-D (per channel) or K x H x W, not %s"
                                       % (mean.shape,), pycaffe="Mean shape invalid")
            want = tuple(self.inputs[in_][1:])
            if tuple(ms) != want:
                lo, hi = mean.min(), mean.max()
                unit = (mean - lo) / (hi - lo)
                mean = resize_image(unit.transpose((1, 2, 0)), want[1:]).transpose(
                    (2, 0, 1)) * (hi - lo) + lo
        self.mean[in_] = mean

    def set_input_scale(self, in_: str, scale: float) -> None:
        self._check(in_)
        self.input_scale[in_] = scale


# -- images -------------------------------------------------------------------------

_GRAY = (0.2125, 0.7154, 0.0721)  # scikit-image's rgb2gray weights (what pycaffe uses)


def _read_pixels(filename: str) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError:
        Image = None
    if Image is not None:
        try:
            with Image.open(filename) as im:
                if im.mode in ("P", "CMYK", "YCbCr", "LAB", "HSV"):
                    im = im.convert("RGBA" if "transparency" in im.info else "RGB")
                elif im.mode == "1":
                    im = im.convert("L")
                return np.array(im)
        except OSError as exc:
            raise NetdslError("cannot read an image: %s" % exc, file=filename) from None
    try:
        import cv2
    except ImportError:
        raise NetdslError("load_image needs an image reader: install Pillow or "
                          "opencv-python", file=filename) from None
    img = cv2.imread(filename, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise NetdslError("cannot read an image", file=filename)
    if img.ndim == 3:
        img = img[:, :, [2, 1, 0, 3][:img.shape[2]]]  # OpenCV's BGR(A) to RGB(A)
    return img


def load_image(filename: str, color: bool = True) -> np.ndarray:
    """pycaffe's ``load_image``: H x W x 3 RGB (``color``) or H x W x 1 intensity,
    float32 in [0, 1] (integers divided by their type's maximum, as
    skimage.img_as_float does); gray images are tiled to 3 channels for
    ``color``, an alpha channel is dropped, colour is turned to intensity with
    scikit-image's rgb2gray weights."""
    raw = _read_pixels(filename)
    if raw.dtype.kind in "ui":
        img = raw.astype(np.float64) / np.iinfo(raw.dtype).max
    else:
        img = raw.astype(np.float64)
    if not color and img.ndim == 3:
        img = img[:, :, :3] @ np.array(_GRAY)
    img = img.astype(np.float32)
    if img.ndim == 2:
        img = img[:, :, np.newaxis]
        if color:
            img = np.tile(img, (1, 1, 3))
    elif img.shape[2] == 4:
        img = img[:, :, :3]
    return img


def resize_image(im: np.ndarray, new_dims: Sequence[int], interp_order: int = 1) -> np.ndarray:
    """pycaffe's ``resize_image``: scikit-image's resize for 1 or 3 channels (scaled to
    [0, 1] and back), SciPy's zoom otherwise.  Needs those packages, as pycaffe
    does; a constant image needs nothing."""
    if im.shape[-1] in (1, 3):
        lo, hi = im.min(), im.max()
        if not hi > lo:
            return np.full((new_dims[0], new_dims[1], im.shape[-1]), lo, dtype=np.float32)
        if tuple(im.shape[:2]) == tuple(int(d) for d in new_dims):
            # the same size: scikit-image returns the [0, 1] image unchanged, so only
            # pycaffe's scaling there and back remains (in the image's own precision)
            unit = (im - lo) / (hi - lo)
            return (unit * (hi - lo) + lo).astype(np.float32)
        try:
            from skimage.transform import resize
        except ImportError:
            raise NetdslError("resize_image needs scikit-image, as pycaffe's does (its "
                              "interpolation decides the values)",
                              hint="pip install scikit-image, or give images of the "
                                   "input's size") from None
        out = resize((im - lo) / (hi - lo), new_dims, order=interp_order, mode="constant")
        return (out * (hi - lo) + lo).astype(np.float32)
    try:
        from scipy.ndimage import zoom
    except ImportError:
        raise NetdslError("resize_image needs SciPy for images of %d channels, as pycaffe's "
                          "does" % im.shape[-1], hint="pip install scipy") from None
    scale = tuple(np.array(new_dims, dtype=float) / np.array(im.shape[:2]))
    return zoom(im, scale + (1,), order=interp_order).astype(np.float32)


def oversample(images: Sequence[np.ndarray], crop_dims: Sequence[int]) -> np.ndarray:
    """pycaffe's ``oversample``: per image the four corner crops and the centre crop
    of ``crop_dims``, then the same five mirrored left-right (10 per image)."""
    shape = np.array(images[0].shape)
    ch, cw = int(crop_dims[0]), int(crop_dims[1])
    boxes = [(i, j) for i in (0, shape[0] - ch) for j in (0, shape[1] - cw)]
    # the centre box: centre minus half the crop (floats, truncated as an int array is)
    boxes.append((int(shape[0] / 2.0 - ch / 2.0), int(shape[1] / 2.0 - cw / 2.0)))
    out = np.empty((10 * len(images), ch, cw, shape[-1]), dtype=np.float32)
    k = 0
    for im in images:
        for i, j in boxes:
            out[k] = im[i:i + ch, j:j + cw, :]
            k += 1
        out[k:k + 5] = out[k - 5:k, :, ::-1, :]
        k += 5
    return out


def __getattr__(name):
    if not name.startswith("_"):
        raise NetdslError("caffe.io.%s is not provided by netdsl" % name)
    raise AttributeError(name)
