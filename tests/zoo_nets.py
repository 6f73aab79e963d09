"""Classic ImageNet classifiers as deploy nets, built with netdsl's NetSpec.

Layer parameters follow the published deploy prototxts: VGG-16 (Simonyan and
Zisserman, configuration D, 224x224), BVLC AlexNet (models/bvlc_alexnet:
227x227, grouped conv2/conv4/conv5, LRN after conv1 and conv2), and ResNet
(He et al. 2016, the Caffe models of KaimingHe/deep-residual-networks:
convolutions without bias followed by BatchNorm and Scale, the stride of a
down-sampling block on its first 1x1 convolution and on the projection).
"""
from __future__ import annotations

from netdsl import NetSpec, layers as L, params as P


def _input(n: NetSpec, size: int, batch: int = 1) -> None:
    n.data = L.Input(shape=dict(dim=[batch, 3, size, size]))


def vgg16(batch: int = 1):
    n = NetSpec()
    _input(n, 224, batch)
    bottom = n.data
    for stage, (reps, width) in enumerate([(2, 64), (2, 128), (3, 256), (3, 512), (3, 512)], 1):
        for r in range(1, reps + 1):
            conv = L.Convolution(bottom, num_output=width, kernel_size=3, pad=1)
            setattr(n, "conv%d_%d" % (stage, r), conv)
            setattr(n, "relu%d_%d" % (stage, r), L.ReLU(conv, in_place=True))
            bottom = conv
        bottom = L.Pooling(bottom, pool=P.Pooling.MAX, kernel_size=2, stride=2)
        setattr(n, "pool%d" % stage, bottom)
    for name, width in (("fc6", 4096), ("fc7", 4096)):
        fc = L.InnerProduct(bottom, num_output=width)
        setattr(n, name, fc)
        setattr(n, "relu" + name[2:], L.ReLU(fc, in_place=True))
        setattr(n, "drop" + name[2:], L.Dropout(fc, dropout_ratio=0.5, in_place=True))
        bottom = fc
    n.fc8 = L.InnerProduct(bottom, num_output=1000)
    n.prob = L.Softmax(n.fc8)
    return n.to_proto()


def alexnet(batch: int = 1):
    n = NetSpec()
    _input(n, 227, batch)
    n.conv1 = L.Convolution(n.data, num_output=96, kernel_size=11, stride=4)
    n.relu1 = L.ReLU(n.conv1, in_place=True)
    n.norm1 = L.LRN(n.conv1, local_size=5, alpha=0.0001, beta=0.75)
    n.pool1 = L.Pooling(n.norm1, pool=P.Pooling.MAX, kernel_size=3, stride=2)
    n.conv2 = L.Convolution(n.pool1, num_output=256, pad=2, kernel_size=5, group=2)
    n.relu2 = L.ReLU(n.conv2, in_place=True)
    n.norm2 = L.LRN(n.conv2, local_size=5, alpha=0.0001, beta=0.75)
    n.pool2 = L.Pooling(n.norm2, pool=P.Pooling.MAX, kernel_size=3, stride=2)
    n.conv3 = L.Convolution(n.pool2, num_output=384, pad=1, kernel_size=3)
    n.relu3 = L.ReLU(n.conv3, in_place=True)
    n.conv4 = L.Convolution(n.conv3, num_output=384, pad=1, kernel_size=3, group=2)
    n.relu4 = L.ReLU(n.conv4, in_place=True)
    n.conv5 = L.Convolution(n.conv4, num_output=256, pad=1, kernel_size=3, group=2)
    n.relu5 = L.ReLU(n.conv5, in_place=True)
    n.pool5 = L.Pooling(n.conv5, pool=P.Pooling.MAX, kernel_size=3, stride=2)
    bottom = n.pool5
    for name, width in (("fc6", 4096), ("fc7", 4096)):
        fc = L.InnerProduct(bottom, num_output=width)
        setattr(n, name, fc)
        setattr(n, "relu" + name[2:], L.ReLU(fc, in_place=True))
        setattr(n, "drop" + name[2:], L.Dropout(fc, dropout_ratio=0.5, in_place=True))
        bottom = fc
    n.fc8 = L.InnerProduct(bottom, num_output=1000)
    n.prob = L.Softmax(n.fc8)
    return n.to_proto()


