"""NetSpec builder: byte-identical prototxt to pycaffe's net_spec.py.

Expected texts are written by hand from pycaffe's rules (python/caffe/net_spec.py):
tops are named by NetSpec attribute or ``<Type><k>``; a layer is named after its
first top; layers come out depth-first, inputs first, in assignment order; flat
keywords go to ``<type>_param`` when that message has the field, else to
LayerParameter; protobuf's text format prints fields in field-number order
(LayerParameter: name 1, type 2, bottom 3, top 4, loss_weight 5, param 6,
include 8, transform_param 100, loss_param 101, convolution_param 106,
data_param 107, dropout_param 108, eltwise_param 110, inner_product_param 117,
pooling_param 121, python_param 130, slice_param 126 -- BVLC caffe.proto).
"""
import pytest

from netdsl import NetSpec, NetdslError, layers as L, params as P, to_proto
from netdsl.proto import caffe_pb2


def lenet(lmdb, batch_size):
    # Caffe's examples/01-learning-lenet.ipynb
    n = NetSpec()
    n.data, n.label = L.Data(batch_size=batch_size, backend=P.Data.LMDB, source=lmdb,
                             transform_param=dict(scale=1. / 255), ntop=2)
    n.conv1 = L.Convolution(n.data, kernel_size=5, num_output=20, weight_filler=dict(type='xavier'))
    n.pool1 = L.Pooling(n.conv1, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.conv2 = L.Convolution(n.pool1, kernel_size=5, num_output=50, weight_filler=dict(type='xavier'))
    n.pool2 = L.Pooling(n.conv2, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.fc1 = L.InnerProduct(n.pool2, num_output=500, weight_filler=dict(type='xavier'))
    n.relu1 = L.ReLU(n.fc1, in_place=True)
    n.score = L.InnerProduct(n.relu1, num_output=10, weight_filler=dict(type='xavier'))
    n.loss = L.SoftmaxWithLoss(n.score, n.label)
    return n.to_proto()


LENET = '''layer {
  name: "data"
  type: "Data"
  top: "data"
  top: "label"
  transform_param {
    scale: 0.00392156886
  }
  data_param {
    source: "mnist/train_lmdb"
    batch_size: 64
    backend: LMDB
  }
}
layer {
  name: "conv1"
  type: "Convolution"
  bottom: "data"
  top: "conv1"
  convolution_param {
    num_output: 20
    kernel_size: 5
    weight_filler {
      type: "xavier"
    }
  }
}
layer {
  name: "pool1"
  type: "Pooling"
  bottom: "conv1"
  top: "pool1"
  pooling_param {
    pool: MAX
    kernel_size: 2
    stride: 2
  }
}
layer {
  name: "conv2"
  type: "Convolution"
  bottom: "pool1"
  top: "conv2"
  convolution_param {
    num_output: 50
    kernel_size: 5
    weight_filler {
      type: "xavier"
    }
  }
}
layer {
  name: "pool2"
  type: "Pooling"
  bottom: "conv2"
  top: "pool2"
  pooling_param {
    pool: MAX
    kernel_size: 2
    stride: 2
  }
}
layer {
  name: "fc1"
  type: "InnerProduct"
  bottom: "pool2"
  top: "fc1"
  inner_product_param {
    num_output: 500
    weight_filler {
      type: "xavier"
    }
  }
}
layer {
  name: "relu1"
  type: "ReLU"
  bottom: "fc1"
  top: "fc1"
}
layer {
  name: "score"
  type: "InnerProduct"
  bottom: "fc1"
  top: "score"
  inner_product_param {
    num_output: 10
    weight_filler {
      type: "xavier"
    }
  }
}
layer {
  name: "loss"
  type: "SoftmaxWithLoss"
  bottom: "score"
  bottom: "label"
  top: "loss"
}
'''


def test_lenet_bytes():
    # 1/255 as float32 is 0.00392156886 printed with 9 significant digits
    assert str(lenet('mnist/train_lmdb', 64)) == LENET


def caffenet_like():
    # in the style of Caffe's examples/pycaffe/caffenet.py, with phase includes
    n = NetSpec()
    n.data, n.label = L.Data(source='train_lmdb', backend=P.Data.LMDB, batch_size=32, ntop=2,
                             transform_param=dict(crop_size=227, mean_value=[104, 117, 123],
                                                  mirror=True),
                             include=dict(phase=caffe_pb2.TRAIN))
    n.conv1 = L.Convolution(n.data, kernel_size=11, stride=4, num_output=96,
                            param=[dict(lr_mult=1, decay_mult=1), dict(lr_mult=2, decay_mult=0)],
                            weight_filler=dict(type='gaussian', std=0.01),
                            bias_filler=dict(type='constant', value=0))
    n.relu1 = L.ReLU(n.conv1, in_place=True)
    n.norm1 = L.LRN(n.relu1, local_size=5, alpha=1e-4, beta=0.75)
    n.fc6 = L.InnerProduct(n.norm1, num_output=4096)
    n.drop6 = L.Dropout(n.fc6, in_place=True)
    n.accuracy = L.Accuracy(n.fc6, n.label, include=dict(phase=caffe_pb2.TEST))
    n.loss = L.SoftmaxWithLoss(n.fc6, n.label, loss_weight=1)
    return n.to_proto()


CAFFENET_LIKE = '''layer {
  name: "data"
  type: "Data"
  top: "data"
  top: "label"
  include {
    phase: TRAIN
  }
  transform_param {
    mirror: true
    crop_size: 227
    mean_value: 104
    mean_value: 117
    mean_value: 123
  }
  data_param {
    source: "train_lmdb"
    batch_size: 32
    backend: LMDB
  }
}
layer {
  name: "conv1"
  type: "Convolution"
  bottom: "data"
  top: "conv1"
  param {
    lr_mult: 1
    decay_mult: 1
  }
  param {
    lr_mult: 2
    decay_mult: 0
  }
  convolution_param {
    num_output: 96
    kernel_size: 11
    stride: 4
    weight_filler {
      type: "gaussian"
      std: 0.01
    }
    bias_filler {
      type: "constant"
      value: 0
    }
  }
}
layer {
  name: "relu1"
  type: "ReLU"
  bottom: "conv1"
  top: "conv1"
}
layer {
  name: "norm1"
  type: "LRN"
  bottom: "conv1"
  top: "norm1"
  lrn_param {
    local_size: 5
    alpha: 0.0001
    beta: 0.75
  }
}
layer {
  name: "fc6"
  type: "InnerProduct"
  bottom: "norm1"
  top: "fc6"
  inner_product_param {
    num_output: 4096
  }
}
layer {
  name: "drop6"
  type: "Dropout"
  bottom: "fc6"
  top: "fc6"
}
layer {
  name: "accuracy"
  type: "Accuracy"
  bottom: "fc6"
  bottom: "label"
  top: "accuracy"
  include {
    phase: TEST
  }
}
layer {
  name: "loss"
  type: "SoftmaxWithLoss"
  bottom: "fc6"
  bottom: "label"
  top: "loss"
  loss_weight: 1
}
'''


def test_caffenet_like_param_lists_and_phase_includes():
    # mirror is TransformationParameter field 1, crop_size 3, mean_value 5;
    # lrn_param is field 118; include (8) prints before transform_param (100)
    assert str(caffenet_like()) == CAFFENET_LIKE


PYTHON_DATA = '''layer {
  name: "data"
  type: "Python"
  top: "data"
  top: "label"
  python_param {
    module: "voc_layers"
    layer: "VOCSegDataLayer"
    param_str: "{\\'split\\': \\'train\\', \\'seed\\': 1337}"
  }
}
layer {
  name: "relu"
  type: "ReLU"
  bottom: "data"
  top: "data"
}
layer {
  name: "drop"
  type: "Dropout"
  bottom: "data"
  top: "data"
  dropout_param {
    dropout_ratio: 0.5
  }
}
layer {
  name: "score"
  type: "Convolution"
  bottom: "data"
  top: "score"
  convolution_param {
    num_output: 21
    kernel_size: 1
  }
}
'''


def test_ntop2_python_layer_with_in_place_relu_dropout():
    # in-place layers take their bottoms as tops and their own attribute name
    # as layer name; text_format escapes single quotes inside strings
    n = NetSpec()
    n.data, n.label = L.Python(module='voc_layers', layer='VOCSegDataLayer', ntop=2,
                               param_str=str(dict(split='train', seed=1337)))
    n.relu = L.ReLU(n.data, in_place=True)
    n.drop = L.Dropout(n.relu, dropout_ratio=0.5, in_place=True)
    n.score = L.Convolution(n.drop, num_output=21, kernel_size=1)
    assert str(n.to_proto()) == PYTHON_DATA


ANONYMOUS = '''layer {
  name: "DummyData1"
  type: "DummyData"
  top: "DummyData1"
  dummy_data_param {
    shape {
      dim: 1
      dim: 3
      dim: 8
      dim: 8
    }
  }
}
layer {
  name: "Convolution1"
  type: "Convolution"
  bottom: "DummyData1"
  top: "Convolution1"
  convolution_param {
    num_output: 4
    kernel_size: 3
  }
}
layer {
  name: "ReLU1"
  type: "ReLU"
  bottom: "Convolution1"
  top: "Convolution1"
}
layer {
  name: "Convolution2"
  type: "Convolution"
  bottom: "Convolution1"
  top: "Convolution2"
  convolution_param {
    num_output: 4
    kernel_size: 3
  }
}
layer {
  name: "Eltwise1"
  type: "Eltwise"
  bottom: "Convolution1"
  bottom: "Convolution2"
  top: "Eltwise1"
  eltwise_param {
    operation: MAX
  }
}
'''


def test_anonymous_tops_and_in_place_names():
    # in-place ReLU: its top is its bottom's name, and the layer gets the next
    # automatic ReLU name; the Eltwise's bottoms come out in argument order
    data = L.DummyData(shape=dict(dim=[1, 3, 8, 8]))
    c1 = L.Convolution(data, num_output=4, kernel_size=3)
    r1 = L.ReLU(c1, in_place=True)
    c2 = L.Convolution(r1, num_output=4, kernel_size=3)
    out = L.Eltwise(r1, c2, operation=P.Eltwise.MAX)
    assert str(to_proto(out)) == ANONYMOUS


DECONV = '''layer {
  name: "score_fr"
  type: "Input"
  top: "score_fr"
  input_param {
    shape {
      dim: 1
      dim: 21
      dim: 16
      dim: 16
    }
  }
}
layer {
  name: "upscore"
  type: "Deconvolution"
  bottom: "score_fr"
  top: "upscore"
  param {
    lr_mult: 0
  }
  convolution_param {
    num_output: 21
    bias_term: false
    kernel_size: 64
    group: 21
    stride: 32
    weight_filler {
      type: "bilinear"
    }
  }
}
'''


def test_deconvolution_nested_convolution_param():
    # FCN's form: convolution_param given as a dict, param as a list of dicts
    n = NetSpec()
    n.score_fr = L.Input(shape=dict(dim=[1, 21, 16, 16]))
    n.upscore = L.Deconvolution(n.score_fr, convolution_param=dict(
        num_output=21, kernel_size=64, stride=32, group=21, bias_term=False,
        weight_filler=dict(type='bilinear')), param=[dict(lr_mult=0)])
    assert str(n.to_proto()) == DECONV


def test_deconvolution_flat_kwargs_go_to_convolution_param():
    # pycaffe raises AttributeError here (no DeconvolutionParameter); Caffe's
    # Deconvolution layer reads convolution_param, so that is what was meant
    n = NetSpec()
    n.score_fr = L.Input(shape=dict(dim=[1, 21, 16, 16]))
    n.upscore = L.Deconvolution(n.score_fr, num_output=21, kernel_size=64, stride=32, group=21,
                                bias_term=False, weight_filler=dict(type='bilinear'),
                                param=[dict(lr_mult=0)])
    assert str(n.to_proto()) == DECONV


def test_softmax_with_loss_flat_kwargs():
    n = NetSpec()
    n.score, n.label = L.DummyData(ntop=2, shape=[dict(dim=[1, 2]), dict(dim=[1])])
    n.loss = L.SoftmaxWithLoss(n.score, n.label, ignore_label=255, normalize=False, axis=1)
    layer = n.to_proto().layer[1]
    assert layer.loss_param.ignore_label == 255 and layer.loss_param.normalize is False
    assert layer.softmax_param.axis == 1


def test_tuples_enum_names_and_empty_lists():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=(1, 3, 4, 4)))
    n.pool = L.Pooling(n.data, pool='AVE', kernel_size=2, stride=2, include=[])
    layer = n.to_proto().layer[1]
    assert layer.pooling_param.pool == caffe_pb2.PoolingParameter.AVE
    assert list(n.to_proto().layer[0].input_param.shape[0].dim) == [1, 3, 4, 4]
    assert len(layer.include) == 0


