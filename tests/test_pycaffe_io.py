"""``caffe.io`` without Caffe: the Transformer, load_image, oversample, Datum/BlobProto.

Expected values are computed by hand from pycaffe's documented order of
operations (python/caffe/io.py) and scikit-image's conventions.
"""
from __future__ import annotations

import numpy as np
import pytest
from dnn_check import require

from netdsl.compat.caffe import io as cio
from netdsl.errors import NetdslError


def test_transformer_order_of_operations_and_inverse():
    t = cio.Transformer({"data": (1, 3, 2, 2)})
    t.set_transpose("data", (2, 0, 1))
    t.set_channel_swap("data", (2, 1, 0))
    t.set_raw_scale("data", 255)
    t.set_mean("data", np.array([10.0, 20.0, 30.0]))
    t.set_input_scale("data", 0.5)
    img = np.zeros((2, 2, 3), dtype=np.float32)
    img[..., 0], img[..., 1], img[..., 2] = 0.1, 0.2, 0.4  # R, G, B
    out = t.preprocess("data", img)
    # HxWxC -> CxHxW, RGB -> BGR, x255, minus per-channel mean, x0.5
    assert out.shape == (3, 2, 2)
    assert np.allclose(out[0], (0.4 * 255 - 10) * 0.5)
    assert np.allclose(out[1], (0.2 * 255 - 20) * 0.5)
    assert np.allclose(out[2], (0.1 * 255 - 30) * 0.5)
    back = t.deprocess("data", out)
    assert np.allclose(back, img, atol=1e-6)
    with pytest.raises(NetdslError, match="is not one of the net inputs"):
        t.preprocess("image", img)
    with pytest.raises(ValueError):
        t.set_mean("data", np.zeros(4))


def test_load_image_scales_and_channels(tmp_path):
    cv2 = require("cv2")
    rgb = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [51, 102, 204]]], np.uint8)
    path = str(tmp_path / "im.png")
    cv2.imwrite(path, rgb[:, :, ::-1])  # OpenCV writes BGR
    img = cio.load_image(path)
    assert img.dtype == np.float32 and img.shape == (2, 2, 3)
    assert np.allclose(img, rgb / 255.0)           # skimage.img_as_float: / 255
    gray = cio.load_image(path, color=False)
    assert gray.shape == (2, 2, 1)
    # skimage's rgb2gray: 0.2125 R + 0.7154 G + 0.0721 B
    assert np.isclose(gray[0, 0, 0], 0.2125) and np.isclose(gray[0, 1, 0], 0.7154)
    cv2.imwrite(path, rgb[:, :, 0])                  # a gray file tiles to 3 channels
    img = cio.load_image(path)
    assert img.shape == (2, 2, 3) and np.allclose(img[..., 2], rgb[:, :, 0] / 255.0)


def test_oversample_crops_and_mirrors():
    im = np.arange(5 * 6, dtype=np.float32).reshape(5, 6, 1)
    crops = cio.oversample([im], (3, 4))
    assert crops.shape == (10, 3, 4, 1)
    assert np.array_equal(crops[0], im[0:3, 0:4])    # top-left
    assert np.array_equal(crops[1], im[0:3, 2:6])    # top-right
    assert np.array_equal(crops[2], im[2:5, 0:4])    # bottom-left
    assert np.array_equal(crops[3], im[2:5, 2:6])    # bottom-right
    # centre (2.5, 3) minus half the crop (1.5, 2) = (1, 1), truncated
    assert np.array_equal(crops[4], im[1:4, 1:5])
    for k in range(5):
        assert np.array_equal(crops[5 + k], crops[k][:, ::-1])


def test_datum_and_blobproto_round_trips():
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    d = cio.array_to_datum(arr, label=3)
    assert (d.channels, d.height, d.width, d.label) == (2, 3, 4, 3)
    assert np.array_equal(cio.datum_to_array(d), arr)
    with pytest.raises(ValueError, match="^Incorrect array shape.$"):
        cio.array_to_datum(np.zeros((2, 2)))
    f = np.linspace(-1, 1, 6).reshape(1, 2, 3)
    assert np.allclose(cio.blobproto_to_array(cio.array_to_blobproto(f)), f)


def test_resize_of_a_constant_image_needs_nothing():
    out = cio.resize_image(np.full((2, 3, 3), 0.5, np.float32), (4, 5))
    assert out.shape == (4, 5, 3) and np.all(out == 0.5)
