"""Reading spec files: YAML nodes with their marks, Jinja2 templates, scalars, includes.

Every value of a spec stays a YAML node (``yaml.compose``), so an error found
anywhere later can name the file, line and column it came from.  Scalars are
typed by the YAML 1.2 core schema (``1e-10`` is a number, ``yes`` and ``1_1``
are strings), duplicate keys are errors, and ``*.j2`` files are rendered with
Jinja2's sandbox (``StrictUndefined``) before they are parsed; template errors
point at the template's own line.
"""
from __future__ import annotations

import io
import os
import re
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..errors import NetdslError, did_you_mean
from ..fileio import read_text

__all__ = ["Node", "MappingNode", "ScalarNode", "SequenceNode", "compose_text", "load_file",
           "scalar", "pairs", "where", "error", "render_template", "template_env",
           "split_front_matter", "parse_scalar_text", "is_template", "located_error",
           "mapping_items", "sequence_items", "check_keys", "display_path", "node_file",
           "resolve_include"]

# -- YAML 1.2 core schema ------------------------------------------------------------


_PLAIN = "?plain"   # a plain scalar, typed lazily by scalar()


class _Resolver(yaml.resolver.BaseResolver):
    """Tags without Python regex work per scalar: plain scalars are typed on first use."""

    yaml_implicit_resolvers: Dict[Any, Any] = {}

    def resolve(self, kind, value, implicit):  # type: ignore[override]
        if kind is ScalarNode:
            return _PLAIN if implicit[0] else _TAG + "str"
        if kind is SequenceNode:
            return _TAG + "seq"
        return _TAG + "map"

    def descend_resolver(self, current_node, current_index):  # type: ignore[override]
        pass

    def ascend_resolver(self):  # type: ignore[override]
        pass


_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_TAG = "tag:yaml.org,2002:"



def _implicit_tag(text: str) -> str:
    """The YAML 1.2 core-schema tag of a plain scalar."""
    c = text[:1]
    if c == "" or c in "~nN":
        if _NULL.match(text):
            return _TAG + "null"
    elif c in "tTfF":
        if _BOOL.match(text):
            return _TAG + "bool"
    if c in "-+0123456789.":
        if _INT.match(text):
            return _TAG + "int"
        if _FLOAT.match(text):
            return _TAG + "float"
    return _TAG + "str"

if getattr(yaml, "__with_libyaml__", False):
    from yaml._yaml import CParser as _CParser

    class _Loader(_CParser, _Resolver):  # type: ignore[misc]
        def __init__(self, stream: Any) -> None:
            _CParser.__init__(self, stream)
            _Resolver.__init__(self)
else:  # pragma: no cover - pure-Python PyYAML
    class _Loader(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser,  # type: ignore
                  yaml.composer.Composer, _Resolver):
        def __init__(self, stream: Any) -> None:
            yaml.reader.Reader.__init__(self, stream)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)
            yaml.composer.Composer.__init__(self)
            _Resolver.__init__(self)


class _Named(io.StringIO):
    name = "<spec>"


def compose_text(text: str, name: str) -> Optional[Node]:
    """The root node of YAML ``text`` (None when empty); syntax errors are located."""
    deep = _DEEP_BLOCKS.search(text)
    if deep is not None:  # PyYAML composes these slowly, then recurses past Python's limit
        line = text.count("\n", 0, deep.start()) + 1
        raise NetdslError("YAML syntax error: block sequences nested more than %d deep"
                          % MAX_DEPTH, file=name, line=line, column=1)
    stream = _Named(text)
    stream.name = name
    loader = _Loader(stream)
    try:
        root = loader.get_single_node()
        if root is not None:
            _check_aliases(root, name)
        return root
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        column = mark.column + 1 if mark else None
        raise NetdslError("YAML syntax error: %s" % yaml_cause(exc), file=name, line=line,
                          column=column, detail=caret(text, line, column) or None) from None
    except RecursionError:  # PyYAML's composer on thousands of nested blocks
        raise NetdslError("YAML syntax error: nested too deeply", file=name) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow
        pos = exc.position if isinstance(exc.position, int) else 0
        line = text.count("\n", 0, pos) + 1
        col = pos - (text.rfind("\n", 0, pos) + 1) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise NetdslError("YAML syntax error: character U+%04X is not allowed (%s)"
                          % (code, exc.reason), file=name, line=line, column=col) from None
    except yaml.YAMLError as exc:
        raise NetdslError("YAML error: %s" % " ".join(str(exc).split()), file=name) from None
    finally:
        loader.dispose()


