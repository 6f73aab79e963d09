"""Helpers shared by the cross-check tests: optional back-ends and OpenCV dnn runs."""
from __future__ import annotations

import importlib
import os
from typing import Dict, Mapping, Sequence, Tuple

import numpy as np
import pytest

from netdsl.prototxt import write
from netdsl.weights import write_caffemodel


def require(module: str):
    """Import ``module``; on CI its absence fails the test, elsewhere it skips."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        msg = "%s is not installed (%s); pip install -e '.[test,torch]'" % (module, exc)
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


def save_net(directory, net, weights: Mapping[str, Sequence[np.ndarray]], stem: str = "net"
             ) -> Tuple[str, str]:
    """Write ``net`` (NetParameter) and ``weights`` with netdsl's writers."""
    proto = os.path.join(str(directory), stem + ".prototxt")
    model = os.path.join(str(directory), stem + ".caffemodel")
    write(proto, net)
    write_caffemodel(model, dict(weights), types=net)
    return proto, model


def opencv_forward(proto: str, model: str, inputs: Mapping[str, np.ndarray],
                   names: Sequence[str]) -> Dict[str, np.ndarray]:
    """The named blobs as OpenCV dnn computes them from the same two files."""
    cv2 = require("cv2")
    net = cv2.dnn.readNetFromCaffe(proto, model)
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    for name, arr in inputs.items():
        net.setInput(np.ascontiguousarray(arr, dtype=np.float32), name)
    outs = net.forward(list(names))
    return {n: np.asarray(o) for n, o in zip(names, outs)}


def max_err(a: np.ndarray, b: np.ndarray) -> float:
    assert a.size == b.size, (a.shape, b.shape)
    return float(np.abs(np.asarray(a, np.float64).reshape(b.shape) - b).max()) if a.size else 0.0
