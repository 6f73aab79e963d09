"""The layer registry: one LayerType per type, read by every engine; the defects
that per-engine copies of a rule caused; schemas and layer types per context."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from netdsl import NetdslError
from netdsl.forward import forward
from netdsl.layers import current, lookup, use_layers
from netdsl.layers.registry import BUILTIN
from netdsl.netspec import NetSpec, current_schema, layers as L, schema_in_use
from netdsl.prototxt import parse_net
from netdsl.proto import load_schema
from netdsl.shapes import infer_shapes
from netdsl.weights import init_weights

PADDED_POOL = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 1 dim: 6 dim: 5 } } }
layer { name: "pool" type: "Pooling" bottom: "data" top: "pool"
        pooling_param { pool: %s kernel_h: 2 kernel_w: 1 stride_h: 2 stride_w: 3 pad_h: 1 pad_w: 0 } }
"""


@pytest.mark.parametrize("method", ["MAX", "AVE"])
def test_padded_pooling_forward_follows_caffes_shape_rule(method):
    # pooling_layer.cpp Reshape: pooled = ceil((in + 2p - k) / s) + 1, then, because pad_h
    # is set, the last window of EITHER axis is dropped when it starts at or past in + pad:
    # height ceil((6 + 2 - 2) / 2) + 1 = 4, (4 - 1) * 2 = 6 < 6 + 1: kept, 4;
    # width ceil((5 - 1) / 3) + 1 = 3, (3 - 1) * 3 = 6 >= 5 + 0: dropped, 2.
    # OpenCV keeps the third column here, so it is no referee for this case.
    net = parse_net(PADDED_POOL % method)
    assert infer_shapes(net).blobs["pool"] == (1, 1, 4, 2)
    x = np.arange(30, dtype=np.float32).reshape(1, 1, 6, 5)
    out = forward(net, None, {"data": x})["pool"]
    assert out.shape == (1, 1, 4, 2)
    # windows (pooling_layer.cpp Forward_cpu): rows [2i - 1, 2i + 1) clipped to [0, 6),
    # columns [3j, 3j + 1); AVE divides by the window clipped to in + pad only:
    # rows {0}, {1, 2}, {3, 4}, {5} over 2, 2, 2, 2 positions
    if method == "MAX":
        want = [[0, 3], [10, 13], [20, 23], [25, 28]]
    else:
        want = [[0 / 2, 3 / 2], [(5 + 10) / 2, (8 + 13) / 2], [(15 + 20) / 2, (18 + 23) / 2],
                [25 / 2, 28 / 2]]
    np.testing.assert_array_equal(out[0, 0], np.array(want, dtype=np.float32))


PHASED = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 dim: 3 dim: 3 } } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" include { phase: TRAIN }
        inner_product_param { num_output: 2 weight_filler { type: "constant" value: 7 } } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" include { phase: TEST }
        inner_product_param { num_output: 2 weight_filler { type: "constant" value: 3 } } }