# PyYAML's words for a syntax error -> what a spec author most likely did
_YAML_CAUSES = (
    ("mapping values are not allowed",
     "a `key: value` where none can start: this line is most likely indented more than the "
     "keys it belongs with (or an unquoted value contains `: `)"),
    ("expected '-' indicator",
     "this line is most likely indented less than the list item it belongs to: the keys of "
     "a `- ` item line up under its first key, and every item starts with `- ` at the same "
     "column"),
    ("did not find expected key",
     "this line's indentation does not match the keys above it: the keys of one mapping "
     "start at the same column (or a quote is not closed)"),
    ("cannot start any token",
     "a character that cannot start a YAML value here; a tab used for indentation (YAML "
     "takes spaces only), or a value that needs quotes"),
    ("could not find expected ':'",
     "a key without `:`, or a quote or bracket opened on an earlier line and not closed"),
    ("found undefined alias", "`*name` refers to no `&name` anchor (quote a value starting "
                              "with `*`)"),
)


def yaml_cause(exc: "yaml.MarkedYAMLError") -> str:
    """A PyYAML syntax error in a spec author's words, with the likely cause."""
    problem = exc.problem or exc.context or "invalid YAML"
    for words, cause in _YAML_CAUSES:
        if words in problem:
            return "%s (YAML: %s)" % (cause, problem)
    return "%s (check this line's indentation against the lines above it)" % problem


def caret(text: Optional[str], line: Optional[int], column: Optional[int]) -> str:
    """The 1-based ``line`` of ``text`` and a caret under ``column``, on two lines
    (empty when the line is unknown): a NetdslError's ``detail``."""
    if not text or not line:
        return ""
    lines = text.split("\n")
    if line > len(lines):
        return ""
    src = lines[line - 1].rstrip("\r").expandtabs(1)
    if not src.strip() and line > 1:   # an error at the start of a blank line: show none
        return ""
    col = max(1, min(column or 1, len(src) + 1))
    return "%s\n%s^" % (src, " " * (col - 1))
#: the most values a document may hold once its aliases are expanded
MAX_EXPANDED_NODES = 1_000_000
#: the longest text a template may render to (a spec of 100k layers is ~5 MB)
MAX_RENDERED = 8 << 20
#: the deepest nesting of collections a document may have
MAX_DEPTH = 200
_DEEP_BLOCKS = re.compile(r"(?:-[ \t]+){%d}" % MAX_DEPTH)


def _check_aliases(root: Node, name: str) -> None:
    """Refuse a node graph that aliases make cyclic (``&a [*a]``) or that expands to
    more than :data:`MAX_EXPANDED_NODES` values (nested aliases, "billion laughs")."""
    size: Dict[int, int] = {}
    on_stack = set()
    stack: List[Tuple[Node, bool, int]] = [(root, False, 0)]
    while stack:
        node, done, depth = stack.pop()
        key = id(node)
        if depth > MAX_DEPTH:
            raise NetdslError("YAML syntax error: collections nested more than %d deep"
                              % MAX_DEPTH, file=name, line=node.start_mark.line + 1,
                              column=node.start_mark.column + 1)
        if isinstance(node, ScalarNode):
            size[key] = 1
            continue
        children = ([n for pair in node.value for n in pair] if isinstance(node, MappingNode)
                    else list(node.value))
        if done:
            on_stack.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in children)
            if size[key] > MAX_EXPANDED_NODES:
                raise NetdslError("YAML aliases expand this to more than %d values"
                                  % MAX_EXPANDED_NODES, file=name,
                                  line=node.start_mark.line + 1,
                                  column=node.start_mark.column + 1)
            continue
        if key in size:
            continue
        on_stack.add(key)
        stack.append((node, True, depth))
        for c in children:
            if id(c) in on_stack:
                raise NetdslError("a YAML alias refers to the node that holds it (a cycle)",
                                  file=name, line=c.start_mark.line + 1,
                                  column=c.start_mark.column + 1)
            if id(c) not in size:
                stack.append((c, False, depth + 1))