RESNET_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


def _conv_bn(n: NetSpec, bottom, name: str, bn: str, width: int, kernel: int, stride: int,
             relu: bool):
    conv = L.Convolution(bottom, num_output=width, kernel_size=kernel, stride=stride,
                         pad=(kernel - 1) // 2, bias_term=False)
    setattr(n, name, conv)
    setattr(n, "bn" + bn, L.BatchNorm(conv, use_global_stats=True, in_place=True))
    setattr(n, "scale" + bn, L.Scale(conv, bias_term=True, in_place=True))
    if relu:
        setattr(n, name + "_relu", L.ReLU(conv, in_place=True))
    return conv


def _block_names(depth: int, stage: int, i: int) -> str:
    # KaimingHe's names: 2a, 2b, 2c for ResNet-50; 4a, 4b1 ... 4b35 for the deeper ones
    if depth == 50 or RESNET_BLOCKS[depth][stage - 2] <= 3:
        return "%d%s" % (stage, "abcdefghijklmnopqrstuvwxyz"[i])
    return "%da" % stage if i == 0 else "%db%d" % (stage, i)


def resnet(depth: int = 50, batch: int = 1):
    n = NetSpec()
    _input(n, 224, batch)
    bottom = _conv_bn(n, n.data, "conv1", "_conv1", 64, 7, 2, True)
    bottom = n.pool1 = L.Pooling(bottom, pool=P.Pooling.MAX, kernel_size=3, stride=2)
    for stage, reps in enumerate(RESNET_BLOCKS[depth], 2):
        width = 64 * 2 ** (stage - 2)
        for i in range(reps):
            b = _block_names(depth, stage, i)
            stride = 2 if i == 0 and stage > 2 else 1
            if i == 0:
                short = _conv_bn(n, bottom, "res%s_branch1" % b, "%s_branch1" % b, 4 * width, 1,
                                 stride, False)
            else:
                short = bottom
            x = _conv_bn(n, bottom, "res%s_branch2a" % b, "%s_branch2a" % b, width, 1, stride,
                         True)
            x = _conv_bn(n, x, "res%s_branch2b" % b, "%s_branch2b" % b, width, 3, 1, True)
            x = _conv_bn(n, x, "res%s_branch2c" % b, "%s_branch2c" % b, 4 * width, 1, 1, False)
            out = L.Eltwise(short, x)
            setattr(n, "res" + b, out)
            setattr(n, "res%s_relu" % b, L.ReLU(out, in_place=True))
            bottom = out
    n.pool5 = L.Pooling(bottom, pool=P.Pooling.AVE, kernel_size=7, stride=1)
    n.fc1000 = L.InnerProduct(n.pool5, num_output=1000)
    n.prob = L.Softmax(n.fc1000)
    return n.to_proto()


def chain(num_layers: int):
    """A deep test net of ``num_layers`` layers: an Input, then units of
    Convolution + in-place ReLU, an Eltwise skip after every 4 units and a
    Pooling after every 40."""
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 8, 256, 256]))
    bottom = skip = n.data
    count = 1
    unit = 0
    while count < num_layers:
        unit += 1
        if unit % 41 == 0 and count + 1 <= num_layers:
            bottom = skip = L.Pooling(bottom, pool=P.Pooling.MAX, kernel_size=2, stride=2)
            setattr(n, "pool%d" % unit, bottom)
            count += 1
        elif unit % 5 == 0:
            bottom = skip = L.Eltwise(bottom, skip)
            setattr(n, "sum%d" % unit, bottom)
            count += 1
        elif count + 2 <= num_layers:
            conv = L.Convolution(bottom, num_output=8, kernel_size=3, pad=1)
            setattr(n, "conv%d" % unit, conv)
            setattr(n, "relu%d" % unit, L.ReLU(conv, in_place=True))
            bottom = conv
            count += 2
        else:
            bottom = L.Convolution(bottom, num_output=8, kernel_size=1)
            setattr(n, "conv%d" % unit, bottom)
            count += 1
    return n.to_proto()
