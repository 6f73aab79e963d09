"""FCN nets built directly with caffe_pb2, mirroring shelhamer/fcn.berkeleyvision.org.

Layer parameters follow voc-fcn32s/net.py, voc-fcn16s/net.py, voc-fcn8s/net.py and
voc-fcn-alexnet/net.py (and their val.prototxt / deploy.prototxt, which those
scripts generate): VGG-16 with conv1_1 padded by 100, in-place ReLU and Dropout,
Deconvolution upsampling without bias, and Crop layers with the offsets the
published prototxts carry (FCN-32s 19; FCN-16s 5 and 27; FCN-8s 5, 9 and 31;
FCN-AlexNet 18).

``split="deploy"`` starts with an Input layer of 1x3x500x500 (as
voc-fcn8s/deploy.prototxt); ``split="val"`` starts with the Python data layer
(tops data and label) and ends with SoftmaxWithLoss, as val.prototxt.
``offsets=False`` leaves the Crop offsets unset, for code that computes them.
"""
from __future__ import annotations

from netdsl.proto import caffe_pb2

# published Crop offsets (the val.prototxt / deploy.prototxt files)
PUBLISHED = {
    "fcn32s": {"score": 19},
    "fcn16s": {"score_pool4c": 5, "score": 27},
    "fcn8s": {"score_pool4c": 5, "score_pool3c": 9, "score": 31},
    "fcn_alexnet": {"score": 18},
}


class _Builder:
    def __init__(self, name: str, split: str, size: int, offsets: bool, published: dict) -> None:
        self.net = caffe_pb2.NetParameter()
        self.net.name = name
        self.offsets = offsets
        self.published = published
        if split == "deploy":
            inp = self.layer("input", "Input", [], ["data"])
            inp.input_param.shape.add().dim.extend([1, 3, size, size])
        else:
            py = self.layer("data", "Python", [], ["data", "label"])
            py.python_param.module = "voc_layers"
            py.python_param.layer = "VOCSegDataLayer"
        self.split = split

    def layer(self, name, type_, bottoms, tops):
        lp = self.net.layer.add()
        lp.name = name
        lp.type = type_
        lp.bottom.extend(bottoms)
        lp.top.extend(tops)
        return lp

    def conv(self, name, bottom, nout, ks=3, stride=1, pad=1, group=1):
        lp = self.layer(name, "Convolution", [bottom], [name])
        cp = lp.convolution_param
        cp.num_output = nout
        cp.kernel_size.append(ks)
        cp.stride.append(stride)
        cp.pad.append(pad)
        if group != 1:
            cp.group = group
        return name

    def conv_relu(self, name, bottom, nout, ks=3, stride=1, pad=1, group=1, relu=None):
        self.conv(name, bottom, nout, ks, stride, pad, group)
        self.layer(relu or name.replace("conv", "relu").replace("fc", "relu"), "ReLU",
                   [name], [name])
        return name

    def pool(self, name, bottom, ks=2, stride=2):
        lp = self.layer(name, "Pooling", [bottom], [name])
        lp.pooling_param.pool = caffe_pb2.PoolingParameter.MAX
        lp.pooling_param.kernel_size = ks
        lp.pooling_param.stride = stride
        return name

    def dropout(self, name, blob):
        self.layer(name, "Dropout", [blob], [blob]).dropout_param.dropout_ratio = 0.5
        return blob

    def deconv(self, name, bottom, nout, ks, stride):
        lp = self.layer(name, "Deconvolution", [bottom], [name])
        cp = lp.convolution_param
        cp.num_output = nout
        cp.kernel_size.append(ks)
        cp.stride.append(stride)
        cp.bias_term = False
        return name

    def crop(self, name, bottom, reference):
        lp = self.layer(name, "Crop", [bottom, reference], [name])
        lp.crop_param.axis = 2
        if self.offsets:
            lp.crop_param.offset.append(self.published[name])
        return name

    def eltwise(self, name, a, b):
        lp = self.layer(name, "Eltwise", [a, b], [name])
        lp.eltwise_param.operation = caffe_pb2.EltwiseParameter.SUM
        return name

    def finish(self, score):
        if self.split != "deploy":
            lp = self.layer("loss", "SoftmaxWithLoss", [score, "label"], ["loss"])
            lp.loss_param.ignore_label = 255
            lp.loss_param.normalize = False
        return self.net


