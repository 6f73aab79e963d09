"""What an initialisation did to each parameter blob, in the words ``netdsl init`` and
``netdsl build --weights`` both print.

Caffe's layers fill their blobs with their fillers at setup; a transplant
then overwrites some (copied, or reshaped like FCN's fc6 -> conv), surgery puts
bilinear or constant kernels on upsampling Deconvolutions, and every other blob
keeps its filler's values.  An unset ``FillerParameter`` is ``constant 0`` in
caffe.proto, so a layer left at it (FCN's score layers) outputs zeros until it
is trained; the report says so.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Sequence

from google.protobuf.message import Message

__all__ = ["init_report_lines", "filler_text"]


def filler_text(filler) -> str:
    """A filler in a few words: ``constant 0``, ``gaussian std 0.01``, ``xavier`` ..."""
    from .weights import filler_params
    p = filler_params(filler)
    t = p["type"]
    if t == "constant":
        return "constant %g" % p["value"]
    if t == "gaussian":
        return "gaussian mean %g std %g" % (p["mean"], p["std"]) if p["mean"] else \
            "gaussian std %g" % p["std"]
    if t == "uniform":
        return "uniform [%g, %g]" % (p["min"], p["max"])
    if t in ("xavier", "msra"):
        return t if p["variance_norm"] == "FAN_IN" else "%s %s" % (t, p["variance_norm"])
    return t


def init_report_lines(net: Message, weights: Dict[str, Sequence], *,
                      transplants: Iterable = (), interp_layers: Iterable[str] = (),
                      nearest_layers: Iterable[str] = (), bn_stats: str = "zero"
                      ) -> List[str]:
    """Lines describing every parameter blob of ``weights`` (from
    :func:`netdsl.weights.init_weights` on ``net``): the transplant reports
    (copied / reshaped / skipped), the surgery (interp / nearest), then the blobs
    left at their fillers' values, grouped by filler."""
    from .weights import layer_fillers
    lines: List[str] = []
    touched = set()
    for rep in transplants:
        text = str(rep)
        if text:
            lines.extend(text.splitlines())
        touched.update((name, i) for name, i in rep.copied)
        touched.update((name, i) for name, i, _, _ in rep.reshaped)
    for names, what, kind in ((interp_layers, "bilinear kernels (FCN's interp)", "interp"),
                              (nearest_layers, "constant kernels (nearest neighbour)",
                               "nearest")):
        for name in names:
            if name in weights and len(weights[name]):
                shape = "x".join(str(d) for d in getattr(weights[name][0], "shape", ()))
                lines.append("%-9s %s[0] %s: %s" % (kind, name, shape, what))
                touched.add((name, 0))
    layers = {l.name: l for l in net.layer}
    groups: Dict[str, List[str]] = {}
    for name, blobs in weights.items():
        layer = layers.get(name)
        if layer is None:
            continue
        shapes = [tuple(getattr(b, "shape", ())) for b in blobs]
        fillers = list(layer_fillers(layer, shapes, bn_stats))
        for i in range(len(blobs)):
            if (name, i) in touched:
                continue
            text = filler_text(fillers[i]) if i < len(fillers) else "constant 0"
            groups.setdefault(text, []).append("%s[%d]" % (name, i))
    for text, blobs in groups.items():
        note = ""
        if text == "constant 0":
            note = " (Caffe's default filler: these blobs start at zero)"
        lines.append("filler    %s: %s%s" % (text, ", ".join(blobs), note))
    lines.extend(_statistics_lines(net, weights, touched, bn_stats))
    if groups:
        count = sum(len(b) for b in groups.values())
        lines.append("%d parameter blob(s) left at their fillers' values" % count)
    return lines



def _statistics_lines(net: Message, weights: Dict[str, Sequence], touched: set,
                      bn_stats: str) -> List[str]:
    """One line on the statistics blobs left at their fillers (BatchNorm's): with Caffe's
    zeros a TEST forward divides by sqrt(eps) (batch_norm_layer.cpp: factor 0 gives
    scale 0, so mean 0 and variance 0); ``--bn-stats unit`` gives mean 0, variance 1."""
    from .layers import lookup
    names = []
    for layer in net.layer:
        lt = lookup(layer.type)
        if (layer.name in weights and lt is not None and lt.extra.get("statistics")
                and not all((layer.name, i) in touched for i in range(len(weights[layer.name])))):
            names.append(layer.name)
    if not names:
        return []
    if bn_stats == "unit":
        return ["statistics %d layer(s) (%s, ...) start at mean 0, variance 1, moving-average "
                "factor 1 (--bn-stats unit): a TEST forward divides by sqrt(1 + eps)"
                % (len(names), names[0])]
    return ["statistics %d layer(s) (%s, ...) start at Caffe's zeros: until trained or copied, "
            "a TEST forward divides by sqrt(eps) at each; --bn-stats unit gives mean 0, "
            "variance 1, factor 1" % (len(names), names[0])]
