"""netdsl standing in for pycaffe's ``caffe`` package.

NetSpec, layers, params, to_proto, proto.caffe_pb2, TRAIN/TEST, coord_map.crop,
caffe.io and a numpy-backed ``caffe.Net`` (inference and weight surgery:
forward, blobs, params, copy_from, save) are netdsl's.  Training (backward,
solvers) needs Caffe and raises a clear error.
"""
from netdsl.netspec import NetSpec, layers, params, to_proto  # noqa: F401
from netdsl.proto.caffe_pb2 import TEST, TRAIN  # noqa: F401

from . import coord_map, io, net_spec, proto  # noqa: F401,E402  (as pycaffe imports io)
from .net import Blob, Layer, Net, training_error  # noqa: F401,E402
from .classifier import Classifier  # noqa: F401,E402
from .runtime import (get_random, layer_type_list, set_device, set_mode_cpu,  # noqa: F401,E402
                      set_mode_gpu, set_random_seed, solver_count, solver_rank)

__version__ = "netdsl"

_TRAINING = {
    "SGDSolver", "NesterovSolver", "AdaGradSolver", "RMSPropSolver", "AdaDeltaSolver",
    "AdamSolver", "get_solver", "Solver", "NCCL", "set_solver_count", "set_solver_rank",
    "set_multiprocess", "has_nccl",
}
_RUNTIME = {"Timer", "init_log", "log", "Detector", "NetSpecBuilder"}


def __getattr__(name):
    from netdsl.errors import NetdslError
    if name in _TRAINING:
        raise training_error("caffe.%s" % name)
    if name in _RUNTIME or not name.startswith("_"):
        raise NetdslError(
            "caffe.%s needs Caffe's compiled runtime, which netdsl does not provide: it "
            "authors and checks nets and runs them forward in numpy" % name,
            hint="caffe.Net(prototxt, caffe.TEST, weights=...) runs inference here")
    raise AttributeError(name)
