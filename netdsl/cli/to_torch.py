"""``netdsl to-torch NET [WEIGHTS] -o DIR``: the arguments and the verb live with
the exporter (netdsl.export.torch_cli)."""
from ..export.torch_cli import add_arguments, run

NAME = "to-torch"
HELP = ("export a Caffe net and its weights to PyTorch code (model.py, weights.pt), checked "
        "against netdsl's forward")

__all__ = ["NAME", "HELP", "add_arguments", "run"]
