"""A walk step's weight blobs, as netdsl's forward finds them: the caffemodel
entry of the layer's name, the owner of shared parameters, or Caffe's setup
(the fillers) when the blobs are fixed (a bilinear upsampling kernel)."""
from __future__ import annotations

from typing import Any, List, Optional, Sequence

from ..errors import NetdslError
from ..layers.runtime import np

__all__ = ["blob_source", "layer_blobs"]


def blob_source(weights: Any, as_stored: bool = False) -> Any:
    """The weights as the forward reads them (caffemodel path, open CaffeModel or
    ``{layer: [arrays]}``); ``close()`` it after use.  ``as_stored``: the arrays
    as read (views of the file), not the aligned copies BLAS needs."""
    from ..forward.core import _Weights
    wts = _Weights(weights)
    wts.as_stored = as_stored
    return wts


def layer_blobs(step: Any, layers: List[Any], wts: Any) -> Any:
    """A function giving the layer's weight blobs as the forward finds them."""
    from ..forward.core import _setup_blobs, _shared_owner

    def get() -> List[Any]:
        blobs = wts.get(step.layer.name)
        if blobs is None:
            blobs = _shared_owner(step.layer, layers, wts)
        if blobs is None and step.lt.wants_weights(step.layer):
            fake = [np.broadcast_to(np.float32(0), s) for s in step.bottom_shapes]
            blobs = _setup_blobs(step.lt, step.layer, fake)
            if blobs is None:
                raise NetdslError("no weights for this %s layer (looked up by layer name)"
                                  % step.layer.type, layer=step.layer.name,
                                  hint="give the caffemodel")
        return list(blobs or [])
    return get


class LayerBlobsMixin:
    """An emitter's view of its layer's weight blobs: ``self._blobs()`` gives them
    (see :func:`layer_blobs`), read once, as float32 arrays."""

    layer: Any
    _blobs: Any
    _cache: Optional[List[Any]]

    @property
    def blobs(self) -> List[Any]:
        """The layer's weight blobs as float32 arrays (from the caffemodel, a shared
        owner, or Caffe's setup for fixed fillers)."""
        if self._cache is None:
            self._cache = [np.asarray(b, dtype=np.float32) for b in self._blobs()]
        return self._cache

    def blob(self, index: int, shape: Optional[Sequence[int]] = None) -> Any:
        """Weight blob ``index`` (reshaped to ``shape`` by count, as Caffe copies)."""
        from ..layers.runtime import blob_as
        if index >= len(self.blobs):
            raise NetdslError("the layer has %d weight blobs, the export needs blob %d"
                              % (len(self.blobs), index), layer=self.layer.name)
        b = self.blobs[index]
        return b if shape is None else blob_as(b, shape, self.layer, index)