def where(node: Node) -> Tuple[str, int, int]:
    """(file, line, column) of a node, 1-based."""
    m = node.start_mark
    return m.name, m.line + 1, m.column + 1


def error(node: Optional[Node], message: str, *, hint: Optional[str] = None,
          field: Optional[str] = None, layer: Optional[str] = None,
          column_offset: int = 0) -> NetdslError:
    """A NetdslError located at ``node``."""
    if node is None:
        return NetdslError(message, hint=hint, field=field, layer=layer)
    f, line, col = where(node)
    return NetdslError(message, file=f, line=line, column=col + column_offset, hint=hint,
                       field=field, layer=layer)


def scalar(node: ScalarNode) -> Any:
    """The typed value of a scalar node (cached on the node)."""
    try:
        return node._netdsl_value  # type: ignore[attr-defined]
    except AttributeError:
        pass
    tag = node.tag
    text = node.value
    if tag == _PLAIN:
        tag = _implicit_tag(text)
        if tag == _TAG + "str":
            node._netdsl_value = text  # type: ignore[attr-defined]
            return text
    if tag == _TAG + "str" or tag == "!":
        v: Any = text
    elif tag == _TAG + "int":
        try:
            v = int(text, 0) if text[:2] in ("0x", "0o") else int(text)
        except ValueError:
            raise error(node, "`%s` is not an integer" % text) from None
    elif tag == _TAG + "float":
        try:
            v = float(text.replace(".inf", "inf").replace(".Inf", "inf").replace(".INF", "inf")
                      .replace(".nan", "nan").replace(".NaN", "nan").replace(".NAN", "nan"))
        except ValueError:
            raise error(node, "`%s` is not a number" % text) from None
    elif tag == _TAG + "bool":
        low = text.lower()
        if low not in ("true", "false"):
            raise error(node, "`%s` is not true or false" % text)
        v = low == "true"
    elif tag == _TAG + "null":
        v = None
    else:
        raise error(node, "unsupported YAML tag `%s`" % tag,
                    hint="specs use plain YAML values (tags !!str, !!int, !!float, !!bool)")
    node._netdsl_value = v  # type: ignore[attr-defined]
    return v


def pairs(node: MappingNode) -> List[Tuple[str, ScalarNode, Node]]:
    """(key, key node, value node) of a mapping; duplicate or non-text keys are errors."""
    try:
        return node._netdsl_pairs  # type: ignore[attr-defined]
    except AttributeError:
        pass
    out = []
    seen: Dict[str, ScalarNode] = {}
    for knode, vnode in node.value:
        if not isinstance(knode, ScalarNode):
            raise error(knode, "a mapping key must be a plain name, not a %s"
                        % ("list" if isinstance(knode, SequenceNode) else "mapping"))
        if knode.tag == _PLAIN and knode.value == "<<":
            raise error(knode, "YAML merge keys (<<) are not supported",
                        hint="use a block with arguments")
        key = scalar(knode)
        if not isinstance(key, str):
            key = knode.value
        if key in seen:
            f, line, col = where(seen[key])
            raise error(knode, "duplicate key `%s` (first at line %d, column %d)"
                        % (key, line, col), field=key)
        seen[key] = knode
        out.append((key, knode, vnode))
    node._netdsl_pairs = out  # type: ignore[attr-defined]
    return out


def parse_scalar_text(text: str, what: str) -> Any:
    """A ``-D`` value: YAML text read with the spec's scalar rules (flow lists and maps too)."""
    node = compose_text(text, what)
    if node is None:
        return None
    return plain(node)


def plain(node: Node) -> Any:
    """A node as plain Python values (no variable substitution)."""
    if isinstance(node, ScalarNode):
        return scalar(node)
    if isinstance(node, SequenceNode):
        return [plain(n) for n in node.value]
    return {k: plain(v) for k, _, v in pairs(node)}


# -- files and templates ---------------------------------------------------------------

def is_template(path: str) -> bool:
    return path.endswith(".j2")


