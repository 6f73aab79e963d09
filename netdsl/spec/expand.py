"""Spec files to layer records: variables, includes, blocks, repeats, phases and ops.

:func:`load_spec` reads a spec (and the libraries it includes) into a
:class:`Spec`; :func:`expand` walks its ``layers`` for one phase and returns
the flat list of :class:`~netdsl.ops.base.Record` that
:mod:`netdsl.spec.compile` turns into NetSpec builder calls.  Expansion runs
on an explicit stack (no recursion per layer or per nesting level), keeps
every YAML node for error locations, and evaluates ``${...}`` references
(:mod:`netdsl.spec.interpolate`) as it goes.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from ..errors import NetdslError, did_you_mean
from ..ops import OPS, OpCall, Record
from . import phases as _phases
from .interpolate import substitute
from .load import (MappingNode, Node, ScalarNode, SequenceNode, error, front_matter, is_template,
                   load_file, pairs, parse_scalar_text, plain, scalar, where)

TOP_KEYS = ("name", "description", "variables", "include", "blocks", "phases", "inputs",
            "layers", "solver", "custom_types", "proto", "plugins", "custom_layers")
LIBRARY_KEYS = ("name", "description", "variables", "include", "blocks", "layers")
LAYER_KEYS = ("type", "name", "top", "bottom", "in_place", "ntop", "phases", "per_phase", "when")
BLOCK_KEYS = ("args", "layers", "description")
REPEAT_KEYS = ("repeat", "as", "index", "layers", "phases", "when")
INCLUDE_KEYS = ("include", "with", "phases", "bottom", "when")
RESERVED_VARS = ("phase", "inputs")
ITEM_WORDS = ("repeat", "include", "type")


class Block:
    """A parameterised list of layers: ``blocks: {name: {args: {...}, layers: [...]}}``."""

    __slots__ = ("name", "args", "layers", "node", "blocks")

    def __init__(self, name: str, args: List[Tuple[str, Node]], layers: SequenceNode,
                 node: Node) -> None:
        self.name = name
        self.args = args          # (name, default node or None when required), in order
        self.layers = layers
        self.node = node
        self.blocks: Dict[str, "Block"] = {}


class Spec:
    """A loaded spec: its variables, inputs, blocks, layers and solver, all with their nodes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.name = os.path.basename(path).split(".")[0]
        self.description: Optional[str] = None
        self.phases: List[str] = list(_phases.DEFAULT_PHASES)
        self.variables: Dict[str, Any] = {}
        self.variable_nodes: Dict[str, Node] = {}
        self.inputs: Dict[str, List[int]] = {}
        self.input_nodes: Dict[str, Node] = {}
        self.inputs_node: Optional[Node] = None
        self.blocks: Dict[str, Block] = {}
        self.layers: Optional[SequenceNode] = None
        self.solver: Optional[MappingNode] = None
        self.custom_types: List[str] = []
        self.schema: Any = None            # the fork schema module named by `proto:`, if any
        self.root: Optional[Node] = None
        self.files: List[str] = [path]

    def scope(self, phase: Optional[str]) -> Dict[str, Any]:
        """The names ``${...}`` sees at the top level of a phase's layers."""
        s = dict(self.variables)
        s["phase"] = phase
        s["inputs"] = {k: list(v) for k, v in self.inputs.items()}
        return s

    def __repr__(self) -> str:
        return "<Spec %s (%s)>" % (self.name, self.path)


# -- helpers ---------------------------------------------------------------------------

def _err(node: Optional[Node], message: str, *, hint: Optional[str] = None,
         trace: Tuple = (), field: Optional[str] = None, layer: Optional[str] = None,
         column_offset: int = 0) -> NetdslError:
    if trace:
        message += "".join(" (in %s at %s:%d:%d)" % ((label,) + where(n)) for label, n in
                           reversed(trace))
    return error(node, message, hint=hint, field=field, layer=layer, column_offset=column_offset)


_VARIES = object()   # a node whose value depends on ${...}


def _constant(node: Node) -> Any:
    """The node's value when it has no ``${...}`` anywhere (cached on the node), else _VARIES."""
    try:
        return node._netdsl_const  # type: ignore[attr-defined]
    except AttributeError:
        pass
    if isinstance(node, ScalarNode):
        v = scalar(node)
        out = _VARIES if type(v) is str and "${" in v else v
    elif isinstance(node, SequenceNode):
        items = [_constant(n) for n in node.value]
        out = _VARIES if any(i is _VARIES for i in items) else items
    else:
        d = {}
        out = d
        for k, _, vn in pairs(node):
            c = _constant(vn)
            if c is _VARIES:
                out = _VARIES
            elif out is not _VARIES:
                d[k] = c
    node._netdsl_const = out  # type: ignore[attr-defined]
    return out


