"""The net walk every exporter shares: the TEST-phase layers in Caffe's order,
each with its bottom and top shapes and parsed geometry, the graph's inputs
(the net's input blobs, names kept, shapes from ``--input`` or the net) and
outputs (Caffe's ``net.outputs``, the blobs no later layer consumes, plus any
``--outputs`` blob), and single-assignment value names for in-place layers.

A type whose layers export only in some forms gives its rule function a
``covers(layer) -> bool`` attribute (the Python type: only the classes a pack
knows); a layer it does not cover counts as one without a rule.

A blob written more than once (an in-place ReLU after a Convolution) keeps
its own name for its last value, which is what Caffe's ``net.blobs[name]``
holds after ``Forward``; earlier values are named ``<blob>@<layer>``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ..errors import NetdslError, did_you_mean
from ..layers import lookup
from ..layers.registry import LayerType, reads_labels

__all__ = ["Step", "Walk", "walk_net", "split_blobs"]

Shape = Tuple[int, ...]
#: how an error names an exporter's rule field
_RULE_NAMES = {"onnx": "ONNX", "torch": "PyTorch"}


@dataclass
class Step:
    """One layer of the walk: its LayerType, bottom/top shapes, geometry and the
    value names of its bottoms and tops."""
    layer: Any
    lt: LayerType
    bottom_shapes: List[Shape]
    top_shapes: List[Shape]
    geo: Any
    bottom_values: List[str]
    top_values: List[str]


@dataclass
class Walk:
    """The layers to export, in order, and the graph's inputs and outputs (blob names)."""
    net: Any
    steps: List[Step]
    inputs: Dict[str, Shape]
    outputs: List[str]
    shapes: Dict[str, Shape] = field(default_factory=dict)
    dropped: List[str] = field(default_factory=list)


def split_blobs(items: Any) -> List[str]:
    """The blob names of repeated ``--outputs A,B`` options, in order, once each."""
    out: List[str] = []
    for item in items or ():
        for name in item.split(","):
            name = name.strip()
            if name and name not in out:
                out.append(name)
    return out


def _layers(net: Any) -> List[Any]:
    from ..netstate import included_layers, make_state
    return included_layers(net, make_state(net, 1))   # Caffe's TEST phase


def _input_shapes(net: Any, layers: List[Any], given: Mapping[str, Shape]) -> Dict[str, Shape]:
    from ..forward import input_shapes
    declared = {k: tuple(v) for k, v in input_shapes(net).items()}
    made = {t for lp in layers for t in lp.top} | set(net.input)
    for name in given:
        if name not in made:
            raise NetdslError("--input '%s' is not a blob of the net" % name,
                              hint=did_you_mean(name, sorted(made)))
    for lp in layers:      # a data layer's tops: the shapes its parameters give
        lt = lookup(lp.type)
        if not lp.bottom and lp.top and lt is not None and lt.shape is not None and \
                not all(t in given or t in declared for t in lp.top):
            try:
                for t, s in zip(lp.top, lt.top_shapes(lp, [], len(lp.top))):
                    declared.setdefault(t, tuple(s))
            except NetdslError:
                pass       # no size in its parameters: --input must give it
    out: Dict[str, Shape] = {}
    for name in list(net.input) + [t for lp in layers if not lp.bottom for t in lp.top]:
        shape = given.get(name, declared.get(name))
        if shape is not None:
            out[name] = tuple(int(d) for d in shape)
    return out


def _blocked_by(layers: List[Any], have: Mapping[str, Shape], rule: str
                ) -> Tuple[Dict[str, int], Dict[int, Tuple[Any, str]]]:
    """For each blob (by its final value), the index of the first layer without a
    ``rule`` it depends on; and those layers, with the reason."""
    blocked: Dict[str, int] = {}
    why: Dict[int, Tuple[Any, str]] = {}
    for i, lp in enumerate(layers):
        lt = lookup(lp.type)
        if not lp.bottom:     # the inputs: a top without a shape fails where it is read
            for t in lp.top:
                blocked.pop(t, None)
            continue
        src = [blocked[b] for b in lp.bottom if b in blocked]
        fn = getattr(lt, rule) if lt is not None else None
        if fn is None or not getattr(fn, "covers", lambda _: True)(lp):
            why[i] = (lp, "unknown layer type" if lt is None else
                      "its type has no %s export rule" % _RULE_NAMES.get(rule, rule)
                      if fn is None else
                      "this form of it has no %s export rule" % _RULE_NAMES.get(rule, rule))
            src.append(i)
        for t in lp.top:
            if src:
                blocked[t] = min(src)
            else:
                blocked.pop(t, None)
    return blocked, why


def _advice(lp: Any, rule: str) -> str:
    stop = ",".join(dict.fromkeys(lp.bottom))
    return ("export the blobs before it with --outputs %s" % stop if stop else
            "this layer has no bottoms to stop at")


