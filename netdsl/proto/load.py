"""Loading a fork's ``caffe.proto``: compiled once per path, checked against BVLC's.

A fork's schema is compiled as BVLC's is (:func:`netdsl.proto.populate`); where it
reuses one of BVLC's field or enum numbers for something else the module lists the
conflicts (:mod:`netdsl.fork`), fields it lacks are filled in with their defaults,
and the layer packs whose parameter messages it has are enabled (:mod:`netdsl.packs`).
"""
from __future__ import annotations

import os
import types
from typing import Optional

from ..errors import NetdslError
from ..fork import check_against_bvlc, fill_missing_fields
from ..packs import enable_for_schema
from . import _cache, _check_core, populate


def load_schema(path: Optional[str] = None, *, strict: bool = False,
                allow_conflicts: Optional[bool] = None) -> types.ModuleType:
    """A ``caffe_pb2``-like module for the schema at ``path`` (bundled when None).

    Compiled once per path and cached.  Errors in the schema raise
    :class:`~netdsl.errors.NetdslError` with file, line and column.  A fork's
    schema is used as published: where it reuses one of BVLC's field or enum
    numbers for something else, the module's ``CONFLICTS`` lists the located
    messages and ``CONFLICT_FIELDS`` the fields, and writers warn once when a
    file sets one (:func:`netdsl.fork.warn_on_write`).  ``strict`` (for
    authors of a new fork) raises the first such reuse as a located error
    instead.  ``allow_conflicts`` is the former opt-in, kept as an alias:
    true means not strict.  Loading a fork schema also enables the layer packs
    (:mod:`netdsl.packs`) whose parameter messages it has.
    """
    if allow_conflicts:
        strict = False
    if path is None:
        from . import caffe_pb2
        return caffe_pb2
    key = os.path.abspath(path)
    if key not in _cache:
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise NetdslError("cannot read schema: %s" % (exc.strerror or exc), file=path)
        except UnicodeDecodeError as exc:
            raise NetdslError("not a UTF-8 text file (byte %d)" % exc.start, file=path) from None
        mod = types.ModuleType("caffe_pb2", "Caffe schema compiled from %s" % path)
        populate(mod.__dict__, text, path)
        mod.CONFLICTS = check_against_bvlc(mod, raise_errors=False)
        mod.PRE_FIELD_DEFAULTS = fill_missing_fields(mod)
        _check_core(mod, path)
        _cache[key] = mod
    mod = _cache[key]
    if strict and mod.CONFLICTS:
        check_against_bvlc(mod, raise_errors=True)
    enable_for_schema(mod)
    return mod
