"""A JSON Schema of the spec format, derived from the caffe.proto descriptors.

Every layer type gets an ``if``/``then`` rule: an item whose first key is the
type (``- Convolution: conv1``) may have the type's own parameter fields flat
(routed as the NetSpec builder routes them), the LayerParameter fields
(``param``, ``include``, ``convolution_param: {...}``, ...) and the spec's
layer keys (``bottom``, ``top``, ``in_place``, ``phases``, ...).  Each field's
schema has its protobuf type (integer, number, boolean, string, enum names,
nested messages), a repeated field takes one value or a list, and any value
may be a ``${...}`` reference.  Block uses are free-form (their arguments are
the spec's own), so they validate loosely.
"""
from __future__ import annotations

from types import ModuleType
from typing import Any, Dict, List, Optional

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from .. import schema
from ..schema import is_repeated

REF = {"$ref": "#/$defs/reference"}
_C = FieldDescriptor
_SCALARS = {
    _C.CPPTYPE_INT32: {"type": "integer"}, _C.CPPTYPE_INT64: {"type": "integer"},
    _C.CPPTYPE_UINT32: {"type": "integer", "minimum": 0},
    _C.CPPTYPE_UINT64: {"type": "integer", "minimum": 0},
    _C.CPPTYPE_FLOAT: {"type": "number"}, _C.CPPTYPE_DOUBLE: {"type": "number"},
    _C.CPPTYPE_BOOL: {"type": "boolean"}, _C.CPPTYPE_STRING: {"type": "string"},
}

LAYER_KEYS = {
    "name": {"type": "string", "description": "the layer's name (default: its first top)"},
    "top": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
    "bottom": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
               "description": "default: the previous layer's first top; [] for none"},
    "in_place": {"type": "boolean", "description": "write the bottom blob (tops = bottoms)"},
    "ntop": {"type": "integer", "minimum": 0},
    "phases": {"$ref": "#/$defs/phases"},
    "per_phase": {"type": "object", "additionalProperties": {"type": "object"},
                  "description": "values that differ per phase: {train: {...}, val: {...}}"},
    "when": {"anyOf": [{"type": "boolean"}, REF]},
}


def _wrap(s: Dict[str, Any]) -> Dict[str, Any]:
    return {"anyOf": [s, REF]}


def _field_schema(fd: FieldDescriptor, defs: Dict[str, Any], todo: List[Descriptor]) -> Dict:
    if fd.cpp_type == _C.CPPTYPE_MESSAGE:
        key = "msg." + fd.message_type.full_name
        if key not in defs:
            defs[key] = None   # reserve; filled by the caller's loop
            todo.append(fd.message_type)
        item: Dict[str, Any] = {"$ref": "#/$defs/" + key}
    elif fd.cpp_type == _C.CPPTYPE_ENUM:
        names = [v.name for v in fd.enum_type.values]
        item = _wrap({"enum": names + [v.number for v in fd.enum_type.values]})
        item["description"] = "%s: %s" % (fd.enum_type.name, ", ".join(names))
    else:
        item = _wrap(dict(_SCALARS[fd.cpp_type]))
    if is_repeated(fd):
        return {"anyOf": [item, {"type": "array", "items": item}]}
    return item


def _field_ref(fd: FieldDescriptor, defs: Dict[str, Any], todo: List[Descriptor]) -> Dict:
    """A reference to the field's schema, defined once per message field."""
    key = "field.%s.%s" % (fd.containing_type.full_name, fd.name)
    if key not in defs:
        defs[key] = _field_schema(fd, defs, todo)
    return {"$ref": "#/$defs/" + key}


def _message(desc: Descriptor, defs: Dict[str, Any], todo: List[Descriptor]) -> Dict[str, Any]:
    props = {}
    for fd in desc.fields:
        props[fd.name] = _field_ref(fd, defs, todo)
    return {"type": "object", "title": desc.name, "properties": props,
            "additionalProperties": False}


def _fill(defs: Dict[str, Any], todo: List[Descriptor]) -> None:
    while todo:
        desc = todo.pop()
        defs["msg." + desc.full_name] = _message(desc, defs, todo)


