"""What every exporter's parity check shares: the reference net (the exported
layers only, with data layers turned into Inputs of the shapes the export
takes) that netdsl's numpy forward runs, and the two seeded input sets
(uniform in [-1, 1], then standard normal) the exported model and that
forward both see."""
from __future__ import annotations

from typing import Any, Dict, List, Sequence

from ..layers.runtime import np

__all__ = ["reference_net", "seeded_inputs"]


def reference_net(walk: Any) -> Any:
    """The net with only the exported layers (and the layers making its inputs)."""
    from ..netstate import included_layers, make_state
    net = type(walk.net)()
    net.CopyFrom(walk.net)
    del net.layer[:]
    keep = {id(st.layer) for st in walk.steps}
    for lp in included_layers(walk.net, make_state(walk.net, 1)):
        if id(lp) in keep:
            net.layer.add().CopyFrom(lp)
        elif not lp.bottom and any(t in walk.inputs for t in lp.top):
            # a data layer: an Input layer of the tops the graph takes as inputs (the
            # net's own input fields in an old fork's schema without InputParameter)
            tops = [t for t in lp.top if t in walk.inputs]
            if "input_param" not in lp.DESCRIPTOR.fields_by_name:
                for t in tops:
                    net.input.append(t)
                    net.input_shape.add().dim.extend(walk.inputs[t])
                continue
            new = net.layer.add(name=lp.name, type="Input")
            for t in tops:
                new.top.append(t)
                new.input_param.shape.add().dim.extend(walk.inputs[t])
    return net


def seeded_inputs(shapes: Dict[str, Sequence[int]], seed: int) -> List[Any]:
    """Two input sets: uniform in [-1, 1] (seed), standard normal (seed + 1)."""
    u = np.random.default_rng(seed)
    g = np.random.default_rng(seed + 1)
    return [("uniform", {k: u.uniform(-1, 1, size=s).astype(np.float32)
                         for k, s in shapes.items()}),
            ("normal", {k: g.standard_normal(size=s).astype(np.float32)
                        for k, s in shapes.items()})]
