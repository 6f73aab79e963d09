"""netdsl standing in for pycaffe's ``caffe`` package (net authoring only).

NetSpec, layers, params, to_proto, proto.caffe_pb2, TRAIN/TEST, coord_map.crop
and the BlobProto helpers of caffe.io are netdsl's.  Anything that needs
Caffe's compiled runtime (Net, solvers, set_mode_gpu, ...) raises a clear error.
"""
from netdsl.netspec import NetSpec, layers, params, to_proto  # noqa: F401
from netdsl.proto.caffe_pb2 import TEST, TRAIN  # noqa: F401

from . import proto  # noqa: F401,E402

__version__ = "netdsl"

_RUNTIME = {
    "Net", "SGDSolver", "NesterovSolver", "AdaGradSolver", "RMSPropSolver", "AdaDeltaSolver",
    "AdamSolver", "get_solver", "set_mode_cpu", "set_mode_gpu", "set_device", "Layer",
    "layer_type_list", "set_random_seed", "solver_count", "set_solver_count", "solver_rank",
    "set_solver_rank", "set_multiprocess", "has_nccl", "NCCL", "Timer", "init_log", "log",
    "Classifier", "Detector", "get_random", "Blob", "NetSpecBuilder",
}


def __getattr__(name):
    from netdsl.errors import NetdslError
    if name in _RUNTIME or not name.startswith("_"):
        raise NetdslError(
            "caffe.%s needs Caffe's compiled runtime, which netdsl does not provide: it "
            "authors and checks nets without Caffe" % name,
            hint="build prototxt with NetSpec here; for numbers use `netdsl run` "
                 "(numpy forward) or OpenCV dnn")
    raise AttributeError(name)
