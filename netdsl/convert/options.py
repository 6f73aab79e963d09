"""What the two converter CLI verbs (``from-torch``, ``from-onnx``) share:
their ``--input`` and ``--outputs`` forms and the final save-and-report step
with its exit status."""
from __future__ import annotations

import sys
from typing import Any, List, Optional, Sequence, Tuple

from netdsl.errors import NetdslError

__all__ = ["parse_inputs", "save_and_report", "split_names"]


def parse_inputs(items: Sequence[str]) -> List[Tuple[str, Tuple[int, ...]]]:
    """``NAME=N,C,H,W`` strings -> (name, shape), in order, each name once."""
    out: List[Tuple[str, Tuple[int, ...]]] = []
    for item in items or ():
        name, sep, dims = item.partition("=")
        try:
            shape = tuple(int(d) for d in dims.replace("x", ",").split(",") if d.strip())
        except ValueError:
            shape = ()
        if not sep or not name or not shape or min(shape) <= 0:
            raise NetdslError("--input takes NAME=N,C,H,W (positive sizes), got %r" % item)
        if name in [n for n, _ in out]:
            raise NetdslError("input '%s' is given twice" % name)
        out.append((name, shape))
    if not out:
        raise NetdslError("give the input shape: --input NAME=N,C,H,W")
    return out


def split_names(text: Optional[str]) -> Optional[List[str]]:
    """``A,B`` (``--outputs``) -> ["A", "B"]; None when not given."""
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise NetdslError("--outputs takes NAME[,NAME...]")
    return names


def save_and_report(result: Any, out_dir: str, reference: str) -> int:
    """Write a conversion's files, print them and its parity table; the exit status:
    0 when parity holds (or was not checked), 1 when it fails."""
    written = result.save(out_dir)
    for p in written:
        print("wrote %s" % p, file=sys.stderr)
    if result.parity is not None:
        sys.stdout.write(result.parity.table())
        if not result.parity.ok:
            print("netdsl: parity FAILS: the converted net's outputs differ from %s beyond "
                  "the tolerance (see %s)" % (reference, written[2]), file=sys.stderr)
            return 1
    return 0
