"""``netdsl render TEMPLATE.j2``: a Jinja2 template (a shipped one by name) rendered
with its defaults and ``-D`` values; ``--list``: the shipped templates and specs."""
from __future__ import annotations

import argparse

from ..errors import NetdslError
from .common import emit, spec_defines

NAME = "render"
HELP = "render a Jinja2 template (*.j2; a shipped one by name) with its defaults and -D values"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("template", metavar="TEMPLATE.j2", nargs="?",
                   help="a *.j2 file, or the name of a shipped template (see --list)")
    p.add_argument("--list", action="store_true",
                   help="list the templates and example specs shipped with netdsl")
    p.add_argument("-D", "--define", action="append", metavar="NAME=VALUE")
    p.add_argument("-o", "--output", help="write here (atomically) instead of standard output")


def run(args: argparse.Namespace) -> int:
    from ..spec import render
    if args.list:
        emit(_listing(), args.output)
        return 0
    if not args.template:
        raise NetdslError("give a template to render (e.g. vgg16.yaml.j2), or --list")
    emit(render(args.template, spec_defines(args.define)), args.output)
    return 0


def _listing() -> str:
    from ..shipped import shipped_dir, shipped_listing
    lines = []
    for kind, names in shipped_listing().items():
        lines.append("%s (shipped in %s):" % (kind, shipped_dir(kind) or "-"))
        lines.extend("  %s" % n for n in names)
    lines.append("a spec includes a shipped template by its name (`include: [vgg16.yaml]`);"
                 " `netdsl render NAME.j2` renders one")
    return "\n".join(lines) + "\n"
