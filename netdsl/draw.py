"""Pictures of a net: Graphviz DOT text written by netdsl, laid out by ``dot``.

Layers are nodes (name, type and the parameters that matter, read
generically from the layer's parameter messages), blobs are edges labelled
with their Caffe-exact shapes (:func:`netdsl.shapes.infer_shapes`).  A layer
computed in place on the blob of a single bottom is folded into the node of
the layer that produced that blob.  Crop layers say which blob they crop to
which and at what offset, and whether the coordinate maps agree
(:func:`netdsl.coord_map.offsets_for`).  Layers are grouped into clusters by
the block number in their names (``conv3_1`` -> 3, ``res4b2_branch2a`` -> 4
and 4b2), so deep nets stay readable.

When shapes cannot be inferred (an unknown layer type, a Caffe check that
fails), the picture is still made: the failing layer is red, the layers that
depend on it have no shapes, and the error is written in the legend.

Rendering runs the Graphviz ``dot`` program; DOT text needs nothing.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from google.protobuf.message import Message

from .errors import NetdslError
from .layers.registry import reads_labels

#: output suffix -> ``dot -T`` format (None: the DOT text itself)
FORMATS: Dict[str, Optional[str]] = {".svg": "svg", ".png": "png", ".pdf": "pdf",
                                     ".dot": None, ".gv": None}

#: parameter fields shown on a node when set to a non-default value, in this order
SHOWN_FIELDS = ("num_output", "kernel_size", "kernel_h", "kernel_w", "stride", "stride_h",
                "stride_w", "pad", "pad_h", "pad_w", "dilation", "group", "pool",
                "global_pooling", "operation", "axis", "offset")

#: what an empty or all-default repeated field means (caffe.proto's comments on
#: ConvolutionParameter's pad, stride and dilation and CropParameter's offset)
REPEATED_DEFAULTS = {"pad": 0, "stride": 1, "dilation": 1, "offset": 0}

NO_DOT = ("the Graphviz `dot` program is not installed (or not on PATH), so %s cannot be "
          "rendered; install Graphviz (Debian/Ubuntu: `apt-get install graphviz`, macOS: "
          "`brew install graphviz`), or write DOT text with `-o NAME.dot`")

_MAX_FAILURES = 20     # layers marked as failing before the rest is left unshaped

_STYLE = {             # node kind -> fill colour
    "data": "#d5ecd4",
    "loss": "#f9d3c8",
    "learnable": "#d6e4f5",
    "plain": "#f0f0f0",
    "failed": "#ffd0d0",
    "unknown": "#ffffff",
}


@dataclass
class Drawing:
    """DOT text of a net, and the shape error it shows (None when shapes are complete)."""
    dot: str
    error: Optional[NetdslError] = None
    failed: List[str] = field(default_factory=list)


# -- shapes, as far as they go ---------------------------------------------------------------

@dataclass
class _Item:
    name: str
    type: str
    bottoms: List[str]
    tops: List[str]
    layer: Optional[Message]
    shapes: Any = None            # LayerShapes, or None when unknown
    error: Optional[NetdslError] = None


def _reduced(net: Message, layers: Sequence[Message]) -> Message:
    out = type(net)()
    out.CopyFrom(net)
    del out.layer[:]
    out.layer.extend(layers)
    return out


def _shape_items(net: Message, inputs, phase, declared
                 ) -> Tuple[List[_Item], Optional[NetdslError], Message, Any]:
    """Layers in order with their shapes; on a shape error the failing layer is
    recorded, the layers fed by it are left unshaped and the rest is shaped again."""
    from .netstate import included_layers, make_state
    from .shapes import infer_shapes
    layers = included_layers(net, make_state(net, phase))
    items = [_Item(l.name, l.type, list(l.bottom), list(l.top), l) for l in layers]
    keep = list(range(len(layers)))
    first: Optional[NetdslError] = None
    used = net
    while True:
        used = net if len(keep) == len(layers) else _reduced(net, [layers[i] for i in keep])
        # inputs and declarations for layers left out are dropped with them
        kept = set(keep)
        gone = {x for i, l in enumerate(layers) if i not in kept for x in [l.name, *l.top]}
        gone -= {x for i in keep for x in [layers[i].name, *layers[i].top]}
        try:
            result = infer_shapes(
                used, {k: v for k, v in (inputs or {}).items() if k not in gone}, phase=phase,
                declared={k: v for k, v in (declared or {}).items() if k not in gone})
            break
        except NetdslError as err:
            first = first or err
            hit = [i for i in keep if layers[i].name == err.layer] if err.layer else []
            if not hit:    # not a layer's error: nothing is shaped
                result = None
                break
            bad = hit[0]
            items[bad].error = err
            nfailed = sum(1 for it in items if it.error is not None)
            tainted = set(layers[bad].top)
            rest = []
            for i in keep:
                if i > bad and nfailed < _MAX_FAILURES and not tainted.intersection(
                        layers[i].bottom):
                    rest.append(i)
                elif i > bad:
                    tainted.update(layers[i].top)
            keep = [i for i in keep if i < bad] + rest
    if result is None:
        used = net
        if len(net.input):
            items.insert(0, _Item("input", "Input", [], list(net.input), None))
        return items, first, used, result
    offset = 1 if len(net.input) else 0    # the legacy inputs' pseudo-layer
    for i, ls in zip(keep, result.layers[offset:]):
        items[i].shapes = ls
    if offset:
        ls = result.layers[0]
        items.insert(0, _Item(ls.name, ls.type, [], list(ls.tops), None, ls))
    return items, first, used, result


# -- labels -------------------------------------------------------------------------------

def shape_text(shape: Sequence[int]) -> str:
    """``1×64×698×698`` (``scalar`` for a 0-axis blob)."""
    return "×".join(str(d) for d in shape) if len(shape) else "scalar"


def _html(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _value_text(fd, value) -> str:
    if fd.enum_type is not None:
        ev = fd.enum_type.values_by_number.get(value)
        return ev.name if ev is not None else str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "%g" % value
    return str(value)


def _repeated(fd) -> bool:
    rep = getattr(fd, "is_repeated", None)   # protobuf 5 and later; ``label`` before
    if rep is not None:
        return bool(rep)
    return fd.label == fd.LABEL_REPEATED


def layer_params(layer: Message) -> List[str]:
    """``field value`` items for the :data:`SHOWN_FIELDS` set to a non-default
    value in the parameter messages the layer's type reads (from the schema); a
    repeated field whose values are all its default (:data:`REPEATED_DEFAULTS`)
    is not shown."""
    from .proto import schema_of
    from .schema import param_fields
    out: List[str] = []
    for pname in param_fields(layer.type, schema_of(layer)):
        if not layer.HasField(pname):
            continue
        msg = getattr(layer, pname)
        by_name = msg.DESCRIPTOR.fields_by_name
        for fname in SHOWN_FIELDS:
            fd = by_name.get(fname)
            if fd is None:
                continue
            value = getattr(msg, fname)
            if _repeated(fd):
                if len(value) and any(v != REPEATED_DEFAULTS.get(fname) for v in value):
                    out.append("%s %s" % (fname, ",".join(_value_text(fd, v) for v in value)))
            elif msg.HasField(fname) and value != fd.default_value:
                out.append("%s %s" % (fname, _value_text(fd, value)))
    return out


def _wrap(items: Sequence[str], width: int = 34) -> List[str]:
    lines: List[str] = []
    for it in items:
        if lines and len(lines[-1]) + 3 + len(it) <= width:
            lines[-1] += " · " + it
        else:
            lines.append(it)
    return lines


_BLOCK = re.compile(r"(\d+)([a-z]+\d*)?")


def block_key(name: str) -> Optional[Tuple[str, str]]:
    """(stage, block) from the first number in a layer name: ``conv3_1`` -> ("3", "3"),
    ``res4b22_branch2a`` and ``bn4b22_branch2a`` -> ("4", "4b22")."""
    m = _BLOCK.search(name)
    return (m.group(1), m.group(0)) if m else None


# -- the graph ------------------------------------------------------------------------------

@dataclass
class _Node:
    id: str
    item: _Item
    folded: List[_Item] = field(default_factory=list)
    crop_note: Optional[Tuple[str, bool]] = None


def _kind(item: _Item) -> str:
    if item.error is not None:
        return "failed"
    ls = item.shapes
    if ls is None:
        return "unknown"
    if not item.bottoms:
        return "data"
    if reads_labels(item.type) or any(w for w in ls.loss_weights):
        return "loss"
    if ls.param_count:
        return "learnable"
    return "plain"


def _node_label(node: _Node) -> str:
    """An HTML-like label: name (bold), type, then small lines of parameters,
    crop alignment and the layers folded in."""
    it = node.item
    small: List[str] = []
    if it.layer is not None:
        shown = layer_params(it.layer)
        if node.crop_note is not None:   # the crop note says axis and offset once
            shown = [p for p in shown if p.split(" ", 1)[0] not in ("axis", "offset")]
        small.extend(_html(line) for line in _wrap(shown))
    if node.crop_note is not None:
        text, agrees = node.crop_note
        small.append(text if agrees else '<FONT COLOR="#c00000">%s</FONT>' % text)
    for f in node.folded:
        extra = layer_params(f.layer) if f.layer is not None else []
        small.append(_html("+ %s (%s)%s" % (f.name, f.type,
                                            (" " + " · ".join(extra)) if extra else "")))
    if it.error is not None:
        small.append('<FONT COLOR="#c00000">shape error (see legend)</FONT>')
    elif it.shapes is None:
        small.append('<FONT COLOR="#808080">shapes unknown</FONT>')
    parts = ["<B>%s</B>" % _html(it.name or "(unnamed)"), _html(it.type)]
    parts.extend('<FONT POINT-SIZE="9">%s</FONT>' % s for s in small)
    return "<" + "<BR/>".join(parts) + ">"


def _crop_note(rec, bottoms: Sequence[str]) -> Tuple[str, bool]:
    src, ref = (bottoms + ["?", "?"])[:2]
    given = "axis %d offset %s" % (rec.given_axis, ",".join(str(o) for o in rec.given_offsets)
                                   or "0")
    head = "crops %s to %s: %s" % (_html(src), _html(ref), given)
    if rec.error is not None:
        return head + " (maps: %s)" % _html(rec.error), False
    if rec.matches:
        return head + " (coordinate maps agree)", True
    return head + " (coordinate maps give axis %d offset %s)" % (
        rec.axis, ",".join(str(o) for o in rec.offsets)), False


def net_dot(net: Message, inputs: Optional[Mapping[str, Sequence[int]]] = None, *,
            phase=None, declared: Optional[Mapping[str, Any]] = None,
            rankdir: str = "TB", title: Optional[str] = None) -> Drawing:
    """The DOT text of ``net`` with its shapes (``inputs``, ``phase`` and
    ``declared`` as for :func:`netdsl.shapes.infer_shapes`); ``title`` heads
    the legend (default: the net's name)."""
    if rankdir not in ("TB", "LR", "BT", "RL"):
        raise NetdslError("rankdir must be TB or LR (or BT, RL), not %r" % rankdir,
                          field="rankdir")
    items, error, used, result = _shape_items(net, inputs, phase, declared)
    crops: Dict[str, Any] = {}
    if result is not None:
        from .coord_walk import offsets_for
        try:
            crops = offsets_for(used, shapes=result, phase=phase)
        except NetdslError:
            crops = {}

    nodes: List[_Node] = []
    producer: Dict[str, Tuple[_Node, int]] = {}   # blob -> (node, version)
    shape: Dict[str, Optional[Tuple[int, ...]]] = {}
    consumed: set = set()
    edges: List[Tuple[str, str, str, Dict[str, str]]] = []
    version = 0

    def blob_label(b: str) -> str:
        s = shape.get(b)
        return "%s\n%s" % (b, shape_text(s) if s is not None else "?")

    for it in items:
        top_shapes = list(it.shapes.top_shapes) if it.shapes is not None else []
        fold = (it.error is None and len(it.bottoms) == 1 and len(it.tops) == 1
                and it.tops[0] == it.bottoms[0] and it.bottoms[0] in producer)
        if fold:
            producer[it.bottoms[0]][0].folded.append(it)
            if top_shapes:
                shape[it.tops[0]] = top_shapes[0]
            continue
        node = _Node("L%d" % len(nodes), it)
        nodes.append(node)
        rec = crops.get(it.name) if it.type == "Crop" else None
        if rec is not None:
            node.crop_note = _crop_note(rec, it.bottoms)
        for bi, b in enumerate(it.bottoms):
            if b not in producer:
                continue
            src, ver = producer[b]
            consumed.add((b, ver))
            attrs: Dict[str, str] = {}
            label = blob_label(b)
            if it.type == "Crop" and bi == 1:
                label += "\n(crop reference)"
                attrs.update(style="dashed", color="#3060a0", fontcolor="#3060a0")
            edges.append((src.id, node.id, label, attrs))
        for ti, t in enumerate(it.tops):
            version += 1
            producer[t] = (node, version)
            shape[t] = top_shapes[ti] if ti < len(top_shapes) else None

    outputs = [(b, n, v) for b, (n, v) in producer.items() if (b, v) not in consumed]

    title = title or net.name or "net"
    lines = ["digraph %s {" % _quoted(title),
             "  rankdir=%s;" % rankdir,
             "  newrank=true; nodesep=0.25; ranksep=0.3;",
             '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=11, '
             'margin="0.12,0.04", penwidth=0.8];',
             '  edge [fontname="Helvetica", fontsize=8, color="#505050", arrowsize=0.6];']
    lines.extend(_legend(title, items, error))
    node_lines: Dict[str, str] = {}
    for node in nodes:
        kind = _kind(node.item)
        attrs = 'label=%s, fillcolor="%s"' % (_node_label(node), _STYLE[kind])
        if kind == "failed":
            attrs += ', color="#d00000", penwidth=2.5'
        elif kind == "unknown":
            attrs += ', style="rounded,dashed", color="#909090"'
        elif kind == "data":
            attrs += ', shape=cylinder, style="filled"'
        elif kind == "loss":
            attrs += ', shape=octagon, style="filled"'
        node_lines[node.id] = "%s [%s];" % (node.id, attrs)
    lines.extend(_clusters(nodes, node_lines))
    for n, (b, src, _) in enumerate(outputs):
        oid = "O%d" % n
        lines.append('  %s [shape=point, width=0.06, color="#505050"];' % oid)
        edges.append((src.id, oid, blob_label(b), {}))
    for src, dst, label, attrs in edges:
        extra = "".join(", %s=%s" % (k, _quoted(v)) for k, v in attrs.items())
        lines.append("  %s -> %s [label=%s%s];" % (src, dst, _quoted(label), extra))
    lines.append("}")
    failed = [it.name for it in items if it.error is not None]
    return Drawing("\n".join(lines) + "\n", error, failed)


def _clusters(nodes: List[_Node], node_lines: Dict[str, str]) -> List[str]:
    """Node statements; the first run of consecutive nodes of one stage is a
    cluster, with its blocks (``4b1``, ``4b2``, ...) as inner clusters."""
    out: List[str] = []
    keys = [block_key(n.item.name) if n.item.bottoms and n.item.error is None else None
            for n in nodes]
    i = 0
    count = 0
    seen: set = set()
    while i < len(nodes):
        stage = keys[i][0] if keys[i] else None
        j = i
        while j < len(nodes) and stage is not None and keys[j] and keys[j][0] == stage:
            j += 1
        # only a stage's first run of two or more nodes is a cluster: a later layer
        # that merely names the stage (FCN's score_pool4) is not part of the block
        if stage is None or j - i < 2 or stage in seen:
            out.append("  " + node_lines[nodes[i].id])
            i += 1
            continue
        seen.add(stage)
        count += 1
        out.append("  subgraph cluster_%d {" % count)
        out.append('    label=%s; labeljust=l; fontname="Helvetica"; fontsize=10; '
                   'style="rounded"; color="#b0b0b0"; fontcolor="#707070";'
                   % _quoted("block %s" % stage))
        blocks = {keys[k][1] for k in range(i, j)}
        k = i
        while k < j:
            m = k
            while m < j and keys[m][1] == keys[k][1]:
                m += 1
            if len(blocks) > 1 and m - k >= 2:
                count += 1
                out.append("    subgraph cluster_%d {" % count)
                out.append('      label=%s; labeljust=l; fontname="Helvetica"; fontsize=9; '
                           'style="rounded,dashed"; color="#c8c8c8"; fontcolor="#909090";'
                           % _quoted(keys[k][1]))
                out.extend("      " + node_lines[nodes[x].id] for x in range(k, m))
                out.append("    }")
            else:
                out.extend("    " + node_lines[nodes[x].id] for x in range(k, m))
            k = m
        out.append("  }")
        i = j
    return out


def _legend(title: str, items: List[_Item], error: Optional[NetdslError]) -> List[str]:
    rows = ['<TR><TD COLSPAN="4"><B>%s</B> · %d layers</TD></TR>' % (_html(title), len(items))]
    keys = [("data", "data"), ("learnable", "learnable"), ("plain", "other"), ("loss", "loss")]
    rows.append("<TR>%s</TR>" % "".join(
        '<TD BGCOLOR="%s"><FONT POINT-SIZE="9">%s</FONT></TD>' % (_STYLE[k], t)
        for k, t in keys))
    errors = [it for it in items if it.error is not None]
    if error is not None and not errors:
        text = '<BR ALIGN="LEFT"/>'.join(_html(c) for c in _chunks("error: " + str(error), 90))
        rows.append('<TR><TD COLSPAN="4" BGCOLOR="%s" ALIGN="LEFT"><FONT COLOR="#c00000" '
                    'POINT-SIZE="9">%s<BR ALIGN="LEFT"/></FONT></TD></TR>'
                    % (_STYLE["failed"], text))
    for it in errors:
        text = '<BR ALIGN="LEFT"/>'.join(_html(c) for c in _chunks("error: " + str(it.error), 90))
        rows.append('<TR><TD COLSPAN="4" BGCOLOR="%s" ALIGN="LEFT"><FONT COLOR="#c00000" '
                    'POINT-SIZE="9">%s<BR ALIGN="LEFT"/></FONT></TD></TR>'
                    % (_STYLE["failed"], text))
    return ['  legend [shape=plain, style="", label=<<TABLE BORDER="0" CELLBORDER="1" '
            'CELLSPACING="0" CELLPADDING="3">%s</TABLE>>];' % "".join(rows)]


def _chunks(text: str, width: int) -> List[str]:
    words = text.split(" ")
    out = [""]
    for w in words:
        if out[-1] and len(out[-1]) + 1 + len(w) > width:
            out.append(w)
        else:
            out[-1] = (out[-1] + " " + w) if out[-1] else w
    return out


# -- rendering -------------------------------------------------------------------------------

def output_format(path: str) -> Optional[str]:
    """The ``dot -T`` format for an output path's suffix (None for DOT text)."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in FORMATS:
        raise NetdslError("cannot tell the picture format from %r: use a name ending in %s"
                          % (path, ", ".join(FORMATS)), file=path)
    return FORMATS[suffix]


def render(dot_text: str, fmt: str, what: str = "the picture") -> bytes:
    """Run Graphviz ``dot -T<fmt>`` on DOT text; the rendered bytes."""
    exe = shutil.which("dot")
    if exe is None:
        raise NetdslError(NO_DOT % what)
    try:
        proc = subprocess.run([exe, "-T" + fmt], input=dot_text.encode("utf-8"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        raise NetdslError("cannot run %s: %s" % (exe, exc.strerror or exc))
    if proc.returncode != 0:
        msg = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise NetdslError("Graphviz dot failed (status %d): %s"
                          % (proc.returncode, msg[0] if msg else "no message"))
    return proc.stdout


def draw(net: Message, path: str, inputs: Optional[Mapping[str, Sequence[int]]] = None, *,
         phase=None, declared: Optional[Mapping[str, Any]] = None,
         rankdir: str = "TB", title: Optional[str] = None) -> Drawing:
    """Write a picture of ``net`` to ``path`` (.svg, .png, .pdf, or .dot/.gv for
    DOT text) atomically.  A shape error does not stop it: the returned
    :class:`Drawing` carries it, and the picture shows it."""
    from .fileio import atomic_write
    fmt = output_format(path)
    drawing = net_dot(net, inputs, phase=phase, declared=declared, rankdir=rankdir, title=title)
    data = drawing.dot.encode("utf-8") if fmt is None else render(drawing.dot, fmt, path)
    atomic_write(path, data)
    return drawing
