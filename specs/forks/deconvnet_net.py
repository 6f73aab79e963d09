"""The DeconvNet-style encoder-decoder of deconvnet-unpool.yaml as a pycaffe script.

Runs unchanged under a Caffe built from the fork, or without Caffe:

    netdsl pycaffe --proto specs/forks/deconvnet.proto specs/forks/deconvnet_net.py deploy.prototxt
    netdsl shapes deploy.prototxt --proto specs/forks/deconvnet.proto \
        --plugin specs/forks/segmentation_layers.py
"""
import sys

import caffe
from caffe import layers as L, params as P


def conv_relu(bottom, nout):
    conv = L.Convolution(bottom, num_output=nout, kernel_size=3, pad=1)
    return conv, L.ReLU(conv, in_place=True)


def deconvnet(size=64, num_classes=21):
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, size, size]))
    n.conv1, n.relu1 = conv_relu(n.data, 16)
    # max pooling that also outputs its switches (reads BVLC's pooling_param)
    n.pool1, n.switches1 = L.MaxPoolWithSwitches(
        n.relu1, pooling_param=dict(pool=P.Pooling.MAX, kernel_size=2, stride=2), ntop=2)
    n.conv2, n.relu2 = conv_relu(n.pool1, 32)
    n.pool2, n.switches2 = L.MaxPoolWithSwitches(
        n.relu2, pooling_param=dict(pool=P.Pooling.MAX, kernel_size=2, stride=2), ntop=2)
    # flat keywords go to the fork's unpooling_param
    n.unpool2 = L.Unpooling(n.pool2, n.switches2, kernel_size=2, stride=2)
    n.deconv2 = L.Deconvolution(n.unpool2, convolution_param=dict(
        num_output=16, kernel_size=3, pad=1))
    n.drelu2 = L.ReLU(n.deconv2, in_place=True)
    n.unpool1 = L.Unpooling(n.drelu2, n.switches1, kernel_size=2, stride=2)
    n.deconv1 = L.Deconvolution(n.unpool1, convolution_param=dict(
        num_output=16, kernel_size=3, pad=1))
    n.score = L.Convolution(n.deconv1, num_output=num_classes, kernel_size=1)
    return n.to_proto()


if __name__ == "__main__":
    with open(sys.argv[1], "w") as f:
        f.write(str(deconvnet()))
