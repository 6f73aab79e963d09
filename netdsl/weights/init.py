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
from typing import Any, Dict, Iterable, List, Optional, Tuple

import numpy as np

from ..errors import NetdslError
from .fillers import fill
from .surgery import Source, TransplantReport, interp, nearest, transplant

__all__ = ["init_weights", "layer_fillers"]

_CONSTANT_1 = {"type": "constant", "value": 1.0}
_CONSTANT_025 = {"type": "constant", "value": 0.25}
_ZERO = {"type": "constant", "value": 0.0}


def layer_fillers(layer: Any, count: int) -> List[Any]:
    """The fillers Caffe's layer setup uses for the ``count`` blobs of ``layer``.

    * Convolution, Deconvolution, InnerProduct, Embed: ``weight_filler``, then
      ``bias_filler`` (unset fillers are FillerParameter's default, constant 0).
    * BatchNorm: mean, variance and moving-average factor all 0.
    * Scale: ``filler``, default constant 1 (absent with two bottoms), then
      ``bias_filler`` when ``bias_term``; Bias: ``filler`` (default 0).
    * PReLU: ``filler``, default constant 0.25.
    * RNN, LSTM: ``weight_filler`` for matrices, ``bias_filler`` for vectors
      (returned as None here and resolved per shape by :func:`init_weights`).

    Other types get constant 0 with a warning.
    """
    t = layer.type
    if t in ("Convolution", "Deconvolution"):
        p = layer.convolution_param
        return [p.weight_filler, p.bias_filler][:count]
    if t == "InnerProduct":
        p = layer.inner_product_param
        return [p.weight_filler, p.bias_filler][:count]
    if t == "Embed":
        p = layer.embed_param
        return [p.weight_filler, p.bias_filler][:count]
    if t == "BatchNorm":
        return [_ZERO] * count
    if t == "Scale":
        p = layer.scale_param
        scale = p.filler if p.HasField("filler") else _CONSTANT_1
        fillers = [p.bias_filler] if len(layer.bottom) > 1 else [scale, p.bias_filler]
        return fillers[:count]
    if t == "Bias":
        return [layer.bias_param.filler] * count
    if t == "PReLU":
        p = layer.prelu_param
        return [p.filler if p.HasField("filler") else _CONSTANT_025] * count
    if t in ("RNN", "LSTM"):
        return [None] * count
    if count:
        warnings.warn("layer '%s': no filler rule for type '%s'; its %d blob(s) are set to 0"
                      % (layer.name, t, count), stacklevel=3)
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
                 ) -> Dict[str, List[np.ndarray]]:
    """``{layer_name: [float32 arrays]}`` for every layer with learnable blobs.

    ``net`` is a NetParameter or a prototxt path; ``inputs`` and ``phase`` are
    passed to :func:`netdsl.shapes.infer_shapes` (None: the net's own inputs,
    its state's phase).  Steps:
    fillers per :func:`layer_fillers` (seeded by ``seed``, layer name and blob
    index, so results are reproducible), then blobs from ``source`` (a
    caffemodel path, CaffeModel or weight dict) by layer name with
    :func:`~netdsl.weights.surgery.transplant` (its report is appended to
    ``report`` when a list is given), then bilinear kernels on
    ``interp_layers`` and all-ones kernels on ``nearest_layers``.  Blobs shared
    through a named ``param`` are one array, filled by the first layer that
    owns it, as in Caffe.
    """
    if isinstance(net, str):
        from ..prototxt import read_net
        net = read_net(net)
    from ..shapes import infer_shapes
    shapes = infer_shapes(net, inputs) if phase is None else infer_shapes(net, inputs,
                                                                          phase=phase)
    by_name: Dict[Tuple[str, str], Any] = {}
    for lp in net.layer:
        by_name.setdefault((lp.name, lp.type), lp)
    weights: Dict[str, List[np.ndarray]] = {}
    shared: Dict[str, np.ndarray] = {}
    for entry in shapes.layers:
        param_shapes = [tuple(int(d) for d in s) for s in (entry.param_shapes or ())]
        if not param_shapes:
            continue
        lp = getattr(entry, "param", None)
        if lp is None or not hasattr(lp, "type"):
            lp = by_name.get((entry.name, entry.type))
        if lp is None:
            raise NetdslError("shape inference reports a layer the net does not have",
                              layer=entry.name)
        fillers = layer_fillers(lp, len(param_shapes))
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
            if filler is None:  # recurrent layers: by blob rank
                p = lp.recurrent_param
                filler = p.weight_filler if len(shape) > 1 else p.bias_filler
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
