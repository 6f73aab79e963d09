"""Questions answered from the caffe.proto descriptors, and the schema in use.

Which parameter message a layer type reads, what fields a message has, what an
enum name means, and "did you mean" suggestions.  Everything is derived from
the descriptors of whichever schema is in use (the bundled BVLC one or a
fork's), so a new layer type needs no Python code here.
"""
from __future__ import annotations

import contextlib
import contextvars
from functools import lru_cache
from types import ModuleType
from typing import Dict, Iterator, List, Optional, Tuple

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from .errors import NetdslError, did_you_mean


def default_pb2() -> ModuleType:
    from .proto import caffe_pb2
    return caffe_pb2


#: the schema in use in this thread or task (None: BVLC's)
_SCHEMA: contextvars.ContextVar[Optional[ModuleType]] = contextvars.ContextVar(
    "netdsl_schema", default=None)


def use_schema(pb2: Optional[ModuleType]) -> None:
    """Make ``pb2`` (a module from :func:`netdsl.proto.load_schema`) the schema
    that ``NetSpec``, ``to_proto`` and ``params`` use in this thread or task;
    None restores BVLC's.  :func:`schema_in_use` does the same for a block."""
    _SCHEMA.set(pb2)


@contextlib.contextmanager
def schema_in_use(pb2: Optional[ModuleType]) -> Iterator[ModuleType]:
    """Use ``pb2`` (None: BVLC's) as the schema inside the block only."""
    token = _SCHEMA.set(pb2)
    try:
        yield current_schema()
    finally:
        _SCHEMA.reset(token)


def explicit_schema() -> Optional[ModuleType]:
    """The schema set with :func:`use_schema` / :func:`schema_in_use`, or None."""
    return _SCHEMA.get()


def current_schema() -> ModuleType:
    """The schema in use in this thread or task (BVLC's unless one was set)."""
    pb2 = _SCHEMA.get()
    return pb2 if pb2 is not None else default_pb2()


@lru_cache(maxsize=None)
def _param_names(layer_desc: Descriptor) -> Dict[str, str]:
    # pycaffe's param_name_dict(): strip "Parameter" from each *_param field's
    # message type and "_param" from the field name.
    out: Dict[str, str] = {}
    for f in layer_desc.fields:
        if f.name.endswith("_param") and f.message_type is not None:
            tname = f.message_type.name
            if tname.endswith("Parameter"):
                out[tname[: -len("Parameter")]] = f.name
    return out


def param_field(layer_type: str, pb2: Optional[ModuleType] = None) -> Optional[str]:
    """The ``*_param`` field pycaffe routes a layer type's flat kwargs to, if any.

    pycaffe's rule: the LayerParameter field whose message type is
    ``<Type>Parameter`` (``Pooling`` -> ``pooling_param``).
    """
    pb2 = pb2 or default_pb2()
    return _param_names(pb2.LayerParameter.DESCRIPTOR).get(layer_type)


def param_field_of(layer_desc: Descriptor, layer_type: str) -> Optional[str]:
    """:func:`param_field` for a LayerParameter descriptor (any schema)."""
    return _param_names(layer_desc).get(layer_type)


def param_fields(layer_type: str, pb2: Optional[ModuleType] = None) -> List[str]:
    """Every parameter message a layer of this type reads, its own first."""
    pb2 = pb2 or default_pb2()
    out: List[str] = []
    own = param_field(layer_type, pb2)
    if own:
        out.append(own)
    names = {f.name for f in pb2.LayerParameter.DESCRIPTOR.fields}
    from .layers import lookup
    lt = lookup(layer_type)
    for extra in lt.reads if lt is not None else ():   # e.g. Deconvolution: convolution_param
        if extra in names and extra not in out:
            out.append(extra)
    if layer_type.endswith("Loss") and "loss_param" not in out and "loss_param" in names:
        out.append("loss_param")   # every LossLayer
    return out


def layer_types(pb2: Optional[ModuleType] = None) -> List[str]:
    """Layer type names known from the schema's ``*Parameter`` messages, plus
    BVLC's parameterless types (from layer_factory registrations)."""
    pb2 = pb2 or default_pb2()
    types = set(_param_names(pb2.LayerParameter.DESCRIPTOR))
    types.discard("Transformation")
    types.discard("Loss")
    from .layers import current
    types.update(current().names())
    return sorted(types)


def is_builtin_type(type_name: str) -> bool:
    """Whether ``type_name`` is one of BVLC Caffe's own layer types."""
    from .layers.registry import BUILTIN
    return BUILTIN.get(type_name) is not None


def __getattr__(name: str):
    if name == "KNOWN_TYPES":   # BVLC's layer types, as the layer registry declares them
        from .layers.registry import BUILTIN
        return tuple(BUILTIN.names())
    raise AttributeError("module 'netdsl.schema' has no attribute %r" % name)


def is_repeated(fd: FieldDescriptor) -> bool:
    """Whether a field is repeated (works on protobuf runtimes with and without ``label``)."""
    rep = getattr(fd, "is_repeated", None)
    if rep is not None:
        return bool(rep)
    return fd.label == FieldDescriptor.LABEL_REPEATED


def field(desc: Descriptor, name: str) -> Optional[FieldDescriptor]:
    return desc.fields_by_name.get(name)


def unknown_field(desc: Descriptor, name: str, *, layer: Optional[str] = None,
                  where: Optional[str] = None, extra: Tuple[str, ...] = ()) -> NetdslError:
    """The error for a field name a message does not have, with suggestions."""
    cands = [f.name for f in desc.fields] + list(extra)
    return NetdslError("unknown field `%s` in %s" % (name, where or _msg_name(desc)),
                       layer=layer, field=name, hint=did_you_mean(name, cands))


def _msg_name(desc: Descriptor) -> str:
    # the snake_case field name users know (convolution_param) when there is one
    return desc.name


def enum_number(fd: FieldDescriptor, value: str, *, layer: Optional[str] = None) -> int:
    """The number of enum value ``value`` (a name) of field ``fd``."""
    ev = fd.enum_type.values_by_name.get(value)
    if ev is None:
        raise NetdslError("`%s` is not a value of %s (expected one of %s)"
                          % (value, fd.name, ", ".join(v.name for v in fd.enum_type.values)),
                          layer=layer, field=fd.name,
                          hint=did_you_mean(value, [v.name for v in fd.enum_type.values]))
    return ev.number