def value(node: Node, scope: Dict[str, Any]) -> Any:
    """A node's value with ``${...}`` substituted.

    Values without references are computed once and shared: callers copy
    before they change one.
    """
    try:
        c = node._netdsl_const  # type: ignore[attr-defined]
    except AttributeError:
        c = _constant(node)
    if c is not _VARIES:
        return c
    if isinstance(node, ScalarNode):
        return substitute(scalar(node), scope, node)
    if isinstance(node, SequenceNode):
        return [value(n, scope) for n in node.value]
    return {k: value(v, scope) for k, _, v in pairs(node)}


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and scalar(node) is None


def _mapping(node: Node, what: str, trace: Tuple = ()) -> List[Tuple[str, ScalarNode, Node]]:
    if not isinstance(node, MappingNode):
        raise _err(node, "%s must be a mapping (key: value lines)" % what, trace=trace)
    return pairs(node)


def _sequence(node: Node, what: str, trace: Tuple = ()) -> List[Node]:
    if isinstance(node, ScalarNode) and scalar(node) is None:
        return []
    if not isinstance(node, SequenceNode):
        raise _err(node, "%s must be a list (lines starting with `- `)" % what, trace=trace)
    return node.value


def _check_keys(ps, allowed: Sequence[str], what: str, trace: Tuple = ()) -> None:
    for key, knode, _ in ps:
        if key not in allowed:
            raise _err(knode, "unknown key `%s` in %s" % (key, what), field=key, trace=trace,
                       hint=did_you_mean(key, allowed) or "keys: %s" % ", ".join(allowed))


def _display(path: str) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:  # pragma: no cover
        return path
    return path if rel.startswith(os.pardir + os.sep + os.pardir) else rel


def _node_file(node: Node) -> str:
    name = node.start_mark.name
    if name.endswith(" (rendered)"):
        name = name[: -len(" (rendered)")]
    return name


def resolve_include(node: Node, rel: Any, trace: Tuple = ()) -> str:
    """The path of an include, relative to the file the include is written in."""
    if not isinstance(rel, str) or not rel:
        raise _err(node, "an include is a relative file path, got %r" % (rel,), trace=trace)
    base = os.path.dirname(_node_file(node))
    path = os.path.normpath(os.path.join(base, rel))
    if not os.path.isfile(path):
        near = []
        d = os.path.dirname(path) or "."
        if os.path.isdir(d):
            near = [f for f in os.listdir(d) if f.endswith((".yaml", ".yml", ".j2"))]
        hint = did_you_mean(os.path.basename(path), near)
        raise _err(node, "cannot include `%s`: no such file (%s)" % (rel, _display(path)),
                   trace=trace, hint=hint)
    return path


# -- loading ---------------------------------------------------------------------------

