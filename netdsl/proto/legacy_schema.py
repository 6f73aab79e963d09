"""A schema from before Caffe's V2 layers (early 2015), completed with BVLC's.

Forks made in 2014 (DeconvNet's, for one) publish a caffe.proto whose
``NetParameter`` has ``layers`` (field 2) of a ``LayerParameter`` that is what
BVLC later renamed ``V1LayerParameter``: an enum ``type`` and one field per
parameter message.  Their nets and caffemodels use that form only.

netdsl works on the current form, so such a schema is merged into the bundled
BVLC one, by name, keeping every number of the fork's:

* the fork's ``LayerParameter`` is BVLC's ``V1LayerParameter`` (and every
  reference to it, its enums included, follows the rename);
* every message and enum the fork has is BVLC's plus the fork's own fields and
  values, at the fork's numbers (where BVLC gave the number to another field,
  the fork's wins, as its files were written with it); a field of both keeps
  BVLC's later form (``optional`` made ``repeated`` reads the same bytes) with
  the fork's number and default;
* a message or enum BVLC lacks is the fork's, as it is;
* each parameter field of the fork's V1 layer that BVLC's V1 layer lacks
  (``unpooling_param``) is also put in the current ``LayerParameter``, at the
  fork's number when that number is free there, so ``UpgradeV1Net`` has a
  place to move it to.

Files the fork's own Caffe reads are therefore read and written exactly; only
the current-form fields added above have numbers the fork never defined
(``ADDED_V2_FIELDS`` lists them).
"""
from __future__ import annotations

from typing import Dict, List, Tuple

from google.protobuf import descriptor_pb2

FDP = descriptor_pb2.FileDescriptorProto
MDP = descriptor_pb2.DescriptorProto
EDP = descriptor_pb2.EnumDescriptorProto


def is_v1_only(fdp: FDP) -> bool:
    """Whether the schema's NetParameter has ``layers`` but no ``layer``."""
    for m in fdp.message_type:
        if m.name == "NetParameter":
            names = {f.name for f in m.field}
            return "layers" in names and "layer" not in names
    return False


def _rename_refs(msg: MDP, old: str, new: str) -> None:
    for f in msg.field:
        if f.type_name == old or f.type_name.startswith(old + "."):
            f.type_name = new + f.type_name[len(old):]
    for nested in msg.nested_type:
        _rename_refs(nested, old, new)


def _merge_enum(base: EDP, fork: EDP) -> None:
    """``base`` gains the fork's values it lacks, at the fork's numbers (a BVLC
    value holding such a number gives way)."""
    names = {v.name: v for v in base.value}
    for v in fork.value:
        if v.name in names:
            names[v.name].number = v.number
        else:
            base.value.add().CopyFrom(v)
    if not base.options.allow_alias:
        _fork_wins(base.value, {v.name for v in fork.value})


def _fork_wins(items, fork_names: set) -> None:
    """Where a number is held twice, drop BVLC's holder (the fork's files were
    written with the fork's)."""
    by_number: Dict[int, List[str]] = {}
    for it in items:
        by_number.setdefault(it.number, []).append(it.name)
    drop = {n for names in by_number.values() if len(names) > 1
            for n in names if n not in fork_names}
    for i in reversed(range(len(items))):
        if items[i].name in drop:
            del items[i]


def _merge_by_name(base_items, fork_items, merge) -> None:
    """Each of the fork's messages (or enums) merged into BVLC's of that name,
    or added when BVLC has none."""
    have = {item.name: item for item in base_items}
    for item in fork_items:
        if item.name in have:
            merge(have[item.name], item)
        else:
            base_items.add().CopyFrom(item)
            have[item.name] = base_items[-1]


def _merge_message(base: MDP, fork: MDP) -> None:
    """``base`` gains the fork's fields, nested messages and enums it lacks;
    a field of both keeps the fork's number, label, type and default."""
    by_name = {f.name: i for i, f in enumerate(base.field)}
    for f in fork.field:
        if f.name in by_name:
            have = base.field[by_name[f.name]]
            if have.type != f.type or have.type_name != f.type_name:
                have.CopyFrom(f)
                continue
            # the same field: BVLC's later form (an optional made repeated, which
            # reads the same bytes) with the fork's number and default
            have.number = f.number
            if f.HasField("default_value") and have.label != have.LABEL_REPEATED:
                have.default_value = f.default_value
            continue
        base.field.add().CopyFrom(f)
    _fork_wins(base.field, {f.name for f in fork.field})
    _merge_by_name(base.nested_type, fork.nested_type, _merge_message)
    _merge_by_name(base.enum_type, fork.enum_type, _merge_enum)
    # a field of the fork may name a oneof index BVLC's message does not have
    for f in base.field:
        if f.HasField("oneof_index") and f.oneof_index >= len(base.oneof_decl):
            f.ClearField("oneof_index")


def merge_into_bvlc(fork: FDP, bvlc: FDP) -> Tuple[FDP, List[Tuple[str, int]]]:
    """The merged schema (named like the fork's file) and the parameter fields
    added to the current ``LayerParameter`` as (name, number)."""
    pkg = "." + fork.package if fork.package else ""
    old, new = pkg + ".LayerParameter", pkg + ".V1LayerParameter"
    fork = FDP.FromString(fork.SerializeToString())
    for m in fork.message_type:
        _rename_refs(m, old, new)
        if m.name == "LayerParameter":
            m.name = "V1LayerParameter"
    out = FDP.FromString(bvlc.SerializeToString())
    out.name = fork.name
    _merge_by_name(out.message_type, fork.message_type, _merge_message)
    _merge_by_name(out.enum_type, fork.enum_type, _merge_enum)
    messages: Dict[str, MDP] = {m.name: m for m in out.message_type}
    bvlc_v1 = {f.name for m in bvlc.message_type if m.name == "V1LayerParameter"
               for f in m.field}
    v1 = messages["V1LayerParameter"]
    v2 = messages["LayerParameter"]
    taken = {f.number for f in v2.field} | {f.name for f in v2.field}
    used = {f.number for f in v2.field}
    for r in v2.reserved_range:
        used.update(range(r.start, r.end))
    added: List[Tuple[str, int]] = []
    for f in v1.field:
        if f.name in bvlc_v1 or f.name in taken or not f.name.endswith("_param") \
                or f.type != f.TYPE_MESSAGE:
            continue
        number = f.number
        if number in used:
            number = max(used | {999}) + 1
        g = v2.field.add()
        g.CopyFrom(f)
        g.number = number
        used.add(number)
        added.append((f.name, number))
    return out, added
