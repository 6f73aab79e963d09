"""PyTorch-parity recipes used as spec ops, end to end: spec -> prototxt -> forward."""
import os

import numpy as np
import pytest

from netdsl.cli import main
from netdsl.forward import forward
from netdsl.prototxt import read_net

import torch  # noqa: E402  (torch extra, installed by the README's test command)

SPEC = """
name: torch-ops
inputs:
  data: [1, 2, 5, 7]
layers:
  - torch_interpolate: up
    bottom: data
    shape: [1, 2, 5, 7]
    scale_factor: 3
    mode: bilinear
    align_corners: false
  - torch_max_pool2d: pool
    bottom: up
    shape: [1, 2, 15, 21]
    kernel_size: 2
    stride: 2
"""


def test_spec_with_torch_ops_matches_pytorch(tmp_path):
    spec = tmp_path / "torch-ops.yaml"
    spec.write_text(SPEC)
    out = tmp_path / "out"
    assert main(["build", str(spec), "-o", str(out), "--phase", "deploy"]) == 0
    net = read_net(str(out / "deploy.prototxt"))
    x = np.random.default_rng(3).standard_normal((1, 2, 5, 7)).astype(np.float32)
    blobs = forward(net, inputs={"data": x})
    t = torch.from_numpy(x)
    up = torch.nn.functional.interpolate(t, scale_factor=3, mode="bilinear", align_corners=False)
    # MaxPool2d's default ceil_mode=False: floor((15 - 2)/2) + 1 = 7, (21 - 2)//2 + 1 = 10
    ref = torch.nn.functional.max_pool2d(up, 2, 2).numpy()
    got = blobs["pool"]
    assert got.shape == ref.shape == (1, 2, 7, 10)
    assert np.abs(got - ref).max() <= 1e-5
