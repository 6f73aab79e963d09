"""Atomic file output: write to a temporary file beside the target, fsync, rename.

A reader never sees a half-written file, and an error leaves the old file intact.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from typing import IO, Iterator, Union

from .errors import NetdslError


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file that replaces ``path`` only if the block succeeds."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                                   dir=directory)
    except OSError as exc:
        raise NetdslError("cannot write %s: %s" % (path, exc.strerror or exc), file=path)
    ok = False
    try:
        kwargs = {} if "b" in mode else {"encoding": "utf-8", "newline": "\n"}
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
        ok = True
    except OSError as exc:
        raise NetdslError("cannot write %s: %s" % (path, exc.strerror or exc), file=path)
    finally:
        if not ok:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str, data: Union[str, bytes]) -> None:
    """Write ``data`` (text or bytes) to ``path`` atomically."""
    with atomic_open(path, "wb" if isinstance(data, bytes) else "w") as fh:
        fh.write(data)


def read_text(path: str) -> str:
    """Read a UTF-8 text file, turning OS errors into a located NetdslError."""
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except UnicodeDecodeError as exc:
        raise NetdslError("not a UTF-8 text file (byte %d)" % exc.start, file=path)
    except OSError as exc:
        raise NetdslError("cannot read: %s" % (exc.strerror or exc), file=path)
