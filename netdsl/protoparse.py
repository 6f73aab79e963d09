"""Compile a proto2 ``.proto`` text into a ``FileDescriptorProto`` at run time.

Caffe's schema (and the forks that extend it) use a small part of the protobuf
language: messages, enums, nested types, scalar/message/enum fields with
``optional``/``required``/``repeated`` labels, ``[default = ...]``,
``[packed = ...]``, ``[deprecated = ...]``, ``oneof``, ``reserved``,
``extensions`` ranges, options, and ``import`` of sibling files.  This module
parses exactly that, resolves type names with protoc's scoping rule (innermost
scope outward), and reports every problem with file, line and column.  No
protoc and no generated Python code are involved, so the result loads on any
protobuf runtime.
"""
from __future__ import annotations

import os
import re
from typing import Callable, Dict, List, Optional, Tuple

from google.protobuf import descriptor_pb2

from .errors import NetdslError, did_you_mean

F = descriptor_pb2.FieldDescriptorProto

SCALARS = {
    "double": F.TYPE_DOUBLE, "float": F.TYPE_FLOAT, "int64": F.TYPE_INT64,
    "uint64": F.TYPE_UINT64, "int32": F.TYPE_INT32, "fixed64": F.TYPE_FIXED64,
    "fixed32": F.TYPE_FIXED32, "bool": F.TYPE_BOOL, "string": F.TYPE_STRING,
    "bytes": F.TYPE_BYTES, "uint32": F.TYPE_UINT32, "sfixed32": F.TYPE_SFIXED32,
    "sfixed64": F.TYPE_SFIXED64, "sint32": F.TYPE_SINT32, "sint64": F.TYPE_SINT64,
}
LABELS = {"optional": F.LABEL_OPTIONAL, "required": F.LABEL_REQUIRED,
          "repeated": F.LABEL_REPEATED}
MAX_FIELD_NUMBER = 536870911

_TOKEN = re.compile(r"""
    (?P<ws>[ \t\r\f\v]+) | (?P<nl>\n) |
    (?P<comment>//[^\n]*|/\*.*?\*/) |
    (?P<float>[-+]?(?:\d+\.\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+)) |
    (?P<int>[-+]?(?:0[xX][0-9a-fA-F]+|\d+)) |
    (?P<ident>\.?[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*) |
    (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*') |
    (?P<sym>[{}\[\]()<>;=,:-])
""", re.VERBOSE | re.DOTALL)


class Token:
    __slots__ = ("kind", "text", "line", "col")

    def __init__(self, kind: str, text: str, line: int, col: int) -> None:
        self.kind, self.text, self.line, self.col = kind, text, line, col

    def __repr__(self) -> str:
        return "%s(%r)@%d:%d" % (self.kind, self.text, self.line, self.col)


def tokenize(text: str, filename: str) -> List[Token]:
    toks: List[Token] = []
    pos, line, line_start = 0, 1, 0
    n = len(text)
    while pos < n:
        m = _TOKEN.match(text, pos)
        if m is None:
            raise NetdslError("unexpected character %r" % text[pos], file=filename,
                              line=line, column=pos - line_start + 1)
        kind = m.lastgroup
        tok = m.group()
        if kind == "nl":
            line += 1
            line_start = m.end()
        elif kind == "comment":
            nls = tok.count("\n")
            if nls:
                line += nls
                line_start = pos + tok.rindex("\n") + 1
        elif kind != "ws":
            toks.append(Token(kind, tok, line, pos - line_start + 1))
        pos = m.end()
    toks.append(Token("eof", "", line, pos - line_start + 1))
    return toks


def unescape(lit: str) -> str:
    """Decode a protobuf string literal body (C escapes)."""
    body = lit[1:-1]
    if "\\" not in body:
        return body
    return body.encode("latin-1", "backslashreplace").decode("unicode_escape")


