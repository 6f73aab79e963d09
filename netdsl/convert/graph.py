"""What converters see: :class:`Blob` (a Caffe top and its PyTorch shape),
:class:`Op` (an op's arguments by schema name), :class:`Context` (layer factory,
weights, target), plus layer/blob naming from module paths and source lines
from the graph's metadata.  The walks over a graph are the front ends'
(:mod:`netdsl.torch.convert`, :mod:`netdsl.onnx.convert`).
"""
from __future__ import annotations

import os
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from netdsl.errors import NetdslError
from netdsl.convert.recipes import L as _layers
from netdsl.netspec import Top

#: layer types OpenCV dnn 4.x's Caffe importer runs (target="opencv")
OPENCV_LAYERS = frozenset((
    "Input", "Convolution", "Deconvolution", "InnerProduct", "Pooling", "ReLU", "PReLU", "ELU",
    "Sigmoid", "TanH", "AbsVal", "BNLL", "Power", "Exp", "Log", "Eltwise", "Scale", "BatchNorm",
    "Concat", "Slice", "Split", "Flatten", "Reshape", "Softmax", "MVN", "Dropout", "Crop", "LRN",
    "Silence"))


class Blob:
    """A tensor of the traced graph that lives in the Caffe net: its top and its
    PyTorch shape.  ``info`` carries facts a later converter may use (the
    Convolution that produced it, for folding a batch norm)."""

    __slots__ = ("top", "shape", "info")

    def __init__(self, top: Top, shape: Sequence[int], info: Optional[Dict[str, Any]] = None
                 ) -> None:
        self.top = top
        self.shape = tuple(int(d) for d in shape)
        self.info = info

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        return "<Blob %s>" % (self.shape,)


class Op:
    """One op to convert: ``key`` (``aten.conv2d``), ``args`` by schema name,
    ``out_shape`` (a tuple, or a list of tuples for several outputs),
    ``name`` (the layer name it gets), ``module``/``source`` for messages."""

    __slots__ = ("key", "target", "args", "out_shape", "name", "module", "source", "users")

    def __init__(self, key: str, args: Dict[str, Any], out_shape: Any, name: str,
                 module: str = "", source: Optional[Tuple[str, int, str]] = None,
                 target: str = "", users: int = 1) -> None:
        self.key, self.args, self.out_shape, self.name = key, args, out_shape, name
        self.module, self.source, self.target, self.users = module, source, target or key, users

    def __getitem__(self, name: str) -> Any:
        return self.args[name]

    def get(self, name: str, default: Any = None) -> Any:
        value = self.args.get(name, default)
        return default if value is None else value

    def error(self, message: str, hint: Optional[str] = None) -> NetdslError:
        return located_error(message, self, hint)


def located_error(message: str, op: Op, hint: Optional[str] = None) -> NetdslError:
    """A NetdslError at the op's Python source line, naming the op and module path."""
    where = " (module %s)" % op.module if op.module else ""
    err = NetdslError("%s: %s%s" % (op.target, message, where), layer=op.name, hint=hint)
    if op.source:
        err.located(file=op.source[0], line=op.source[1])
    return err


class Context:
    """What converters use: ``L`` (the recipes' layer factory, NetSpec's
    ``layers`` by default), ``weights``
    (layer name -> arrays, filled by converters), ``target`` ('caffe' or
    'opencv'), ``fold_bn``."""

    def __init__(self, target: str = "caffe", fold_bn: bool = False) -> None:
        if target not in ("caffe", "opencv"):
            raise NetdslError("target is 'caffe' or 'opencv', got %r" % (target,), field="target")
        self.L = _layers
        self.target = target
        self.fold_bn = fold_bn
        self.weights: Dict[str, List[np.ndarray]] = {}

    def blob(self, top: Top, shape: Sequence[int], **info: Any) -> Blob:
        return Blob(top, shape, info or None)


