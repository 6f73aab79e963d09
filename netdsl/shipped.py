"""The templates and example specs that ship with netdsl.

A wheel carries copies of the repository's top-level ``templates/`` and
``specs/`` as package data under ``netdsl/_data/`` (``setup.py`` copies them at
build time); a source checkout (or an editable install) reads the top-level
directories themselves.  Specs and ``netdsl render`` find a shipped template by
its bare name (``vgg16.yaml``, ``vgg16.yaml.j2``) when no file of that name is
beside them.
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional

__all__ = ["shipped_dir", "find_shipped", "list_shipped", "missing_file", "KINDS"]

KINDS = ("templates", "specs")
_SUFFIXES = (".yaml", ".yml", ".j2", ".proto", ".py")


def shipped_dir(kind: str = "templates") -> Optional[str]:
    """The directory of the shipped ``templates`` or ``specs`` (None when absent)."""
    if kind not in KINDS:
        raise ValueError("kind is one of %s" % ", ".join(KINDS))
    here = os.path.dirname(os.path.abspath(__file__))
    for candidate in (os.path.join(here, "_data", kind),             # an installed wheel
                      os.path.join(os.path.dirname(here), kind)):   # a source checkout
        if os.path.isdir(candidate):
            return candidate
    return None


def find_shipped(name: str, kind: str = "templates") -> Optional[str]:
    """The path of shipped file ``name`` (a bare file name, or one under ``kind/``), or None."""
    if not name or os.path.isabs(name):
        return None
    parts = name.replace("\\", "/").split("/")
    if parts[0] == kind:
        parts = parts[1:]
    if not parts or any(p in ("", ".", "..") for p in parts):
        return None
    base = shipped_dir(kind)
    if base is None:
        return None
    path = os.path.join(base, *parts)
    return path if os.path.isfile(path) else None


def list_shipped(kind: str = "templates") -> List[str]:
    """The shipped files of ``kind``, as paths relative to its directory, sorted."""
    base = shipped_dir(kind)
    out: List[str] = []
    if base is None:
        return out
    for root, dirs, files in os.walk(base):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__")))
        for f in files:
            if f.endswith(_SUFFIXES):
                out.append(os.path.relpath(os.path.join(root, f), base).replace(os.sep, "/"))
    return sorted(out)


def shipped_listing() -> Dict[str, List[str]]:
    """``{kind: [files]}`` for every kind."""
    return {kind: list_shipped(kind) for kind in KINDS}


def missing_file(path: str, kind: str = "templates"):
    """The NetdslError for a ``path`` that is neither a file nor a shipped ``kind`` name,
    with the closest shipped names as the hint."""
    from .errors import NetdslError, did_you_mean
    names = [n for n in list_shipped(kind) if n.endswith((".yaml", ".yml", ".j2"))]
    stem = os.path.basename(path).split(".")[0]
    stems = {n.rsplit("/", 1)[-1].split(".")[0]: n for n in names}
    close = did_you_mean(stem, stems)
    hint = None
    if close is not None:   # the same words with the full names
        from .errors import closest
        hint = "did you mean %s?" % " or ".join("`%s`" % stems[c] for c in closest(stem, stems))
    if hint is None:
        hint = "`netdsl render --list` shows the %s shipped with netdsl" % kind
    return NetdslError("no such file (nor a %s shipped with netdsl)" % kind[:-1], file=path,
                       hint=hint)
