"""Helpers shared by the cross-check tests: optional back-ends and OpenCV dnn runs."""
from __future__ import annotations

import importlib
import os
from typing import Dict, Mapping, Sequence, Tuple

import numpy as np
import pytest

from netdsl.prototxt import write
from netdsl.weights import write_caffemodel


#: set to 1 to let tests skip (with the reason in the summary) when a test-extra
#: package or a download is missing; unset (the default, and always on CI) they fail
ALLOW_SKIP = "NETDSL_TEST_ALLOW_SKIP"


def unavailable(message: str) -> None:
    """Fail the test for something it needs and cannot have (a package of the test
    extra, a download); a skip only when $NETDSL_TEST_ALLOW_SKIP is 1 and not on CI."""
    if os.environ.get(ALLOW_SKIP) == "1" and not os.environ.get("CI"):
        pytest.skip(message)
    pytest.fail(message + " (set %s=1 to skip instead)" % ALLOW_SKIP)


def require(module: str):
    """Import ``module``, a package of the test extra; its absence fails the test
    (see :func:`unavailable`)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        unavailable("%s is not installed (%s); pip install -e '.[test,torch]'" % (module, exc))


def save_net(directory, net, weights: Mapping[str, Sequence[np.ndarray]], stem: str = "net"
             ) -> Tuple[str, str]:
    """Write ``net`` (NetParameter) and ``weights`` with netdsl's writers; layers
    missing from ``weights`` get their fillers' values (``init_weights``), since
    OpenCV reads every blob from the caffemodel."""
    from netdsl.weights import init_weights
    full = {k: v for k, v in init_weights(net).items() if k not in weights}
    full.update(weights)
    weights = full
    proto = os.path.join(str(directory), stem + ".prototxt")
    model = os.path.join(str(directory), stem + ".caffemodel")
    write(proto, net)
    write_caffemodel(model, dict(weights), types=net)
    return proto, model


def opencv_forward(proto: str, model: str, inputs: Mapping[str, np.ndarray],
                   names: Sequence[str]) -> Dict[str, np.ndarray]:
    """The named blobs as OpenCV dnn computes them from the same two files.

    OpenCV looks outputs up by layer name and returns a layer's first top, so
    each blob is asked for by the name of the last layer producing it as top 0.
    """
    cv2 = require("cv2")
    from netdsl.prototxt import read_net
    producer = {}
    for lp in read_net(proto).layer:
        for i, top in enumerate(lp.top):
            producer[top] = (lp.name, i)
    net = cv2.dnn.readNetFromCaffe(proto, model)
    known = set(net.getLayerNames())
    layer_names = []
    for name in names:
        lname, index = producer[name]
        assert index == 0, "blob %s is top %d of layer %s" % (name, index, lname)
        # OpenCV keeps most layer names but names some layers by their top
        layer_names.append(lname if lname in known else name)
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    for name, arr in inputs.items():
        net.setInput(np.ascontiguousarray(arr, dtype=np.float32), name)
    outs = net.forward(layer_names)
    return {n: np.asarray(o) for n, o in zip(names, outs)}


def max_err(a: np.ndarray, b: np.ndarray) -> float:
    assert a.size == b.size, (a.shape, b.shape)
    return float(np.abs(np.asarray(a, np.float64).reshape(b.shape) - b).max()) if a.size else 0.0
