"""Atomic file output: write to a temporary file beside the target, fsync, rename.

A reader never sees a half-written file, and an error (or a kill) leaves the old
file intact.  The temporary file is ``.NAME.PID.RANDOM.tmp`` in the target's
folder, created with mode 0o666 so the process umask gives it (and so the
target) the mode any new file gets; nothing changes the process umask.  A
temporary file left by a killed writer (its PID no longer running) is removed
the next time the same target is written.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
from typing import IO, Iterator, Union

from .errors import NetdslError


def _temp_name(path: str) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(path)), ".%s.%d.%s.tmp" % (
        os.path.basename(path), os.getpid(), secrets.token_hex(4)))


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def clean_stale(path: str) -> int:
    """Remove temporary files of ``path`` left by writers that are no longer running;
    returns how many were removed."""
    directory = os.path.dirname(os.path.abspath(path))
    pattern = re.compile(r"\.%s\.(\d+)\.[0-9a-f]{8}\.tmp\Z" % re.escape(os.path.basename(path)))
    removed = 0
    try:
        names = os.listdir(directory)
    except OSError:
        return 0
    for name in names:
        m = pattern.match(name)
        if m is None or _pid_alive(int(m.group(1))):
            continue
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(directory, name))
            removed += 1
    return removed


def _create(tmp: str) -> int:
    # O_EXCL: never follow or reuse an existing name; 0o666 & ~umask applied by the kernel
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    return os.open(tmp, flags, 0o666)


def _fsync_dir(directory: str) -> None:
    # make the rename itself durable (best effort: not every system can open a folder)
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file that replaces ``path`` only if the block succeeds."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        clean_stale(path)
        for _ in range(100):
            tmp = _temp_name(path)
            try:
                fd = _create(tmp)
                break
            except FileExistsError:
                continue
        else:  # pragma: no cover
            raise OSError(errno.EEXIST, "no free temporary file name")
    except OSError as exc:
        raise NetdslError("cannot write %s: %s" % (path, exc.strerror or exc), file=path)
    ok = False
    try:
        kwargs = {} if "b" in mode else {"encoding": "utf-8", "newline": "\n"}
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        ok = True
        _fsync_dir(directory)
    except OSError as exc:
        raise NetdslError("cannot write %s: %s" % (path, exc.strerror or exc), file=path)
    finally:
        if not ok:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


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
