"""Memory bounds: estimate what a verb will allocate from the shapes, refuse past a limit.

The numpy forward keeps every blob (one float32 array per blob name; an in-place
layer's result replaces its bottom's array), the parameter blobs, and per layer
some temporaries.  :func:`forward_bytes` adds these up from
:func:`netdsl.shapes.infer_shapes` before anything is allocated:

* every blob name once, at its largest shape, 4 bytes a value;
* every parameter blob, 4 bytes a value;
* on top of these, the larger of the worst layer's temporaries (its tops once
  more, for element-wise work and copies; for Deconvolution also one group's
  column buffer ``N * C_out/g * prod(kernel) * prod(input spatial)``; for
  Convolution the zero-padded input and the im2col block, at most 64 MiB or
  one output row, and its matmul result) and
  the saved outputs (twice: the .npz in memory, then its bytes);
* random inputs are drawn in float64 and cast, 12 bytes a value, before the
  forward starts (a separate, earlier peak).

:func:`weights_bytes` is the parameter part alone (``init`` and
``build --weights``).  The limit defaults to half the memory the machine has
available (``MemAvailable`` in /proc/meminfo, else ``sysconf``), and never more
than the process's own address-space limit (``RLIMIT_AS``) allows.
"""
from __future__ import annotations

import os
import re
from typing import Any, Mapping, Optional, Sequence

from .errors import NetdslError

FLOAT_BYTES = 4
COL_BYTES = 64 << 20  # the forward's im2col block budget (netdsl/forward/conv.py)
#: the share of available memory a verb may use by default
DEFAULT_FRACTION = 0.5

_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}


def parse_size(text: str) -> int:
    """``2G``, ``512M``, ``1.5GiB``, ``1000000`` (bytes) -> bytes (binary units)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([KMGTP]?)(?:I?B)?\s*", str(text), re.I)
    if m is None:
        raise NetdslError("bad memory size %r: expected a number with an optional unit "
                          "K, M, G or T (e.g. 2G, 512M)" % (text,), field="max-memory")
    value = float(m.group(1)) * _UNITS[m.group(2).upper()]
    if value < 1 or value > 1 << 62:
        raise NetdslError("memory size %r is out of range (1 byte to 4 EiB)" % (text,),
                          field="max-memory")
    return int(value)


def available_bytes() -> Optional[int]:
    """Memory the machine can give now: MemAvailable, else free physical pages;
    capped by this process's RLIMIT_AS when one is set.  None when unknown."""
    avail: Optional[int] = None
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        avail = None
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            avail = None
    try:
        import resource
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY and soft > 0:
            avail = soft if avail is None else min(avail, soft)
    except (ImportError, OSError, ValueError):
        pass
    return avail


def default_limit() -> Optional[int]:
    """Half the available memory (None when it cannot be read)."""
    avail = available_bytes()
    return None if avail is None else int(avail * DEFAULT_FRACTION)


