"""Models for the from-torch command-line tests (file.py:callable form)."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        return torch.sigmoid(self.bn(self.conv(x)))


class TwoHeads(nn.Module):
    """Dict output, two inputs."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, a, b):
        y = self.conv(a) + b
        return {"sum": y, "up": F.interpolate(y, scale_factor=2, mode="bilinear",
                                              align_corners=True)}


class Unsupported(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(3, 3, 1), nn.Hardshrink())

    def forward(self, x):
        return self.block(x)


def small():
    torch.manual_seed(0)
    return Small()


class Configurable(nn.Module):
    """Constructor arguments (--arg) and outputs that prove little: a constant one and
    a tiny one."""

    def __init__(self, num_classes=3, scale=1.0, name="x"):
        super().__init__()
        self.conv = nn.Conv2d(3, num_classes, 1)
        self.bn = nn.BatchNorm2d(num_classes)
        self.scale = scale

    def forward(self, x):
        y = self.bn(self.conv(x)) * self.scale
        return y, torch.ones(1, 2, 3, 3) + x[:, :2] * 0, self.conv(x) * 1e-9


left_in_training = Configurable()     # a module object, still in training mode