_FRONT = re.compile(r"\A---[ \t]*\r?\n(.*?)^---[ \t]*\r?$\n?", re.S | re.M)


def split_front_matter(text: str) -> Tuple[str, str]:
    """(front matter YAML, template body with the front matter blanked to keep line numbers)."""
    m = _FRONT.match(text)
    if not m:
        return "", text
    front = m.group(1)
    blank = "\n" * m.group(0).count("\n")
    return front, blank + text[m.end():]


_ENV_CACHE: Dict[str, Any] = {}


class TemplateFailure(Exception):
    """Raised by ``{{ fail("message") }}`` in a template."""


def _fail(message: str = "the template refused its variables") -> None:
    raise TemplateFailure(str(message))


def _bounded_env_class():
    from jinja2.exceptions import SecurityError
    from jinja2.sandbox import SandboxedEnvironment

    class BoundedEnvironment(SandboxedEnvironment):
        """The sandbox, with ``**`` and ``*`` kept to results of bounded size (a
        template that computes 9**9**9 or 'x' * 10**10 is refused, not run)."""
        intercepted_binops = frozenset(["**", "*"])

        def call_binop(self, context, operator, left, right):
            if operator == "**" and isinstance(left, int) and isinstance(right, int) and \
                    abs(left) > 1 and right > 0 and right * max(abs(left).bit_length(), 1) > 4096:
                raise SecurityError("%d ** %d is too large a number" % (left, right))
            if operator == "*":
                for seq, n in ((left, right), (right, left)):
                    if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and \
                            len(seq) * n > 1 << 22:
                        raise SecurityError("repeating a %s of %d items %d times is too large"
                                            % (type(seq).__name__, len(seq), n))
                if isinstance(left, int) and isinstance(right, int) and \
                        left.bit_length() + right.bit_length() > 4096:
                    raise SecurityError("the product is too large a number")
            return super().call_binop(context, operator, left, right)
    return BoundedEnvironment


def template_env(directory: str):
    """A sandboxed Jinja2 environment (StrictUndefined, trim_blocks, lstrip_blocks) loading
    templates relative to ``directory``."""
    env = _ENV_CACHE.get(directory)
    if env is not None:
        return env
    import jinja2
    _BoundedEnvironment = _bounded_env_class()

    class _Loader(jinja2.BaseLoader):
        def get_source(self, environment, template):
            path = os.path.normpath(os.path.join(directory, template))
            if not os.path.isfile(path):
                raise jinja2.TemplateNotFound(template)
            text = read_text(path)
            if is_template(path):
                text = split_front_matter(text)[1]
            return text, path, lambda: True

    # trim_blocks/lstrip_blocks: a {% tag %} line leaves no blank line or indent behind,
    # which keeps rendered YAML's indentation as written
    env = _BoundedEnvironment(loader=_Loader(), undefined=jinja2.StrictUndefined,
                               keep_trailing_newline=True, autoescape=False,
                               trim_blocks=True, lstrip_blocks=True)
    env.globals["fail"] = _fail
    _ENV_CACHE[directory] = env
    return env


def front_matter(path: str, text: Optional[str] = None) -> Tuple[Dict[str, Any], Dict[str, Node], str]:
    """A template's front-matter variables (values, nodes) and its body."""
    if text is None:
        text = read_text(path)
    front, body = split_front_matter(text)
    values: Dict[str, Any] = {}
    nodes: Dict[str, Node] = {}
    if front.strip():
        # parse the front matter at its own lines: pad with one line for the opening ---
        root = compose_text("\n" + front, path)
        if root is not None:
            if not isinstance(root, MappingNode):
                raise error(root, "a template's front matter is a mapping of variable defaults")
            fm = dict((k, v) for k, _, v in pairs(root))
            if "variables" in fm and isinstance(fm["variables"], MappingNode):
                fm = dict((k, v) for k, _, v in pairs(fm["variables"]))
            for k, v in fm.items():
                values[k] = plain(v)
                nodes[k] = v
    return values, nodes, body