class _Parser:
    def __init__(self, text: str, filename: str) -> None:
        self.file = filename
        self.toks = tokenize(text, filename)
        self.i = 0
        # fully qualified name -> (kind, token) for type resolution
        self.locs: Dict[str, Tuple[int, int]] = {}
        self.pending: List[Tuple[F, List[str], Token]] = []
        # (scope, name) -> (line, column) of each message field and enum value
        self.where: Dict[Tuple[str, str], Tuple[int, int]] = {}

    # -- token helpers -------------------------------------------------
    def peek(self) -> Token:
        return self.toks[self.i]

    def next(self) -> Token:
        t = self.toks[self.i]
        self.i += 1
        return t

    def error(self, msg: str, tok: Optional[Token] = None, hint: Optional[str] = None) -> NetdslError:
        tok = tok or self.peek()
        return NetdslError(msg, file=self.file, line=tok.line, column=tok.col, hint=hint)

    def expect(self, text: str) -> Token:
        t = self.next()
        if t.text != text:
            raise self.error("expected `%s`, found %s" % (text, _show(t)), t)
        return t

    def accept(self, text: str) -> bool:
        if self.peek().text == text and self.peek().kind in ("sym", "ident"):
            self.i += 1
            return True
        return False

    def ident(self, what: str = "a name") -> Token:
        t = self.next()
        if t.kind != "ident":
            raise self.error("expected %s, found %s" % (what, _show(t)), t)
        return t

    def integer(self) -> int:
        t = self.next()
        if t.kind != "int":
            raise self.error("expected an integer, found %s" % _show(t), t)
        return self._int(t)

    def _int(self, t: Token) -> int:
        """An integer literal as protoc reads it: decimal, 0x hex, or 0-prefixed octal."""
        text = t.text
        sign = -1 if text.startswith("-") else 1
        body = text.lstrip("+-")
        try:
            if body[:2].lower() == "0x":
                return sign * int(body[2:], 16)
            if len(body) > 1 and body.startswith("0"):
                return sign * int(body[1:], 8)
            return sign * int(body, 10)
        except ValueError:
            raise self.error("bad integer literal %s" % _show(t), t) from None

    def int32(self, what: str) -> int:
        """An integer that protobuf stores as int32 (field and enum numbers, ranges)."""
        t = self.peek()
        neg = t.kind == "sym" and t.text == "-"
        if neg:
            self.next()
            t = self.peek()
        value = -self.integer() if neg else self.integer()
        if not -2 ** 31 <= value <= 2 ** 31 - 1:
            raise self.error("%s %d is out of range (int32: -2147483648 to 2147483647)"
                             % (what, value), t)
        return value

    def constant(self) -> Token:
        t = self.next()
        if t.kind == "sym" and t.text == "-":
            nxt = self.next()
            nxt.text = "-" + nxt.text
            return nxt
        if t.kind in ("int", "float", "ident", "string"):
            # adjacent string literals concatenate
            while t.kind == "string" and self.peek().kind == "string":
                s = self.next()
                t = Token("string", t.text[:-1] + s.text[1:], t.line, t.col)
            return t
        raise self.error("expected a constant, found %s" % _show(t), t)

    # -- grammar -------------------------------------------------------
    def parse(self) -> descriptor_pb2.FileDescriptorProto:
        fdp = descriptor_pb2.FileDescriptorProto()
        fdp.name = os.path.basename(self.file)
        self.fdp = fdp
        while self.peek().kind != "eof":
            t = self.peek()
            if self.accept("syntax"):
                self.expect("=")
                s = self.next()
                if s.kind != "string" or unescape(s.text) not in ("proto2", "proto3"):
                    raise self.error("syntax must be \"proto2\"", s)
                if unescape(s.text) == "proto3":
                    raise self.error("proto3 schemas are not supported; Caffe schemas are proto2", s)
                self.expect(";")
            elif self.accept("package"):
                fdp.package = self.ident("a package name").text
                self.expect(";")
            elif self.accept("import"):
                if self.peek().text in ("public", "weak"):
                    self.next()
                s = self.next()
                if s.kind != "string":
                    raise self.error("expected a file name in quotes", s)
                fdp.dependency.append(unescape(s.text))
                self.expect(";")
            elif self.accept("option"):
                self.option(None)
            elif self.accept("message"):
                self.message(fdp.message_type.add(), [fdp.package] if fdp.package else [])
            elif self.accept("enum"):
                self.enum(fdp.enum_type.add(), [fdp.package] if fdp.package else [])
            elif self.accept("extend"):
                raise self.error("`extend` (extensions) is not supported; add the field to "
                                 "LayerParameter itself, as Caffe forks do", t)
            elif self.accept("service"):
                raise self.error("services are not supported in a Caffe schema", t)
            elif self.accept(";"):
                pass
            else:
                raise self.error("expected `message`, `enum`, `package`, `import`, `option` "
                                 "or `syntax`, found %s" % _show(t), t)
        return fdp

    def option(self, target) -> None:
        # option name = constant;  Options are accepted and ignored unless known.
        if self.accept("("):
            self.ident("an option name")
            self.expect(")")
            while self.peek().kind == "ident" and self.peek().text.startswith("."):
                self.next()
        else:
            self.ident("an option name")
        self.expect("=")
        self.constant()
        self.expect(";")

    def _declare(self, fqn: str, tok: Token) -> None:
        if fqn in self.locs:
            line, col = self.locs[fqn]
            raise self.error("`%s` is already defined at line %d" % (fqn.split(".")[-1], line), tok)
        self.locs[fqn] = (tok.line, tok.col)

    def message(self, m: descriptor_pb2.DescriptorProto, scope: List[str]) -> None:
        name = self.ident("a message name")
        m.name = name.text
        fqn = ".".join(scope + [m.name])
        self._declare(fqn, name)
        inner = scope + [m.name]
        self.expect("{")
        numbers: Dict[int, Token] = {}
        names: Dict[str, Token] = {}
        while not self.accept("}"):
            t = self.peek()
            if t.kind == "eof":
                raise self.error("message `%s` is not closed (missing `}`)" % m.name, name)
            if self.accept(";"):
                continue
            if self.accept("message"):
                self.message(m.nested_type.add(), inner)
            elif self.accept("enum"):
                self.enum(m.enum_type.add(), inner)
            elif self.accept("option"):
                self.option(m)
            elif self.accept("reserved"):
                self.reserved(m)
            elif self.accept("extensions"):
                while True:
                    r = m.extension_range.add()
                    r.start = self.integer()
                    if self.accept("to"):
                        if self.accept("max"):
                            r.end = MAX_FIELD_NUMBER + 1
                        else:
                            r.end = self.integer() + 1
                    else:
                        r.end = r.start + 1
                    if not self.accept(","):
                        break
                self.expect(";")
            elif self.accept("oneof"):
                oname = self.ident("a oneof name")
                index = len(m.oneof_decl)
                m.oneof_decl.add().name = oname.text
                self.expect("{")
                while not self.accept("}"):
                    if self.accept("option"):
                        self.option(None)
                        continue
                    self.field(m, inner, None, numbers, names, oneof=index)
            elif self.accept("extend"):
                raise self.error("`extend` (extensions) is not supported", t)
            elif self.accept("map"):
                raise self.error("map fields are not supported in a Caffe schema", t)
            elif t.text in LABELS:
                self.next()
                self.field(m, inner, LABELS[t.text], numbers, names)
            else:
                raise self.error("expected a field (`optional`, `required` or `repeated`), "
                                 "`message` or `enum` in message `%s`, found %s"
                                 % (m.name, _show(t)), t)

    def reserved(self, m) -> None:
        if self.peek().kind == "string":
            while True:
                m.reserved_name.append(unescape(self.next().text))
                if not self.accept(","):
                    break
        else:
            while True:
                r = m.reserved_range.add()
                r.start = self.int32("reserved number")
                if self.accept("to"):
                    end = MAX_FIELD_NUMBER if self.accept("max") else self.int32("reserved number")
                    if end >= 2 ** 31 - 1:
                        end = MAX_FIELD_NUMBER
                    r.end = end + 1
                else:
                    r.end = r.start + 1
                if not self.accept(","):
                    break
        self.expect(";")

    def field(self, m, scope, label, numbers, names, oneof=None) -> None:
        ttok = self.ident("a field type")
        if ttok.text == "group":
            raise self.error("groups are not supported", ttok)
        ntok = self.ident("a field name")
        self.expect("=")
        numtok = self.peek()
        number = self.integer()
        if not 1 <= number <= MAX_FIELD_NUMBER:
            raise self.error("field number %d of `%s` is out of range (1 to %d)"
                             % (number, ntok.text, MAX_FIELD_NUMBER), numtok)
        f = m.field.add()
        f.name = ntok.text
        f.number = number
        f.label = label if label is not None else F.LABEL_OPTIONAL
        if oneof is not None:
            f.oneof_index = oneof
        if not 1 <= number <= MAX_FIELD_NUMBER or 19000 <= number <= 19999:
            raise self.error("field number %d of `%s` is out of range" % (number, f.name), numtok)
        if number in numbers:
            other = numbers[number]
            raise self.error("field number %d of `%s` is already used by `%s` at line %d of "
                             "message `%s`" % (number, f.name, other.text, other.line, m.name),
                             numtok)
        if f.name in names:
            raise self.error("field `%s` is already defined at line %d of message `%s`"
                             % (f.name, names[f.name].line, m.name), ntok)
        for r in m.reserved_range:
            if r.start <= number < r.end:
                raise self.error("field number %d of `%s` is reserved" % (number, f.name), numtok)
        numbers[number] = ntok
        names[f.name] = ntok
        self.where[(".".join(scope), f.name)] = (ntok.line, ntok.col)
        if ttok.text in SCALARS:
            f.type = SCALARS[ttok.text]
        else:
            self.pending.append((f, list(scope), ttok))
        default_tok = None
        if self.accept("["):
            while True:
                otok = self.ident("a field option")
                self.expect("=")
                val = self.constant()
                if otok.text == "default":
                    default_tok = val
                elif otok.text == "packed":
                    f.options.packed = self._bool(val)
                elif otok.text == "deprecated":
                    f.options.deprecated = self._bool(val)
                elif otok.text == "json_name":
                    f.json_name = unescape(val.text)
                # other options (lazy, ctype, ...) do not change the wire format
                if not self.accept(","):
                    break
            self.expect("]")
        if default_tok is not None:
            if label == F.LABEL_REPEATED:
                raise self.error("repeated field `%s` cannot have a default" % f.name, default_tok)
            self._defaults.append((f, default_tok))
        self.expect(";")

    def _bool(self, tok: Token) -> bool:
        if tok.text not in ("true", "false"):
            raise self.error("expected true or false, found %s" % _show(tok), tok)
        return tok.text == "true"

    def enum(self, e: descriptor_pb2.EnumDescriptorProto, scope: List[str]) -> None:
        name = self.ident("an enum name")
        e.name = name.text
        self._declare(".".join(scope + [e.name]), name)
        self.expect("{")
        seen: Dict[str, Token] = {}
        while not self.accept("}"):
            t = self.peek()
            if t.kind == "eof":
                raise self.error("enum `%s` is not closed (missing `}`)" % e.name, name)
            if self.accept(";"):
                continue
            if self.accept("option"):
                self.option(e)
                continue
            if self.accept("reserved"):
                self.reserved(e)
                continue
            vtok = self.ident("an enum value name")
            self.expect("=")
            v = e.value.add()
            v.name = vtok.text
            v.number = self.int32("enum value")
            if v.name in seen:
                raise self.error("enum value `%s` is already defined at line %d"
                                 % (v.name, seen[v.name].line), vtok)
            seen[v.name] = vtok
            self.where[(".".join(scope + [e.name]), v.name)] = (vtok.line, vtok.col)
            # enum values live in the enclosing scope, as in C++
            self._declare(".".join(scope + [v.name]), vtok)
            if self.accept("["):
                while True:
                    self.ident("an option name")
                    self.expect("=")
                    self.constant()
                    if not self.accept(","):
                        break
                self.expect("]")
            self.expect(";")
        if not e.value:
            raise self.error("enum `%s` has no values" % e.name, name)

    # -- resolution ------------------------------------------------------
    def resolve(self, types: Dict[str, int]) -> None:
        for f, scope, tok in self.pending:
            name = tok.text
            found = None
            if name.startswith("."):
                found = name[1:] if name[1:] in types else None
            else:
                first = name.split(".")[0]
                for k in range(len(scope), -1, -1):
                    base = ".".join(scope[:k] + [first])
                    if base in types or any(t.startswith(base + ".") for t in types):
                        cand = ".".join(scope[:k] + [name])
                        if cand in types:
                            found = cand
                        break
            if found is None:
                short = sorted({t.split(".")[-1] for t in types} | set(SCALARS))
                raise self.error("unknown type `%s` for field `%s`" % (name, f.name), tok,
                                 hint=did_you_mean(name.split(".")[-1], short))
            f.type_name = "." + found
            f.type = types[found]

    def defaults(self, enums: Dict[str, List[str]]) -> None:
        for f, tok in self._defaults:
            text = tok.text
            t = f.type
            if t == F.TYPE_STRING or t == F.TYPE_BYTES:
                if tok.kind != "string":
                    raise self.error("default of string field `%s` must be a quoted string"
                                     % f.name, tok)
                f.default_value = unescape(text)
            elif t == F.TYPE_BOOL:
                f.default_value = "true" if self._bool(tok) else "false"
            elif t in (F.TYPE_FLOAT, F.TYPE_DOUBLE):
                if tok.kind in ("int", "float"):
                    try:
                        f.default_value = _float_text(float(self._int(tok)) if tok.kind == "int"
                                                      else float(text))
                    except OverflowError:
                        raise self.error("default %s of `%s` is out of range (%s)" % (
                            text, f.name, "double: up to 1.7976931348623157e+308"), tok) from None
                elif text.lstrip("-") in ("inf", "nan"):
                    f.default_value = text
                else:
                    raise self.error("default of `%s` must be a number" % f.name, tok)
            elif t == F.TYPE_ENUM:
                values = enums.get(f.type_name[1:], [])
                if text not in values:
                    raise self.error("default `%s` of `%s` is not a value of enum `%s`"
                                     % (text, f.name, f.type_name.split(".")[-1]), tok,
                                     hint=did_you_mean(text, values))
                f.default_value = text
            elif t == F.TYPE_MESSAGE:
                raise self.error("message field `%s` cannot have a default" % f.name, tok)
            else:
                if tok.kind != "int":
                    raise self.error("default of integer field `%s` must be an integer"
                                     % f.name, tok)
                value = self._int(tok)
                lo, hi, kind = _INT_RANGES.get(t, (None, None, None))
                if lo is not None and not lo <= value <= hi:
                    raise self.error("default %d of `%s` is out of range (%s: %d to %d)"
                                     % (value, f.name, kind, lo, hi), tok)
                f.default_value = str(value)


