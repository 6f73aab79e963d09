"""The one op table: ATen op name -> converter function.

A converter is ``fn(cx, op) -> result`` where ``cx`` is the
:class:`~netdsl.convert.graph.Context` of the conversion (layer factory ``cx.L``,
weights, target) and ``op`` an :class:`~netdsl.convert.graph.Op`: the op's
arguments by their schema names, each resolved to a
:class:`~netdsl.convert.graph.Blob` (a Caffe top with its shape), a numpy array
(a parameter, buffer or folded constant) or a plain Python value.  The result
is a Blob, a tuple/list of Blobs, or a numpy array.  Converters know nothing of
torch.fx, so another front end (ONNX) can call the same table with resolved
attributes.

Names are ATen op packets without the overload (``aten.conv2d``); an in-place
variant (``aten.relu_``) is looked up under its out-of-place name.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional

Converter = Callable[[Any, Any], Any]

#: op name -> converter (filled by the modules of :mod:`netdsl.convert.families`)
CONVERTERS: Dict[str, Converter] = {}

#: op names that pass their first input through unchanged (eval mode)
IDENTITY = {"aten.dropout", "aten.feature_dropout", "aten.alpha_dropout",
            "aten.feature_alpha_dropout", "aten.clone", "aten.contiguous", "aten.alias",
            "aten.detach", "aten.lift_fresh_copy", "aten.lift_fresh", "aten._assert_tensor_metadata",
            "aten.native_dropout", "aten.identity"}


def register_converter(*names: str, replace: bool = True) -> Callable[[Converter], Converter]:
    """Register ``fn`` as the converter of the given ATen op names
    (``"aten.upsample_bilinear2d"``; with or without the ``aten.`` prefix).
    A later registration replaces an earlier one unless ``replace`` is false."""
    _load()

    def deco(fn: Converter) -> Converter:
        for name in names:
            key = name if "." in name else "aten." + name
            if replace or key not in CONVERTERS:
                CONVERTERS[key] = fn
        return fn
    return deco


def op_key(name: str) -> str:
    """``aten.relu_.default`` / ``aten::relu_`` -> ``aten.relu``."""
    name = name.replace("::", ".")
    parts = name.split(".")
    if len(parts) >= 3:
        parts = parts[:2]
    key = ".".join(parts)
    if key.endswith("_") and not key.endswith("__"):
        key = key[:-1]
    return key


def is_inplace(name: str) -> bool:
    """``aten.relu_.default`` -> True: the op writes into its first operand."""
    parts = name.replace("::", ".").split(".")
    base = parts[1] if len(parts) > 1 else parts[0]
    return base.endswith("_") and not base.endswith("__")


def lookup(name: str) -> Optional[Converter]:
    """The converter for an op name (any overload, in-place or not), or None."""
    _load()
    return CONVERTERS.get(op_key(name))


_loaded = False


def _load() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        from netdsl.convert.families import load_all
        load_all()
