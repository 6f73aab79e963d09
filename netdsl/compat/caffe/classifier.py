"""``caffe.Classifier``: pycaffe's image classifier over the numpy ``caffe.Net``."""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from . import io as cio
from .net import TEST, Net

__all__ = ["Classifier"]


class Classifier(Net):
    """pycaffe's Classifier: a TEST-phase net with a Transformer on its first input.

    ``predict`` resizes each H x W x K image to ``image_dims`` (default: the
    input's spatial size), then either takes the ten oversampled crops
    (corners, centre, mirrored) and averages their predictions, or the centre
    crop only; crops are preprocessed and run with ``forward_all``.
    """

    def __init__(self, model_file: str, pretrained_file: str,
                 image_dims: Optional[Sequence[int]] = None, mean: Optional[np.ndarray] = None,
                 input_scale: Optional[float] = None, raw_scale: Optional[float] = None,
                 channel_swap: Optional[Sequence[int]] = None) -> None:
        Net.__init__(self, model_file, TEST, weights=pretrained_file)
        name = self.inputs[0]
        t = cio.Transformer({name: self.blobs[name].data.shape})
        t.set_transpose(name, (2, 0, 1))
        if mean is not None:
            t.set_mean(name, mean)
        if input_scale is not None:
            t.set_input_scale(name, input_scale)
        if raw_scale is not None:
            t.set_raw_scale(name, raw_scale)
        if channel_swap is not None:
            t.set_channel_swap(name, channel_swap)
        self.transformer = t
        self.crop_dims = np.array(self.blobs[name].data.shape[2:])
        self.image_dims = image_dims if image_dims is not None and len(image_dims) \
            else self.crop_dims

    def predict(self, inputs: Sequence[np.ndarray], oversample: bool = True) -> Any:
        """(N x C) class scores of the first output for N images."""
        h, w = int(self.image_dims[0]), int(self.image_dims[1])
        batch = np.zeros((len(inputs), h, w, inputs[0].shape[2]), dtype=np.float32)
        for i, im in enumerate(inputs):
            batch[i] = cio.resize_image(im, (h, w))
        if oversample:
            batch = cio.oversample(batch, self.crop_dims)
        else:
            # the centre crop: centre -/+ half the crop size, truncated to integers
            ch, cw = self.crop_dims / 2.0
            top, left = int(h / 2.0 - ch), int(w / 2.0 - cw)
            bottom, right = int(h / 2.0 + ch), int(w / 2.0 + cw)
            batch = batch[:, top:bottom, left:right, :]
        name = self.inputs[0]
        data = np.zeros((batch.shape[0], batch.shape[3], batch.shape[1], batch.shape[2]),
                        dtype=np.float32)
        for i, im in enumerate(batch):
            data[i] = self.transformer.preprocess(name, im)
        scores = self.forward_all(**{name: data})[self.outputs[0]]
        if oversample:
            scores = scores.reshape((len(scores) // 10, 10, -1)).mean(1)
        return scores
