"""The emit step both front ends end with: the layers each converted node made
are claimed for it (:class:`Emitter`), the net's inputs and outputs are given
their blobs, and the finished walk becomes a NetParameter (layers in dependency
order, tops no layer reads given to one Silence, OpenCV's fusing quirks kept
apart for ``target='opencv'``) with its weights, saved with its parity report
(:class:`Conversion`)."""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from netdsl.convert.graph import OPENCV_LAYERS, Blob, Context, Names, claim_layers
from netdsl.errors import NetdslError
from netdsl.netspec import Function, Top, current_schema

__all__ = ["Conversion", "Emitter", "finish_net"]


class Conversion:
    """The result of a conversion (either front end): ``net`` (NetParameter),
    ``weights`` (layer name -> arrays), ``parity`` (a
    :class:`~netdsl.convert.parity.ParityReport` or None with ``check=False``),
    input/output names and shapes, ``timings``."""

    def __init__(self, net: Any, weights: Dict[str, List[np.ndarray]], inputs: Dict[str, Tuple],
                 outputs: List[str], blob_of_node: Dict[str, Tuple[str, Any]],
                 program: Any) -> None:
        self.net = net
        self.weights = weights
        self.inputs = inputs
        self.outputs = outputs
        self.blob_of_node = blob_of_node
        self.program = program
        self.parity = None
        self.timings: Dict[str, float] = {}
        #: with ``outputs=``: the graph node (ONNX value) names the net ends at
        self.cut: Optional[List[str]] = None

    @property
    def ok(self) -> bool:
        """True when parity holds (or was not checked)."""
        return self.parity is None or self.parity.ok

    def prototxt(self) -> str:
        from netdsl.prototxt import to_text
        return to_text(self.net)

    def save(self, directory: str) -> List[str]:
        """Write ``deploy.prototxt``, ``model.caffemodel`` and ``parity.json`` into
        ``directory``, each atomically; returns the paths."""
        from netdsl.fileio import atomic_write
        from netdsl.weights import write_caffemodel
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            raise NetdslError("cannot create the output directory: %s"
                              % (exc.strerror or exc), file=directory) from None
        proto = os.path.join(directory, "deploy.prototxt")
        model = os.path.join(directory, "model.caffemodel")
        report = os.path.join(directory, "parity.json")
        atomic_write(proto, self.prototxt())
        write_caffemodel(model, self.weights, types=self.net)
        data = self.parity.to_json() if self.parity is not None else {"checked": False}
        atomic_write(report, json.dumps(data, indent=1) + "\n")
        return [proto, model, report]


class Emitter:
    """The layers of a conversion as its walk makes them: ``topname`` (result
    tops -> blob names), ``owner`` (layer -> the node, i.e. layer name, it
    belongs to), ``order`` (layers in the order they were claimed),
    ``blob_of_node`` (graph value -> (blob, node), for the parity report),
    ``inputs`` (input blob -> shape) and ``blocked`` (the blockers met)."""

    def __init__(self, cx: Context, reserved: Sequence[str]) -> None:
        self.cx = cx
        self.names = Names(list(reserved))
        self.topname: Dict[Top, str] = {}
        self.owner: Dict[Function, str] = {}
        self.order: List[Function] = []
        self.blob_of_node: Dict[str, Tuple[str, Any]] = {}
        self.inputs: Dict[str, Tuple] = {}
        self.blocked: List[Any] = []

    def record(self, result: Any, lname: str) -> None:
        """Claim the layers ``result`` (Blobs) needs that no node owns yet for ``lname``."""
        claim_layers(result, lname, self.owner, self.order)

    def add_input(self, iname: str, shape: Sequence[int]) -> Blob:
        """An Input layer of ``shape`` whose top is the net input ``iname``."""
        top = self.cx.L.Input(shape={"dim": list(shape)})
        self.topname[top] = iname
        blob = Blob(top, shape)
        self.record(blob, iname)
        self.inputs[iname] = tuple(shape)
        return blob

    def output_top(self, v: Blob, oname: str) -> Top:
        """The top of output ``oname``: ``v``'s own when its layer has that one
        top under that name, else a one-top Split of it (a multi-top layer's part,
        an input, or a blob named else)."""
        if self.topname.get(v.top) != oname or (v.top.fn.ntop > 1
                                                or v.top.fn.type_name == "Input"):
            if self.topname.get(v.top) == oname:  # a multi-top layer's part
                self.topname[v.top] = self.names.unique(oname + "/part")
            top = self.cx.L.Split(v.top)
            self.topname[top] = oname
            self.record(Blob(top, v.shape), oname)
            return top
        return v.top

    def finish(self, final: List[Top], net_name: Optional[str]
               ) -> Tuple[Any, Dict[str, List[np.ndarray]]]:
        """The NetParameter and weights of the walk, ending at ``final``."""
        return finish_net(self, final, self.cx, net_name)


