"""A pycaffe NetSpec script in the style of FCN's voc-fcn*/net.py: it writes
train.prototxt and deploy.prototxt into the directory given as its argument."""
import os
import sys

import caffe
from caffe import layers as L, params as P
from caffe.coord_map import crop


def conv_relu(bottom, nout, ks=3, stride=1, pad=1):
    conv = L.Convolution(bottom, kernel_size=ks, stride=stride, num_output=nout, pad=pad,
                         param=[dict(lr_mult=1, decay_mult=1), dict(lr_mult=2, decay_mult=0)])
    return conv, L.ReLU(conv, in_place=True)


def max_pool(bottom, ks=2, stride=2):
    return L.Pooling(bottom, pool=P.Pooling.MAX, kernel_size=ks, stride=stride)


def fcn(split):
    n = caffe.NetSpec()
    if split == "deploy":
        n.data = L.Input(shape=dict(dim=[1, 3, 100, 100]))
    else:
        pydata_params = dict(split=split, mean=(104.00699, 116.66877, 122.67892), seed=1337)
        n.data, n.label = L.Python(module="voc_layers", layer="VOCSegDataLayer", ntop=2,
                                   param_str=str(pydata_params))
    n.conv1_1, n.relu1_1 = conv_relu(n.data, 16, pad=100)
    n.conv1_2, n.relu1_2 = conv_relu(n.relu1_1, 16)
    n.pool1 = max_pool(n.relu1_2)
    n.conv2_1, n.relu2_1 = conv_relu(n.pool1, 32)
    n.pool2 = max_pool(n.relu2_1)
    n.fc6, n.relu6 = conv_relu(n.pool2, 64, ks=7, pad=0)
    n.drop6 = L.Dropout(n.relu6, dropout_ratio=0.5, in_place=True)
    n.score_fr = L.Convolution(n.drop6, num_output=21, kernel_size=1, pad=0,
                               param=[dict(lr_mult=1, decay_mult=1), dict(lr_mult=2, decay_mult=0)])
    n.upscore = L.Deconvolution(n.score_fr, convolution_param=dict(num_output=21, kernel_size=8,
                                stride=4, bias_term=False), param=[dict(lr_mult=0)])
    n.score = crop(n.upscore, n.data)
    if split != "deploy":
        n.loss = L.SoftmaxWithLoss(n.score, n.label,
                                   loss_param=dict(normalize=False, ignore_label=255))
    return n.to_proto()


out = sys.argv[1]
for split in ("train", "deploy"):
    with open(os.path.join(out, "%s.prototxt" % split), "w") as f:
        f.write(str(fcn(split)))
