"""``caffe`` module functions of pycaffe's runtime that mean something without Caffe."""
from __future__ import annotations

from typing import List

import numpy as np

from netdsl.errors import NetdslTypeError

__all__ = ["layer_type_list", "set_mode_cpu", "set_mode_gpu", "set_device",
           "set_random_seed", "solver_count", "solver_rank", "get_random"]

#: The types BVLC Caffe registers (REGISTER_LAYER_CLASS / REGISTER_LAYER_CREATOR in
#: src/caffe/layers and layer_factory.cpp at master 9b89154; Python with
#: WITH_PYTHON_LAYER, as pycaffe builds have it).
BVLC_LAYER_TYPES = (
    "AbsVal", "Accuracy", "ArgMax", "BNLL", "BatchNorm", "BatchReindex", "Bias", "Clip",
    "Concat", "ContrastiveLoss", "Convolution", "Crop", "Data", "Deconvolution", "Dropout",
    "DummyData", "ELU", "Eltwise", "Embed", "EuclideanLoss", "Exp", "Filter", "Flatten",
    "HDF5Data", "HDF5Output", "HingeLoss", "Im2col", "ImageData", "InfogainLoss",
    "InnerProduct", "Input", "LRN", "LSTM", "LSTMUnit", "Log", "MVN", "MemoryData",
    "MultinomialLogisticLoss", "PReLU", "Parameter", "Pooling", "Power", "Python", "RNN",
    "ReLU", "Reduction", "Reshape", "SPP", "Scale", "Sigmoid", "SigmoidCrossEntropyLoss",
    "Silence", "Slice", "Softmax", "SoftmaxWithLoss", "Split", "Swish", "TanH", "Threshold",
    "Tile", "WindowData",
)

_seed = [None]


def layer_type_list() -> List[str]:
    """Caffe's ``LayerRegistry::LayerTypeList()``: registered types, sorted (a std::map),
    plus the types of loaded netdsl plugins."""
    from netdsl.forward import FORWARD
    from netdsl.plugins import ensure_env_plugins
    ensure_env_plugins()
    return sorted(set(BVLC_LAYER_TYPES) | set(FORWARD))


def set_mode_cpu() -> None:
    """Accepted: netdsl always computes on the CPU, in numpy."""


def set_mode_gpu() -> None:
    """Accepted: the numpy forward runs on the CPU whatever the mode."""


def set_device(device_id: int) -> None:
    """Accepted (there is no device to choose)."""
    if isinstance(device_id, bool) or not isinstance(device_id, (int, np.integer)):
        raise NetdslTypeError("set_device takes an integer device id, not %r" % (device_id,))


def set_random_seed(seed: int) -> None:
    """Accepted; netdsl's fillers and Dropout masks are seeded deterministically anyway."""
    _seed[0] = int(seed)


def get_random() -> int:
    return int(np.random.randint(0, 2 ** 31 - 1))


def solver_count() -> int:
    return 1


def solver_rank() -> int:
    return 0
