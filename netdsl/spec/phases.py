"""Which layers a phase's net has.

A spec yields one net per phase (``train``, ``val`` and ``deploy`` unless the
spec lists its own ``phases``).  A layer, block use, repeat or include with
``phases: [...]`` is in those phases only; ``per_phase: {train: {...}}``
overrides a layer's values in one phase.  The ``deploy`` net leaves out loss
and accuracy layers (types ending in ``Loss``, and ``Accuracy``) unless the
layer names ``deploy`` in its ``phases``, since a deployed net has no labels.
"""
from __future__ import annotations

from typing import Iterable, Optional

DEFAULT_PHASES = ("train", "val", "deploy")
DEPLOY = "deploy"


def is_loss_like(layer_type: str) -> bool:
    """Loss and accuracy layers: they need labels, so deploy nets leave them out
    (the layer type's ``labels`` in the registry; a type it does not know counts
    when its name ends in ``Loss``, as Caffe's loss layers' names do)."""
    from ..layers.registry import reads_labels
    return reads_labels(layer_type)


def keeps(layer_type: str, phase: str, explicit: Optional[Iterable[str]]) -> bool:
    """Whether a layer of ``layer_type`` is in ``phase``'s net.

    ``explicit`` is the layer's own ``phases`` list (None when it has none).
    """
    if explicit is not None:
        return phase in explicit
    if phase == DEPLOY and is_loss_like(layer_type):
        return False
    return True


def caffe_phase(phase: str) -> str:
    """The Caffe phase a spec phase runs in (TRAIN for ``train``, TEST otherwise)."""
    return "TRAIN" if phase == "train" else "TEST"

