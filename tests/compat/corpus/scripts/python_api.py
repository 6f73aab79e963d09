"""README's Python API (netdsl 0.1): NetSpec, layers and params from netdsl,
coord_map.crop, prototxt.read_net of a V1 net, infer_shapes, init_weights and
write_caffemodel; every result is written into the directory given."""
import json
import os
import sys

from netdsl import NetSpec, layers as L, params as P
from netdsl import prototxt
from netdsl.coord_map import crop
from netdsl.shapes import infer_shapes
from netdsl.weights import init_weights, open_caffemodel, write_caffemodel

out = sys.argv[1]
n = NetSpec()
n.data = L.Input(shape=dict(dim=[1, 3, 64, 64]))
n.conv1 = L.Convolution(n.data, kernel_size=3, num_output=8, pad=1,
                        weight_filler=dict(type='xavier'))
n.relu1 = L.ReLU(n.conv1, in_place=True)
n.pool1 = L.Pooling(n.relu1, pool=P.Pooling.MAX, kernel_size=2, stride=2)
n.up = L.Deconvolution(n.pool1, num_output=8, kernel_size=4, stride=2, pad=1, group=8,
                       bias_term=False, weight_filler=dict(type='bilinear'))
n.crop = crop(n.up, n.data)
net = n.to_proto()
with open(os.path.join(out, "netspec.prototxt"), "w") as f:
    f.write(str(net))

legacy = prototxt.read_net(os.path.join(os.path.dirname(__file__), "..", "nets",
                                        "v1_deploy.prototxt"))
shapes = infer_shapes(legacy, {"data": (2, 3, 28, 28)})
with open(os.path.join(out, "shapes.json"), "w") as f:
    json.dump({k: list(v) for k, v in sorted(shapes.blobs.items())}, f, indent=1)

weights = init_weights(net, seed=7, interp_layers=["up"])
write_caffemodel(os.path.join(out, "init.caffemodel"), weights, types=net)
with open_caffemodel(os.path.join(out, "init.caffemodel")) as model:
    listing = [(layer.name, [list(s) for s in layer.shapes]) for layer in model.layers]
with open(os.path.join(out, "layers.json"), "w") as f:
    json.dump(listing, f)