def test_unknown_field_suggests():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 4, 4]))
    n.conv = L.Convolution(n.data, kernal_size=3, num_output=2)
    with pytest.raises(NetdslError) as exc:
        n.to_proto()
    text = str(exc.value)
    assert "unknown parameter `kernal_size` for a Convolution layer" in text
    assert "did you mean `kernel_size`?" in text
    assert "layer 'conv'" in text
    assert "test_netspec.py" in text  # the script line that made the layer


def test_nested_unknown_field():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 4, 4]))
    n.conv = L.Convolution(n.data, convolution_param=dict(num_output=2, kernel_size=3,
                                                           weight_filler=dict(typ='xavier')))
    with pytest.raises(NetdslError, match=r"unknown field `typ` in weight_filler; "
                                          r"did you mean `type`\?"):
        n.to_proto()


def test_wrong_value_types():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 4, 4]))
    n.conv = L.Convolution(n.data, num_output='many', kernel_size=3)
    with pytest.raises(NetdslError, match=r"`num_output` in convolution_param expects an integer, "
                                          r"got 'many'"):
        n.to_proto()
    n.conv = L.Pooling(n.data, pool='MAXIMUM')
    with pytest.raises(NetdslError, match=r"`MAXIMUM` is not a value of `pool`.*did you mean `MAX`"):
        n.to_proto()
    n.conv = L.Convolution(n.data, num_output=[2, 3])
    with pytest.raises(NetdslError, match=r"`num_output` in convolution_param takes a single value"):
        n.to_proto()


