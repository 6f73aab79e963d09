"""``netdsl from-torch MODEL``: the arguments and the verb live with the PyTorch
front end (netdsl.torch.cli)."""
from ..torch.cli import add_arguments, run

NAME = "from-torch"
HELP = "convert a PyTorch model to deploy.prototxt + model.caffemodel, checked against PyTorch"

__all__ = ["NAME", "HELP", "add_arguments", "run"]
