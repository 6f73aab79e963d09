"""Explicit Crop offsets checked against the coordinate maps.

Caffe crops ``bottom[0]`` at the offsets ``crop_param`` gives and never asks
whether they align it with ``bottom[1]``; a wrong offset trains with labels and
predictions shifted.  Here every Crop whose two bottoms have a coordinate map
(:func:`netdsl.coord_map.offsets_for`) is compared with the offsets that map
gives: a disagreement is a :class:`CropOffsetWarning`, or a
:class:`~netdsl.errors.NetdslError` when ``strict``.
"""
from __future__ import annotations

import warnings
from typing import Callable, Dict, Iterable, List, Optional

from google.protobuf.message import Message

from .errors import NetdslError

__all__ = ["CropOffsetWarning", "crop_disagreements", "disagreement_text", "check_crop_offsets",
           "unconfirmed_crops", "unconfirmed_text"]


class CropOffsetWarning(UserWarning):
    """An explicit Crop offset that the coordinate maps disagree with or cannot confirm."""


def _offsets_text(offsets: Iterable[int]) -> str:
    offsets = list(offsets)
    return ",".join(str(o) for o in offsets) if offsets else "0"


def crop_disagreements(net: Message, *, shapes=None, phase=None,
                       only: Optional[Iterable[str]] = None) -> List:
    """The :class:`netdsl.coord_map.CropOffsets` of the Crop layers (of ``only``, when
    given) whose ``crop_param`` differs from the offsets the coordinate maps give.
    Crops without a map (``error`` set) are not judged."""
    from .coord_walk import offsets_for
    wanted = None if only is None else set(only)
    if wanted is not None and not wanted:
        return []
    out = []
    for name, rec in offsets_for(net, shapes=shapes, phase=phase).items():
        if wanted is not None and name not in wanted:
            continue
        if rec.error is None and not rec.matches:
            out.append(rec)
    return out


def unconfirmed_crops(net: Message, *, shapes=None, phase=None,
                      only: Optional[Iterable[str]] = None) -> List:
    """The :class:`netdsl.coord_map.CropOffsets` of the Crop layers (of ``only``, when
    given) with an explicit ``offset`` that the coordinate maps cannot confirm (no
    offset follows from them: ``error`` says why)."""
    from .coord_walk import offsets_for
    wanted = None if only is None else set(only)
    if wanted is not None and not wanted:
        return []
    return [rec for name, rec in offsets_for(net, shapes=shapes, phase=phase).items()
            if (wanted is None or name in wanted) and rec.error is not None
            and rec.given_offsets]


def unconfirmed_text(rec) -> str:
    """One line: the layer, its explicit offset and why the maps cannot check it."""
    return ("layer '%s': crop offset %s on axis %d cannot be checked against the coordinate "
            "maps: %s" % (rec.layer, _offsets_text(rec.given_offsets), rec.given_axis,
                          rec.error))


def disagreement_text(rec, bottoms: Optional[List[str]] = None) -> str:
    """One line: the layer, the offset it gives and the one the maps give."""
    what = ""
    if bottoms and len(bottoms) == 2:
        what = "; '%s' and '%s' would be misaligned" % (bottoms[0], bottoms[1])
    given_axis = "" if rec.given_axis == rec.axis else " on axis %d" % rec.given_axis
    return ("layer '%s': crop offset %s%s disagrees with the coordinate maps, which give "
            "offset %s on axis %d%s" % (rec.layer, _offsets_text(rec.given_offsets), given_axis,
                                         _offsets_text(rec.offsets), rec.axis, what))


def check_crop_offsets(net: Message, *, strict: bool = False, shapes=None, phase=None,
                       only: Optional[Iterable[str]] = None,
                       locate: Optional[Callable[[NetdslError], NetdslError]] = None,
                       hint: Optional[str] = None, seen: Optional[set] = None) -> List:
    """Warn (:class:`CropOffsetWarning`) about each Crop of ``net`` whose offsets disagree
    with the coordinate maps, then each whose explicit offset they cannot confirm; with
    ``strict`` raise a NetdslError for the first instead (``locate`` may place it in a
    source file).  ``seen`` collects the messages already given, so nets sharing a layer
    warn once.  Returns the disagreeing records."""
    bottoms: Dict[str, List[str]] = {l.name: list(l.bottom) for l in net.layer}
    recs = crop_disagreements(net, shapes=shapes, phase=phase, only=only)
    unsure = unconfirmed_crops(net, shapes=shapes, phase=phase, only=only)
    for rec in recs + unsure:
        if rec.error is None:
            text = disagreement_text(rec, bottoms.get(rec.layer))
            err = NetdslError(text.split(": ", 1)[1], layer=rec.layer,
                              hint=hint or "set crop_param { axis: %d offset: %s }"
                              % (rec.axis, _offsets_text(rec.offsets)))
        else:   # nothing to compare with: said the same way, and an error when strict
            err = NetdslError(unconfirmed_text(rec).split(": ", 1)[1], layer=rec.layer,
                              hint="make sure the offset is right by hand")
            err.unconfirmed = True
        if locate is not None:
            err = locate(err)
        if strict:
            raise err
        line = err.explain()
        if seen is not None:
            if line in seen:
                continue
            seen.add(line)
        warnings.warn(line, CropOffsetWarning, stacklevel=2)
    return recs