def finish_net(walk: Any, final: List[Top], cx: Context, net_name: Optional[str]
               ) -> Tuple[Any, Dict[str, List[np.ndarray]]]:
    """The NetParameter and weights of a finished walk (an :class:`Emitter`) ending
    at ``final``: emitted in order, kept apart where OpenCV fuses wrongly, checked
    against OpenCV's importer for ``target='opencv'``."""
    net = _emit(walk.order, walk.owner, walk.topname, final, cx, net_name)
    _keep_apart_for_opencv(net)
    if cx.target == "opencv":
        for lp in net.layer:
            if lp.type not in OPENCV_LAYERS:
                raise NetdslError("layer type %s is not run by OpenCV dnn's Caffe importer "
                                  "(target='opencv')" % lp.type, layer=lp.name)
    weights = _complete_weights(net, cx.weights, walk.inputs)
    if cx.target == "opencv":
        _crop_depthwise_for_opencv(net, weights)
    return net, weights




def _emit(order: List[Function], owner: Dict[Function, str], topname: Dict[Top, str],
          final: List[Top], cx: Context, net_name: Optional[str]) -> Any:
    """The NetParameter of the layers needed for ``final``, in dependency order."""
    needed = set()
    stack = [t.fn for t in final]
    while stack:
        fn = stack.pop()
        if fn in needed:
            continue
        needed.add(fn)
        stack.extend(i.fn for i in fn.inputs)
    pb2 = current_schema()
    net = pb2.NetParameter()
    if net_name:
        net.name = net_name
    given = set()
    for fn in order:
        g = fn.params.get("name")
        if g and fn in needed:
            if g in given:
                raise NetdslError("two layers named %s" % g)
            given.add(g)
    used_layers = set(given)
    used_blobs = set(topname.values())
    counters: Dict[Tuple[str, str], int] = {}

    def auto(base: str, used: set) -> str:
        k = counters.get((base, ""), 0)
        while True:
            k += 1
            name = "%s%d" % (base, k)
            if name not in used:
                counters[(base, "")] = k
                used.add(name)
                return name

    names_of: Dict[Function, List[str]] = {}
    for fn in order:
        if fn not in needed:
            continue
        own = owner[fn]
        g = fn.params.get("name")
        first = topname.get(fn.tops[0]) if fn.ntop else None
        if g:
            lname = g
        elif first is not None and first not in used_layers and fn.ntop == 1:
            lname = first
            used_layers.add(first)
        else:
            lname = auto("%s/%s" % (own, fn.type_name.lower()), used_layers)
        tops = []
        for i, t in enumerate(fn.tops):
            tn = topname.get(t)
            if tn is None:
                base = lname if fn.ntop == 1 else "%s_%d" % (lname, i)
                tn = base if base not in used_blobs else auto(
                    "%s/%s" % (base, fn.type_name.lower()), used_blobs)
                used_blobs.add(tn)
                topname[t] = tn
            tops.append(tn)
        names_of[fn] = tops
        lp = net.layer.add()
        lp.CopyFrom(fn.to_layer(pb2))
        lp.name = lname
        for i in fn.inputs:
            lp.bottom.append(names_of[i.fn][i.n])
        for tn in tops:
            lp.top.append(tn)
    _silence_unused(net, [names_of[t.fn][t.n] for t in final], used_layers)
    return net