def parse_defines(defines: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """``-D`` values: text is read as a YAML scalar (``59`` -> 59, ``[1, 3]`` -> a list)."""
    out: Dict[str, Any] = {}
    for key, raw in (defines or {}).items():
        if not isinstance(key, str) or not key.isidentifier():
            raise NetdslError("bad -D %s=...: a variable name is letters, digits and _, not "
                              "starting with a digit" % (key,))
        out[key] = parse_scalar_text(raw, "-D %s" % key) if isinstance(raw, str) else raw
    return out


def parse_define(item: str) -> Tuple[str, Any]:
    """One ``NAME=VALUE`` from the command line."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise NetdslError("bad -D %r: expected NAME=VALUE (e.g. -D num_classes=59)" % item)
    if not key.isidentifier():
        raise NetdslError("bad -D %r: `%s` is not a variable name (letters, digits and _)"
                          % (item, key))
    try:
        return key, parse_scalar_text(raw, "-D %s" % key)
    except NetdslError as exc:
        raise NetdslError("bad -D %r: the value is not valid YAML (%s)" % (item, exc.message),
                          hint="quote text with YAML syntax in it: -D 'x=\"[a\"'") from None


def load_spec(path: str, variables: Optional[Dict[str, Any]] = None, *,
              custom_types: Sequence[str] = ()) -> Spec:
    """Read a spec (``*.yaml``, or a ``*.yaml.j2`` template) and what it includes.

    ``variables`` override the spec's defaults; text values are read as YAML
    scalars, as ``-D`` values are.  Every error names its file, line and column.
    """
    defines = parse_defines(variables)
    spec = Spec(path)
    fm_nodes: Dict[str, Node] = {}
    if is_template(path):
        fm_values, fm_nodes, _ = front_matter(path)
        context = dict(fm_values)
        context.update(defines)
        root = load_file(path, context)
    else:
        root = load_file(path)
    if root is None:
        raise NetdslError("the spec is empty", file=path, line=1, column=1,
                          hint="a spec has `layers:` (see docs/spec.md)")
    spec.root = root
    ps = _mapping(root, "a spec")
    _check_keys(ps, TOP_KEYS, "the spec")
    top = {k: (kn, vn) for k, kn, vn in ps}
    spec.custom_types = list(custom_types)

    # libraries first: their blocks and variable defaults
    var_items: List[Tuple[str, Node]] = []
    if "include" in top:
        _load_libraries(spec, top["include"][1], var_items, [os.path.abspath(path)])
    if "variables" in top:
        for k, kn, vn in _mapping(top["variables"][1], "`variables`"):
            var_items.append((k, vn))
            spec.variable_nodes[k] = kn
    declared = set(k for k, _ in var_items) | set(fm_nodes)
    for key in defines:
        if key not in declared:
            raise NetdslError("-D %s: the spec has no variable `%s`" % (key, key), file=path,
                              hint=did_you_mean(key, sorted(declared)) or
                              ("variables: %s" % ", ".join(sorted(declared)) if declared
                               else "declare it under `variables:`"))
    scope: Dict[str, Any] = {}
    for k, _ in fm_nodes.items():
        scope[k] = defines[k] if k in defines else plain(fm_nodes[k])
    for k, vn in var_items:
        if k in RESERVED_VARS:
            raise _err(spec.variable_nodes.get(k, vn), "`%s` is a reserved name (set by netdsl)"
                       % k, hint="choose another variable name")
        if not k.isidentifier():
            raise _err(spec.variable_nodes.get(k, vn), "`%s` is not a variable name "
                       "(letters, digits and _)" % k)
        scope[k] = defines[k] if k in defines else value(vn, scope)
    spec.variables = scope

    if "name" in top:
        name = value(top["name"][1], scope)
        if not isinstance(name, str) or not name:
            raise _err(top["name"][1], "`name` is a string, got %r" % (name,))
        spec.name = name
    if "description" in top:
        spec.description = str(plain(top["description"][1]))
    if "custom_types" in top:
        for n in _sequence(top["custom_types"][1], "`custom_types`"):
            t = value(n, scope)
            if not isinstance(t, str) or not t:
                raise _err(n, "a custom layer type is a name, got %r" % (t,))
            spec.custom_types.append(t)
    if "proto" in top:
        spec.schema = _load_proto(top["proto"][1], scope, path)
    if "plugins" in top:
        for n in _sequence(top["plugins"][1], "`plugins`"):
            _load_plugin(n, value(n, scope), path)
    if "custom_layers" in top:
        for t, kn, vn in _mapping(top["custom_layers"][1], "`custom_layers`"):
            _register_custom(t, kn, vn, scope)
            spec.custom_types.append(t)
    if "phases" in top:
        phs = []
        for n in _sequence(top["phases"][1], "`phases`"):
            p = value(n, scope)
            if not isinstance(p, str) or not p.isidentifier():
                raise _err(n, "a phase is a name like train, val or deploy, got %r" % (p,))
            if p in phs:
                raise _err(n, "phase `%s` listed twice" % p)
            phs.append(p)
        if not phs:
            raise _err(top["phases"][1], "`phases` lists no phase")
        spec.phases = phs
    if "inputs" in top:
        spec.inputs_node = top["inputs"][0]
        for k, kn, vn in _mapping(top["inputs"][1], "`inputs`"):
            shape = value(vn, scope)
            if isinstance(shape, dict) and "shape" in shape and len(shape) == 1:
                shape = shape["shape"]
            if isinstance(shape, dict) and list(shape) == ["dim"]:
                shape = shape["dim"]
            if (not isinstance(shape, list) or not shape or
                    any(isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in shape)):
                raise _err(vn, "the shape of input `%s` is a list of sizes like [1, 3, 500, 500], "
                               "got %r" % (k, shape), field=k)
            spec.inputs[k] = shape
            spec.input_nodes[k] = kn
    if "blocks" in top:
        _load_blocks(spec.blocks, top["blocks"][1], spec)
    for blk in spec.blocks.values():
        if not blk.blocks:
            blk.blocks = spec.blocks
    if "layers" in top:
        layers = top["layers"][1]
        _sequence(layers, "`layers`")
        spec.layers = layers if isinstance(layers, SequenceNode) else None
    else:
        raise NetdslError("the spec has no `layers`", file=path, line=1, column=1,
                          hint="add `layers:` with one item per layer (see docs/spec.md)")
    if "solver" in top:
        if not isinstance(top["solver"][1], MappingNode):
            raise _err(top["solver"][1], "`solver` is a mapping of SolverParameter fields")
        spec.solver = top["solver"][1]
    return spec


def _relative(base_file: str, path: str) -> str:
    return path if os.path.isabs(path) else os.path.join(os.path.dirname(base_file), path)


def _load_proto(node: Node, scope: Dict[str, Any], spec_path: str) -> Any:
    """``proto: fork.proto`` or ``proto: {path: fork.proto, allow_conflicts: true}``:
    the fork schema the spec's layers, nets and weights use (relative to the spec)."""
    from ..proto import load_schema
    v = value(node, scope)
    allow = False
    if isinstance(v, dict):
        unknown = set(v) - {"path", "allow_conflicts"}
        if unknown or "path" not in v:
            raise _err(node, "`proto` is a path, or {path: ..., allow_conflicts: true|false}")
        allow = bool(v.get("allow_conflicts", False))
        v = v["path"]
    if not isinstance(v, str) or not v:
        raise _err(node, "`proto` names a caffe.proto file, got %r" % (v,))
    target = _relative(spec_path, v)
    if not os.path.isfile(target):
        raise _err(node, "no schema file %s" % target,
                   hint="`proto` is relative to the spec file")
    return load_schema(target, allow_conflicts=allow)


def _load_plugin(node: Node, name: Any, spec_path: str) -> None:
    """``plugins: [layers.py, package.module]``: Python files (relative to the spec)
    or modules that register custom layers' rules (netdsl.plugins)."""
    from ..plugin_loading import load_plugin
    if not isinstance(name, str) or not name:
        raise _err(node, "a plugin is a Python file or module name, got %r" % (name,))
    if name.endswith(".py") or os.sep in name or "/" in name:
        name = _relative(spec_path, name)
        if not os.path.isfile(name):
            raise _err(node, "no plugin file %s" % name, hint="plugin paths are relative to "
                       "the spec file")
    try:
        load_plugin(name)
    except NetdslError as exc:
        if exc.file is None:
            raise _err(node, exc.message, hint=exc.hint) from None
        raise


_CUSTOM_KEYS = ("bottoms", "tops", "shape", "params", "coord_map")


def _register_custom(type_name: str, knode: Node, vnode: Node, scope: Dict[str, Any]) -> None:
    """``custom_layers: {Type: {shape: [[N, C, "2*H", "2*W"]], ...}}``: a fork layer's
    output shapes (and learnable blob shapes, blob counts, coordinate map) declared
    as expressions over its bottoms and parameters (netdsl.plugins)."""
    from .. import plugins, schema as _schema
    if type_name in _schema.KNOWN_TYPES:
        raise _err(knode, "`%s` is a BVLC layer type; custom_layers declares new types"
                   % type_name)
    decl = value(vnode, scope)
    if decl is None:
        decl = {}
    if not isinstance(decl, dict):
        raise _err(vnode, "custom layer `%s` takes a mapping of %s" % (type_name,
                                                                       ", ".join(_CUSTOM_KEYS)))
    nodes = {k: vn for k, _, vn in pairs(vnode)} if isinstance(vnode, MappingNode) else {}
    for k in decl:
        if k not in _CUSTOM_KEYS:
            raise _err(_key_node(vnode, k) or vnode, "unknown key `%s` in custom layer `%s`"
                       % (k, type_name), hint=did_you_mean(k, _CUSTOM_KEYS) or
                       "keys: %s" % ", ".join(_CUSTOM_KEYS), field=k)
    coord = decl.get("coord_map")
    if isinstance(coord, list):
        coord = tuple(coord)
    try:
        plugins.register_layer(type_name, shape=decl.get("shape"), params=decl.get("params"),
                               coord_map=coord, bottoms=_count(decl.get("bottoms")),
                               tops=_count(decl.get("tops")))
    except NetdslError as exc:
        field = exc.field if exc.field in nodes else None
        for k in ("shape", "params", "coord_map", "bottoms", "tops"):
            if field is None and k in nodes and k in exc.message:
                field = k
        raise _err(nodes.get(field, vnode), exc.message, hint=exc.hint) from None


def _count(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def _key_node(mapping: Node, key: str) -> Optional[Node]:
    if isinstance(mapping, MappingNode):
        for k, kn, _ in pairs(mapping):
            if k == key:
                return kn
    return None


def _load_libraries(spec: Spec, node: Node, var_items: List[Tuple[str, Node]],
                    chain: List[str]) -> None:
    """Top-level ``include``: blocks and variable defaults of other spec files."""
    items = node.value if isinstance(node, SequenceNode) else [node]
    # an explicit stack of (item nodes, index, chain) instead of recursion
    stack: List[List[Any]] = [[items, 0, chain]]
    while stack:
        frame = stack[-1]
        its, i, ch = frame
        if i >= len(its):
            stack.pop()
            continue
        frame[1] = i + 1
        inode = its[i]
        rel = value(inode, dict(spec.variables))
        path = resolve_include(inode, rel)
        ap = os.path.abspath(path)
        if ap in ch:
            cyc = " -> ".join(_display(p) for p in ch[ch.index(ap):] + [ap])
            raise _err(inode, "include cycle: %s" % cyc)
        context: Dict[str, Any] = {}
        if is_template(path):
            fm, _, _ = front_matter(path)
            context.update(fm)
        root = load_file(path, context)
        spec.files.append(path)
        if root is None:
            continue
        ps = _mapping(root, "an included spec file")
        _check_keys(ps, LIBRARY_KEYS, "an included file")
        d = {k: vn for k, _, vn in ps}
        if "variables" in d:
            for k, kn, vn in _mapping(d["variables"], "`variables`"):
                var_items.append((k, vn))
                spec.variable_nodes.setdefault(k, kn)
        if "blocks" in d:
            table: Dict[str, Block] = {}
            _load_blocks(table, d["blocks"], spec)
            for name, blk in table.items():
                blk.blocks = spec.blocks
                spec.blocks[name] = blk
        if "include" in d:
            inc = d["include"]
            sub = inc.value if isinstance(inc, SequenceNode) else [inc]
            stack.append([sub, 0, ch + [ap]])


def _load_blocks(table: Dict[str, Block], node: Node, spec: Spec) -> None:
    from .. import schema
    types = set(schema.layer_types(_pb2()))
    for name, knode, bnode in _mapping(node, "`blocks`"):
        if name in table or name in spec.blocks:
            other = (table.get(name) or spec.blocks[name]).node
            f, line, col = where(other)
            raise _err(knode, "block `%s` is defined twice (also at %s:%d:%d)"
                       % (name, _display(f), line, col))
        if name in types or name in OPS or name in ITEM_WORDS:
            raise _err(knode, "block name `%s` is taken (a layer type, op or keyword)" % name,
                       hint="choose another name")
        if not name.isidentifier():
            raise _err(knode, "block name `%s` is not a name (letters, digits and _)" % name)
        if isinstance(bnode, SequenceNode):
            table[name] = Block(name, [], bnode, knode)
            continue
        ps = _mapping(bnode, "block `%s`" % name)
        _check_keys(ps, BLOCK_KEYS, "block `%s`" % name)
        d = {k: vn for k, _, vn in ps}
        args: List[Tuple[str, Optional[Node]]] = []
        if "args" in d:
            an = d["args"]
            if isinstance(an, SequenceNode):
                # [a, b, {c: 1}]: bare names are required, one-key mappings give defaults
                for n in an.value:
                    if isinstance(n, MappingNode) and len(n.value) == 1:
                        (a, akn, avn), = pairs(n)
                        args.append((a, avn))
                        continue
                    a = scalar(n) if isinstance(n, ScalarNode) else None
                    if not isinstance(a, str) or not a.isidentifier():
                        raise _err(n, "an argument is a name, or `{name: default}`")
                    args.append((a, None))
            else:
                # {a: 1, b: null}: every argument has a default (null too)
                for a, akn, avn in _mapping(an, "`args` of block `%s`" % name):
                    args.append((a, avn))
            seen = set()
            for a, _ in args:
                if not a.isidentifier():
                    raise _err(an, "argument `%s` is not a name" % a)
                if a in seen:
                    raise _err(an, "argument `%s` is listed twice" % a)
                seen.add(a)
        if "layers" not in d:
            raise _err(knode, "block `%s` has no `layers`" % name)
        layers = d["layers"]
        if not isinstance(layers, SequenceNode):
            raise _err(layers, "`layers` of block `%s` must be a list" % name)
        table[name] = Block(name, args, layers, knode)


def _pb2():
    from ..netspec import current_schema
    return current_schema()


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
        scope = fr.scope
        trace = fr.trace
        head, hknode, hvnode = ps[0]
        items = {k: (kn, vn) for k, kn, vn in ps}
        if "per_phase" in items:
            items = self._overlay(items, fr)
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
            head_value = None
        elif head in self.types:
            type_name = head
            head_value = value(hvnode, scope)
            del items[head]
        else:  # `type` given further down
            tnode = items["type"][1]
            type_name = value(tnode, scope)
            if type_name not in self.types:
                raise _err(tnode, "unknown layer type `%s`" % (type_name,), trace=trace,
                           field="type", hint=did_you_mean(str(type_name), self.types))
            head_value = None
        if not _phases.keeps(type_name, self.phase, explicit):
            return
        tops: Optional[List[str]] = None
        name: Optional[str] = None
        bottoms: Optional[List[str]] = None
        in_place = False
        ntop: Optional[int] = None
        params: Dict[str, Any] = {}
        fields: Dict[str, Node] = {}
        for key, (kn, vn) in items.items():
            if key == "type" or key == "phases" or key == "when":
                continue
            fields[key] = vn
            if key == "top":
                tops = self._names(vn, scope, "top", trace)
            elif key == "bottom":
                bottoms = self._names(vn, scope, "bottom", trace)
            elif key == "name":
                name = value(vn, scope)
                if not isinstance(name, str) or not name:
                    raise _err(vn, "`name` is a string, got %r" % (name,), trace=trace,
                               field="name")
            elif key == "in_place":
                in_place = value(vn, scope)
                if not isinstance(in_place, bool):
                    raise _err(vn, "`in_place` is true or false, got %r" % (in_place,),
                               trace=trace, field="in_place")
            elif key == "ntop":
                ntop = value(vn, scope)
                if isinstance(ntop, bool) or not isinstance(ntop, int) or ntop < 0:
                    raise _err(vn, "`ntop` is a whole number, got %r" % (ntop,), trace=trace,
                               field="ntop")
            else:
                v = params[key] = value(vn, scope)
                if key == "phase" and isinstance(v, (str, list)) and all(
                        p in self.spec.phases for p in (v if isinstance(v, list) else [v])):
                    raise _err(kn, "`phase` is Caffe's TRAIN/TEST field of the layer",
                               trace=trace, field="phase",
                               hint="to keep this layer in some nets only, write `phases: %s`"
                               % (v if isinstance(v, str) else "[%s]" % ", ".join(v)))
        if head_value is not None:
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
            if in_place:
                if len(hv) != 1:
                    raise _err(hvnode, "an in-place layer has one name", trace=trace)
                if name is not None:
                    raise _err(fields["name"], "an in-place layer is named by the value after "
                               "`%s:`; `name` gives it twice" % type_name, trace=trace)
                name = hv[0]
            else:
                if tops is not None:
                    raise _err(fields["top"], "the top is given twice: after `%s:` and in `top`"
                               % type_name, trace=trace, field="top")
                tops = hv
        elif in_place and tops is not None:
            raise _err(fields["top"], "an in-place layer's tops are its bottoms; drop `top`",
                       trace=trace, field="top")
        if bottoms is None and self.pending_bottom is not None:
            bottoms = self.pending_bottom
        self.pending_bottom = None
        rec = Record(type_name, name=name, tops=tops, bottoms=bottoms, in_place=in_place,
                     ntop=ntop, params=params, node=node, trace=trace, field_nodes=fields)
        self.records.append(rec)

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
            if not _phases.keeps(rec.type, self.phase, explicit):
                continue
            if rec.bottoms is None and self.pending_bottom is not None:
                rec.bottoms = self.pending_bottom
            self.pending_bottom = None
            self.records.append(rec)

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
                exc.message += "".join(" (in %s at %s:%d:%d)" % ((label,) + where(n)) for label, n
                                       in reversed(fr.trace + (("include `%s`" % rel, node),)))
                exc.args = (exc.message,)
                raise
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
