"""``netdsl from-onnx MODEL.onnx``: the arguments and the verb live with the ONNX
front end (netdsl.onnx.cli)."""
from ..onnx.cli import add_arguments, run

NAME = "from-onnx"
HELP = "convert an ONNX model to deploy.prototxt + model.caffemodel, checked against onnxruntime"

__all__ = ["NAME", "HELP", "add_arguments", "run"]
