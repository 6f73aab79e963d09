"""``netdsl run``: load a net, weights and .npy inputs, run forward, save .npz."""
from __future__ import annotations

import io
import warnings
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from ..errors import NetdslError, did_you_mean
from ..fileio import atomic_write
from .core import ForwardResult, PreparedNet, input_shapes, random_inputs
from .finite import NonFiniteWarning


def parse_input_args(items: Sequence[str]) -> Dict[str, str]:
    """``name=file.npy`` strings as a dict (each name once)."""
    out: Dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise NetdslError("--input takes name=file.npy, got %r" % item)
        if name in out:
            raise NetdslError("input '%s' is given twice" % name)
        out[name] = path
    return out


def _load_npy(path: str) -> np.ndarray:
    from ..memory import check_npy
    check_npy(path)  # a header claiming more than the file holds is refused unread
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise NetdslError("cannot read a .npy array: %s" % exc, file=path) from None
    if isinstance(arr, np.lib.npyio.NpzFile):
        names = list(arr.files)
        if len(names) != 1:
            raise NetdslError("an .npz input must hold exactly one array, this one has %d"
                              % len(names), file=path)
        arr = arr[names[0]]
    return np.asarray(arr, dtype=np.float32)


def run(net: str, weights: Optional[str] = None, inputs: Mapping[str, str] = (),
        *, output: Optional[str] = None, blobs: Optional[Sequence[str]] = None,
        random_input: bool = False, seed: int = 0, phase: str = "TEST",
        max_memory: Optional[object] = None, strict: bool = False) -> ForwardResult:
    """Run ``net`` on the .npy files ``inputs`` (blob name -> path) and write the
    chosen blobs (default: the net's outputs) to ``output`` as .npz, atomically.

    Declared inputs without a file are an error unless ``random_input``, which
    fills them with uniform [-1, 1) values from ``seed``.  The forward's peak
    memory is estimated from the shapes first (:mod:`netdsl.memory`) and the run
    is refused past ``max_memory`` (bytes or text like ``2G``; default half the
    available memory).  Only the chosen blobs and the outputs are kept: the
    others are freed once no later layer reads them.  A top holding inf or NaN
    is a warning naming the first layer that made one, an error with ``strict``
    (then nothing is written).
    """
    from ..memory import guard_forward, resolve_limit
    from ..prototxt import read_net
    netp = read_net(net)
    arrays = {name: _load_npy(path) for name, path in dict(inputs).items()}
    declared = input_shapes(netp)
    missing = [n for n in declared if n not in arrays]
    if missing:
        if not random_input:
            raise NetdslError("no array for %s; give --input NAME=FILE.npy or --random-input"
                              % ", ".join("'%s' (%s)" % (n, "x".join(map(str, declared[n])))
                                          for n in missing), file=net)
    guard_forward(netp, {n: a.shape for n, a in arrays.items()},
                  missing if random_input else [], phase=phase,
                  limit=resolve_limit(max_memory), file=net)
    if missing:
        rand = random_inputs(netp, seed)
        for n in missing:
            arrays[n] = rand[n]
    prep = PreparedNet(netp, weights, phase=phase, keep_weights=False)
    try:
        for n in blobs or ():
            if n not in prep.tops:
                raise NetdslError("no blob '%s' in the net" % n,
                                  hint=did_you_mean(n, sorted(prep.tops)))
        result = forward_checked(prep, arrays, seed=seed, keep=list(blobs or ()),
                                 strict=strict, file=net)
    finally:
        prep.close()
    names: List[str] = list(blobs) if blobs else list(result.outputs)
    if output:
        buf = io.BytesIO()
        np.savez(buf, **{n: result[n] for n in names})
        atomic_write(output, buf.getvalue())
    return result


def forward_checked(prep: PreparedNet, arrays: Mapping[str, np.ndarray], *, seed: int = 0,
                    keep: Optional[Sequence[str]] = None, strict: bool = False,
                    file: Optional[str] = None) -> ForwardResult:
    """``prep.forward``; with ``strict`` a non-finite top is an error, not a warning."""
    with warnings.catch_warnings():
        if strict:
            warnings.simplefilter("ignore", NonFiniteWarning)
        result = prep.forward(arrays, seed=seed, keep=keep)
    bad = result.nonfinite
    if strict and bad is not None:
        raise NetdslError(bad.detail, file=file, layer=bad.layer,
                          hint="run without --strict to write the blobs anyway")
    return result


def summary(result: ForwardResult, names: Sequence[str]) -> str:
    """One line per blob: name, shape, min / mean / max."""
    lines = []
    for n in names:
        a = result[n]
        if a.size:
            lines.append("%s %s min %.6g mean %.6g max %.6g" % (
                n, "x".join(map(str, a.shape)), float(a.min()), float(a.mean()), float(a.max())))
        else:
            lines.append("%s %s (empty)" % (n, "x".join(map(str, a.shape))))
    return "\n".join(lines) + "\n"
