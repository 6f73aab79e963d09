"""Caffe → PyTorch code: walk the net (:mod:`.walk`), let each layer type's
``torch`` rule write its statement (:mod:`.torch_code`), and assemble
``model.py`` (``class Model(nn.Module)``, helpers from :mod:`.torch_helpers`)
and the ``state_dict`` that ``weights.pt`` holds; the parity check
(:mod:`.torch_check`) runs the written module against netdsl's numpy forward.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, Dict, List, Mapping, Optional, Sequence

from ..errors import NetdslError
from .torch_code import Coder, ModelCode, lit, statement
from .walk import Walk, walk_net
from .weights import blob_source, layer_blobs

__all__ = ["to_torch", "TorchExport"]


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise NetdslError("exporting to PyTorch needs torch: pip install 'netdsl[torch]'") \
            from None
    return torch


class TorchExport:
    """An export: the walk, ``source`` (model.py's text), ``state`` (state_dict key
    -> array), the inputs and outputs, and the parity report (None unchecked)."""

    def __init__(self, walk: Walk, source: str, state: Dict[str, Any], weights: Any,
                 variables: Optional[Dict[str, str]] = None) -> None:
        self.walk = walk
        #: blob name -> its variable in forward
        self.variables: Dict[str, str] = dict(variables or {})
        self.source = source
        self.state = state
        self.weights = weights
        self.inputs: Dict[str, Any] = dict(walk.inputs)
        self.outputs: List[str] = list(walk.outputs)
        self.parity: Any = None
        self.dir: Optional[str] = None

    def state_dict(self) -> Dict[str, Any]:
        torch = _torch()
        return {k: torch.from_numpy(v.copy()) for k, v in self.state.items()}

    def write_to(self, directory: str) -> List[str]:
        """Write model.py and weights.pt into ``directory`` (which exists)."""
        from ..fileio import atomic_open, atomic_write
        torch = _torch()
        model = os.path.join(directory, "model.py")
        weights = os.path.join(directory, "weights.pt")
        atomic_write(model, self.source)
        with atomic_open(weights, "wb") as fh:
            torch.save(self.state_dict(), fh)
        return [model, weights]

    def save(self, directory: str, check: bool = False, tolerance: float = 1e-4,
             seed: int = 0, extra: Optional[Dict[str, str]] = None) -> List[str]:
        """Write model.py and weights.pt (and ``extra`` name -> text) into ``directory``
        through a private directory beside them: checked there first when ``check``;
        on an error nothing is left."""
        made = not os.path.isdir(directory)
        try:
            os.makedirs(directory, exist_ok=True)
            work = tempfile.mkdtemp(prefix=".netdsl-to-torch-", dir=directory)
        except OSError as exc:
            raise NetdslError("cannot write there: %s" % (exc.strerror or exc),
                              file=directory) from None
        ok = False
        try:
            written = self.write_to(work)
            if check:
                from .torch_check import check_parity
                self.parity = check_parity(self, tolerance=tolerance, seed=seed, directory=work)
            for name, text in (extra or {}).items():
                with open(os.path.join(work, name), "w", encoding="utf-8") as fh:
                    fh.write(text)
                written.append(os.path.join(work, name))
            final = [os.path.join(directory, os.path.basename(p)) for p in written]
            for src, dst in zip(written, final):
                os.replace(src, dst)
            self.dir = directory
            ok = True
            return final
        finally:
            shutil.rmtree(work, ignore_errors=True)
            if made and not ok:
                shutil.rmtree(directory, ignore_errors=True)


def _module_attrs() -> List[str]:
    return [a for a in dir(_torch().nn.Module)]


def emit_code(walk: Walk, weights: Any) -> ModelCode:
    """Every step's statement, through its type's ``torch`` rule."""
    code = ModelCode(_module_attrs())
    for name in walk.inputs:
        code.var(name)
    wts = blob_source(weights)
    layers = [st.layer for st in walk.steps]
    getters = {id(st): layer_blobs(st, layers, wts) for st in walk.steps}
    try:
        for i, st in enumerate(walk.steps):
            ctx = Coder(code, st, getters[id(st)], walk.steps[i + 1:],
                        lambda s: getters[id(s)](), walk.outputs)
            try:
                if st.lt.torch is None:
                    raise ctx.refuse("its type has no PyTorch export rule")
                result = st.lt.export_torch(st.layer, ctx, st.geo)
                code.lines.append(statement(ctx, result))
            except NetdslError as err:
                raise err.located(layer=st.layer.name)
    finally:
        wts.close()
    return code


_HEADER = '''"""PyTorch model of the Caffe net %(name)s, written by netdsl to-torch.

    model = Model()
    model.load_state_dict(torch.load("weights.pt"))
    model.eval()
    outputs = model(%(args)s)   # {blob name: tensor}