# -- names ---------------------------------------------------------------------------

_ILLEGAL = re.compile(r"[^A-Za-z0-9_.\-/]")


def caffe_name(text: str) -> str:
    """A layer/blob name every Caffe tool reads: letters, digits, ``_ . - /``."""
    text = _ILLEGAL.sub("_", text).strip("_") or "x"
    return text


def _dotted(path: Any) -> str:
    path = str(path)
    path = re.sub(r"^L\['self'\]\.?", "", path)
    path = re.sub(r"\[(\d+)\]", r".\1", path)
    path = re.sub(r"\[['\"]([^'\"]+)['\"]\]", r".\1", path)
    return path.replace("._modules.", ".").strip(".")


def module_path(node: Any) -> Tuple[str, str]:
    """(dotted module path, class name) of the innermost module of ``node``."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "", ""
    path, cls = list(stack.values())[-1]
    cls = cls if isinstance(cls, str) else getattr(cls, "__qualname__", str(cls))
    return _dotted(path), cls.rsplit(".", 1)[-1]


def module_paths(node: Any) -> List[str]:
    """The dotted paths of every module ``node`` runs inside, outermost first."""
    stack = node.meta.get("nn_module_stack") or {}
    return [_dotted(path) for path, _ in stack.values()]


def source_line(node: Any) -> Optional[Tuple[str, int, str]]:
    """(file, line, code) of the Python line that made ``node`` (the last frame)."""
    trace = node.meta.get("stack_trace") or ""
    found = re.findall(r'File "([^"]+)", line (\d+), in [^\n]*\n\s*([^\n]*)', trace)
    if not found:
        return None
    # the user's line: the last frame outside torch's own package
    try:
        import torch
        own = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep
    except ImportError:  # pragma: no cover
        own = None
    user = [fr for fr in found if own is None or not os.path.abspath(fr[0]).startswith(own)]
    f, line, code = (user or found)[-1]
    return f, int(line), code.strip()


def _is_leaf_class(node: Any) -> bool:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return False
    cls = list(stack.values())[-1][1]
    cls = cls if isinstance(cls, str) else "%s.%s" % (cls.__module__, cls.__qualname__)
    return cls.startswith("torch.nn.modules.")


class Names:
    """Unique, readable layer names from module paths: ``layer1.0.conv1`` for the
    op of a ``torch.nn`` module, ``layer1.0.add`` for an op in a module's own
    forward, ``add_1`` at the top level."""

    def __init__(self, reserved: Sequence[str] = ()) -> None:
        self.used = set(reserved)

    def unique(self, base: str) -> str:
        base = caffe_name(base)
        name, k = base, 0
        while name in self.used:
            k += 1
            name = "%s_%d" % (base, k)
        self.used.add(name)
        return name

    def for_node(self, node: Any, opname: str) -> str:
        path, _ = module_path(node)
        if path and _is_leaf_class(node):
            return self.unique(path)
        return self.unique("%s.%s" % (path, opname) if path else opname)


def claim_layers(result: Any, lname: str, owner: Dict[Any, str], order: List[Any]) -> None:
    """Give the layers a converter made for node ``lname`` (those not owned yet, found
    from its result Blobs back to owned ones) to that node, in dependency order:
    ``owner[function] = lname`` and ``order`` extended."""
    tops: List[Any] = []

    def collect(v: Any) -> None:
        if isinstance(v, Blob):
            tops.append(v.top)
        elif isinstance(v, (list, tuple)):
            for x in v:
                collect(x)
    collect(result)
    for t in tops:
        stack = [(t.fn, False)]
        while stack:
            fn, done = stack.pop()
            if fn in owner and not done:
                continue
            if done:
                if fn not in owner:
                    owner[fn] = lname
                    order.append(fn)
                continue
            stack.append((fn, True))
            for inp in fn.inputs:
                if inp.fn not in owner:
                    stack.append((inp.fn, False))