def human(n: float) -> str:
    """Bytes in binary units, e.g. ``21.3 PiB``."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return ("%d %s" % (n, unit)) if unit == "bytes" else ("%.1f %s" % (n, unit))
        n /= 1024.0
    return "%.1f EiB" % n  # pragma: no cover


def _count(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= max(int(d), 0)
    return n


def weights_bytes(shapes: Any) -> int:
    """Bytes of every parameter blob (float32) of a :class:`netdsl.shapes.NetShapes`."""
    return FLOAT_BYTES * sum(_count(s) for ls in shapes.layers for s in ls.param_shapes)


def init_bytes(shapes: Any) -> int:
    """Bytes ``init`` holds at its peak: every parameter blob (float32) plus one blob
    drawn in float64 before its cast (the fillers use numpy's float64 generators)."""
    largest = max((_count(s) for ls in shapes.layers for s in ls.param_shapes), default=0)
    return weights_bytes(shapes) + 8 * largest


def guard_init(net: Any, inputs: Optional[Mapping[str, Sequence[int]]] = None, *,
               limit: Optional[int] = None, file: Optional[str] = None,
               declared: Optional[Mapping[str, Any]] = None) -> int:
    """Refuse initialising ``net``'s weights when they need more than ``limit`` bytes."""
    from .shapes import infer_shapes
    need = init_bytes(infer_shapes(net, inputs or None, declared=declared))
    check(need, limit, "initialising the weights", file=file)
    return need


def forward_bytes(shapes: Any, random_inputs: Optional[Mapping[str, Sequence[int]]] = None) -> int:
    """A conservative peak of the numpy forward over ``shapes`` (see the module doc);
    ``random_inputs`` are the inputs that will be drawn at random."""
    largest: dict = {}
    for ls in shapes.layers:
        for name, s in zip(ls.tops, ls.top_shapes):
            largest[name] = max(largest.get(name, 0), _count(s))
    for name, s in shapes.blobs.items():
        largest[name] = max(largest.get(name, 0), _count(s))
    persistent = FLOAT_BYTES * sum(largest.values()) + weights_bytes(shapes)
    worst = 0
    for ls in shapes.layers:
        tops = sum(_count(s) for s in ls.top_shapes)
        bottoms = sum(_count(s) for s in ls.bottom_shapes)
        extra = 0
        if ls.type == "Deconvolution" and ls.bottom_shapes and ls.param_shapes:
            w = ls.param_shapes[0]  # (C_in, C_out / group, kernel...)
            b = ls.bottom_shapes[0]
            if len(b) >= 2:  # one group's columns: N * C_out/g * prod(kernel) * prod(spatial)
                extra = b[0] * _count(w[1:]) * _count(b[2:])
        elif ls.type == "Convolution" and ls.bottom_shapes:
            extra = _padded(ls) + _im2col(ls)
        worst = max(worst, FLOAT_BYTES * (tops + extra))
    consumed = {b for ls in shapes.layers for b in ls.bottoms}
    outputs = sum(n for name, n in largest.items() if name not in consumed)
    saving = 2 * FLOAT_BYTES * outputs  # the .npz in memory, then its bytes
    drawing = 12 * sum(_count(s) for s in (random_inputs or {}).values())  # float64, then float32
    return max(persistent + max(worst, saving), drawing)


def _im2col(ls: Any) -> int:
    """Values in a Convolution's column block: all of ``N * C/g * prod(kernel) *
    prod(output spatial)`` when it fits the 64 MiB budget, else the budget, but at
    least one output row (and the matmul's result block as much again)."""
    if not ls.param_shapes or not ls.top_shapes:
        return COL_BYTES // FLOAT_BYTES
    w, top = ls.param_shapes[0], ls.top_shapes[0]
    if len(top) < 3:
        return COL_BYTES // FLOAT_BYTES
    n, kdim = top[0], _count(w[1:])
    full = n * kdim * _count(top[2:])
    row = n * kdim * _count(top[3:])
    return 2 * min(full, max(COL_BYTES // FLOAT_BYTES, row))


def _padded(ls: Any) -> int:
    """Values in a Convolution's zero-padded input copy (the geometry as the
    conv family parses it, old forks' scalar fields included)."""
    from .layers.conv import conv_geometry
    b = list(ls.bottom_shapes[0])
    if ls.layer is None or len(b) < 3:
        return _count(b)
    try:
        g = conv_geometry(ls.layer, tuple(b))
    except Exception:  # the shape walk has reported a bad geometry already
        return _count(b)
    lead = b[:g.axis + 1]
    spatial = [s + 2 * p for s, p in zip(b[g.axis + 1:], g.pad)]
    return _count(lead) * _count(spatial)


def check(need: int, limit: Optional[int], what: str, *, file: Optional[str] = None) -> None:
    """Refuse ``need`` bytes past ``limit`` (None: no limit known) with one clear line."""
    if limit is None or need <= limit:
        return
    raise NetdslError("%s needs about %s of memory, more than the limit of %s"
                      % (what, human(need), human(limit)), file=file,
                      hint="give smaller inputs (--input), or raise the limit with "
                           "--max-memory (default: half the available memory)")


def resolve_limit(max_memory: Optional[Any]) -> Optional[int]:
    """``--max-memory`` (bytes, or text like ``2G``) or the default limit."""
    if max_memory is None:
        return default_limit()
    if isinstance(max_memory, int) and not isinstance(max_memory, bool):
        return max_memory
    return parse_size(str(max_memory))


def check_npy(path: str) -> None:
    """Refuse a .npy/.npz whose header claims more data than the file holds (numpy
    would allocate the claimed size before reading)."""
    import zipfile
    import numpy as np
    fmt = np.lib.format
    try:
        size = os.path.getsize(path)
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    if not info.filename.endswith(".npy"):
                        continue
                    with zf.open(info) as fh:
                        claimed = _npy_claim(fh, fmt)
                    if claimed is not None and claimed > info.file_size:
                        raise NetdslError("%s in the .npz claims %s of data but holds %s"
                                          % (info.filename, human(claimed),
                                             human(info.file_size)), file=path)
            return
        with open(path, "rb") as fh:
            claimed = _npy_claim(fh, fmt)
        if claimed is not None and claimed > size:
            raise NetdslError(".npy header claims %s of data but the file holds %s"
                              % (human(claimed), human(size)), file=path)
    except NetdslError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, RuntimeError,
            NotImplementedError, KeyError, SyntaxError, TypeError, OverflowError) as exc:
        raise NetdslError("cannot read a .npy array: %s" % exc, file=path) from None


def _npy_claim(fh: Any, fmt: Any) -> Optional[int]:
    try:
        version = fmt.read_magic(fh)
    except ValueError:
        return None  # not a .npy at all: numpy's own reader says so
    if version == (1, 0):
        shape, _, dtype = fmt.read_array_header_1_0(fh)
    else:
        shape, _, dtype = fmt.read_array_header_2_0(fh)
    return _count(shape) * dtype.itemsize


def guard_forward(net: Any, given: Mapping[str, Sequence[int]], random_names: Sequence[str],
                  *, phase: Any = "TEST", limit: Optional[int] = None,
                  file: Optional[str] = None) -> int:
    """Infer every blob's shape (given arrays' shapes override the declared ones) and
    refuse the forward when its estimated peak passes ``limit``; returns the estimate.

    Caffe's own set-up checks run first, so a blob past INT_MAX values is refused
    with Caffe's message before any size is compared.
    """
    from .shapes import infer_shapes
    shapes = infer_shapes(net, {k: list(v) for k, v in given.items()} or None, phase=phase)
    random = {n: shapes.blobs[n] for n in random_names if n in shapes.blobs}
    need = forward_bytes(shapes, random)
    check(need, limit, "the forward pass", file=file)
    return need
