"""docs/custom-layers.md's plugin (netdsl 0.1): a layer type declared with
register_layer, its shape as expressions and a constant coordinate map."""
from netdsl.plugins import register_layer

register_layer(
    "Upsample2x",                                   # the layer type string
    bottoms=1, tops=1,                              # blob counts
    shape=[["N", "C", "2 * H", "2 * W"]],           # one list of dims per top
    coord_map=(1, 2, 0.5),                          # output = 2 * input + 1/2
    forward=lambda layer, bottoms, blobs, ctx: [
        bottoms[0].repeat(2, axis=2).repeat(2, axis=3)],
)
