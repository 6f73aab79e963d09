"""What a spec op gets and gives: the call's values and nodes in, layer records out."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..errors import NetdslError


class Record:
    """One layer of an expanded spec, before it goes to the NetSpec builder.

    ``tops``/``bottoms`` are blob names (None: automatic top / the previous
    layer's top); ``params`` are NetSpec keywords; ``node`` is the YAML item it
    came from, ``trace`` the block uses and includes it was expanded through.
    Crop ops carry ``reference`` (and ``offset``/``axis`` when given); upsample
    ops set ``surgery`` to ``"interp"`` or ``"nearest"`` when the kernel is
    written by weight surgery rather than a filler.
    """

    __slots__ = ("type", "name", "tops", "bottoms", "in_place", "ntop", "params", "node",
                 "trace", "op", "reference", "offset", "axis", "surgery", "field_nodes")

    def __init__(self, type_name: str, *, name: Optional[str] = None,
                 tops: Optional[List[str]] = None, bottoms: Optional[List[str]] = None,
                 in_place: bool = False, ntop: Optional[int] = None,
                 params: Optional[Dict[str, Any]] = None, node: Any = None,
                 trace: Tuple = (), op: Optional[str] = None,
                 field_nodes: Optional[Dict[str, Any]] = None) -> None:
        self.type = type_name
        self.name = name
        self.tops = tops
        self.bottoms = bottoms
        self.in_place = in_place
        self.ntop = ntop
        self.params = params if params is not None else {}
        self.node = node
        self.trace = trace
        self.op = op
        self.reference: Optional[str] = None
        self.offset: Optional[List[int]] = None
        self.axis: Optional[int] = None
        self.surgery: Optional[str] = None
        self.field_nodes = field_nodes or {}

    def __repr__(self) -> str:
        return "<Record %s %s>" % (self.type, self.name or (self.tops or [""])[0])


class OpCall:
    """An op item in a spec: ``- upsample: upscore`` with its keys.

    ``head`` is the value after the op name (the top), ``args`` the other keys'
    values (variables substituted), ``nodes`` their YAML nodes (for errors).
    """

    def __init__(self, op: str, head: Any, args: Dict[str, Any], nodes: Dict[str, Any],
                 node: Any, trace: Tuple, error) -> None:
        self.op = op
        self.head = head
        self.args = args
        self.nodes = nodes
        self.node = node
        self.trace = trace
        self._error = error

    def error(self, key: Optional[str], message: str, hint: Optional[str] = None) -> NetdslError:
        """A located error at ``key``'s value (or the op item itself)."""
        node = self.nodes.get(key, self.node) if key else self.node
        return self._error(node, "%s: %s" % (self.op, message), hint=hint, trace=self.trace,
                           field=key)

    def key_node(self, key: str) -> Any:
        """The YAML node of ``key`` itself (not its value) in the op item."""
        from ..spec.load import MappingNode, pairs
        if isinstance(self.node, MappingNode):
            for k, kn, _ in pairs(self.node):
                if k == key:
                    return kn
        return self.nodes.get(key, self.node)

    def check_keys(self, allowed: Sequence[str]) -> None:
        """An error at the first unknown key (located at the key, naming the op's layer)."""
        from ..errors import did_you_mean
        for key in self.args:
            if key not in allowed:
                layer = self.head if isinstance(self.head, str) and self.head else None
                raise self._error(self.key_node(key), "%s: unknown key `%s`" % (self.op, key),
                                  hint=did_you_mean(key, allowed) or
                                  "keys: %s" % ", ".join(allowed),
                                  trace=self.trace, field=key, layer=layer)

    def integer(self, key: str, default: Any = None, minimum: Optional[int] = None) -> Any:
        value = self.args.get(key, default)
        if value is None:
            if default is None and key not in self.args:
                raise self.error(None, "needs `%s`" % key)
            if default is None:  # written with no value (YAML null)
                raise self.error(key, "`%s` takes an integer, got nothing (null)" % key)
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, "`%s` takes an integer, got %r" % (key, value))
        if minimum is not None and value < minimum:
            raise self.error(key, "`%s` must be at least %d, got %d" % (key, minimum, value))
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.args.get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, "`%s` takes true or false, got %r" % (key, value))
        return value

    def choice(self, key: str, default: str, choices: Sequence[str]) -> str:
        from ..errors import did_you_mean
        value = self.args.get(key, default)
        if value not in choices:
            raise self.error(key, "`%s` is one of %s, got %r" % (key, ", ".join(choices), value),
                             hint=did_you_mean(str(value), choices))
        return value

    def names(self, key: str) -> Optional[List[str]]:
        """A blob name or list of names (None when the key is absent)."""
        if key not in self.args:
            return None
        value = self.args[key]
        items = value if isinstance(value, list) else [value]
        for v in items:
            if not isinstance(v, str) or not v:
                raise self.error(key, "`%s` takes a blob name or a list of names, got %r"
                                 % (key, value))
        return list(items)

    def top(self) -> Optional[List[str]]:
        if self.head is None:
            return None
        if not isinstance(self.head, str) or not self.head:
            raise self.error(None, "the value after `%s:` is the top name, got %r"
                             % (self.op, self.head))
        return [self.head]


def make_record(call: OpCall, type_name: str, params: Dict[str, Any]) -> Record:
    """A record for an op's layer, with the common keys (name, bottom) taken from the call."""
    name = call.args.get("name")
    if name is not None and not isinstance(name, str):
        raise call.error("name", "`name` takes a string, got %r" % (name,))
    return Record(type_name, name=name, tops=call.top(), bottoms=call.names("bottom"),
                  params=params, node=call.node, trace=call.trace, op=call.op,
                  field_nodes=dict(call.nodes))
