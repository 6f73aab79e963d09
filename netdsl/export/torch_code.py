"""The PyTorch code a to-torch export writes, and the :class:`Coder` a type's
``torch`` rule writes it through.

A type's ``torch`` rule (declared with its other rules in :mod:`netdsl.layers`)
is ``fn(layer, ctx[, geo]) -> expression or [expression per top]``: it may add
a submodule (:meth:`Coder.module`, :meth:`Coder.blobs_module`) and helpers
(:meth:`Coder.helper`, copied from :mod:`.torch_helpers`), and returns the
Python expression of its tops over ``ctx.x`` (the bottoms' variable names).
The coder writes one statement per layer, ``tops = expression  # name (Type)``.

Variables are the blob names made Python-legal; an in-place layer assigns its
blob's variable again, which is what Caffe's blob holds after it.
"""
from __future__ import annotations

import ast
import keyword
import os
import re
from typing import Any, Callable, Dict, List, Optional, Sequence

from ..errors import NetdslError
from ..layers.runtime import np
from .weights import LayerBlobsMixin

__all__ = ["Coder", "ModelCode", "py_name", "lit"]

_RESERVED = {"self", "torch", "nn", "F", "math", "CaffeBlobs", "Model", "CAFFE_LAYERS",
             "INPUTS", "OUTPUTS"}


def py_name(name: str, taken: Any, reserved: Any = ()) -> str:
    """``name`` as a Python identifier not in ``taken`` (nor a keyword, nor reserved)."""
    base = re.sub(r"\W", "_", name) or "_"
    if base[0].isdigit():
        base = "_" + base
    if keyword.iskeyword(base) or base in _RESERVED or base in reserved:
        base += "_"
    out, k = base, 1
    while out in taken:
        k += 1
        out = "%s_%d" % (base, k)
    return out