def spec_schema(pb2: Optional[ModuleType] = None) -> Dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a spec file."""
    if pb2 is None:
        from ..netspec import current_schema
        pb2 = current_schema()
    defs: Dict[str, Any] = {
        "reference": {"type": "string", "pattern": r"\$\{",
                      "description": "a ${variable} or ${expression}"},
        "phases": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}},
                             REF]},
        "names": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}},
                            {"type": "null"}]},
    }
    todo: List[Descriptor] = []
    layer_fields, rules = _layer_rules(pb2, defs, todo)
    _fill(defs, todo)
    rules.append(_explicit_layer(pb2, defs, layer_fields))
    rules.extend(_op_rules(defs, layer_fields))
    defs["item"] = {"type": "object", "minProperties": 1, "allOf": rules,
                    "description": "a layer (`- Type: top`), op, block use, repeat or include"}
    defs["layers"] = {"type": "array", "items": {"$ref": "#/$defs/item"}}
    solver = pb2.SolverParameter.DESCRIPTOR
    todo = [solver]
    defs["msg." + solver.full_name] = None
    _fill(defs, todo)
    return _document(defs, solver)


def _layer_rules(pb2: ModuleType, defs: Dict[str, Any], todo: List[Descriptor]):
    """(LayerParameter's field refs, one ``if``/``then`` rule per layer type)."""
    layer_desc = pb2.LayerParameter.DESCRIPTOR
    layer_fields = {}
    for fd in layer_desc.fields:
        if fd.name not in ("name", "type", "top", "bottom"):
            layer_fields[fd.name] = _field_ref(fd, defs, todo)
    rules = []
    for t in schema.layer_types(pb2):
        props: Dict[str, Any] = {t: {"$ref": "#/$defs/names",
                                     "description": "the top (or list of tops) of this %s "
                                                    "layer" % t}}
        # routed as the builder routes: *param keys and LayerParameter's fields, then the
        # type's own message (its fields win), extra messages last
        props.update(layer_fields)
        for extra in reversed(schema.param_fields(t, pb2)):
            extra_fd = layer_desc.fields_by_name.get(extra)
            if extra_fd is None or extra_fd.message_type is None:
                continue  # a fork schema without this BVLC message field
            for fd in extra_fd.message_type.fields:
                if not fd.name.endswith("param"):
                    props[fd.name] = _field_ref(fd, defs, todo)
        props.update(LAYER_KEYS)
        defs["layer." + t] = {"type": "object", "properties": props,
                              "additionalProperties": False,
                              "description": "a %s layer" % t}
        rules.append({"if": {"required": [t]}, "then": {"$ref": "#/$defs/layer." + t}})
    return layer_fields, rules


def _explicit_layer(pb2: ModuleType, defs: Dict[str, Any],
                    layer_fields: Dict[str, Any]) -> Dict[str, Any]:
    """The schema of a layer written with ``type:``, and its rule."""
    explicit = dict(layer_fields)
    explicit.update(LAYER_KEYS)
    explicit["type"] = {"enum": schema.layer_types(pb2)}
    defs["layer.explicit"] = {"type": "object", "properties": explicit, "required": ["type"],
                              "description": "a layer written with `type:`"}
    return {"if": {"required": ["type"]}, "then": {"$ref": "#/$defs/layer.explicit"}}


def _op_rules(defs: Dict[str, Any], layer_fields: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The schemas of the ops (upsample, crop), repeat and include, and their rules."""
    defs["op.upsample"] = {
        "type": "object", "additionalProperties": False, "required": ["upsample"],
        "properties": {
            "upsample": {"type": "string", "description": "the top"},
            "factor": _wrap({"type": "integer", "minimum": 1}),
            "channels": _wrap({"type": "integer", "minimum": 1}),
            "mode": _wrap({"enum": ["bilinear", "nearest"]}),
            "learnable": _wrap({"type": "boolean"}), "dense": _wrap({"type": "boolean"}),
            "kernel": _wrap({"enum": ["even", "odd"]}),
            "name": {"type": "string"}, "bottom": {"$ref": "#/$defs/names"},
            "param": layer_fields["param"], "phases": {"$ref": "#/$defs/phases"},
            "when": LAYER_KEYS["when"]}}
    defs["op.crop"] = {
        "type": "object", "additionalProperties": False, "required": ["crop"],
        "properties": {
            "crop": {"type": "string", "description": "the top"},
            "reference": {"type": "string"},
            "offset": {"anyOf": [_wrap({"type": "integer", "minimum": 0}),
                                 {"type": "array", "items": {"type": "integer", "minimum": 0}}]},
            "axis": _wrap({"type": "integer"}), "name": {"type": "string"},
            "bottom": {"$ref": "#/$defs/names"}, "phases": {"$ref": "#/$defs/phases"},
            "when": LAYER_KEYS["when"]}}
    defs["repeat"] = {
        "type": "object", "additionalProperties": False, "required": ["repeat", "layers"],
        "properties": {"repeat": {"anyOf": [{"type": "integer", "minimum": 0},
                                            {"type": "array"}, REF]},
                       "as": {"type": "string"}, "index": {"type": "string"},
                       "layers": {"$ref": "#/$defs/layers"},
                       "phases": {"$ref": "#/$defs/phases"}, "when": LAYER_KEYS["when"]}}
    defs["include"] = {
        "type": "object", "additionalProperties": False, "required": ["include"],
        "properties": {"include": {"type": "string"}, "with": {"type": "object"},
                       "bottom": {"$ref": "#/$defs/names"},
                       "phases": {"$ref": "#/$defs/phases"}, "when": LAYER_KEYS["when"]}}
    return [{"if": {"required": [key.split(".")[-1]]}, "then": {"$ref": "#/$defs/" + key}}
            for key in ("op.upsample", "op.crop", "repeat", "include")]


def _document(defs: Dict[str, Any], solver: Descriptor) -> Dict[str, Any]:
    """The top level of a spec file, with ``defs``."""
    args_item = {"anyOf": [{"type": "string"},
                           {"type": "object", "minProperties": 1, "maxProperties": 1}]}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://netdsl.invalid/spec.schema.json",
        "title": "netdsl spec",
        "description": "A Caffe net described in YAML: layers as in prototxt, variables, "
                       "blocks, repeats, includes, phases and ops (see docs/spec.md).",
        "type": "object",
        "additionalProperties": False,
        "required": ["layers"],
        "properties": {
            "name": {"type": "string"},
            "description": {"type": "string"},
            "variables": {"type": "object"},
            "include": {"anyOf": [{"type": "string"},
                                  {"type": "array", "items": {"type": "string"}}]},
            "blocks": {"type": "object", "additionalProperties": {"anyOf": [
                {"$ref": "#/$defs/layers"},
                {"type": "object", "additionalProperties": False, "required": ["layers"],
                 "properties": {"args": {"anyOf": [{"type": "object"},
                                                   {"type": "array", "items": args_item}]},
                                "layers": {"$ref": "#/$defs/layers"},
                                "description": {"type": "string"}}}]}},
            "phases": {"type": "array", "items": {"type": "string"}},
            "inputs": {"type": "object", "additionalProperties": {
                "anyOf": [{"type": "array", "items": {"anyOf": [
                    {"type": "integer", "minimum": 0}, REF]}}, REF]}},
            "layers": {"$ref": "#/$defs/layers"},
            "solver": {"$ref": "#/$defs/msg." + solver.full_name},
            "custom_types": {"type": "array", "items": {"type": "string"}},
            "strict": {"anyOf": [{"type": "boolean"}, REF],
                       "description": "treat warnings (an explicit crop offset the coordinate "
                                      "maps disagree with) as errors"},
            "proto": {"anyOf": [{"type": "string"}, {
                "type": "object", "additionalProperties": False, "required": ["path"],
                "properties": {"path": {"type": "string"},
                               "strict": {"type": "boolean"},
                               "allow_conflicts": {"type": "boolean"}}}]},
            "plugins": {"type": "array", "items": {"type": "string"}},
            "custom_layers": {"type": "object", "additionalProperties": {
                "type": "object", "additionalProperties": False,
                "properties": {"bottoms": {}, "tops": {},
                               "shape": {"type": "array", "items": {"type": "array"}},
                               "params": {"type": "array", "items": {"type": "array"}},
                               "coord_map": {}}}},
        },
        "$defs": defs,
    }
