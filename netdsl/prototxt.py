"""Prototxt text in and out, with protobuf's own text format.

Reading accepts what Caffe's ``ReadProtoFromTextFile`` accepts, including the
legacy V0/V1 net syntax, which :mod:`netdsl.upgrade` turns into the current
form exactly as Caffe's ``UpgradeNetAsNeeded`` does.  Writing is ``str(net)``,
the same text a pycaffe script writes.
"""
from __future__ import annotations

from types import ModuleType
from typing import Optional

from google.protobuf import text_format
from google.protobuf.message import Message

from .errors import NetdslError
from .fileio import atomic_write, read_text
from .numrange import check_float_literals, field_at_path, locate, range_text


def _pb2(schema: Optional[ModuleType]) -> ModuleType:
    # the given schema, else the one in use (netdsl.use_schema / --proto)
    if schema is not None:
        return schema
    from .schema import current_schema
    return current_schema()


def parse_message(text: str, message: Message, filename: Optional[str] = None) -> Message:
    """Parse prototxt ``text`` into ``message``; errors carry line and column."""
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as exc:
        line, col = exc.GetLine(), exc.GetColumn()
        msg = str(exc)
        # protobuf prefixes "line:col : " to the message; keep only the text
        if ":" in msg and line is not None:
            head, _, tail = msg.partition(" : ")
            if tail:
                msg = tail
        ranged = _range_error(msg, text, message, filename or "<prototxt>", line, col)
        if ranged is not None:
            raise ranged from None
        raise NetdslError(_explain(msg, message), file=filename or "<prototxt>",
                          line=line, column=col) from None
    check_float_literals(text, message, filename or "<prototxt>")
    return message


def _range_error(msg: str, text: str, message: Message, filename: str,
                 line: Optional[int], col: Optional[int]) -> Optional[NetdslError]:
    """protobuf's "Value out of range" and kin, as the field, value and range."""
    import re
    m = (re.search(r"Value out of range: (\S+)", msg)
         or re.search(r"has no value with number (-?\d+)", msg)
         or re.search(r"Couldn't parse (?:unsigned )?integer: (\S+)", msg)
         or re.search(r'Expected "true" or "false"()', msg))
    if m is None or line is None:
        return None
    path, name, layer = locate(text, line, col or 1)
    fd = field_at_path(message.DESCRIPTOR, path, name)
    if fd is None:
        return None
    where = fd.containing_type.name if fd.containing_type else ""
    value = m.group(1).rstrip(".")
    if not value:  # the token at the position
        rest = text.split("\n")[line - 1][(col or 1) - 1:]
        value = (re.match(r"[^\s,\]}>;#]*", rest).group() or "?")[:40]
    return NetdslError("`%s` in %s: %s is out of range (%s)" % (fd.name, where, value,
                                                                range_text(fd)),
                       file=filename, line=line, column=col, layer=layer, field=fd.name)


def _explain(msg: str, message: Message) -> str:
    # add a "did you mean" to protobuf's unknown-field message
    import re
    from .errors import did_you_mean
    m = re.search(r'Message type "([\w.]+)" has no field named "(\w+)"', msg)
    if m:
        try:
            desc = message.DESCRIPTOR.file.pool.FindMessageTypeByName(m.group(1))
        except KeyError:
            return msg
        hint = did_you_mean(m.group(2), [f.name for f in desc.fields])
        short = m.group(1).split(".")[-1]
        msg = "unknown field `%s` in %s" % (m.group(2), short)
        if hint:
            msg += "; " + hint
    return msg


def parse_net(text: str, filename: Optional[str] = None, *, upgrade: bool = True,
              schema: Optional[ModuleType] = None) -> Message:
    """A NetParameter from prototxt text, upgraded to the current format when asked."""
    net = parse_message(text, _pb2(schema).NetParameter(), filename)
    if upgrade:
        from .upgrade import upgrade_net
        net = upgrade_net(net, filename=filename)
    return net


def read_net(path: str, *, upgrade: bool = True, schema: Optional[ModuleType] = None) -> Message:
    """Read a net prototxt file (see :func:`parse_net`)."""
    return parse_net(read_text(path), path, upgrade=upgrade, schema=schema)


def parse_solver(text: str, filename: Optional[str] = None, *, upgrade: bool = True,
                 schema: Optional[ModuleType] = None) -> Message:
    """A SolverParameter from prototxt text (legacy solver_type upgraded when asked)."""
    solver = parse_message(text, _pb2(schema).SolverParameter(), filename)
    if upgrade:
        from .upgrade import upgrade_solver
        solver = upgrade_solver(solver, filename=filename)
    return solver


def read_solver(path: str, *, upgrade: bool = True, schema: Optional[ModuleType] = None) -> Message:
    """Read a solver prototxt file (see :func:`parse_solver`)."""
    return parse_solver(read_text(path), path, upgrade=upgrade, schema=schema)


def to_text(message: Message) -> str:
    """Prototxt text of a message: ``str(message)``, byte for byte what a pycaffe
    script writes with ``str(net.to_proto())`` on the same protobuf runtime.

    With protobuf's default (upb) backend this is the C++ text format Caffe's
    own tools print (``lr_mult: 1``, ``scale: 0.00392156886``); the pure-Python
    backend prints ``text_format.MessageToString`` (``lr_mult: 1.0``).  Both
    parse to the same message.
    """
    return str(message)


def write(path: str, message: Message) -> None:
    """Write a message as prototxt, atomically."""
    atomic_write(path, to_text(message))