def test_auto_name_collision_is_an_error():
    # pycaffe silently emits two layers producing "Convolution1", which Caffe
    # rejects ("Top blob 'Convolution1' produced by multiple sources", net.cpp)
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 4, 4]))
    n.Convolution1 = L.Convolution(L.Convolution(n.data, num_output=1, kernel_size=1),
                                   num_output=1, kernel_size=1)
    with pytest.raises(NetdslError, match="top name 'Convolution1' would be produced twice"):
        n.to_proto()


def test_multi_top_tuple_assigned_whole():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 4]))
    n.parts = L.Slice(n.data, ntop=2)
    with pytest.raises(NetdslError, match=r"n.parts is a tuple of 2 tops"):
        n.to_proto()


def test_non_top_input():
    # pycaffe (net_spec.py, Function.__init__) raises TypeError with the text
    # "<Type> input <i> is not a Top (type is <type>)"; netdsl's explanation stays in explain()
    with pytest.raises(TypeError, match=r"^ReLU input 0 is not a Top \(type is <class 'str'>\)$") \
            as info:
        L.ReLU("data")
    assert isinstance(info.value, NetdslError)
    assert "input 0 of ReLU is a str, not a top" in info.value.explain()


def test_ntop0_layer_and_names():
    # an ntop=0 layer is named <Type><k> unless assigned
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 4]))
    n.silence = L.Silence(n.data, ntop=0)
    net = n.to_proto()
    assert [(l.name, list(l.bottom), list(l.top)) for l in net.layer] == [
        ("data", [], ["data"]), ("silence", ["data"], [])]
    net = to_proto(L.Silence(L.Input(shape=dict(dim=[1])), ntop=0))
    assert [l.name for l in net.layer] == ["Input1", "Silence1"]


