"""``caffe`` module functions of pycaffe's runtime that mean something without Caffe."""
from __future__ import annotations

from typing import List

import numpy as np

from netdsl.errors import NetdslTypeError

from netdsl.layers.registry import BUILTIN as _BUILTIN

__all__ = ["layer_type_list", "set_mode_cpu", "set_mode_gpu", "set_device",
           "set_random_seed", "solver_count", "solver_rank", "get_random"]

#: The types BVLC Caffe registers (REGISTER_LAYER_CLASS / REGISTER_LAYER_CREATOR), as
#: netdsl's layer registry declares them
BVLC_LAYER_TYPES = tuple(_BUILTIN.names())

# Caffe's random generator: seeded from entropy unless set_random_seed was called;
# each Net draws its seeds (fillers, Dropout masks, DummyData) from it in turn
_rng = [np.random.default_rng()]


def layer_type_list() -> List[str]:
    """Caffe's ``LayerRegistry::LayerTypeList()``: registered types, sorted (a std::map),
    plus the types of loaded netdsl plugins."""
    return sorted(set(BVLC_LAYER_TYPES) | set(_plugin_types()))


def _plugin_types() -> List[str]:
    # the custom types of loaded plugins (and of the spec in use)
    from netdsl.plugins import ensure_env_plugins, registered
    ensure_env_plugins()
    return list(registered())


def set_mode_cpu() -> None:
    """Accepted: netdsl always computes on the CPU, in numpy."""


def set_mode_gpu() -> None:
    """Accepted: the numpy forward runs on the CPU whatever the mode."""


def set_device(device_id: int) -> None:
    """Accepted (there is no device to choose)."""
    if isinstance(device_id, bool) or not isinstance(device_id, (int, np.integer)):
        raise NetdslTypeError("set_device takes an integer device id, not %r" % (device_id,))


def set_random_seed(seed: int) -> None:
    """Seed the generator the nets made afterwards draw from (fillers, Dropout, DummyData):
    the same seed gives the same values (netdsl's, not Caffe's random streams)."""
    _rng[0] = np.random.default_rng(int(seed))


def next_seed() -> int:
    """A seed for one Net, from the module's generator."""
    return int(_rng[0].integers(0, 2 ** 32 - 1))


def get_random() -> int:
    return int(_rng[0].integers(0, 2 ** 31 - 1))


def solver_count() -> int:
    return 1


def solver_rank() -> int:
    return 0
