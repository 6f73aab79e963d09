"""docs/pytorch-parity.md's Python example (netdsl 0.1): PyTorch ops as stock
Caffe layers, with the recipes' weights and the fillers' kernels in a caffemodel
(and a few more recipes: pools with PyTorch's rounding, pad, instance norm)."""
import os
import sys

import numpy as np

from netdsl import NetSpec, layers as L
from netdsl.ops import pytorch as T
from netdsl.weights import init_weights, write_caffemodel

out = sys.argv[1]
rng = np.random.RandomState(0)
weight = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
bias = rng.standard_normal(8).astype(np.float32)

n = NetSpec()
n.data = L.Input(shape=dict(dim=[1, 16, 20, 20]))
w = {}
n.up = T.interpolate(n.data, (1, 16, 20, 20), scale_factor=2, mode="bilinear")
n.deconv = T.conv_transpose2d(n.up, (1, 16, 40, 40), weight, bias, stride=2, padding=1,
                              output_padding=1, name="deconv_w", weights=w)
n.mp = T.max_pool2d(n.deconv, (1, 8, 80, 80), 3, stride=2, padding=1)
n.ap = T.avg_pool2d(n.mp, (1, 8, 40, 40), 3, stride=2, ceil_mode=True,
                    count_include_pad=False)
n.padded = T.pad(n.ap, (1, 8, 20, 20), (1, 2, 0, 1), 0.5)
n.norm = T.instance_norm(n.padded, (1, 8, 21, 23), affine=True, name="in_w", weights=w,
                         weight=np.linspace(0.5, 1.5, 8, dtype=np.float32),
                         bias=np.zeros(8, np.float32))
net = n.to_proto()
weights = init_weights(net)      # fixed kernels from Caffe's fillers
weights.update(w)                # PyTorch weights stored by the recipes
with open(os.path.join(out, "net.prototxt"), "w") as f:
    f.write(str(net))
write_caffemodel(os.path.join(out, "net.caffemodel"), weights, types=net)
