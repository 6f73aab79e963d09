"""README's NetSpec example (netdsl 0.1), written as pycaffe would: caffe.NetSpec,
L.*, P.*, crop from coord_map, str(n.to_proto()) into the directory given."""
import os
import sys

import caffe
from caffe import layers as L, params as P
from caffe.coord_map import crop

n = caffe.NetSpec()
n.data = L.Input(shape=dict(dim=[1, 3, 224, 224]))
n.conv1 = L.Convolution(n.data, kernel_size=3, num_output=64, pad=1,
                        weight_filler=dict(type='xavier'))
n.relu1 = L.ReLU(n.conv1, in_place=True)
n.pool1 = L.Pooling(n.relu1, pool=P.Pooling.MAX, kernel_size=2, stride=2)
n.up = L.Deconvolution(n.pool1, convolution_param=dict(num_output=64, kernel_size=4, stride=2,
                       pad=1, group=64, bias_term=False, weight_filler=dict(type='bilinear')))
n.crop = crop(n.up, n.data)
n.sil = L.Silence(n.crop, ntop=0)
n.drop = L.Dropout(n.pool1, dropout_ratio=0.3, include=dict(phase=caffe.TRAIN))
n.acc, n.loss = L.Python(n.pool1, module='m', layer='l', ntop=2, loss_weight=[0, 1])
with open(os.path.join(sys.argv[1], "net.prototxt"), "w") as f:
    f.write(str(n.to_proto()))