One statement per Caffe layer, in the net's order, its name beside it.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
'''


def render(walk: Walk, code: ModelCode) -> str:
    """model.py's text."""
    args = ", ".join(code.var(n) for n in walk.inputs)
    parts = [_HEADER % dict(name=repr(walk.net.name or "net"), args=args)]
    if code.helpers:
        parts.append("\n\n" + code.helper_code() + "\n")
    body = ["\n\nclass Model(nn.Module):",
            '    """Caffe\'s net %s; forward returns {blob: tensor} of %s."""'
            % (repr(walk.net.name or "net"), ", ".join(walk.outputs)),
            "",
            "    #: submodule -> the Caffe layers it stands for",
            "    CAFFE_LAYERS = %s" % _dict_lit(code.caffe_names),
            "    #: the inputs' shapes in the Caffe net",
            "    INPUTS = %s" % _dict_lit({k: tuple(v) for k, v in walk.inputs.items()}),
            "    OUTPUTS = %s" % lit(tuple(walk.outputs)),
            "",
            "    def __init__(self):",
            "        super().__init__()"]
    for attr, ctor in code.modules.items():
        body.append("        self.%s = %s" % (attr, ctor))
    body += ["", "    def forward(self, %s):" % args]
    body += ["        " + line for line in code.lines if line]
    body.append("        return {%s}" % ", ".join("%r: %s" % (o, code.var(o))
                                                   for o in walk.outputs))
    parts.append("\n".join(body) + "\n")
    return "".join(parts)


def _dict_lit(d: Mapping[str, Any]) -> str:
    if not d:
        return "{}"
    items = ["        %r: %s," % (k, lit(v) if not isinstance(v, list) else repr(v))
             for k, v in d.items()]
    return "{\n" + "\n".join(items) + "\n    }"


def to_torch(net: Any, weights: Any = None, *,
             inputs: Optional[Mapping[str, Sequence[int]]] = None,
             outputs: Sequence[str] = (), check: bool = True, tolerance: float = 1e-4,
             seed: int = 0) -> TorchExport:
    """Export ``net`` (NetParameter, NetSpec or prototxt path) with ``weights``
    (caffemodel path, open CaffeModel or ``{layer: [arrays]}``) to PyTorch code.

    ``inputs`` overrides input shapes; ``outputs`` adds blobs to Caffe's
    ``net.outputs``.  With ``check`` the generated module (written to a
    temporary directory) is compared with netdsl's forward: ``.parity``.
    Nothing is kept on disk: see :meth:`TorchExport.save`.
    """
    _torch()
    walk = walk_net(net, inputs, outputs, rule="torch")
    code = emit_code(walk, weights)
    result = TorchExport(walk, render(walk, code), code.state, weights, code.vars)
    if check:
        from .torch_check import check_parity
        work = tempfile.mkdtemp(prefix="netdsl-to-torch-")
        try:
            result.write_to(work)
            result.parity = check_parity(result, tolerance=tolerance, seed=seed, directory=work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return result