def render_template(path: str, context: Dict[str, Any]) -> str:
    """Render a ``*.j2`` file (front matter removed) with ``context``; errors point into it."""
    import jinja2
    directory = os.path.dirname(os.path.abspath(path))
    env = template_env(directory)
    name = os.path.basename(path)
    shown = path
    try:
        template = env.get_template(name)
        out = template.render(**context)
        if len(out) > MAX_RENDERED:
            raise TemplateFailure("the template renders to %d characters, more than a spec may "
                                  "hold (%d)" % (len(out), MAX_RENDERED))
        return out
    except jinja2.TemplateSyntaxError as exc:
        raise NetdslError("template syntax error: %s" % exc.message,
                          file=_shown(exc.filename, directory, shown), line=exc.lineno) from None
    except jinja2.TemplateNotFound as exc:
        f, line = _template_frame(sys.exc_info()[2], directory, shown)
        raise NetdslError("template not found: %s" % exc.name, file=f, line=line) from None
    except jinja2.UndefinedError as exc:
        f, line = _template_frame(sys.exc_info()[2], directory, shown)
        msg = str(exc.message or exc)
        m = re.match(r"'(\w+)' is undefined", msg)
        hint = did_you_mean(m.group(1), list(context)) if m else None
        if m:
            msg = "unknown variable `%s` in template" % m.group(1)
        raise NetdslError(msg, file=f, line=line, hint=hint) from None
    except jinja2.TemplateError as exc:
        f, line = _template_frame(sys.exc_info()[2], directory, shown)
        raise NetdslError("template error: %s" % (exc.message or exc), file=f, line=line) from None
    except TemplateFailure as exc:
        f, line = _template_frame(sys.exc_info()[2], directory, shown)
        raise NetdslError(str(exc), file=f, line=line) from None
    except (ArithmeticError, TypeError, ValueError, LookupError, AttributeError, NameError,
            RecursionError) as exc:
        # NameError: Jinja2 compiles a literal such as 1e309 into the name `inf`
        f, line = _template_frame(sys.exc_info()[2], directory, shown)
        raise NetdslError("template error: %s: %s" % (type(exc).__name__, exc),
                          file=f, line=line) from None


def _shown(filename: Optional[str], directory: str, shown: str) -> str:
    if not filename:
        return shown
    if os.path.abspath(filename) == os.path.abspath(os.path.join(os.path.dirname(shown) or ".",
                                                                  os.path.basename(shown))):
        return shown
    return _rel(filename)


def _rel(path: str) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:  # pragma: no cover - other drive on Windows
        return path
    return path if rel.startswith(".." + os.sep + "..") else rel


def _template_frame(tb, directory: str, shown: str) -> Tuple[str, Optional[int]]:
    """The innermost traceback frame that runs template code: (file, template line)."""
    found: Tuple[str, Optional[int]] = (shown, None)
    while tb is not None:
        fname = tb.tb_frame.f_code.co_filename
        if fname.endswith(".j2") or (fname.startswith(directory) and not fname.endswith(".py")):
            found = (_shown(fname, directory, shown), tb.tb_lineno)
        tb = tb.tb_next
    return found


def load_file(path: str, context: Optional[Dict[str, Any]] = None) -> Optional[Node]:
    """Compose a spec file; a ``*.j2`` file is rendered with ``context`` first.

    Nodes of a rendered template are marked ``<path> (rendered)``: their lines
    are those of the rendered text (``netdsl render`` shows it).
    """
    text = read_text(path)
    if not is_template(path):
        return compose_text(text, path)
    rendered = render_template(path, dict(context or {}))
    return compose_text(rendered, path + " (rendered)")


# -- node access with located errors ---------------------------------------------------------

def located_error(node: Optional[Node], message: str, *, hint: Optional[str] = None,
                  trace: Tuple = (), field: Optional[str] = None, layer: Optional[str] = None,
                  column_offset: int = 0, detail: Optional[str] = None) -> NetdslError:
    """:func:`error`, moved to the user's own line when ``node`` was reached through block
    uses or includes, with that chain after the message (:func:`chain_error`)."""
    err = error(node, message, hint=hint, field=field, layer=layer, column_offset=column_offset)
    err.detail = detail
    return chain_error(err, trace)


