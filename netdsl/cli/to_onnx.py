"""``netdsl to-onnx NET [WEIGHTS] -o model.onnx``: the arguments and the verb live
with the exporter (netdsl.export.cli)."""
from ..export.cli import add_arguments, run

NAME = "to-onnx"
HELP = ("export a Caffe net and its weights to ONNX, checked against netdsl's forward with "
        "onnxruntime")

__all__ = ["NAME", "HELP", "add_arguments", "run"]