def _silence_unused(net: Any, outputs: Sequence[str], used_layers: set) -> None:
    """Give the tops no later layer reads (a Slice's cut-off remainder) to one
    Silence layer at the end, so the net's outputs are exactly ``outputs``: Caffe's
    Net::Init (net.cpp) makes every top that no later layer consumes a net output,
    and Caffe's own nets silence the rest the same way."""
    unread: Dict[str, None] = {}
    for lp in net.layer:
        for b in lp.bottom:
            unread.pop(b, None)
        for t in lp.top:
            unread[t] = None
    extra = [t for t in unread if t not in set(outputs)]
    if not extra:
        return
    name = "silence"
    while name in used_layers:
        name += "_"
    lp = net.layer.add()
    lp.name, lp.type = name, "Silence"
    lp.bottom.extend(extra)


def _fused_wrongly_by_opencv(producer: Any, consumer: Any) -> bool:
    """Layer pairs OpenCV dnn 4.x fuses with the wrong meaning (each measured):
    a Power with ``power != 1`` read by a Power with ``power == 1`` (fused as if
    the first were a plain scale/shift: ``1/x`` then ``* 3`` gave ``1/(3x)``), and
    a Convolution, Deconvolution or InnerProduct read by a one-bottom Scale that
    is not one value per channel (fused as per-channel weights: a (1, 1, H, W)
    factor after a 4-channel conv on a 2x2 map gave 0.5 relative error, a
    (1, C, H, W) one an assertion)."""
    if producer.type == "Power" and consumer.type == "Power":
        return producer.power_param.power != 1.0 and consumer.power_param.power == 1.0
    if producer.type in ("Convolution", "Deconvolution", "InnerProduct") \
            and consumer.type == "Scale" and len(consumer.bottom) == 1:
        sp = consumer.scale_param
        return not (sp.axis == 1 and sp.num_axes == 1)
    return False


def _crop_depthwise_for_opencv(net: Any, weights: Dict[str, List[np.ndarray]]) -> None:
    """OpenCV dnn 4.x computes a depthwise (group = channels) Convolution wrongly on
    a map one pixel high or wide (measured: 3x3, pad 1 on 1x1 maps, as MobileNet's
    last stages at small inputs and SSDlite's last head have; garbage values).
    Where the output is one pixel on that axis too, only the kernel tap at index
    ``pad`` ever meets the input, the others multiplying padding zeros: the kernel
    is cut to that tap (kernel 1, pad 0 on the axis), the same values in Caffe.
    Done for ``target="opencv"`` only: the cut kernel is right for this input size."""
    from netdsl.layers.conv import conv_geometry
    from netdsl.shapes import infer_shapes
    shapes = infer_shapes(net)
    for ls in shapes.layers:
        lp = ls.layer
        if lp is None or lp.type != "Convolution" or not ls.bottom_shapes:
            continue
        x, y = ls.bottom_shapes[0], ls.top_shapes[0]
        cp = lp.convolution_param
        if len(x) != 4 or cp.group != x[1] or cp.group == 1 or lp.name not in weights:
            continue
        g = conv_geometry(lp, tuple(x))
        cut = [ax for ax in (0, 1) if x[2 + ax] == 1 and y[2 + ax] == 1 and g.kernel[ax] > 1
               and g.dilation[ax] == 1 and g.pad[ax] < g.kernel[ax]]
        if not cut:
            continue
        w = weights[lp.name][0]
        kernel, pad = list(g.kernel), list(g.pad)
        for ax in cut:
            w = np.take(w, [pad[ax]], axis=2 + ax)
            kernel[ax], pad[ax] = 1, 0
        weights[lp.name][0] = np.ascontiguousarray(w, np.float32)
        for f in ("kernel_size", "pad", "stride"):
            cp.ClearField(f)
        cp.kernel_h, cp.kernel_w = kernel
        cp.pad_h, cp.pad_w = pad
        cp.stride_h, cp.stride_w = g.stride


