"""Reporting on a caffemodel: its layers, blob shapes and (optionally) statistics."""
from __future__ import annotations

from types import ModuleType
from typing import Any, Dict, Optional

import numpy as np

from ...errors import NetdslError
from .reader import open_caffemodel

__all__ = ["inspect", "format_inspect"]



def inspect(path: str, stats: bool = False, *, pb2: Optional[ModuleType] = None
            ) -> Dict[str, Any]:
    """A plain description of a caffemodel, for printing or JSON.

    ``{"path", "name", "format", "size", "params", "layers": [{"name", "type",
    "blobs": [{"shape", "dtype", "count"[, "min", "max", "mean"]}]}]}``; with
    ``stats=True`` each blob also gets its minimum, maximum and mean (read from
    the file; NaN when the blob holds a NaN, None when it is empty).
    """
    with open_caffemodel(path, pb2=pb2) as model:
        if model.size == 0:
            raise NetdslError("empty file (0 bytes): not a caffemodel (a caffemodel is a "
                              "binary NetParameter with its layers' blobs)", file=path,
                              hint="was it written completely? `netdsl init NET -o FILE` "
                                   "makes one")
        layers = []
        total = 0
        for entry in model.layers:
            arrays = model.arrays(entry) if stats else [None] * len(entry.blobs)
            blobs = []
            for blob, arr in zip(entry.blobs, arrays):
                info: Dict[str, Any] = {"shape": list(blob.shape), "dtype": blob.dtype.name,
                                        "count": blob.count}
                total += blob.count
                if stats:
                    if arr.size:
                        info["min"] = float(arr.min())
                        info["max"] = float(arr.max())
                        info["mean"] = float(arr.mean(dtype=np.float64))
                    else:
                        info["min"] = info["max"] = info["mean"] = None
                blobs.append(info)
            layers.append({"name": entry.name, "type": entry.type, "blobs": blobs})
        return {"path": path, "name": model.name, "format": model.format,
                "size": model.size, "params": total, "layers": layers}


def format_inspect(info: Dict[str, Any]) -> str:
    """A text table of :func:`inspect`'s result: one row per blob, then totals."""
    has_stats = any("min" in b for layer in info["layers"] for b in layer["blobs"])
    head = ["layer", "type", "blob", "shape", "dtype", "count"]
    if has_stats:
        head += ["min", "max", "mean"]
    rows = [head]

    def num(v: Any) -> str:
        return "-" if v is None else "%.6g" % v

    for layer in info["layers"]:
        if not layer["blobs"]:
            rows.append([layer["name"], layer["type"] or "-", "-", "-", "-", "0"]
                        + (["", "", ""] if has_stats else []))
        for i, b in enumerate(layer["blobs"]):
            row = [layer["name"] if i == 0 else "", (layer["type"] or "-") if i == 0 else "",
                   str(i), "x".join(str(d) for d in b["shape"]) or "scalar", b["dtype"],
                   str(b["count"])]
            if has_stats:
                row += [num(b.get("min")), num(b.get("max")), num(b.get("mean"))]
            rows.append(row)
    widths = [max(len(r[c]) for r in rows) for c in range(len(head))]
    right = {2, 5, 6, 7, 8}
    lines = ["  ".join(cell.rjust(w) if c in right else cell.ljust(w)
                       for c, (cell, w) in enumerate(zip(r, widths))).rstrip() for r in rows]
    title = "%s: %s format, %d layers, %d parameters, %d bytes" % (
        info["path"], info["format"], len(info["layers"]), info["params"], info["size"])
    if info.get("name"):
        title += ", net '%s'" % info["name"]
    return "\n".join([title] + lines)
