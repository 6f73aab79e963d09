"""The regression that started the corpus: a compact ResNet-50 spec (string
``%`` formatting, string indexing, conditionals and a block's ``${bottom}``)
builds KaimingHe's published ResNet-50 exactly.

The published net is KaimingHe/deep-residual-networks,
prototxt/ResNet-50-deploy.prototxt (commit a7026cb): 228 layers in the ``layer``
form after a legacy ``input: "data"`` with ``input_dim`` 1, 3, 224, 224.  The file
is not stored here; PUBLISHED_SHA256 pins its NetParameter (parsed with BVLC's
caffe.proto, serialised deterministically), as tests/published_*.py pin the
forks' nets.  A spec writes no net ``name`` (pycaffe's ``to_proto`` writes none
either) and declares its input as the ``Input`` layer that Caffe's
UpgradeNetInput (upgrade_proto.cpp) makes of the legacy fields, so those two
are put back in the published form before hashing.
"""
from __future__ import annotations

import hashlib
import os

from netdsl.spec import build_nets, load_spec

import corpus

# sha256 of NetParameter.SerializeToString(deterministic=True) of the published
# prototxt/ResNet-50-deploy.prototxt of KaimingHe/deep-residual-networks (a7026cb)
PUBLISHED_SHA256 = "f6a485d248ae7aed70dfbc8ed75910234e92525911b74cd009327b141131e496"
SPEC = os.path.join(corpus.CORPUS, "specs", "resnet50.yaml")


def _published_form(net, name):
    """``net`` with its Input layer back as the legacy input fields, and named."""
    first = net.layer[0]
    assert (first.name, first.type, list(first.top)) == ("input", "Input", ["data"])
    shape = list(first.input_param.shape[0].dim)
    del net.layer[0]
    net.input.extend(first.top)
    net.input_dim.extend(shape)
    net.name = name
    return net


def test_resnet50_spec_builds_the_published_net():
    net = build_nets(load_spec(SPEC))["deploy"]
    net = _published_form(net, "ResNet-50")
    assert len(net.layer) == 228
    assert list(net.input_dim) == [1, 3, 224, 224]
    digest = hashlib.sha256(net.SerializeToString(deterministic=True)).hexdigest()
    assert digest == PUBLISHED_SHA256


def test_resnet50_spec_is_compact_and_uses_what_0_1_refused_in_0_2_rc():
    with open(SPEC) as f:
        text = f.read()
    assert len(text.splitlines()) <= 100
    for construct in ("'res%s%s_branch1' % (s, u)", "'abcdef'[i - 1]", "if project else",
                      "${bottom}"):
        assert construct in text


def test_the_0_1_form_of_the_spec_builds_the_same_net():
    # resnet50-prev.yaml passes each unit its input as an argument, as 0.1 needed
    a = build_nets(load_spec(SPEC))["deploy"]
    b = build_nets(load_spec(os.path.join(corpus.CORPUS, "specs", "resnet50-prev.yaml")))
    assert a.SerializeToString(deterministic=True) == \
        b["deploy"].SerializeToString(deterministic=True)


def test_docs_show_the_blocks_of_this_spec():
    docs = os.path.join(os.path.dirname(os.path.dirname(corpus.HERE)), "docs", "spec.md")
    with open(docs, encoding="utf-8") as f:
        text = f.read()
    start = text.index("blocks:\n  branch:")
    shown = text[start:text.index("layers:\n  # ...", start)]
    with open(SPEC) as f:
        assert shown in f.read()
