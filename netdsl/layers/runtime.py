"""What a numpy forward rule receives besides its layer: the run's context and
helpers for its parameter blobs.  numpy itself is imported on first use, so
building and shaping nets never imports it."""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Sequence

from google.protobuf.message import Message

from ..errors import NetdslError

__all__ = ["Context", "blob_as", "TRAIN", "TEST", "np"]

TRAIN, TEST = 0, 1   # caffe.proto Phase


class _Lazy:
    """A module imported on first attribute access."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)


np: Any = _Lazy("numpy")


@dataclass
class Context:
    """What a layer's forward may need beyond its parameters and inputs.

    ``inplace``: the top has the bottom's name and the engine owns the bottom's
    array, so an elementwise rule may write its result into ``bottoms[0]`` and
    return that array (Caffe's in-place computation).  ``work``: buffers the
    engine keeps across layers and forward calls (a rule keys its own entries).
    """
    phase: int
    ntop: int
    rng: "np.random.Generator"
    inputs: Mapping[str, Any]
    inplace: bool = False
    work: Dict[str, Any] = field(default_factory=dict)


def blob_as(blob: Any, shape: Sequence[int], layer: Message, index: int,
            what: str = "blob") -> Any:
    """``blob`` as a float32 array of ``shape``; only the count has to match
    (Caffe copies by count when the legacy 4-D shape differs)."""
    shape = tuple(int(d) for d in shape)
    want = int(np.prod(shape, dtype=np.int64))
    if blob.size != want:
        raise NetdslError("%s %d has %d values %s, but the layer needs shape %s (%d values)"
                          % (what, index, blob.size, tuple(blob.shape), shape, want),
                          layer=layer.name)
    return np.asarray(blob, dtype=np.float32).reshape(shape)