def _vgg_fc(b: _Builder) -> None:
    """VGG-16 to score_fr, as voc-fcn*/net.py."""
    b.conv_relu("conv1_1", "data", 64, pad=100)
    b.conv_relu("conv1_2", "conv1_1", 64)
    b.pool("pool1", "conv1_2")
    b.conv_relu("conv2_1", "pool1", 128)
    b.conv_relu("conv2_2", "conv2_1", 128)
    b.pool("pool2", "conv2_2")
    b.conv_relu("conv3_1", "pool2", 256)
    b.conv_relu("conv3_2", "conv3_1", 256)
    b.conv_relu("conv3_3", "conv3_2", 256)
    b.pool("pool3", "conv3_3")
    b.conv_relu("conv4_1", "pool3", 512)
    b.conv_relu("conv4_2", "conv4_1", 512)
    b.conv_relu("conv4_3", "conv4_2", 512)
    b.pool("pool4", "conv4_3")
    b.conv_relu("conv5_1", "pool4", 512)
    b.conv_relu("conv5_2", "conv5_1", 512)
    b.conv_relu("conv5_3", "conv5_2", 512)
    b.pool("pool5", "conv5_3")
    b.conv_relu("fc6", "pool5", 4096, ks=7, pad=0, relu="relu6")
    b.dropout("drop6", "fc6")
    b.conv_relu("fc7", "fc6", 4096, ks=1, pad=0, relu="relu7")
    b.dropout("drop7", "fc7")
    b.conv("score_fr", "fc7", 21, ks=1, pad=0)


def fcn32s(split: str = "deploy", size: int = 500, offsets: bool = True):
    """voc-fcn32s: upscore (Deconvolution k64 s32), score = Crop(upscore, data)."""
    b = _Builder("FCN32s", split, size, offsets, PUBLISHED["fcn32s"])
    _vgg_fc(b)
    b.deconv("upscore", "score_fr", 21, 64, 32)
    b.crop("score", "upscore", "data")
    return b.finish("score")


def fcn16s(split: str = "deploy", size: int = 500, offsets: bool = True):
    """voc-fcn16s: upscore2 (k4 s2) fused with cropped score_pool4, upscore16 (k32 s16)."""
    b = _Builder("FCN16s", split, size, offsets, PUBLISHED["fcn16s"])
    _vgg_fc(b)
    b.deconv("upscore2", "score_fr", 21, 4, 2)
    b.conv("score_pool4", "pool4", 21, ks=1, pad=0)
    b.crop("score_pool4c", "score_pool4", "upscore2")
    b.eltwise("fuse_pool4", "upscore2", "score_pool4c")
    b.deconv("upscore16", "fuse_pool4", 21, 32, 16)
    b.crop("score", "upscore16", "data")
    return b.finish("score")


def fcn8s(split: str = "deploy", size: int = 500, offsets: bool = True):
    """voc-fcn8s: as FCN-16s, then upscore_pool4 (k4 s2) fused with cropped score_pool3,
    upscore8 (k16 s8)."""
    b = _Builder("FCN8s", split, size, offsets, PUBLISHED["fcn8s"])
    _vgg_fc(b)
    b.deconv("upscore2", "score_fr", 21, 4, 2)
    b.conv("score_pool4", "pool4", 21, ks=1, pad=0)
    b.crop("score_pool4c", "score_pool4", "upscore2")
    b.eltwise("fuse_pool4", "upscore2", "score_pool4c")
    b.deconv("upscore_pool4", "fuse_pool4", 21, 4, 2)
    b.conv("score_pool3", "pool3", 21, ks=1, pad=0)
    b.crop("score_pool3c", "score_pool3", "upscore_pool4")
    b.eltwise("fuse_pool3", "upscore_pool4", "score_pool3c")
    b.deconv("upscore8", "fuse_pool3", 21, 16, 8)
    b.crop("score", "upscore8", "data")
    return b.finish("score")


def fcn_alexnet(split: str = "deploy", size: int = 500, offsets: bool = True):
    """voc-fcn-alexnet: CaffeNet-style base with conv1 padded by 100, upscore k63 s32."""
    b = _Builder("FCN-AlexNet", split, size, offsets, PUBLISHED["fcn_alexnet"])
    b.conv_relu("conv1", "data", 96, ks=11, stride=4, pad=100)
    b.pool("pool1", "conv1", ks=3, stride=2)
    lrn = b.layer("norm1", "LRN", ["pool1"], ["norm1"]).lrn_param
    lrn.local_size, lrn.alpha, lrn.beta = 5, 1e-4, 0.75
    b.conv_relu("conv2", "norm1", 256, ks=5, pad=2, group=2)
    b.pool("pool2", "conv2", ks=3, stride=2)
    lrn = b.layer("norm2", "LRN", ["pool2"], ["norm2"]).lrn_param
    lrn.local_size, lrn.alpha, lrn.beta = 5, 1e-4, 0.75
    b.conv_relu("conv3", "norm2", 384, ks=3, pad=1)
    b.conv_relu("conv4", "conv3", 384, ks=3, pad=1, group=2)
    b.conv_relu("conv5", "conv4", 256, ks=3, pad=1, group=2)
    b.pool("pool5", "conv5", ks=3, stride=2)
    b.conv_relu("fc6", "pool5", 4096, ks=6, pad=0, relu="relu6")
    b.dropout("drop6", "fc6")
    b.conv_relu("fc7", "fc6", 4096, ks=1, pad=0, relu="relu7")
    b.dropout("drop7", "fc7")
    b.conv("score_fr", "fc7", 21, ks=1, pad=0)
    b.deconv("upscore", "score_fr", 21, 63, 32)
    b.crop("score", "upscore", "data")
    return b.finish("score")