"""


def test_fillers_come_from_the_layer_of_the_phase():
    # Caffe's Net::Init keeps only the layers of the phase (net.cpp FilterNet), so the
    # TEST net's fc is the one with constant 3; the TRAIN one has 7
    net = parse_net(PHASED)
    assert np.all(init_weights(net, phase="TEST")["fc"][0] == 3)
    assert np.all(init_weights(net, phase="TRAIN")["fc"][0] == 7)


def test_empty_last_slice_says_what_caffe_does():
    net = parse_net("""
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 4 } } }
layer { name: "s" type: "Slice" bottom: "data" top: "a" top: "b" slice_param { slice_point: 4 } }
""")
    with pytest.raises(NetdslError) as ei:
        infer_shapes(net)
    assert "aborts in its forward" in ei.value.message and "Check failed: data_" in ei.value.message


def test_forward_checks_each_top_against_the_shape_rule():
    def wrong(layer, bottoms, blobs, ctx):
        return [bottoms[0][:, :, :1]]          # shape rule says the input's shape
    with use_layers() as reg:
        from netdsl.plugins import register_layer
        register_layer("Half", bottoms=1, tops=1, shape=[["N", "C", "H", "W"]], forward=wrong,
                       registry=reg)
        n = NetSpec()
        n.data = L.Input(shape=dict(dim=[1, 1, 4, 4]))
        n.h = L.Half(n.data)
        with pytest.raises(NetdslError, match="internal error.*shape rule gives"):
            forward(n.to_proto(), None, {"data": np.zeros((1, 1, 4, 4), np.float32)})


def test_every_builtin_type_is_declared_once_with_its_family():
    families = {lookup(t).family for t in BUILTIN.names()}
    assert families == {"data", "conv", "pool", "inner", "structure", "neuron", "norm", "loss",
                        "recurrent"}
    # one geometry parser per family, used by every rule of the family's windowed types
    assert lookup("Convolution").geometry is lookup("Deconvolution").geometry
    assert lookup("Pooling").geometry is not None


def test_two_schemas_in_two_threads_do_not_cross_talk(tmp_path):
    import os
    fork = load_schema(os.path.join(os.path.dirname(__file__), "..", "specs", "forks",
                                    "segnet-deeplab.proto"))
    seen = {}
    barrier = threading.Barrier(2)

    def run(name, pb2):
        with schema_in_use(pb2):
            barrier.wait()
            n = NetSpec()
            n.data = L.Input(shape=dict(dim=[1, 1, 2, 2]))
            seen[name] = (current_schema(), type(n.to_proto()).DESCRIPTOR.file)

    threads = [threading.Thread(target=run, args=("fork", fork)),
               threading.Thread(target=run, args=("bvlc", None))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen["fork"][0] is fork and seen["fork"][1] is fork.DESCRIPTOR
    assert seen["bvlc"][0] is not fork and seen["bvlc"][1] is not fork.DESCRIPTOR
    assert current_schema() is not fork


def test_layer_types_registered_in_one_thread_stay_there():
    from netdsl.plugins import register_layer
    ready, done = threading.Event(), threading.Event()
    found = {}

    def owner():
        with use_layers():
            register_layer("OnlyHere", shape=[["N"]])
            found["owner"] = lookup("OnlyHere") is not None
            ready.set()
            done.wait(5)

    t = threading.Thread(target=owner)
    t.start()
    ready.wait(5)
    found["other"] = lookup("OnlyHere") is not None
    done.set()
    t.join()
    assert found == {"owner": True, "other": False}


def test_a_specs_custom_layers_belong_to_that_spec(tmp_path):
    from netdsl.spec import build_nets, load_spec
    a = tmp_path / "a.yaml"
    b = tmp_path / "b.yaml"
    body = ("custom_layers:\n  Grow:\n    bottoms: 1\n    tops: 1\n"
            "    shape: [[N, C, 'H * %d', 'W']]\n"
            "inputs:\n  data: [1, 1, 3, 3]\nlayers:\n  - Grow: g\n")
    a.write_text(body % 2)
    b.write_text(body % 5)
    spec_a = load_spec(str(a))
    nets_a = build_nets(spec_a, ["deploy"])
    spec_b = load_spec(str(b))                     # loading B must not change A's rules
    build_nets(spec_b, ["deploy"])
    with use_layers(spec_a.registry):
        assert infer_shapes(nets_a["deploy"]).blobs["g"] == (1, 1, 6, 3)   # H * 2
    with use_layers(spec_b.registry):
        assert infer_shapes(nets_a["deploy"]).blobs["g"] == (1, 1, 15, 3)  # H * 5
    assert lookup("Grow") is None and "Grow" not in current().names()


def _python_blocks(path):
    import re
    with open(path, encoding="utf-8") as fh:
        return re.findall(r"```python\n(.*?)```", fh.read(), re.S)


def test_architecture_worked_example_runs():
    import os
    doc = os.path.join(os.path.dirname(__file__), "..", "docs", "architecture.md")
    blocks = _python_blocks(doc)
    assert blocks
    for code in blocks:
        exec(compile(code, doc, "exec"), {})          # its own asserts check the results
    assert lookup("Upsample2x") is None              # declared in its block's registry only


def test_caffe_stand_in_reads_the_schema_when_used():
    import os
    import sys
    from netdsl.compat import install_caffe_alias
    fork = load_schema(os.path.join(os.path.dirname(__file__), "..", "specs", "forks",
                                    "segnet-deeplab.proto"))
    saved = {k: sys.modules.get(k) for k in ("caffe", "caffe.proto", "caffe.proto.caffe_pb2")}
    try:
        install_caffe_alias()              # installed while BVLC's schema is in use
        from caffe.proto import caffe_pb2  # noqa: E402  (the stand-in)
        with schema_in_use(fork):
            assert caffe_pb2.LayerParameter is fork.LayerParameter
        assert caffe_pb2.LayerParameter is not fork.LayerParameter
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