_INT_RANGES = {
    F.TYPE_INT32: (-2 ** 31, 2 ** 31 - 1, "int32"), F.TYPE_SINT32: (-2 ** 31, 2 ** 31 - 1, "sint32"),
    F.TYPE_SFIXED32: (-2 ** 31, 2 ** 31 - 1, "sfixed32"),
    F.TYPE_UINT32: (0, 2 ** 32 - 1, "uint32"), F.TYPE_FIXED32: (0, 2 ** 32 - 1, "fixed32"),
    F.TYPE_INT64: (-2 ** 63, 2 ** 63 - 1, "int64"), F.TYPE_SINT64: (-2 ** 63, 2 ** 63 - 1, "sint64"),
    F.TYPE_SFIXED64: (-2 ** 63, 2 ** 63 - 1, "sfixed64"),
    F.TYPE_UINT64: (0, 2 ** 64 - 1, "uint64"), F.TYPE_FIXED64: (0, 2 ** 64 - 1, "fixed64"),
}


def _float_text(x: float) -> str:
    # protoc writes float defaults in the shortest form that round-trips
    r = repr(x)
    if r.endswith(".0"):
        r = r[:-2]
    return r


def _show(t: Token) -> str:
    return "end of file" if t.kind == "eof" else "`%s`" % t.text