def _place(file: Optional[str], line: Optional[int], column: Optional[int]) -> Optional[str]:
    if not file:
        return None
    text = display_path(file) if not file.endswith(" (rendered)") else \
        display_path(file[: -len(" (rendered)")]) + " (rendered)"
    if line:
        text += ":%d" % line
        if column:
            text += ":%d" % column
    return text


def chain_error(err: NetdslError, trace: Tuple) -> NetdslError:
    """Locate ``err`` at the user's own line (the outermost block use or include of
    ``trace``) and name the chain after the message, each step once:
    ``spec.yaml:26:5: ... (via block `skip` at fcn.yaml:57:20)``.  An error already
    chained is returned as it is."""
    if not trace or getattr(err, "chained", False):
        return err
    hops = [_place(*where(n)) for _, n in trace[1:]]
    hops.append(_place(err.file, err.line, err.column))
    steps = []
    for (label, _), hop in zip(trace, hops):
        step = "%s at %s" % (label, hop) if hop else label
        if step not in steps:
            steps.append(step)
    err.file, err.line, err.column = where(trace[0][1])
    err.message += " (via %s)" % ", then ".join(steps)
    err.args = (err.message,)
    err.chained = True
    return err


def mapping_items(node: Node, what: str, trace: Tuple = ()
                  ) -> List[Tuple[str, ScalarNode, Node]]:
    """The (key, key node, value node) items of a mapping node; an error if it is not one."""
    if not isinstance(node, MappingNode):
        raise located_error(node, "%s must be a mapping (key: value lines)" % what, trace=trace)
    return pairs(node)


def sequence_items(node: Node, what: str, trace: Tuple = ()) -> List[Node]:
    """The items of a list node (none for null); an error if it is not a list."""
    if isinstance(node, ScalarNode) and scalar(node) is None:
        return []
    if not isinstance(node, SequenceNode):
        raise located_error(node, "%s must be a list (lines starting with `- `)" % what,
                            trace=trace)
    return node.value


def check_keys(ps, allowed: Sequence[str], what: str, trace: Tuple = ()) -> None:
    """An error at the first key of ``ps`` (from :func:`pairs`) not in ``allowed``."""
    for key, knode, _ in ps:
        if key not in allowed:
            raise located_error(knode, "unknown key `%s` in %s" % (key, what), field=key,
                                trace=trace, hint=did_you_mean(key, allowed)
                                or "keys: %s" % ", ".join(allowed))


def display_path(path: str) -> str:
    """``path`` as shown in messages: relative to the working directory when near it."""
    try:
        rel = os.path.relpath(path)
    except ValueError:  # pragma: no cover
        return path
    return path if rel.startswith(os.pardir + os.sep + os.pardir) else rel


def node_file(node: Node) -> str:
    """The file a node was read from (a rendered template's own path)."""
    name = node.start_mark.name
    if name.endswith(" (rendered)"):
        name = name[: -len(" (rendered)")]
    return name


def resolve_include(node: Node, rel: Any, trace: Tuple = ()) -> str:
    """The path of an include, relative to the file the include is written in."""
    if not isinstance(rel, str) or not rel:
        raise located_error(node, "an include is a relative file path, got %r" % (rel,),
                            trace=trace)
    base = os.path.dirname(node_file(node))
    path = os.path.normpath(os.path.join(base, rel))
    if not os.path.isfile(path):
        from ..shipped import find_shipped, list_shipped
        shipped = find_shipped(rel) if os.sep not in rel and "/" not in rel else None
        if shipped is not None:   # a template that ships with netdsl, by its bare name
            return shipped
        near = []
        d = os.path.dirname(path) or "."
        if os.path.isdir(d):
            near = [f for f in os.listdir(d) if f.endswith((".yaml", ".yml", ".j2"))]
        hint = did_you_mean(os.path.basename(path), near + list_shipped())
        raise located_error(node, "cannot include `%s`: no such file (%s)"
                            % (rel, display_path(path)), trace=trace, hint=hint)
    return path


def node_caret(node: Node) -> str:
    """:func:`caret` for a node's line in its file (empty when the file cannot be read)."""
    f, line, col = where(node)
    if f.endswith(" (rendered)") or not os.path.isfile(f):
        return ""
    try:
        return caret(read_text(f), line, col)
    except (OSError, NetdslError):
        return ""
