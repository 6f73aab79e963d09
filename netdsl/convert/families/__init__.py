"""Built-in converters, one module per op family; importing a module registers
its converters in :data:`netdsl.convert.table.CONVERTERS`."""
from __future__ import annotations

import importlib

FAMILIES = ("conv", "pool", "norm", "activation", "arithmetic", "shape", "pad", "resize",
            "reduce")


def load_all() -> None:
    for name in FAMILIES:
        importlib.import_module("netdsl.convert.families." + name)
