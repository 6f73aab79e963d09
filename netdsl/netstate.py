"""Caffe's phase filtering: which layers a net keeps for a given NetState.

The rules are those of ``Net::FilterNet`` and ``Net::StateMeetsRule`` in
BVLC's src/caffe/net.cpp:

* a layer may have ``include`` rules or ``exclude`` rules, never both;
* with no ``include`` rules a layer is kept unless some ``exclude`` rule is met;
* with ``include`` rules a layer is kept only if some ``include`` rule is met;
* a rule is met when every condition it sets holds: its ``phase`` equals the
  state's, the state's ``level`` is at least ``min_level`` and at most
  ``max_level``, the state has every ``stage`` of the rule and none of its
  ``not_stage`` entries.
"""
from __future__ import annotations

from typing import Iterable, List, Optional, Union

from google.protobuf.message import Message

from .errors import NetdslError, did_you_mean

PhaseLike = Union[int, str, None]


def _phase_enum(net_or_state: Message):
    state = net_or_state.state if hasattr(net_or_state, "layer") else net_or_state
    # a schema without the field reads it as BVLC's (netdsl.fork.fill_missing_fields)
    fd = state.DESCRIPTOR.fields_by_name.get("phase") or \
        getattr(type(state), "ABSENT_BVLC_FIELDS", {})["phase"]
    return fd.enum_type


def parse_phase(phase: PhaseLike, net: Optional[Message] = None) -> int:
    """The Phase number for ``phase``: an int (0 TRAIN, 1 TEST) or a name, any case."""
    if net is not None:
        enum = _phase_enum(net)
        names = {v.name: v.number for v in enum.values}
    else:
        names = {"TRAIN": 0, "TEST": 1}
    if isinstance(phase, bool):
        raise NetdslError("phase must be TRAIN, TEST or their numbers 0, 1; got %r" % phase,
                          field="phase")
    if isinstance(phase, int):
        if phase not in names.values():
            raise NetdslError("phase %d is not a Phase value (%s)"
                              % (phase, ", ".join("%s=%d" % kv for kv in names.items())),
                              field="phase")
        return phase
    if isinstance(phase, str):
        key = phase.strip().upper()
        if key in names:
            return names[key]
        raise NetdslError("unknown phase %r (expected %s)" % (phase, " or ".join(names)),
                          field="phase", hint=did_you_mean(key, names))
    raise NetdslError("phase must be a name or a number, not %s" % type(phase).__name__,
                      field="phase")


def state_meets_rule(state: Message, rule: Message) -> bool:
    """Caffe's ``StateMeetsRule``: does NetState ``state`` satisfy NetStateRule ``rule``?"""
    if rule.HasField("phase") and rule.phase != state.phase:
        return False
    if rule.HasField("min_level") and state.level < rule.min_level:
        return False
    if rule.HasField("max_level") and state.level > rule.max_level:
        return False
    if rule.stage or rule.not_stage:
        stages = set(state.stage)
        for s in rule.stage:
            if s not in stages:
                return False
        for s in rule.not_stage:
            if s in stages:
                return False
    return True


def layer_included(layer: Message, state: Message) -> bool:
    """Whether Caffe keeps ``layer`` in a net with NetState ``state``."""
    if len(layer.include) and len(layer.exclude):
        raise NetdslError("a layer may have include rules or exclude rules, not both "
                          "(Caffe's FilterNet: \"Specify either include rules or exclude "
                          "rules; not both\")", layer=layer.name or None, field="include")
    if not len(layer.include):
        for rule in layer.exclude:
            if state_meets_rule(state, rule):
                return False
        return True
    for rule in layer.include:
        if state_meets_rule(state, rule):
            return True
    return False


def make_state(net: Message, phase: PhaseLike = None, level: Optional[int] = None,
               stages: Optional[Iterable[str]] = None) -> Message:
    """The NetState Caffe runs ``net`` with.

    Starts from ``net.state`` (phase TEST, level 0 and no stages unless set)
    and, like ``Net(param_file, phase, level, stages)``, sets the phase and
    level when given and adds the given stages to the net's own.
    """
    state = type(net.state)()
    state.CopyFrom(net.state)
    if phase is not None:
        state.phase = parse_phase(phase, net)
    if level is not None:
        if isinstance(level, bool) or not isinstance(level, int):
            raise NetdslError("level must be an integer, not %r" % (level,), field="level")
        state.level = level
    if stages is not None:
        if isinstance(stages, str):
            stages = [stages]
        for s in stages:
            if s not in state.stage:
                state.stage.append(s)
    return state


def included_layers(net: Message, state: Optional[Message] = None) -> List[Message]:
    """The layers of ``net`` Caffe keeps for ``state`` (``net.state`` when None), in order.

    Returns the net's own LayerParameter objects (no copies).
    """
    if state is None:
        state = net.state
    out = []
    for layer in net.layer:
        if not len(layer.include) and not len(layer.exclude):
            out.append(layer)
        elif layer_included(layer, state):
            out.append(layer)
    return out


def _is_repeated(fd) -> bool:
    rep = getattr(fd, "is_repeated", None)   # protobuf >= 5.x; ``label`` before that
    if rep is not None:
        return bool(rep)
    return fd.label == fd.LABEL_REPEATED


def filter_net(net: Message, phase: PhaseLike = "TEST", level: int = 0,
               stages: Iterable[str] = ()) -> Message:
    """A copy of ``net`` holding only the layers Caffe keeps for this state.

    ``phase`` is TRAIN/TEST (name, any case, or number).  As in Caffe's Net
    constructor the level replaces the net's own and the stages are added to
    the stages already in ``net.state``.  The copy's ``state`` is the state
    used, so filtering it again keeps it unchanged.
    """
    state = make_state(net, phase, level, stages)
    keep = included_layers(net, state)
    out = type(net)()
    for fd, value in net.ListFields():
        if fd.name == "layer":
            continue
        if _is_repeated(fd):
            getattr(out, fd.name).extend(value)
        elif fd.message_type is not None:
            getattr(out, fd.name).CopyFrom(value)
        else:
            setattr(out, fd.name, value)
    out.layer.extend(keep)
    out.state.CopyFrom(state)
    return out
