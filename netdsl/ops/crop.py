"""``crop``: a Crop aligning a blob to a reference blob.

::

    - crop: score              # the top
      bottom: upscore          # default: the previous layer's top
      reference: data          # crop to this blob's extent
      offset: 19               # optional: computed with netdsl.coord_map when absent
      axis: 2                  # optional (default 2)

Without ``offset`` the offsets come from the coordinate maps of the net built
so far (``netdsl.coord_map.crop``, pycaffe's ``crop``), exactly as a pycaffe
script with ``crop(n.upscore, n.data)`` gets them.
"""
from __future__ import annotations

from typing import List

from .base import OpCall, Record, make_record

KEYS = ("reference", "offset", "axis", "name", "bottom")


def expand(call: OpCall) -> List[Record]:
    call.check_keys(KEYS)
    if call.head is None:
        raise call.error(None, "give the top name: `- crop: NAME`")
    ref = call.names("reference")
    if ref is None:
        raise call.error(None, "needs `reference`: the blob to crop to",
                         hint="e.g. `reference: data`")
    if len(ref) != 1:
        raise call.error("reference", "`reference` is one blob name, got %r"
                         % (call.args["reference"],))
    bottoms = call.names("bottom")
    if bottoms is not None and len(bottoms) != 1:
        raise call.error("bottom", "a crop has one bottom (the blob to crop), got %d"
                         % len(bottoms))
    offset = call.args.get("offset")
    if offset is not None:
        items = offset if isinstance(offset, list) else [offset]
        if not items or any(isinstance(v, bool) or not isinstance(v, int) or v < 0
                            for v in items):
            raise call.error("offset", "`offset` is a non-negative integer or a list of them, "
                                       "got %r" % (offset,))
        offset = list(items)
    axis = call.integer("axis", default=2) if "axis" in call.args else None
    rec = make_record(call, "Crop", {})
    rec.reference = ref[0]
    rec.offset = offset
    rec.axis = axis
    return [rec]
