"""netdsl.cost and `netdsl shapes --cost`: operation counts, parameters and
activation memory, against hand computations and published totals."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import zoo_nets  # noqa: E402
from netdsl import NetSpec, layers as L, params as P  # noqa: E402
from netdsl.cli import main  # noqa: E402
from netdsl.cost import cost_to_json, format_cost_table, net_cost  # noqa: E402
from netdsl.layers import lookup  # noqa: E402
from netdsl.prototxt import to_text  # noqa: E402


def _cost(n: NetSpec, **kw):
    return net_cost(n.to_proto(), **kw)


# -- hand computations ----------------------------------------------------------------

def test_convolution_by_hand():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[2, 3, 9, 9]))
    n.conv = L.Convolution(n.data, num_output=4, kernel_size=3, stride=2, pad=1)
    c = _cost(n).layer("conv")
    # output: floor((9 + 2*1 - 3) / 2) + 1 = 5, so the top is 2x4x5x5 (conv_layer.cpp)
    # each of the 2*4*5*5 = 200 outputs sums 3 channels x 3x3 taps: 200 * 27 = 5400 MACs
    assert c.macs == 5400
    # weights 4*3*3*3 = 108, bias 4
    assert c.params == 112 and c.param_bytes == 448
    assert c.output_bytes == 200 * 4 and c.new_bytes == 800
    assert (c.elementwise, c.pooling) == (0, 0)


def test_grouped_convolution_by_hand():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 6, 4, 4]))
    n.conv = L.Convolution(n.data, num_output=4, kernel_size=3, pad=1, group=2, bias_term=False)
    c = _cost(n).layer("conv")
    # each of the 1*4*4*4 = 64 outputs sums its group's 6/2 = 3 channels x 9 taps: 64 * 27
    assert c.macs == 1728
    assert c.params == 4 * 3 * 9


def test_grouped_deconvolution_by_hand():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 4, 5, 5]))
    n.up = L.Deconvolution(n.data, convolution_param=dict(
        num_output=6, kernel_size=4, stride=2, pad=1, group=2, bias_term=False))
    c = _cost(n).layer("up")
    # Caffe's deconvolution scatters every input value through its group's kernels
    # (col2im of backward_cpu_gemm): 1*4*5*5 = 100 inputs, each times 6/2 = 3 output
    # channels x 4x4 taps = 48 MACs: 4800 (output (5-1)*2 + 4 - 2*1 = 10, 1x6x10x10)
    assert c.macs == 4800
    assert c.params == 4 * 3 * 4 * 4          # weights (Cin, Cout/group, kh, kw)
    assert c.output_bytes == 6 * 10 * 10 * 4


def test_inner_product_by_hand():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[2, 3, 4, 4]))
    n.fc = L.InnerProduct(n.data, num_output=10)
    c = _cost(n).layer("fc")
    # K = 3*4*4 = 48 inputs per sample, 10 outputs, 2 samples: 2 * 48 * 10
    assert c.macs == 960
    assert c.params == 48 * 10 + 10
    assert c.output_bytes == 2 * 10 * 4


def test_inner_product_transposed_and_axis():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[2, 5, 6]))
    n.fc = L.InnerProduct(n.data, num_output=3, axis=2, transpose=True, bias_term=False)
    c = _cost(n).layer("fc")
    # axis 2: M = 2*5 = 10 rows of K = 6, N = 3: 10 * 6 * 3
    assert c.macs == 180 and c.params == 18


def test_pooling_elementwise_and_eltwise_by_hand():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 2, 5, 5]))
    n.pool = L.Pooling(n.data, pool=P.Pooling.MAX, kernel_size=3, stride=2)
    n.gap = L.Pooling(n.data, pool=P.Pooling.AVE, global_pooling=True)
    n.relu = L.ReLU(n.data)
    n.sig = L.Sigmoid(n.data)
    n.sum = L.Eltwise(n.data, n.relu, n.sig)
    cost = _cost(n)
    # ceil((5 - 3) / 2) + 1 = 2: 1x2x2x2 outputs, each reading a 3x3 window
    assert cost.layer("pool").pooling == 8 * 9
    # global pooling reads each of the 50 input values once
    assert cost.layer("gap").pooling == 50
    assert cost.layer("relu").elementwise == 50
    # three bottoms combined: two operations per element
    assert cost.layer("sum").elementwise == 100
    assert cost.macs == 0
    assert cost.pooling == 72 + 50 and cost.elementwise == 50 + 50 + 100


def test_type_without_rule_counts_params_and_activations():
    n = NetSpec()
    n.ids = L.Input(shape=dict(dim=[4, 7]))
    n.emb = L.Embed(n.ids, input_dim=100, num_output=16)
    n.cat = L.Concat(n.emb, n.emb, axis=2)
    assert lookup("Embed").cost is None and lookup("Concat").cost is None
    cost = _cost(n)
    emb = cost.layer("emb")
    assert (emb.macs, emb.elementwise, emb.pooling) == (0, 0, 0)
    assert emb.params == 100 * 16 + 16                 # weights (input_dim, num_output), bias
    assert emb.output_bytes == 4 * 7 * 16 * 4
    assert cost.layer("cat").output_bytes == 4 * 7 * 32 * 4


def test_peak_memory_by_hand():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 2, 2]))               # 16 bytes
    n.a = L.Convolution(n.data, num_output=2, kernel_size=1)      # 32 bytes
    n.relu = L.ReLU(n.a, in_place=True)                            # in place: 0 new
    n.b = L.Convolution(n.a, num_output=1, kernel_size=1)          # 16 bytes
    n.c = L.Eltwise(n.b, n.data)                                   # 16 bytes
    cost = _cost(n)
    # all kept: 16 + 32 + 16 + 16
    assert cost.activation_bytes == 80
    # live sets: data [data..c], a [a..b] (through the in-place relu), b [b..c],
    # c [c..end] (a net output). During b: data + a + b = 64; during c: data + b + c = 48
    assert cost.peak_bytes == 64 and cost.peak_layer == "b"
    relu = cost.layer("relu")
    assert relu.in_place == [True] and relu.output_bytes == 32 and relu.new_bytes == 0
    assert sum(lc.new_bytes for lc in cost.layers) == cost.activation_bytes
    # float64 values double every byte figure
    cost8 = _cost(n, bytes_per_value=8)
    assert (cost8.activation_bytes, cost8.peak_bytes) == (160, 128)
    assert cost8.param_bytes == 2 * cost.param_bytes


def test_outputs_stay_live_and_loss_tops_count():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 4, 4]))
    n.label = L.Input(shape=dict(dim=[1, 1, 4, 4]))
    n.score = L.Convolution(n.data, num_output=3, kernel_size=1)
    n.loss = L.SoftmaxWithLoss(n.score, n.label)
    cost = _cost(n)
    # data 48 + label 16 + score 48 values + the scalar loss: 113 values
    assert cost.activation_bytes == 113 * 4
    # during score: data (last read here), label (read by the loss) and score live,
    # 48 + 16 + 48 values; during the loss: label, score and the loss, 16 + 48 + 1
    assert cost.peak_bytes == (48 + 16 + 48) * 4 and cost.peak_layer == "score"


# -- published totals -----------------------------------------------------------------

def _conv_macs(cost):
    return sum(lc.macs for lc in cost.layers if lc.type == "Convolution")


def test_vgg16_totals():
    cost = net_cost(zoo_nets.vgg16())
    # Sze et al., "Efficient Processing of Deep Neural Networks: A Tutorial and Survey",
    # Proc. IEEE 105(12), 2017 (its summary table of popular DNNs): VGG-16 15.5 G MACs and
    # 138 M weights at 224x224; 138,357,544 parameters (Simonyan & Zisserman's
    # configuration D, the count torchvision lists)
    assert cost.params == 138357544
    assert round(cost.macs / 1e9, 1) == 15.5
    # the convolutions alone: 15.3 G MACs and 14.7 M weights (Chen et al., "Eyeriss",
    # ISSCC 2016, 14.5)
    assert round(_conv_macs(cost) / 1e9, 1) == 15.3
    conv_weights = sum(lc.params for lc in cost.layers if lc.type == "Convolution")
    assert round(conv_weights / 1e6, 1) == 14.7
    # by hand: 3x3 convolutions with padding 1 keep the size; (size, C_in, C_out) per layer
    convs = [(224, 3, 64), (224, 64, 64), (112, 64, 128), (112, 128, 128), (56, 128, 256),
             (56, 256, 256), (56, 256, 256), (28, 256, 512), (28, 512, 512), (28, 512, 512),
             (14, 512, 512), (14, 512, 512), (14, 512, 512)]
    fc = 7 * 7 * 512 * 4096 + 4096 * 4096 + 4096 * 1000
    assert cost.macs == sum(s * s * cin * cout * 9 for s, cin, cout in convs) + fc


def test_alexnet_totals():
    cost = net_cost(zoo_nets.alexnet())
    # BVLC AlexNet (grouped conv2, conv4, conv5) at 227x227, one image, conv and fc MACs
    # only: Sze et al. 2017 (summary table): 724 M MACs, 61 M weights; the convolutions
    # alone 666 M MACs and 2.3 M weights (Chen et al., ISSCC 2016, 14.5)
    assert round(cost.macs / 1e6) == 724
    assert round(_conv_macs(cost) / 1e6) == 666
    conv_weights = sum(lc.params for lc in cost.layers if lc.type == "Convolution")
    assert round(conv_weights / 1e6, 1) == 2.3
    # 60,965,224 parameters: the BVLC model's blob sizes summed
    # (conv1 34,944; conv2 307,456; conv3 885,120; conv4 663,936; conv5 442,624;
    #  fc6 37,752,832; fc7 16,781,312; fc8 4,097,000)
    assert cost.params == 34944 + 307456 + 885120 + 663936 + 442624 + 37752832 + 16781312 \
        + 4097000 == 60965224
    # conv2 by hand: 27x27 outputs x 256 channels x (96/2) x 5x5 taps
    assert cost.layer("conv2").macs == 27 * 27 * 256 * 48 * 25


def test_resnet50_totals():
    cost = net_cost(zoo_nets.resnet(50))
    # He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, Table 1:
    # 3.8 x 10^9 multiply-adds; Sze et al. 2017 (summary table): 3.9 G MACs, 25.5 M weights
    assert 3.8e9 <= cost.macs <= 3.9e9
    assert round(cost.macs / 1e9, 2) == 3.86
    # 25,557,032 learnable parameters (convolutions, BatchNorm's scale and shift, fc1000;
    # the count torchvision gives for ResNet-50); Caffe's BatchNorm layers also store
    # mean and variance per channel and a moving-average factor
    bn = [lc for lc in cost.layers if lc.type == "BatchNorm"]
    assert len(bn) == 53
    assert cost.params - sum(lc.params for lc in bn) == 25557032
    assert round(cost.params / 1e6, 1) == 25.6


def test_resnet152_totals():
    cost = net_cost(zoo_nets.resnet(152))
    # He et al. 2016, Table 1: 11.3 x 10^9 multiply-adds; 60,192,808 learnable parameters
    assert round(cost.macs / 1e9, 1) == 11.3
    bn = sum(lc.params for lc in cost.layers if lc.type == "BatchNorm")
    assert cost.params - bn == 60192808


# -- the command line -------------------------------------------------------------------

def test_shapes_cost_table_and_json(tmp_path, capsys):
    path = tmp_path / "alexnet.prototxt"
    path.write_text(to_text(zoo_nets.alexnet()))
    assert main(["shapes", str(path), "--cost"]) == 0
    table = capsys.readouterr().out
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["layer", "type", "MACs"]
    conv2 = next(line for line in lines if line.startswith("conv2 "))
    assert "223,948,800" in conv2            # 27 * 27 * 256 * 48 * 25
    total = next(line for line in lines if line.startswith("total "))
    assert "724,406,816" in total and "60,965,224" in total
    assert "relu1" in table and "(in place)" in table
    assert "724.41 M MACs" in lines[-1] and "peak" in lines[-1]

    assert main(["shapes", str(path), "--cost", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    api = cost_to_json(net_cost(zoo_nets.alexnet()))
    assert out == json.loads(json.dumps(api))
    assert out["totals"]["macs"] == 724406816
    conv1 = out["layers"][1]
    assert conv1["name"] == "conv1" and conv1["macs"] == 55 * 55 * 96 * 3 * 11 * 11


def test_shapes_cost_on_spec(capsys):
    spec = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "specs", "fcn8s.yaml")
    assert main(["shapes", spec, "--cost", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    by_name = {d["name"]: d for d in out["layers"]}
    # upscore8: Deconvolution 21 -> 21 channels, kernel 16, no groups in this spec
    # (dense), input 1x21x70x70: 21*70*70 inputs x 21 x 16x16 taps
    assert by_name["upscore8"]["macs"] == 21 * 70 * 70 * 21 * 16 * 16
    # fuse_pool4: Eltwise of two 1x21x34x34 blobs
    assert by_name["fuse_pool4"]["elementwise"] == 21 * 34 * 34


def test_format_cost_table_total_row():
    cost = net_cost(zoo_nets.vgg16())
    text = format_cost_table(cost)
    assert "15.47 G MACs" in text and "138.36 M parameters" in text


def test_cost_error_is_located(tmp_path, capsys):
    path = tmp_path / "bad.prototxt"
    path.write_text('layer { name: "data" type: "Input" top: "data" '
                    'input_param { shape { dim: 1 dim: 3 dim: 4 dim: 4 } } }\n'
                    'layer { name: "x" type: "Nope" bottom: "data" top: "x" }\n')
    assert main(["shapes", str(path), "--cost"]) == 2
    err = capsys.readouterr().err
    assert "layer 'x'" in err and "Traceback" not in err


def test_peak_memory_resnet50_by_hand():
    cost = net_cost(zoo_nets.resnet(50))
    # At the first Eltwise (res2a) three 1x256x56x56 blobs are live: the projection
    # res2a_branch1, res2a_branch2c and the sum; everything before them (data, conv1,
    # pool1, the 64-channel branch blobs) has had its last reader. No later layer holds
    # more: stage 3 blobs are 512x28x28, half the size.
    assert cost.peak_bytes == 3 * 256 * 56 * 56 * 4
    assert cost.peak_layer == "res2a"
    assert cost.peak_bytes < cost.activation_bytes


def test_empty_blobs_count_zero():
    # Caffe accepts num_output 0 in an InnerProduct (a 2x0 top, a 0x48 weight blob)
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[2, 3, 4, 4]))
    n.fc = L.InnerProduct(n.data, num_output=0, bias_term=False)
    cost = _cost(n)
    assert (cost.layer("fc").macs, cost.layer("fc").params, cost.layer("fc").output_bytes) == \
        (0, 0, 0)
    assert cost.peak_bytes == 96 * 4 and "peak 384 B at layer 'data'" in format_cost_table(cost)
