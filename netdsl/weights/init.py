"""Initial weights for a net, as Caffe's layers would set them up.

:func:`init_weights` fills every learnable blob with the filler Caffe's layer
would use (its ``LayerSetUp``), then optionally copies trained blobs from a
caffemodel by layer name (:func:`~netdsl.weights.surgery.transplant`) and puts
fixed upsampling kernels on chosen Deconvolution layers.  Blob shapes come from
:func:`netdsl.shapes.infer_shapes`.
"""
from __future__ import annotations

import hashlib
import warnings
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

import numpy as np

from ..errors import NetdslError
from .fillers import fill
from .surgery import Source, TransplantReport, interp, nearest, transplant

__all__ = ["init_weights", "layer_fillers"]

_ZERO = {"type": "constant", "value": 0.0}


BN_STATS = ("zero", "unit")


def layer_fillers(layer: Any, shapes: Union[int, Sequence[Sequence[int]]],
                  bn_stats: str = "zero") -> List[Any]:
    """The fillers Caffe's layer setup uses for the blobs of ``layer`` (their
    ``shapes``, or just their count), from its type's rule in the layer registry
    (:mod:`netdsl.layers`): e.g. ``weight_filler`` then ``bias_filler`` for
    Convolution and InnerProduct, constant 1 for an unset Scale filler, 0.25 for
    PReLU.  A type with no filler rule gets constant 0 with a warning.
    ``bn_stats="unit"`` gives statistics blobs (a type declaring
    ``unit_statistics``: BatchNorm) mean 0, variance 1 and factor 1 instead of
    Caffe's zeros.
    """
    from ..layers import lookup
    if bn_stats not in BN_STATS:
        raise NetdslError("bn_stats is %s, not %r" % (" or ".join(BN_STATS), bn_stats),
                          field="bn_stats")
    if isinstance(shapes, int):
        shapes = [None] * shapes
    count = len(shapes)
    lt = lookup(layer.type)
    unit = lt.extra.get("unit_statistics") if lt is not None else None
    if bn_stats == "unit" and unit is not None:
        return list(unit(layer, list(shapes)))
    if lt is not None and lt.fillers is not None:
        return list(lt.fillers(layer, list(shapes)))
    if count:
        warnings.warn("layer '%s': no filler rule for type '%s'; its %d blob(s) are set to 0"
                      % (layer.name, layer.type, count), stacklevel=3)
    return [_ZERO] * count


def _rng(seed: int, layer: str, index: int) -> np.random.Generator:
    # one stream per (seed, layer, blob): a layer's values do not depend on
    # which other layers the net has
    digest = hashlib.sha256(layer.encode("utf-8")).digest()
    entropy = [int(seed) & 0xFFFFFFFF, int.from_bytes(digest[:8], "little"), index]
    return np.random.default_rng(np.random.SeedSequence(entropy))


def init_weights(net: Any, *, seed: int = 0, source: Optional[Source] = None,
                 interp_layers: Iterable[str] = (), nearest_layers: Iterable[str] = (),
                 inputs: Any = None, phase: Any = None,
                 report: Optional[List[TransplantReport]] = None,
                 unfilled: Iterable[str] = (), bn_stats: str = "zero", declared: Any = None,
                 ) -> Dict[str, List[np.ndarray]]:
    """``{layer_name: [float32 arrays]}`` for every layer with learnable blobs.

    ``net`` is a NetParameter or a prototxt path; ``inputs`` and ``phase`` are
    passed to :func:`netdsl.shapes.infer_shapes` (None: the net's own inputs,
    its state's phase), as is ``declared`` (shapes of tops no rule gives).  Steps:
    fillers per :func:`layer_fillers` (seeded by ``seed``, layer name and blob
    index, so results are reproducible), then blobs from ``source`` (a
    caffemodel path, CaffeModel or weight dict) by layer name with
    :func:`~netdsl.weights.surgery.transplant` (its report is appended to
    ``report`` when a list is given), then bilinear kernels on
    ``interp_layers`` and all-ones kernels on ``nearest_layers``.  Blobs shared
    through a named ``param`` are one array, filled by the first layer that
    owns it, as in Caffe.  Layers named in ``unfilled`` get zeros instead of a
    filler's draw (for a caller that overwrites them, e.g. from a caffemodel).
    ``bn_stats`` is passed to :func:`layer_fillers` (``"unit"``: BatchNorm
    statistics that make a fresh net's TEST forward usable).
    """
    if isinstance(net, str):
        from ..prototxt import read_net
        net = read_net(net)
    from ..shapes import infer_shapes
    more = {} if declared is None else {"declared": declared}
    shapes = (infer_shapes(net, inputs, **more) if phase is None
              else infer_shapes(net, inputs, phase=phase, **more))
    skip = set(unfilled)
    weights: Dict[str, List[np.ndarray]] = {}
    shared: Dict[str, np.ndarray] = {}
    for entry in shapes.layers:
        param_shapes = [tuple(int(d) for d in s) for s in (entry.param_shapes or ())]
        if not param_shapes:
            continue
        lp = entry.layer   # the layer of the phase shaped, not another of the same name
        fillers = layer_fillers(lp, param_shapes, bn_stats)
        fillers += [_ZERO] * (len(param_shapes) - len(fillers))
        blobs: List[np.ndarray] = []
        for i, (shape, filler) in enumerate(zip(param_shapes, fillers)):
            spec_name = lp.param[i].name if i < len(lp.param) else ""
            if spec_name and spec_name in shared:
                owner = shared[spec_name]
                if owner.size != int(np.prod(shape, dtype=np.int64)):
                    raise NetdslError("shared param '%s' has %d values here but %s in its "
                                      "owner" % (spec_name, int(np.prod(shape)), owner.shape),
                                      layer=entry.name)
                blobs.append(owner if owner.shape == shape else owner.reshape(shape))
                continue
            if entry.name in skip:   # the caller overwrites them: no draw, zeros
                arr = np.zeros(shape, dtype=np.float32)
            else:
                try:
                    arr = fill(filler, shape, _rng(seed, entry.name, i))
                except NetdslError as exc:
                    raise exc.located(layer=entry.name)
            if spec_name:
                shared[spec_name] = arr
            blobs.append(arr)
        weights[entry.name] = blobs
    if source is not None:
        rep = transplant(weights, source)
        if report is not None:
            report.append(rep)
    for names, op in ((interp_layers, interp), (nearest_layers, nearest)):
        for name in names:
            if name not in weights:
                raise NetdslError("no layer '%s' with weights in the net" % name,
                                  hint=_hint(name, weights))
            try:
                op(weights[name])
            except NetdslError as exc:
                raise exc.located(layer=name)
    return weights


def _hint(name: str, names: Iterable[str]) -> Optional[str]:
    from ..errors import did_you_mean
    return did_you_mean(name, names)