def _choose_outputs(layers: List[Any], inputs: Mapping[str, Shape], extra: Sequence[str],
                    rule: str) -> Tuple[List[str], List[str]]:
    available: Dict[str, None] = {}
    for lp in layers:
        for b in lp.bottom:
            available.pop(b, None)
        if reads_labels(lp.type) or not lp.bottom:
            continue          # a loss or accuracy (a deploy net has none), or the inputs
        for t in lp.top:
            available[t] = None
    known = {t for lp in layers for t in lp.top} | set(inputs)
    for name in extra:
        if name not in known:
            raise NetdslError("--outputs '%s' is not a blob of the net" % name,
                              hint=did_you_mean(name, sorted(known)))
    blocked, why = _blocked_by(layers, inputs, rule)
    wanted = list(extra) + [o for o in sorted(available) if o not in extra]
    outputs, dropped = [], []
    for name in wanted:
        if name in blocked:
            lp, reason = why[blocked[name]]
            if extra and name not in extra:
                dropped.append(name)
                continue
            raise NetdslError("a %s layer cannot be exported (%s), and %s '%s' needs it"
                              % (lp.type, reason, "--outputs" if name in extra
                                 else "the net's output", name),
                              layer=lp.name, hint=_advice(lp, rule))
        outputs.append(name)
    if not outputs:
        raise NetdslError("the net has no outputs to export (every blob is read by a later "
                          "layer, a loss or a writer)", hint="name the blobs to export with "
                          "--outputs BLOB,...")
    return outputs, dropped


def _needed(layers: List[Any], outputs: Sequence[str]) -> List[int]:
    """Indices of the layers the outputs' final values depend on."""
    want = set(outputs)
    keep: List[int] = []
    for i in range(len(layers) - 1, -1, -1):
        lp = layers[i]
        hit = [t for t in lp.top if t in want]
        if hit:
            keep.append(i)
            for t in lp.top:
                if t not in lp.bottom:
                    want.discard(t)
            want.update(lp.bottom)
    return sorted(keep)


def walk_net(net: Any, inputs: Optional[Mapping[str, Sequence[int]]] = None,
             outputs: Sequence[str] = (), rule: str = "onnx") -> Walk:
    """Walk ``net`` (a NetParameter, NetSpec or path) for an exporter whose
    per-type rule is the LayerType field ``rule``."""
    from ..forward.core import _load_net
    net = _load_net(net)
    layers = _layers(net)
    given = {k: tuple(int(d) for d in v) for k, v in (inputs or {}).items()}
    shapes_in = _input_shapes(net, layers, given)
    outs, dropped = _choose_outputs(layers, shapes_in, list(outputs), rule)
    keep = _needed(layers, outs)
    last: Dict[str, int] = {}
    for i in keep:
        for t in layers[i].top:
            last[t] = i
    shapes: Dict[str, Shape] = {}
    current: Dict[str, str] = {}
    graph_inputs: Dict[str, Shape] = {}
    for name in net.input:
        if name not in shapes_in:
            raise NetdslError("input '%s' has no shape: give --input %s=N,C,H,W" % (name, name))
        graph_inputs[name] = shapes[name] = shapes_in[name]
        current[name] = name
    steps: List[Step] = []
    shapeless: Dict[str, Any] = {}
    for i in keep:
        step = _step(layers[i], i, shapes, current, shapes_in, graph_inputs, last, shapeless)
        if step is not None:
            steps.append(step)
    read = {b for st in steps for b in st.layer.bottom} | set(outs)
    graph_inputs = {k: v for k, v in graph_inputs.items() if k in read}   # labels: unused
    return Walk(net, steps, graph_inputs, outs, shapes, dropped)


def _step(lp: Any, i: int, shapes: Dict[str, Shape], current: Dict[str, str],
          shapes_in: Mapping[str, Shape], graph_inputs: Dict[str, Shape],
          last: Mapping[str, int], shapeless: Dict[str, Any]) -> Optional[Step]:
    if not lp.bottom:
        for t in lp.top:      # an input of the graph: the Input layer's tops, or a data layer's
            if t in shapes_in:
                graph_inputs[t] = shapes[t] = shapes_in[t]
                current[t] = t
            else:
                current.pop(t, None)
                shapeless[t] = lp
        return None
    lt = lookup(lp.type)
    for b in lp.bottom:
        if b in shapeless:
            src = shapeless[b]
            raise NetdslError("layer '%s' (%s) makes the net's input '%s' without a shape: give "
                              "it with --input %s=N,C,H,W" % (src.name, src.type, b, b),
                              layer=src.name)
        if b not in current:
            raise NetdslError("bottom '%s' is not produced by any earlier layer" % b,
                              layer=lp.name)
    bshapes = [shapes[b] for b in lp.bottom]
    try:
        if lt.shape is None:
            raise NetdslError("the type %s has no shape rule" % lp.type)
        geo = lt.parse(lp, bshapes[0] if bshapes else None)
        tshapes = [tuple(int(d) for d in s) for s in lt.top_shapes(lp, bshapes, len(lp.top), geo)]
    except NetdslError as err:
        raise err.located(layer=lp.name)
    bvalues = [current[b] for b in lp.bottom]
    tvalues = []
    for t in lp.top:
        final = last.get(t) == i and t not in graph_inputs
        tvalues.append(t if final else "%s@%s" % (t, lp.name))
    for t, v, s in zip(lp.top, tvalues, tshapes):
        current[t] = v
        shapes[t] = s
    return Step(lp, lt, bshapes, tshapes, geo, bvalues, tvalues)