def _keep_apart_for_opencv(net: Any) -> None:
    """Put a one-top Split (a copy in Caffe) in front of the reader of each layer
    pair OpenCV dnn fuses wrongly (:func:`_fused_wrongly_by_opencv`), so it runs
    them apart; the reader copies the blob's value at that point of the net."""
    layers = list(net.layer)
    writer: Dict[str, Any] = {}
    taken = {t for lp in layers for t in lp.top} | {lp.name for lp in layers}
    rebuilt = []
    changed = False

    def fused_into(lp: Any) -> Any:
        # OpenCV keeps fusing BatchNorm and per-channel Scale layers into the
        # Convolution before them, so a Scale after such a chain meets it too
        src = writer.get(lp.bottom[0]) if lp.bottom else None
        while lp.type == "Scale" and src is not None and (
                src.type == "BatchNorm" or (src.type == "Scale" and len(src.bottom) == 1
                                            and src.scale_param.axis == 1
                                            and src.scale_param.num_axes == 1)):
            src = writer.get(src.bottom[0])
        return src

    for lp in layers:
        src = fused_into(lp)
        if src is not None and _fused_wrongly_by_opencv(src, lp):
            name = lp.bottom[0] + "/copy"
            while name in taken:
                name += "_"
            taken.add(name)
            split = type(lp)()
            split.name, split.type = name, "Split"
            split.bottom.append(lp.bottom[0])
            split.top.append(name)
            rebuilt.append(split)
            lp.bottom[0] = name
            changed = True
        rebuilt.append(lp)
        for t in lp.top:
            writer[t] = lp
    if not changed:
        return
    copies = [type(lp)() for lp in rebuilt]
    for dst, src in zip(copies, rebuilt):
        dst.CopyFrom(src)
    del net.layer[:]
    net.layer.extend(copies)


def _complete_weights(net: Any, weights: Dict[str, List[np.ndarray]],
                      inputs: Dict[str, Tuple]) -> Dict[str, List[np.ndarray]]:
    """The converters' weights, plus the fixed kernels of layers whose blobs come
    from a constant or bilinear filler (OpenCV reads every blob from the
    caffemodel); only layers of the net, in its order."""
    from netdsl.weights import fill
    need = []
    for lp in net.layer:
        if lp.name in weights or lp.type not in ("Convolution", "Deconvolution", "InnerProduct"):
            continue
        need.append(lp)
    shapes = None
    if need:
        from netdsl.shapes import infer_shapes
        shapes = infer_shapes(net, {k: list(v) for k, v in inputs.items()}).blobs
    out: Dict[str, List[np.ndarray]] = {}
    needset = {lp.name for lp in need}
    for lp in net.layer:
        if lp.name in weights:
            out[lp.name] = weights[lp.name]
        elif lp.name in needset:
            p = lp.convolution_param if lp.type != "InnerProduct" else lp.inner_product_param
            if p.weight_filler.type not in ("constant", "bilinear"):
                raise NetdslError("no weights for layer %s" % lp.name, layer=lp.name)
            x = shapes[lp.bottom[0]]
            nout = int(p.num_output)
            if lp.type == "InnerProduct":
                wshape = (nout, int(np.prod(x[p.axis:])))
            else:
                k = (p.kernel_h, p.kernel_w) if p.kernel_h else (p.kernel_size[0],) * 2
                g = max(1, int(p.group))
                wshape = ((nout, x[1] // g) if lp.type == "Convolution"
                          else (x[1], nout // g)) + tuple(k)
            blobs = [fill(p.weight_filler, wshape)]
            if p.bias_term:
                blobs.append(fill(p.bias_filler, (nout,)))
            out[lp.name] = blobs
    return out
