"""Loading plugin modules: by import name, by file path, or from ``NETDSL_PLUGINS``.

A plugin is a Python module that registers layer types
(:func:`netdsl.plugins.register_layer`) when it is imported.  Each plugin is
imported once per process; errors (no such module or file, a syntax error, an
exception while the module runs) become NetdslErrors located in the plugin's
file.  Registration itself is :mod:`netdsl.plugins`.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import re
import sys
import traceback
from types import ModuleType
from typing import Dict, List, Optional

from .errors import NetdslError

__all__ = ["load_plugin", "ensure_env_plugins", "ENV_VAR"]

#: environment variable naming plugin modules or files, comma-separated
ENV_VAR = "NETDSL_PLUGINS"

_loading: List[str] = []      # plugins being imported (innermost last)
_LOADED: Dict[str, ModuleType] = {}
_env_done: set = set()


def _is_path(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or os.sep in spec or os.path.isfile(spec)


def load_plugin(module_or_path: str) -> ModuleType:
    """Import a plugin: a module name (``my_layers``, ``pkg.layers``) or a ``.py`` file.

    The module registers its layer types when imported (with
    :func:`netdsl.plugins.register_layer`).  Each plugin is imported once per process.
    Errors (no such module or file, a syntax error, an exception while the
    module runs) are NetdslErrors located in the plugin's file.
    """
    ensure_env_plugins()
    return _load(module_or_path)


def _load(module_or_path: str) -> ModuleType:
    spec = str(module_or_path).strip()
    if not spec:
        raise NetdslError("empty plugin name")
    if _is_path(spec):
        path = os.path.abspath(os.path.expanduser(spec))
        key = path
    else:
        path, key = None, spec
    if key in _LOADED:
        return _LOADED[key]
    _loading.append(path or spec)
    try:
        if path is not None:
            mod = _import_file(spec, path)
        else:
            mod = _import_name(spec)
    finally:
        _loading.pop()
    _LOADED[key] = mod
    return mod


def _import_name(name: str) -> ModuleType:
    try:
        if name in sys.modules:   # imported before: run it again so it registers again
            return importlib.reload(sys.modules[name])
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise NetdslError("no plugin module named '%s'" % name,
                              hint="give a file path (e.g. plugins/%s.py) or put the module's "
                                   "directory on PYTHONPATH" % name.rsplit(".", 1)[-1]) from None
        raise _module_error(exc, None, name) from exc
    except NetdslError:
        raise
    except SyntaxError as exc:
        raise NetdslError("syntax error in plugin: %s" % exc.msg, file=exc.filename,
                          line=exc.lineno, column=exc.offset) from None
    except Exception as exc:
        raise _module_error(exc, getattr(sys.modules.get(name), "__file__", None), name) from exc


def _import_file(spec: str, path: str) -> ModuleType:
    if not os.path.isfile(path):
        raise NetdslError("no such plugin file", file=spec)
    stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
    name = "netdsl_plugin_%s_%s" % (stem, hashlib.sha1(path.encode("utf-8")).hexdigest()[:8])
    mspec = importlib.util.spec_from_file_location(name, path)
    if mspec is None or mspec.loader is None:
        raise NetdslError("cannot import this file as a Python module", file=spec)
    mod = importlib.util.module_from_spec(mspec)
    sys.modules[name] = mod
    try:
        mspec.loader.exec_module(mod)
    except NetdslError as exc:
        sys.modules.pop(name, None)
        raise _locate_in(exc, path)
    except SyntaxError as exc:
        sys.modules.pop(name, None)
        raise NetdslError("syntax error in plugin: %s" % exc.msg, file=spec, line=exc.lineno,
                          column=exc.offset) from None
    except Exception as exc:
        sys.modules.pop(name, None)
        raise _module_error(exc, path, spec) from exc
    return mod


def _plugin_frame(exc: BaseException, path: Optional[str]) -> Optional[traceback.FrameSummary]:
    if path is None:
        return None
    want = os.path.abspath(path)
    hit = None
    for fs in traceback.extract_tb(exc.__traceback__):
        if os.path.abspath(fs.filename) == want:
            hit = fs
    return hit


def _module_error(exc: BaseException, path: Optional[str], spec: str) -> NetdslError:
    fs = _plugin_frame(exc, path)
    return NetdslError("plugin '%s' failed while loading: %s: %s"
                       % (spec, type(exc).__name__, exc),
                       file=fs.filename if fs else path, line=fs.lineno if fs else None)


def _locate_in(exc: NetdslError, path: str) -> NetdslError:
    if exc.file is None:
        fs = _plugin_frame(exc, path)
        if fs is not None:
            exc.located(file=fs.filename, line=fs.lineno)
    return exc


def ensure_env_plugins() -> List[ModuleType]:
    """Load the plugins ``NETDSL_PLUGINS`` names (comma-separated), each once."""
    value = os.environ.get(ENV_VAR, "")
    out = []
    for item in value.split(","):
        item = item.strip()
        if not item or item in _env_done:
            continue
        _env_done.add(item)
        try:
            out.append(_load(item))
        except NetdslError as exc:
            _env_done.discard(item)
            exc.message = "%s (from $%s)" % (exc.message, ENV_VAR)
            raise
    return out