def test_params_enum_constants():
    # caffe.proto: PoolingParameter.PoolMethod MAX = 0, AVE = 1, STOCHASTIC = 2
    assert (P.Pooling.MAX, P.Pooling.AVE, P.Pooling.STOCHASTIC) == (0, 1, 2)
    # EltwiseParameter.EltwiseOp PROD = 0, SUM = 1, MAX = 2
    assert (P.Eltwise.PROD, P.Eltwise.SUM, P.Eltwise.MAX) == (0, 1, 2)
    with pytest.raises(NetdslError, match="did you mean `MAX`"):
        P.Pooling.MAXX


def test_deep_chain_does_not_recurse():
    # pycaffe's recursive _to_proto hits the recursion limit near 1,000 layers
    x = L.Input(shape=dict(dim=[1, 1]))
    for _ in range(5000):
        x = L.ReLU(x)
    net = to_proto(x)
    assert len(net.layer) == 5001
    assert net.layer[-1].name == "ReLU5000" and net.layer[-1].bottom[0] == "ReLU4999"


def test_equal_but_different_keyword_values_are_not_confused():
    # layers are encoded once per distinct keyword set; values that compare
    # equal in Python must still give their own fields: -0.0 vs 0.0 (text
    # format prints "-0" and "0"), 1 vs 1.0 (1.0 is not an integer)
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 4]))
    n.a = L.Power(n.data, shift=0.0)
    n.b = L.Power(n.data, shift=-0.0)
    text = str(n.to_proto())
    assert "shift: 0\n" in text and "shift: -0\n" in text
    n.c = L.InnerProduct(n.data, num_output=1)
    n.d = L.InnerProduct(n.data, num_output=1.0)
    with pytest.raises(NetdslError, match="`num_output` in inner_product_param expects an integer"):
        n.to_proto()
