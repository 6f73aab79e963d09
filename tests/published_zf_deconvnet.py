"""The Zeiler-Fergus deconvnet visualisation's published nets, reproduced at full size.

piergiaj/caffe-deconvnet python-demo/deploy.prototxt and python-demo/invdeploy.prototxt
(commit a71d409c364836dd907a3e8dc11fffdee643f97e), schema fork "zf_deconvnet"
(tests/data/fork_schemas/zf_deconvnet.proto; current ``layer`` messages):

- ``zf_deploy``: CaffeNet (legacy input 10 x 3 x 227 x 227) whose three MAX poolings
  are PoolingSwitches (3/2) each followed by a SliceHalf on axis 0 into the pooled
  blob and its switches (``switches1``, ``switches2``, ``switches5``); fc6-fc8, Softmax.
- ``zf_invdeploy``: the inverse, from ``pooled`` (pool5's values) and the three
  switch blobs given as legacy inputs: Concat [switches; values] on axis 0,
  InvPooling, Deconvolution back through conv5 ... conv1 (LRN where the convnet had
  one), ending in ``conv1`` (10 x 3 x 227 x 227).
"""
from __future__ import annotations

from typing import List, Tuple

# sha256 of NetParameter.SerializeToString(deterministic=True) of each published file,
# parsed with the fork's published schema (tests/data/fork_schemas/zf_deconvnet.proto):
PUBLISHED_SHA256 = {
    # piergiaj/caffe-deconvnet python-demo/deploy.prototxt @ a71d409c3648
    "zf_deploy": "a009a2c84f769c54187fb654739ade2b4211346a1d9697e5ad8e7584b062d99b",
    # piergiaj/caffe-deconvnet python-demo/invdeploy.prototxt @ a71d409c3648
    "zf_invdeploy": "6df8b64c6eff56fe73540a27ff1e5862c3cf5f1bf3bed1a8be6dc1ee6dd9d4fe",
}

#: CaffeNet's convolutions: (name, num_output, kernel, stride, pad, group)
CONVS: List[Tuple[str, int, int, int, int, int]] = [
    ("conv1", 96, 11, 4, 0, 1), ("conv2", 256, 5, 1, 2, 2), ("conv3", 384, 3, 1, 1, 1),
    ("conv4", 384, 3, 1, 1, 2), ("conv5", 256, 3, 1, 1, 2)]
#: the pooled stages and their switches' shapes in the inverse net's inputs
SWITCHES = [(5, 256, 6), (2, 256, 13), (1, 96, 27)]
LRN = '  lrn_param {\n    local_size: 5\n    alpha: 0.0001\n    beta: 0.75\n  }\n'
POOL = '  pooling_param {\n    pool: MAX\n    kernel_size: 3\n    stride: 2\n  }\n'


def _conv_param(nout: int, kernel: int, stride: int, pad: int, group: int) -> str:
    return ('  convolution_param {\n    num_output: %d\n%s    kernel_size: %d\n%s%s  }\n'
            % (nout, "    pad: %d\n" % pad if pad else "", kernel,
               "    group: %d\n" % group if group > 1 else "",
               "    stride: %d\n" % stride if stride > 1 else ""))


def _layer(name: str, kind: str, bottoms: List[str], tops: List[str], body: str = "") -> str:
    return ('layer {\n  name: "%s"\n  type: "%s"\n%s%s%s}\n'
            % (name, kind, "".join('  bottom: "%s"\n' % b for b in bottoms),
               "".join('  top: "%s"\n' % t for t in tops), body))


def _inputs(blobs: List[Tuple[str, Tuple[int, ...]]]) -> str:
    return "".join('input: "%s"\n' % name + "".join("input_dim: %d\n" % d for d in dims)
                   for name, dims in blobs)


def zf_deploy() -> str:
    """python-demo/deploy.prototxt: CaffeNet with PoolingSwitches + SliceHalf."""
    out = ['name: "CaffeNet"\n', _inputs([("data", (10, 3, 227, 227))])]
    prev = "data"
    for i, (name, nout, k, s, p, g) in enumerate(CONVS, 1):
        out.append(_layer(name, "Convolution", [prev], [name], _conv_param(nout, k, s, p, g)))
        out.append(_layer("relu%d" % i, "ReLU", [name], [name]))
        prev = name
        if i in (1, 2, 5):
            out.append(_layer("pool%d" % i, "PoolingSwitches", [name],
                              ["poolswitches%d" % i], POOL))
            out.append(_layer("slice%d" % i, "SliceHalf", ["poolswitches%d" % i],
                              ["pool%d" % i, "switches%d" % i],
                              "  slice_param {\n      axis: 0\n  }\n"))
            prev = "pool%d" % i
        if i in (1, 2):
            out.append(_layer("norm%d" % i, "LRN", [prev], ["norm%d" % i], LRN))
            prev = "norm%d" % i
    for i, nout in ((6, 4096), (7, 4096), (8, 1000)):
        fc = "fc%d" % i
        out.append(_layer(fc, "InnerProduct", [prev], [fc],
                          "  inner_product_param {\n    num_output: %d\n  }\n" % nout))
        prev = fc
        if i < 8:
            out.append(_layer("relu%d" % i, "ReLU", [fc], [fc]))
            out.append(_layer("drop%d" % i, "Dropout", [fc], [fc],
                              "  dropout_param {\n    dropout_ratio: 0.5\n  }\n"))
    out.append(_layer("prob", "Softmax", [prev], ["prob"]))
    return "".join(out)


def zf_invdeploy() -> str:
    """python-demo/invdeploy.prototxt: Concat, InvPooling and Deconvolution back
    to the image; each Deconvolution carries its convolution's parameters with
    num_output the convolution's input channels."""
    inputs = [("switches%d" % s, (10, c, h, h)) for s, c, h in SWITCHES]
    out = ['name: "CaffeNet"\n', _inputs(inputs + [("pooled", (10, 256, 6, 6))])]
    into = {"conv5": 384, "conv4": 384, "conv3": 256, "conv2": 96, "conv1": 3}
    prev, cat = "pooled", 0
    for stage, top in ((5, "ipooled5"), (2, "poolswitches2"), (1, "poolswitches1")):
        cat += 1
        out.append(_layer("cat%d" % cat, "Concat", ["switches%d" % stage, prev],
                          ["cat%d" % cat], "  concat_param {\n      axis: 0\n  }\n"))
        out.append(_layer("pool%d" % stage, "InvPooling", ["cat%d" % cat], [top], POOL))
        prev = top
        convs = {5: CONVS[4:1:-1], 2: CONVS[1:2], 1: CONVS[0:1]}[stage]
        for name, _, k, s, p, g in convs:
            out.append(_layer(name, "Deconvolution", [prev], [name],
                              _conv_param(into[name], k, s, p, g)))
            prev = name
        if stage in (5, 2):
            lrn = "norm%d" % (2 if stage == 5 else 1)
            out.append(_layer(lrn, "LRN", [prev], [lrn], LRN))
            prev = lrn
    return "".join(out)
