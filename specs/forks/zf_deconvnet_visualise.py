"""Zeiler-Fergus deconvnet visualisation with piergiaj/caffe-deconvnet's nets, as a
pycaffe script: project pool5's activations back to the image.

    netdsl pycaffe --proto caffe.proto specs/forks/zf_deconvnet_visualise.py \\
        deploy.prototxt invdeploy.prototxt bvlc_reference_caffenet.caffemodel \\
        ilsvrc_2012_mean.npy butterfly.jpg out.npz

``caffe.proto``, ``deploy.prototxt`` and ``invdeploy.prototxt`` are the fork's
(caffe/src/proto/caffe.proto, python-demo/).  The convnet runs on the image; the
inverse net gets the convnet's weights (each Deconvolution takes the matching
Convolution's weights, reshaped), pool5's activations with the negative ones set to
zero, and the three pooling switches; its ``conv1`` is scaled to [0, 255] and
deprocessed into an image.  ``out.npz`` holds ``pool5`` (as given to the inverse net),
``conv1`` (the inverse net's output for the first image) and ``image`` (deprocessed).
"""
import sys

import numpy as np

import caffe

deploy, invdeploy, weights, mean_file, image_file, out_file = sys.argv[1:7]

caffe.set_mode_cpu()
net = caffe.Net(deploy, weights, caffe.TEST)
invnet = caffe.Net(invdeploy, caffe.TEST)

# 'data' is the convnet's input blob; the reference model takes BGR in [0, 255] less
# the mean pixel, channels first
transformer = caffe.io.Transformer({'data': net.blobs['data'].data.shape})
transformer.set_transpose('data', (2, 0, 1))
transformer.set_mean('data', np.load(mean_file).mean(1).mean(1))
transformer.set_raw_scale('data', 255)
transformer.set_channel_swap('data', (2, 1, 0))


def norm(x, s=1.0):
    x -= x.min()
    x /= x.max()
    return x * s


net.blobs['data'].data[...] = transformer.preprocess('data', caffe.io.load_image(image_file))
net.forward()

# the inverse net's filters are the convnet's
for name in invnet.params:
    invnet.params[name][0].data[...] = \
        net.params[name][0].data.reshape(invnet.params[name][0].data.shape)

feat = net.blobs['pool5'].data
feat[0][feat[0] < 0] = 0

invnet.blobs['pooled'].data[...] = feat
for stage in ('switches5', 'switches2', 'switches1'):
    invnet.blobs[stage].data[...] = net.blobs[stage].data
invnet.forward()

conv1 = norm(invnet.blobs['conv1'].data[0].copy(), 255.0)
np.savez(out_file, pool5=feat.copy(), conv1=invnet.blobs['conv1'].data[0].copy(),
         image=transformer.deprocess('data', conv1))
