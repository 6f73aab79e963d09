"""Layer packs: the layer types of popular Caffe forks, declared in the registry.

Each pack module declares its fork's types with :func:`netdsl.layers.declare`
into the ``PACKS`` registry (below user plugins, which may override them):
shape rule, coordinate map where one exists, numpy forward, parameter-blob
shapes and fillers, each following the fork's own C++ (docs/forks.md names
the files and commits).

============  ==========================================================
pack          layer types
============  ==========================================================
ssd           Permute, PriorBox, Normalize, DetectionOutput (weiliu89/caffe ssd)
segnet        Upsample, BN, DenseImageData (caffe-segnet, caffe-enet)
deeplab       Interp, BN (DeepLab v2, PSPNet)
deconvnet     UNPOOLING/Unpooling, BN, POOLING with switches (DeconvNet)
faster_rcnn   ROIPooling, the Python Proposal layer's shape (py-faster-rcnn)
zf_deconvnet  PoolingSwitches, SliceHalf, InvPooling (piergiaj/caffe-deconvnet)
============  ==========================================================

A pack is enabled when a schema that has one of its parameter messages is
loaded (:func:`enable_for_schema`, called by :func:`netdsl.proto.load_schema`),
or explicitly with ``--plugin netdsl.packs.NAME`` / ``import netdsl.packs.NAME``.
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Dict, List, Tuple

__all__ = ["TRIGGERS", "enable", "enable_for_schema", "enabled", "v1_type"]

#: LayerParameter (or V1LayerParameter) fields whose presence in a schema enables a pack
TRIGGERS: Dict[str, Tuple[str, ...]] = {
    "ssd": ("prior_box_param", "detection_output_param", "permute_param", "norm_param"),
    "segnet": ("upsample_param", "bn_param", "dense_image_data_param"),
    "deeplab": ("interp_param", "bn_param"),
    "deconvnet": ("unpooling_param",),
    "faster_rcnn": ("roi_pooling_param",),
    # no parameter message of its own: its V1 LayerType names
    "zf_deconvnet": ("POOLINGSWITCHES", "SLICEHALF", "INVPOOLING"),
}

_enabled: Dict[str, ModuleType] = {}


def enable(name: str) -> ModuleType:
    """Import pack ``name`` (its types go into the packs registry); idempotent."""
    if name not in _enabled:
        _enabled[name] = importlib.import_module("%s.%s" % (__name__, name))
    return _enabled[name]


def enabled() -> List[str]:
    """The names of the packs enabled so far."""
    return sorted(_enabled)


def enable_for_schema(pb2: ModuleType) -> List[str]:
    """Enable every pack whose parameter messages (or V1 ``LayerType`` names)
    ``pb2`` (a compiled schema) has; returns their names.  BVLC's own schema
    enables none."""
    names = set()
    for msg in ("LayerParameter", "V1LayerParameter"):
        cls = getattr(pb2, msg, None)
        if cls is not None:
            names.update(cls.DESCRIPTOR.fields_by_name)
            enum = cls.DESCRIPTOR.enum_types_by_name.get("LayerType")
            if enum is not None:
                names.update(enum.values_by_name)
    out = []
    for pack, fields in TRIGGERS.items():
        if any(f in names for f in fields):
            enable(pack)
            out.append(pack)
    return out


def after_v1_upgrade(net, v1_types, offsets_at) -> None:
    """Let the enabled packs finish the layers upgraded from their fork's own V1
    types (``v1_types``: layer name -> its V1 enum name): a pack's
    ``AFTER_V1_UPGRADE(net, v1_types, offsets_at)`` sees the whole upgraded net;
    ``offsets_at(net, index) -> (axis, offsets)`` gives the Crop offsets the
    coordinate maps imply (the engine is passed in: packs sit below the engines)."""
    for mod in list(_enabled.values()):
        fix = getattr(mod, "AFTER_V1_UPGRADE", None)
        if fix is not None:
            fix(net, v1_types, offsets_at)


def v1_enum_of(type_name: str):
    """The fork's own V1 ``LayerType`` name of a current type string (the
    inverse of :func:`v1_type`), or None."""
    for mod in list(_enabled.values()):
        for enum_name, t in getattr(mod, "V1_TYPES", {}).items():
            if t == type_name:
                return enum_name
    return None


def v1_type(enum_name: str):
    """The current type string of a fork's own V1 ``LayerType`` name (the enabled
    packs' ``V1_TYPES``), or None."""
    for mod in list(_enabled.values()):
        hit = getattr(mod, "V1_TYPES", {}).get(enum_name)
        if hit is not None:
            return hit
    return None