def lit(value: Any) -> str:
    """A Python literal of ``value`` (floats exact, tuples of them)."""
    if isinstance(value, (list, tuple)):
        inner = ", ".join(lit(v) for v in value)
        return "(%s,)" % inner if len(value) == 1 else "(%s)" % inner
    if isinstance(value, (bool, np.bool_)):
        return repr(bool(value))
    if isinstance(value, (int, np.integer)):
        return repr(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if v != v:
            return "math.nan"
        if v in (float("inf"), float("-inf")):
            return "math.inf" if v > 0 else "-math.inf"
        return repr(v)
    return repr(value)


def _helper_sources() -> Dict[str, str]:
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_helpers.py")
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    tree = ast.parse(text)
    return {node.name: ast.get_source_segment(text, node) or ""
            for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}


class ModelCode:
    """The module being written: submodules (attribute -> constructor code),
    their state (state_dict key -> array), the Caffe layer names, helpers,
    forward statements and the variables of the blobs."""

    def __init__(self, module_attrs: Sequence[str] = ()) -> None:
        self.modules: Dict[str, str] = {}
        self.state: Dict[str, Any] = {}
        self.caffe_names: Dict[str, List[str]] = {}
        self.helpers: Dict[str, None] = {}
        self.lines: List[str] = []
        self.vars: Dict[str, str] = {}
        self.folded: Dict[str, str] = {}
        self._attr_reserved = set(module_attrs)
        self._sources: Optional[Dict[str, str]] = None

    def var(self, blob: str) -> str:
        """The variable of ``blob`` (made on first use)."""
        if blob not in self.vars:
            self.vars[blob] = py_name(blob, set(self.vars.values()), self.helper_names())
        return self.vars[blob]

    def helper_names(self) -> List[str]:
        if self._sources is None:
            self._sources = _helper_sources()
        return list(self._sources)

    def add_helper(self, name: str) -> None:
        names = self.helper_names()
        if name not in names:
            raise NetdslError("internal error: no PyTorch helper %r" % name)
        if name in self.helpers:
            return
        src = self._sources[name]   # type: ignore[index]
        for other in names:         # the helpers it calls come first
            if other != name and re.search(r"\b%s\b" % re.escape(other), src):
                self.add_helper(other)
        self.helpers[name] = None

    def helper_code(self) -> str:
        self.helper_names()
        return "\n\n\n".join(self._sources[n] for n in self.helpers)   # type: ignore[index]

    def new_attr(self, layer_name: str) -> str:
        return py_name(layer_name, set(self.modules), self._attr_reserved)


class Coder(LayerBlobsMixin):
    """What a ``torch`` rule sees of one layer (``layer``, ``x``: the bottoms'
    variables, ``in_shapes``, ``out_shapes``, ``blobs``) and how it adds to the
    module (:meth:`module`, :meth:`blobs_module`, :meth:`helper`, :meth:`fold`)."""

    def __init__(self, code: ModelCode, step: Any, blobs: Callable[[], List[Any]],
                 later: Sequence[Any], blobs_of: Callable[[Any], List[Any]],
                 outputs: Sequence[str]) -> None:
        self.code = code
        self.step = step
        self.layer = step.layer
        self.x = [code.var(b) for b in step.layer.bottom]
        self.in_shapes = list(step.bottom_shapes)
        self.out_shapes = list(step.top_shapes)
        self.later = list(later)
        self.outputs = list(outputs)
        self._blobs = blobs
        self._blobs_of = blobs_of
        self._cache: Optional[List[Any]] = None
        self.note = ""

    def refuse(self, why: str) -> NetdslError:
        stop = ",".join(dict.fromkeys(self.layer.bottom))
        return NetdslError("%s layer cannot be exported to PyTorch: %s" % (self.layer.type, why),
                           layer=self.layer.name,
                           hint="export the blobs before it with --outputs %s" % stop
                           if stop else None)

    def lit(self, value: Any) -> str:
        return lit(value)

    def helper(self, name: str) -> str:
        """Copy helper ``name`` of :mod:`.torch_helpers` into the module; its name."""
        self.code.add_helper(name)
        return name

    def module(self, ctor: str, state: Optional[Dict[str, Any]] = None,
               layers: Sequence[str] = ()) -> str:
        """A submodule named after the layer, made by ``ctor`` (code, e.g.
        ``nn.Conv2d(3, 8, 3)``), its state_dict entries ``state`` (name -> array);
        ``layers``: further Caffe layers it stands for.  Returns ``self.<name>``."""
        attr = self.code.new_attr(self.layer.name)
        self.code.modules[attr] = ctor
        self.code.caffe_names[attr] = [self.layer.name] + list(layers)
        for key, arr in (state or {}).items():
            self.code.state["%s.%s" % (attr, key)] = np.ascontiguousarray(arr)
        return "self." + attr

    def blobs_module(self, arrays: Sequence[Any]) -> str:
        """A :class:`CaffeBlobs` submodule holding ``arrays`` as ``blob0``, ``blob1``..."""
        self.helper("CaffeBlobs")
        ctor = "CaffeBlobs(%s)" % ", ".join(lit(tuple(int(d) for d in a.shape)) for a in arrays)
        return self.module(ctor, {"blob%d" % i: a for i, a in enumerate(arrays)})

    def constant_module(self, value: Any) -> str:
        """A :class:`CaffeConstant` submodule whose buffer ``value`` holds ``value``."""
        self.helper("CaffeConstant")
        arr = np.asarray(value, dtype=np.float32)
        return self.module("CaffeConstant(%s)" % lit(tuple(int(d) for d in arr.shape)),
                           {"value": arr})

    def next_step(self) -> Any:
        return self.later[0] if self.later else None

    def only_reader(self, step: Any) -> bool:
        """Whether ``step`` is the one reader of this layer's (single) top value."""
        value = self.step.top_values[0]
        if value in self.outputs:
            return False
        readers = [st for st in self.later if value in st.bottom_values]
        return readers == [step]

    def fold(self, step: Any, attr: str) -> List[Any]:
        """Mark ``step`` as done by this layer's submodule ``attr``; its blobs."""
        self.code.folded[step.layer.name] = attr
        self.code.caffe_names[attr[len("self."):]].append(step.layer.name)
        return [np.asarray(b, dtype=np.float32) for b in self._blobs_of(step)]

    def folded_into(self) -> Optional[str]:
        return self.code.folded.get(self.layer.name)


def statement(ctx: Coder, result: Any) -> str:
    """One line of forward: the tops assigned the rule's expression(s)."""
    lp = ctx.layer
    tops = [ctx.code.var(t) for t in lp.top]
    comment = "  # %s (%s)%s" % (lp.name, lp.type, ctx.note)
    if isinstance(result, (list, tuple)):
        if len(result) != len(tops):
            raise NetdslError("internal error: the PyTorch rule of %s gave %d expressions for "
                              "%d tops" % (lp.type, len(result), len(tops)), layer=lp.name)
        if all(t == e for t, e in zip(tops, result)):
            return "# %s (%s)%s" % (lp.name, lp.type, ctx.note)
        rhs = ", ".join(result)
    else:
        rhs = result
    return "%s = %s%s" % (", ".join(tops), rhs, comment)
