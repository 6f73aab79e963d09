"""A spec's layers, expanded for one phase: blocks, repeats, includes, ops, phases.

:func:`expand` walks a loaded :class:`~netdsl.spec.document.Spec`'s ``layers``
for one phase and returns the flat list of :class:`~netdsl.ops.base.Record`
that :mod:`netdsl.spec.compile` turns into NetSpec builder calls.  Expansion
runs on an explicit stack (no recursion per layer or per nesting level), keeps
every YAML node for error locations, and evaluates ``${...}`` references
(:mod:`netdsl.spec.interpolate`) as it goes.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ..errors import NetdslError, did_you_mean
from ..ops import OPS, OpCall, Record
from .phases import keeps as keeps_phase
from .document import (ITEM_WORDS, LIBRARY_KEYS, Block, Spec, builder_schema as _pb2,
                       load_blocks as _load_blocks)
from .interpolate import Unresolved, value
from .load import (MappingNode, Node, ScalarNode, SequenceNode, check_keys as _check_keys,
                   display_path as _display, front_matter, is_template, load_file,
                   chain_error, located_error as _err, node_caret,
                   mapping_items as _mapping, pairs, plain, resolve_include, scalar,
                   sequence_items as _sequence)

__all__ = ["Expander", "expand"]

LAYER_KEYS = ("type", "name", "top", "bottom", "in_place", "ntop", "phases", "per_phase", "when")
REPEAT_KEYS = ("repeat", "as", "index", "layers", "phases", "when")
INCLUDE_KEYS = ("include", "with", "phases", "bottom", "when")


# -- helpers ---------------------------------------------------------------------------

def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and scalar(node) is None


#: the name a block body reads its incoming blob by: ``${bottom}``
BOTTOM_VAR = "bottom"


# -- expansion -------------------------------------------------------------------------

class _Frame:
    __slots__ = ("items", "i", "scope", "trace", "files", "chain", "blocks", "phases", "iters")

    def __init__(self, items, scope, trace, files, chain, blocks, phases, iters=None) -> None:
        self.items = items
        self.i = 0 if iters is None else len(items)
        self.scope = scope
        self.trace = trace
        self.files = files
        self.chain = chain
        self.blocks = blocks
        self.phases = phases
        self.iters = iters


class Expander:
    """Expands a spec's layers for one phase into records."""

    def __init__(self, spec: Spec, phase: str) -> None:
        from .. import schema
        self.spec = spec
        self.phase = phase
        self.types = set(schema.layer_types(_pb2())) | set(spec.custom_types)
        self.records: List[Record] = []
        self.pending_bottom: Optional[List[str]] = None
        # the blob the next layer reads by default (a block body's ${bottom}), and the
        # blob each in-place layer's name stands for
        self.last_blob: Any = None
        self.aliases: Dict[str, str] = {}
        self._file_cache: Dict[str, Any] = {}

    def run(self) -> List[Record]:
        spec = self.spec
        if spec.layers is None:
            return []
        stack = [_Frame(spec.layers.value, spec.scope(self.phase), (),
                        (os.path.abspath(spec.path),), (), spec.blocks, None)]
        while stack:
            fr = stack[-1]
            if fr.i >= len(fr.items):
                if fr.iters is not None:
                    nxt = next(fr.iters, None)
                    if nxt is not None:
                        fr.scope = nxt
                        fr.i = 0
                        continue
                stack.pop()
                continue
            node = fr.items[fr.i]
            fr.i += 1
            pushed = self._item(node, fr)
            if pushed is not None:
                stack.append(pushed)
        return self.records

    # one item ---------------------------------------------------------------------
    def _item(self, node: Node, fr: _Frame) -> Optional[_Frame]:
        if not isinstance(node, MappingNode):
            shown = repr(plain(node)) if isinstance(node, ScalarNode) else "a list"
            raise _err(node, "a layer is a mapping like `- Convolution: conv1` followed by its "
                             "fields, got %s" % shown, trace=fr.trace,
                       hint="indent the layer's fields under it")
        ps = pairs(node)
        if not ps:
            raise _err(node, "empty layer item", trace=fr.trace)
        head, hknode, hvnode = ps[0]
        explicit = fr.phases
        for k, kn, vn in ps:
            if k == "phases":
                mine = self._phase_list(vn, fr)
                explicit = mine if explicit is None else [p for p in explicit if p in mine]
                if self.phase not in mine:
                    return None
                break
        if explicit is not None and self.phase not in explicit:
            return None
        for k, kn, vn in ps:
            if k == "when":
                cond = value(vn, fr.scope)
                if not isinstance(cond, bool):
                    raise _err(vn, "`when` takes true or false (e.g. `when: ${x > 0}`), got %r"
                               % (cond,), trace=fr.trace, field="when")
                if not cond:
                    return None
                break
        if head == "repeat":
            return self._repeat(node, ps, fr, explicit)
        if head == "include":
            return self._include(node, ps, fr, explicit)
        if head in fr.blocks:
            return self._block(node, ps, fr, explicit)
        if head in OPS:
            self._op(node, ps, fr, explicit)
            return None
        if head == "type" or head in self.types:
            self._layer(node, ps, fr, explicit)
            return None
        if head[:1].isupper():
            raise _err(hknode, "unknown layer type `%s`" % head, trace=fr.trace, field="type",
                       hint=did_you_mean(head, self.types) or
                       "list it under `custom_types:` if your Caffe has it")
        if any(k == "type" for k, _, _ in ps):
            self._layer(node, ps, fr, explicit)
            return None
        cands = list(fr.blocks) + list(OPS) + list(ITEM_WORDS) + sorted(self.types)
        raise _err(hknode, "`%s` is not a layer type, block or op" % head, trace=fr.trace,
                   hint=did_you_mean(head, cands) or
                   ("blocks: %s" % ", ".join(fr.blocks) if fr.blocks else
                    "a layer starts with its type, e.g. `- Convolution: conv1`"))

    def _phase_list(self, node: Node, fr: _Frame) -> List[str]:
        v = value(node, fr.scope)
        items = v if isinstance(v, list) else [v]
        for p in items:
            if p not in self.spec.phases:
                raise _err(node, "unknown phase %r" % (p,), trace=fr.trace, field="phases",
                           hint=did_you_mean(str(p), self.spec.phases) or
                           "phases: %s" % ", ".join(self.spec.phases))
        return list(items)

    def _layer(self, node: MappingNode, ps, fr: _Frame, explicit) -> None:
        """One layer item: its type, kept or not in this phase, its keys, its top
        (after the type's key) and name, as a Record."""
        head, _, hvnode = ps[0]
        items = {k: (kn, vn) for k, kn, vn in ps}
        if "per_phase" in items:
            items = self._overlay(items, fr)
        type_name, head_value = self._layer_type(head, hvnode, items, fr)
        if not keeps_phase(type_name, self.phase, explicit):
            return
        lf = self._layer_keys(items, fr)
        if head_value is not None:
            self._head_top(lf, type_name, head_value, hvnode, fr.trace)
        elif lf["in_place"] and lf["tops"] is not None:
            raise _err(lf["fields"]["top"], "an in-place layer's tops are its bottoms; drop "
                       "`top`", trace=fr.trace, field="top")
        bottoms = lf["bottoms"]
        if bottoms is None and self.pending_bottom is not None:
            bottoms = self.pending_bottom
        self.pending_bottom = None
        rec = Record(type_name, name=lf["name"], tops=lf["tops"], bottoms=bottoms,
                     in_place=lf["in_place"], ntop=lf["ntop"], params=lf["params"], node=node,
                     trace=fr.trace, field_nodes=lf["fields"])
        self._append(rec)

    def _layer_type(self, head: str, hvnode: Node, items: Dict[str, Any], fr: _Frame):
        """(type name, the value after the type's key or None): ``- Type: top`` or
        ``type: Type`` (first or further down); the type's key leaves ``items``."""
        scope, trace = fr.scope, fr.trace
        if head == "type":
            tnode = items["type"][1]
            type_name = value(tnode, scope)
            if not isinstance(type_name, str) or not type_name:
                raise _err(tnode, "`type` is a layer type name, got %r" % (type_name,),
                           trace=trace, field="type")
            if type_name not in self.types:
                raise _err(tnode, "unknown layer type `%s`" % type_name, trace=trace,
                           field="type", hint=did_you_mean(type_name, self.types) or
                           "list it under `custom_types:` if your Caffe has it")
            return type_name, None
        if head in self.types:
            del items[head]
            return head, value(hvnode, scope)
        tnode = items["type"][1]   # `type` given further down
        type_name = value(tnode, scope)
        if type_name not in self.types:
            raise _err(tnode, "unknown layer type `%s`" % (type_name,), trace=trace,
                       field="type", hint=did_you_mean(str(type_name), self.types))
        return type_name, None

    def _layer_keys(self, items: Dict[str, Any], fr: _Frame) -> Dict[str, Any]:
        """The layer keys (top, bottom, name, in_place, ntop) and the parameters of an
        item, each checked, with the node of each key."""
        scope, trace = fr.scope, fr.trace
        lf: Dict[str, Any] = {"tops": None, "name": None, "bottoms": None, "in_place": False,
                              "ntop": None, "params": {}, "fields": {}}
        for key, (kn, vn) in items.items():
            if key == "type" or key == "phases" or key == "when":
                continue
            lf["fields"][key] = vn
            if key == "top":
                lf["tops"] = self._names(vn, scope, "top", trace)
            elif key == "bottom":
                lf["bottoms"] = self._names(vn, scope, "bottom", trace)
            elif key == "name":
                name = lf["name"] = value(vn, scope)
                if not isinstance(name, str) or not name:
                    raise _err(vn, "`name` is a string, got %r" % (name,), trace=trace,
                               field="name")
            elif key == "in_place":
                in_place = lf["in_place"] = value(vn, scope)
                if not isinstance(in_place, bool):
                    raise _err(vn, "`in_place` is true or false, got %r" % (in_place,),
                               trace=trace, field="in_place")
            elif key == "ntop":
                ntop = lf["ntop"] = value(vn, scope)
                if isinstance(ntop, bool) or not isinstance(ntop, int) or ntop < 0:
                    raise _err(vn, "`ntop` is a whole number, got %r" % (ntop,), trace=trace,
                               field="ntop")
            else:
                lf["params"][key] = self._param(key, kn, vn, fr)
        return lf

    def _param(self, key: str, kn: Node, vn: Node, fr: _Frame) -> Any:
        """A parameter's value; an empty one (its fields not indented under it) and
        Caffe's ``phase`` written for a spec's ``phases`` are errors."""
        trace = fr.trace
        if isinstance(vn, ScalarNode) and vn.value == "" and not vn.style:
            raise _err(kn, "`%s:` has no value; if the lines below it are its "
                       "fields, indent them under it by two more spaces" % key,
                       trace=trace, field=key, detail=node_caret(kn) or None)
        v = value(vn, fr.scope)
        if key == "phase" and isinstance(v, (str, list)) and all(
                p in self.spec.phases for p in (v if isinstance(v, list) else [v])):
            raise _err(kn, "`phase` is Caffe's TRAIN/TEST field of the layer",
                       trace=trace, field="phase",
                       hint="to keep this layer in some nets only, write `phases: %s`"
                       % (v if isinstance(v, str) else "[%s]" % ", ".join(v)))
        return v

    def _head_top(self, lf: Dict[str, Any], type_name: str, head_value: Any, hvnode: Node,
                  trace) -> None:
        """The value after ``- Type:``: the top(s), or an in-place layer's name."""
        if isinstance(head_value, list):
            for t in head_value:
                if not isinstance(t, str) or not t:
                    raise _err(hvnode, "tops are blob names, got %r" % (t,), trace=trace)
            hv = list(head_value)
        elif isinstance(head_value, str) and head_value:
            hv = [head_value]
        else:
            raise _err(hvnode, "the value after `%s:` is the layer's top (a name), got %r"
                       % (type_name, head_value), trace=trace)
        if lf["in_place"]:
            if len(hv) != 1:
                raise _err(hvnode, "an in-place layer has one name", trace=trace)
            if lf["name"] is not None:
                raise _err(lf["fields"]["name"], "an in-place layer is named by the value "
                           "after `%s:`; `name` gives it twice" % type_name, trace=trace)
            lf["name"] = hv[0]
        else:
            if lf["tops"] is not None:
                raise _err(lf["fields"]["top"], "the top is given twice: after `%s:` and in "
                           "`top`" % type_name, trace=trace, field="top")
            lf["tops"] = hv

    def _append(self, rec: Record) -> None:
        """Keep ``rec`` and follow the blob the next layer reads by default (as
        compile.py's ``prev``): an in-place layer's blob, else the first top."""
        self.records.append(rec)
        if rec.in_place:
            blob = self.aliases.get(rec.bottoms[0], rec.bottoms[0]) if rec.bottoms \
                else self.last_blob
            if rec.name and isinstance(blob, str):
                self.aliases[rec.name] = blob
            self.last_blob = blob
        elif rec.tops:
            self.last_blob = rec.tops[0]
        elif rec.ntop != 0:
            self.last_blob = Unresolved(
                "a block's `bottom` is the blob it reads, but the layer before the block "
                "(%s) has an automatically named top; name its top or give the block use "
                "`bottom:`" % (rec.name or rec.type))

    def _incoming(self, bottom: Optional[List[str]]) -> Any:
        """The blob a block use reads: its ``bottom:`` or the previous layer's top."""
        if bottom:
            return self.aliases.get(bottom[0], bottom[0])
        if self.last_blob is not None:
            return self.last_blob
        if self.spec.inputs:
            return next(iter(self.spec.inputs))
        return Unresolved("a block's `bottom` is the blob it reads, but no layer or input "
                          "comes before this block use; give it `bottom:`")

    def _names(self, node: Node, scope, key: str, trace) -> List[str]:
        v = value(node, scope)
        items = v if isinstance(v, list) else [v]
        for t in items:
            if not isinstance(t, str) or not t:
                raise _err(node, "`%s` takes a blob name or a list of names, got %r"
                           % (key, v), trace=trace, field=key)
        return list(items)

    def _overlay(self, items: Dict[str, Tuple[Node, Node]], fr: _Frame):
        kn, vn = items.pop("per_phase")
        for ph, pkn, pvn in _mapping(vn, "`per_phase`", fr.trace):
            if ph not in self.spec.phases:
                raise _err(pkn, "unknown phase `%s` in per_phase" % ph, trace=fr.trace,
                           hint=did_you_mean(ph, self.spec.phases) or
                           "phases: %s" % ", ".join(self.spec.phases))
            over = _mapping(pvn, "per_phase `%s`" % ph, fr.trace)
            for k, okn, ovn in over:
                if k in ("type", "phases", "per_phase", "when"):
                    raise _err(okn, "`%s` cannot differ per phase" % k, trace=fr.trace,
                               hint="use `phases:` on separate layers")
            if ph == self.phase:
                items = dict(items)
                for k, okn, ovn in over:
                    items[k] = (okn, ovn)
        return items

    def _op(self, node: MappingNode, ps, fr: _Frame, explicit) -> None:
        head, hknode, hvnode = ps[0]
        scope = fr.scope
        args: Dict[str, Any] = {}
        nodes: Dict[str, Node] = {}
        for k, kn, vn in ps[1:]:
            if k == "phases" or k == "when":
                continue
            args[k] = value(vn, scope)
            nodes[k] = vn
        call = OpCall(head, value(hvnode, scope), args, nodes, node, fr.trace, _err)
        for rec in OPS[head](call):
            if not keeps_phase(rec.type, self.phase, explicit):
                continue
            if rec.bottoms is None and self.pending_bottom is not None:
                rec.bottoms = self.pending_bottom
            self.pending_bottom = None
            self._append(rec)

    def _block(self, node: MappingNode, ps, fr: _Frame, explicit) -> _Frame:
        head, hknode, hvnode = ps[0]
        blk: Block = fr.blocks[head]
        trace = fr.trace
        if head in fr.chain:
            cyc = " -> ".join(list(fr.chain[fr.chain.index(head):]) + [head])
            raise _err(hknode, "block cycle: %s" % cyc, trace=trace)
        names = [a for a, _ in blk.args]
        given: Dict[str, Any] = {}
        extra = list(ps[1:])
        if isinstance(hvnode, MappingNode):    # `- block: {arg: value, ...}`
            extra = pairs(hvnode) + extra
        elif not _is_null(hvnode):
            if not names:
                raise _err(hvnode, "block `%s` takes no arguments" % head, trace=trace)
            given[names[0]] = value(hvnode, fr.scope)
        bottom = None
        for k, kn, vn in extra:
            if k == "phases" or k == "when":
                continue
            if k == "bottom":
                bottom = self._names(vn, fr.scope, "bottom", trace)
                continue
            if k not in names:
                raise _err(kn, "block `%s` has no argument `%s`" % (head, k), trace=trace,
                           field=k, hint=did_you_mean(k, names) or
                           ("arguments: %s" % ", ".join(names) if names else
                            "it takes no arguments"))
            if k == names[0] and names[0] in given:
                raise _err(kn, "argument `%s` is given twice (after `%s:` and here)"
                           % (k, head), trace=trace)
            given[k] = value(vn, fr.scope)
        scope = dict(self.spec.scope(self.phase))
        if BOTTOM_VAR in scope or BOTTOM_VAR in names:
            where = "argument of block `%s`" % head if BOTTOM_VAR in names else "variable"
            raise _err(node, "`%s` names the blob a block reads (`${%s}` in its body), but "
                       "the spec has a %s of that name" % (BOTTOM_VAR, BOTTOM_VAR, where),
                       trace=trace, hint="rename the %s" % where.split(" of")[0])
        scope[BOTTOM_VAR] = self._incoming(bottom)
        for a, dnode in blk.args:
            if a in given:
                scope[a] = given[a]
            elif dnode is None:
                raise _err(node, "block `%s` needs argument `%s`" % (head, a), trace=trace,
                           hint="e.g. `%s: ...`" % a)
            else:
                scope[a] = value(dnode, scope)
        if bottom is not None:
            self.pending_bottom = bottom
        return _Frame(blk.layers.value, scope, trace + (("block `%s`" % head, node),),
                      fr.files, fr.chain + (head,), blk.blocks or fr.blocks, explicit)

    def _repeat(self, node: MappingNode, ps, fr: _Frame, explicit) -> _Frame:
        _check_keys(ps, REPEAT_KEYS, "a repeat", fr.trace)
        d = {k: (kn, vn) for k, kn, vn in ps}
        count = value(d["repeat"][1], fr.scope)
        if isinstance(count, bool) or not isinstance(count, (int, list)):
            raise _err(d["repeat"][1], "`repeat` takes a count or a list, got %r" % (count,),
                       trace=fr.trace)
        if isinstance(count, int) and count < 0:
            raise _err(d["repeat"][1], "`repeat` count must be >= 0, got %d" % count,
                       trace=fr.trace)
        var = "i"
        if "as" in d:
            var = value(d["as"][1], fr.scope)
            if not isinstance(var, str) or not var.isidentifier():
                raise _err(d["as"][1], "`as` names the loop variable, got %r" % (var,),
                           trace=fr.trace)
        index = None
        if "index" in d:
            index = value(d["index"][1], fr.scope)
            if not isinstance(index, str) or not index.isidentifier():
                raise _err(d["index"][1], "`index` names the 1-based counter, got %r"
                           % (index,), trace=fr.trace)
        if "layers" not in d:
            raise _err(node, "a repeat needs `layers`", trace=fr.trace)
        body = _sequence(d["layers"][1], "`layers` of a repeat", fr.trace)
        values = range(1, count + 1) if isinstance(count, int) else count
        base = fr.scope

        def scopes() -> Iterator[Dict[str, Any]]:
            for k, v in enumerate(values, 1):
                s = dict(base)
                s[var] = v
                if index:
                    s[index] = k
                yield s
        return _Frame(body, base, fr.trace, fr.files, fr.chain, fr.blocks, explicit, scopes())

    def _include(self, node: MappingNode, ps, fr: _Frame, explicit) -> _Frame:
        _check_keys(ps, INCLUDE_KEYS, "an include", fr.trace)
        d = {k: (kn, vn) for k, kn, vn in ps}
        rel = value(d["include"][1], fr.scope)
        path = resolve_include(d["include"][1], rel, fr.trace)
        ap = os.path.abspath(path)
        if ap in fr.files:
            cyc = " -> ".join(_display(p) for p in list(fr.files[fr.files.index(ap):]) + [ap])
            raise _err(d["include"][1], "include cycle: %s" % cyc, trace=fr.trace)
        with_values: Dict[str, Any] = {}
        with_nodes: Dict[str, Node] = {}
        if "with" in d:
            for k, kn, vn in _mapping(d["with"][1], "`with`", fr.trace):
                with_values[k] = value(vn, fr.scope)
                with_nodes[k] = kn
        scope = dict(self.spec.scope(self.phase))
        declared: List[str] = []
        if is_template(path):
            fm, fm_nodes, _ = front_matter(path)
            declared += list(fm)
            context = dict(scope)
            context.update(fm)
            context.update(with_values)
            try:
                root = load_file(path, context)
            except NetdslError as exc:
                raise chain_error(exc, fr.trace + (("include `%s`" % rel, node),))
        else:
            root = self._file_cache.get(ap)
            if root is None:
                root = self._file_cache[ap] = load_file(path)
        layers: List[Node] = []
        blocks = fr.blocks
        if root is None:
            pass
        elif isinstance(root, SequenceNode):
            layers = root.value
        else:
            rps = _mapping(root, "an included file", fr.trace)
            _check_keys(rps, LIBRARY_KEYS, "an included file", fr.trace)
            rd = {k: vn for k, _, vn in rps}
            if "variables" in rd:
                for k, kn, vn in _mapping(rd["variables"], "`variables`", fr.trace):
                    declared.append(k)
                    scope[k] = with_values[k] if k in with_values else value(vn, scope)
            if "blocks" in rd:
                table: Dict[str, Block] = {}
                _load_blocks(table, rd["blocks"], Spec(path))
                blocks = dict(fr.blocks)
                blocks.update(table)
                for blk in table.values():
                    blk.blocks = blocks
            if "layers" in rd:
                layers = _sequence(rd["layers"], "`layers`", fr.trace)
        for k, kn in with_nodes.items():
            if k not in declared:
                raise _err(kn, "`%s` is not a variable of %s" % (k, rel), trace=fr.trace,
                           hint=did_you_mean(k, declared) or
                           ("its variables: %s" % ", ".join(declared) if declared
                            else "it declares no variables"))
            scope[k] = with_values[k]
        if "bottom" in d:
            self.pending_bottom = self._names(d["bottom"][1], fr.scope, "bottom", fr.trace)
        return _Frame(layers, scope, fr.trace + (("include `%s`" % rel, node),),
                      fr.files + (ap,), fr.chain, blocks, explicit)


def expand(spec: Spec, phase: str) -> List[Record]:
    """The layer records of ``spec``'s net for ``phase``."""
    if phase not in spec.phases:
        raise NetdslError("the spec has no phase `%s`" % phase, file=spec.path,
                          hint=did_you_mean(phase, spec.phases) or
                          "phases: %s" % ", ".join(spec.phases))
    return Expander(spec, phase).run()