def _collect(fdp: descriptor_pb2.FileDescriptorProto, types: Dict[str, int],
             enums: Dict[str, List[str]]) -> None:
    prefix = fdp.package

    def walk_enum(e, scope):
        fqn = ".".join(filter(None, [scope, e.name]))
        types[fqn] = F.TYPE_ENUM
        enums[fqn] = [v.name for v in e.value]

    def walk_msg(m, scope):
        fqn = ".".join(filter(None, [scope, m.name]))
        types[fqn] = F.TYPE_MESSAGE
        for e in m.enum_type:
            walk_enum(e, fqn)
        for n in m.nested_type:
            walk_msg(n, fqn)

    for m in fdp.message_type:
        walk_msg(m, prefix)
    for e in fdp.enum_type:
        walk_enum(e, prefix)


def parse_proto(text: str, filename: str = "caffe.proto",
                load: Optional[Callable[[str], Tuple[str, str]]] = None,
                locations: Optional[Dict[Tuple[str, str], Tuple[str, int, int]]] = None,
                ) -> List[descriptor_pb2.FileDescriptorProto]:
    """Parse a ``.proto`` text (and, through ``load``, the files it imports).

    Returns the file descriptors in dependency order, the given file last.
    ``load(name)`` returns ``(text, path)`` for an imported file name.  When
    ``locations`` is given it is filled with ``(scope, name) -> (path, line,
    column)`` for every field (scope: the message's full name) and enum value
    (scope: the enum's full name).
    """
    done: Dict[str, descriptor_pb2.FileDescriptorProto] = {}
    order: List[descriptor_pb2.FileDescriptorProto] = []
    types: Dict[str, int] = {}
    enums: Dict[str, List[str]] = {}

    def visit(text, path, name, stack):
        p = _Parser(text, path)
        p._defaults = []
        fdp = p.parse()
        fdp.name = name
        for dep in fdp.dependency:
            if dep in done:
                continue
            if dep in stack:
                raise NetdslError("import cycle: %s" % " -> ".join(stack + [dep]), file=path)
            if load is None:
                raise NetdslError("cannot import \"%s\": no import path" % dep, file=path)
            dtext, dpath = load(dep)
            visit(dtext, dpath, dep, stack + [dep])
        _collect(fdp, types, enums)
        p.resolve(types)
        p.defaults(enums)
        if locations is not None:
            for key, (line, col) in p.where.items():
                locations[key] = (path, line, col)
        done[name] = fdp
        order.append(fdp)

    visit(text, filename, os.path.basename(filename), [os.path.basename(filename)])
    return order


def file_loader(base_dir: str) -> Callable[[str], Tuple[str, str]]:
    """An import loader that reads imported files relative to ``base_dir``."""
    def load(name: str) -> Tuple[str, str]:
        path = os.path.join(base_dir, name)
        try:
            with open(path, encoding="utf-8") as fh:
                return fh.read(), path
        except OSError as exc:
            raise NetdslError("cannot import \"%s\": %s" % (name, exc.strerror), file=path)
    return load
