"""The shapes report: ``netdsl shapes`` as a table or JSON, from
:func:`netdsl.shapes.infer_shapes`'s result and the crop offsets of
:func:`netdsl.coord_map.offsets_for`."""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from .shapes import NetShapes, Shape

__all__ = ["format_table", "to_json"]


def _shape_text(s: Shape) -> str:
    return "(" + ",".join(str(d) for d in s) + ")"


def _vec_text(v) -> str:
    if v is None:
        return ""
    vals = ["%g" % x if isinstance(x, float) else str(x) for x in v]
    if len(set(vals)) == 1:
        return vals[0]
    return ",".join(vals)


def format_table(net_shapes: NetShapes, crops: Optional[Mapping[str, Any]] = None) -> str:
    """A text table: layer, type, parameter count, stride and offset of the first
    top on the net input (spatial tops), then bottoms -> tops with shapes.

    ``crops`` (from :func:`netdsl.coord_map.offsets_for`) adds a section comparing
    each Crop layer's offsets with those the coordinate maps give.
    """
    rows = []
    for ls in net_shapes.layers:
        v = ls.view
        ins = ", ".join("%s %s" % (b, _shape_text(s)) for b, s in zip(v.bottoms, v.bottom_shapes))
        outs = []
        for i, (t, s) in enumerate(zip(v.tops, v.top_shapes)):
            extra = []
            if i < len(v.in_place) and v.in_place[i]:
                extra.append("in place")
            if v.loss_weights and i < len(v.loss_weights) and v.loss_weights[i]:
                extra.append("loss x%g" % v.loss_weights[i])
            outs.append("%s %s%s" % (t, _shape_text(s), " [%s]" % ", ".join(extra) if extra else ""))
        io = (ins + " -> " if ins else "-> ") + (", ".join(outs) if outs else "(none)")
        if ls.declared:
            io += "  (declared)"
        if ls.note:
            io += "  (%s)" % ls.note
        stride = offset = ""
        if v.tops and v.strides and v.strides[0] is not None and len(v.top_shapes[0]) >= 3:
            stride, offset = _vec_text(v.strides[0]), _vec_text(v.offsets[0])
        rows.append((ls.name, ls.type, "{:,}".format(ls.param_count) if ls.param_count else "-",
                     stride, offset, io))
    head = ("layer", "type", "params", "stride", "offset", "bottoms -> tops")
    widths = [len(h) for h in head[:5]]
    for r in rows:
        for i in range(5):
            if len(r[i]) > widths[i]:
                widths[i] = len(r[i])
    fmt = "%-{0}s  %-{1}s  %{2}s  %{3}s  %{4}s  %s".format(*widths)
    lines = [fmt % head]
    lines.extend(fmt % r for r in rows)
    stats = net_shapes.statistics_count
    footer = "%d layers, %d blobs, %s learnable parameters" % (
        len(net_shapes.layers), len(net_shapes.blobs),
        "{:,}".format(net_shapes.param_count - stats))
    if stats:   # batch_norm_layer.cpp sets their lr_mult to 0: stored, never learned
        footer += " + %s %s statistics (not learned)" % (
            "{:,}".format(stats), "/".join(net_shapes.statistics_types))
    lines.append(footer)
    if crops:
        lines.append("")
        lines.append("crop offsets (from coordinate maps):")
        for name, rec in crops.items():
            given = "axis %d offset %s" % (rec.given_axis, _offsets_text(rec.given_offsets))
            if rec.error is not None:
                lines.append("  %s: %s; cannot check: %s" % (name, given, rec.error))
            elif rec.matches:
                lines.append("  %s: axis %d offset %s (matches)"
                             % (name, rec.axis, _offsets_text(rec.offsets)))
            else:
                lines.append("  %s: %s, but the maps give axis %d offset %s"
                             % (name, given, rec.axis, _offsets_text(rec.offsets)))
    return "\n".join(lines) + "\n"


def _offsets_text(offsets: Sequence[int]) -> str:
    if not offsets:
        return "0"
    return ",".join(str(o) for o in offsets)


def to_json(net_shapes: NetShapes, crops: Optional[Mapping[str, Any]] = None) -> dict:
    """``{"blobs": {name: [dims]}, "layers": [...], "learnable_count": n,
    "statistics_count": m}`` (JSON-serialisable; the counts as in the table's footer).

    With ``crops`` (from :func:`netdsl.coord_map.offsets_for`) a ``"crops"`` entry
    maps each Crop layer to its given and computed axis/offsets.
    """
    def vec(v):
        return None if v is None else list(v)
    layers = []
    for ls in net_shapes.layers:
        v = ls.view
        d = {
            "name": ls.name, "type": ls.type,
            "bottoms": list(v.bottoms), "tops": list(v.tops),
            "bottom_shapes": [list(s) for s in v.bottom_shapes],
            "top_shapes": [list(s) for s in v.top_shapes],
            "param_shapes": [list(s) for s in v.param_shapes],
            "param_count": ls.param_count,
            "loss_weights": list(v.loss_weights),
            "strides": [vec(v) for v in v.strides],
            "offsets": [vec(v) for v in v.offsets],
            "in_place": list(v.in_place),
        }
        if ls.declared:
            d["declared"] = True
        if ls.note:
            d["note"] = ls.note
        layers.append(d)
    stats = net_shapes.statistics_count
    out = {"blobs": {k: list(v) for k, v in net_shapes.blobs.items()}, "layers": layers,
           "learnable_count": net_shapes.param_count - stats, "statistics_count": stats}
    if crops is not None:
        out["crops"] = {
            name: {"axis": rec.axis, "offsets": rec.offsets, "given_axis": rec.given_axis,
                   "given_offsets": list(rec.given_offsets), "matches": rec.matches,
                   "error": rec.error}
            for name, rec in crops.items()}
    return out
