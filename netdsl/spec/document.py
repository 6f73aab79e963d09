"""A spec file's top level: variables, libraries, blocks, inputs, phases, schema, plugins.

:func:`load_spec` reads a spec (``*.yaml``, or a ``*.yaml.j2`` template) with
:mod:`netdsl.spec.load`, then its top-level keys into a :class:`Spec`: the
variables (``-D`` overrides and library defaults applied), the blocks and
variables of the libraries it ``include``s, ``inputs``, ``phases``, the fork
schema (``proto:``), ``plugins`` and ``custom_layers``.  The ``layers`` stay
YAML nodes, expanded per phase by :mod:`netdsl.spec.expand`.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..errors import NetdslError, did_you_mean
from ..layers import current as current_layers
from ..ops import OPS
from .phases import DEFAULT_PHASES
from .interpolate import value
from .load import (MappingNode, Node, ScalarNode, SequenceNode, check_keys as _check_keys,
                   display_path as _display, front_matter, is_template, load_file,
                   located_error as _err, mapping_items as _mapping, pairs, parse_scalar_text,
                   plain, resolve_include, scalar, sequence_items as _sequence, where)

__all__ = ["Spec", "Block", "load_spec", "load_blocks", "parse_define", "parse_defines"]

TOP_KEYS = ("name", "description", "variables", "include", "blocks", "phases", "inputs",
            "layers", "solver", "custom_types", "proto", "plugins", "custom_layers", "strict")
LIBRARY_KEYS = ("name", "description", "variables", "include", "blocks", "layers")
BLOCK_KEYS = ("args", "layers", "description")
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
        self.strict = False                # `strict: true`: warnings (crop offsets) are errors
        self.phases: List[str] = list(DEFAULT_PHASES)
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
        # the layer types this spec's nets use: its custom_layers over those in use now
        self.registry = current_layers().child("spec %s" % path)
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
    path = _find_spec(path)
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
    spec.variables = _variables(spec, top, fm_nodes, defines, path)
    for step in (_read_header, _read_types, _read_phases, _read_inputs, _read_body):
        step(spec, top, spec.variables, path)
    return spec


def _find_spec(path: str) -> str:
    """``path``, or the example spec of that name shipped with netdsl."""
    if os.path.exists(path):
        return path
    from ..shipped import find_shipped, missing_file
    found = find_shipped(path, "specs")
    if found is None:
        raise missing_file(path, "specs")
    return found


def _variables(spec: Spec, top: Dict[str, Tuple[Node, Node]], fm_nodes: Dict[str, Node],
               defines: Dict[str, Any], path: str) -> Dict[str, Any]:
    """The spec's variables: the libraries' defaults first, then its own ``variables``
    (a template's front matter too), each overridden by a ``-D`` value."""
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
    return scope


def _read_header(spec: Spec, top: Dict[str, Tuple[Node, Node]], scope: Dict[str, Any],
                 path: str) -> None:
    """``name``, ``description`` and ``strict``."""
    if "name" in top:
        name = value(top["name"][1], scope)
        if not isinstance(name, str) or not name:
            raise _err(top["name"][1], "`name` is a string, got %r" % (name,))
        spec.name = name
    if "description" in top:
        spec.description = str(plain(top["description"][1]))
    if "strict" in top:
        strict = value(top["strict"][1], scope)
        if not isinstance(strict, bool):
            raise _err(top["strict"][1], "`strict` is true or false, got %r" % (strict,))
        spec.strict = strict


def _read_types(spec: Spec, top: Dict[str, Tuple[Node, Node]], scope: Dict[str, Any],
                path: str) -> None:
    """``custom_types``, ``proto``, ``plugins`` and ``custom_layers``, in that order."""
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
            _register_custom(spec, t, kn, vn, scope)
            spec.custom_types.append(t)


def _read_phases(spec: Spec, top: Dict[str, Tuple[Node, Node]], scope: Dict[str, Any],
                 path: str) -> None:
    """``phases``: names, each once, at least one."""
    if "phases" not in top:
        return
    phs: List[str] = []
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


def _read_inputs(spec: Spec, top: Dict[str, Tuple[Node, Node]], scope: Dict[str, Any],
                 path: str) -> None:
    """``inputs``: each a list of sizes (or ``{shape: ...}``, ``{dim: ...}``)."""
    if "inputs" not in top:
        return
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


def _read_body(spec: Spec, top: Dict[str, Tuple[Node, Node]], scope: Dict[str, Any],
               path: str) -> None:
    """``blocks``, ``layers`` (required) and ``solver``."""
    if "blocks" in top:
        load_blocks(spec.blocks, top["blocks"][1], spec)
    for blk in spec.blocks.values():
        if not blk.blocks:
            blk.blocks = spec.blocks
    if "layers" not in top:
        raise NetdslError("the spec has no `layers`", file=path, line=1, column=1,
                          hint="add `layers:` with one item per layer (see docs/spec.md)")
    layers = top["layers"][1]
    _sequence(layers, "`layers`")
    spec.layers = layers if isinstance(layers, SequenceNode) else None
    if "solver" in top:
        if not isinstance(top["solver"][1], MappingNode):
            raise _err(top["solver"][1], "`solver` is a mapping of SolverParameter fields")
        spec.solver = top["solver"][1]


def _relative(base_file: str, path: str) -> str:
    return path if os.path.isabs(path) else os.path.join(os.path.dirname(base_file), path)


def _load_proto(node: Node, scope: Dict[str, Any], spec_path: str) -> Any:
    """``proto: fork.proto`` or ``proto: {path: fork.proto, strict: true}``: the fork
    schema the spec's layers, nets and weights use (relative to the spec), used as
    published; ``strict`` refuses a reuse of BVLC's numbers (``allow_conflicts``,
    the former opt-in, is still accepted)."""
    from ..proto import load_schema
    v = value(node, scope)
    strict = False
    if isinstance(v, dict):
        unknown = set(v) - {"path", "strict", "allow_conflicts"}
        if unknown or "path" not in v:
            raise _err(node, "`proto` is a path, or {path: ..., strict: true|false}")
        strict = bool(v.get("strict", False)) and not v.get("allow_conflicts", False)
        v = v["path"]
    if not isinstance(v, str) or not v:
        raise _err(node, "`proto` names a caffe.proto file, got %r" % (v,))
    target = _relative(spec_path, v)
    if not os.path.isfile(target):
        raise _err(node, "no schema file %s" % target,
                   hint="`proto` is relative to the spec file")
    return load_schema(target, strict=strict)


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


def _register_custom(spec: "Spec", type_name: str, knode: Node, vnode: Node,
                     scope: Dict[str, Any]) -> None:
    """``custom_layers: {Type: {shape: [[N, C, "2*H", "2*W"]], ...}}``: a fork layer's
    output shapes (and learnable blob shapes, blob counts, coordinate map) declared
    as expressions over its bottoms and parameters (netdsl.plugins), in the spec's
    own layer registry: they apply to this spec's nets only."""
    from .. import plugins, schema as _schema
    if _schema.is_builtin_type(type_name):
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
                               tops=_count(decl.get("tops")), registry=spec.registry)
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
            load_blocks(table, d["blocks"], spec)
            for name, blk in table.items():
                blk.blocks = spec.blocks
                spec.blocks[name] = blk
        if "include" in d:
            inc = d["include"]
            sub = inc.value if isinstance(inc, SequenceNode) else [inc]
            stack.append([sub, 0, ch + [ap]])


def load_blocks(table: Dict[str, Block], node: Node, spec: Spec) -> None:
    """The ``blocks:`` mapping at ``node`` into ``table`` (name -> :class:`Block`)."""
    from .. import schema
    types = set(schema.layer_types(builder_schema()))
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


def builder_schema():
    from ..netspec import current_schema
    return current_schema()
