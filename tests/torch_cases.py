"""Models for the from-torch tests: small modules, one per PyTorch -> Caffe
pitfall, and torchvision builders with random weights and batch-norm statistics."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random batch-norm statistics and affine parameters (random init leaves
    mean 0 / var 1, which would hide a wrong BatchNorm mapping); eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                m.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                if m.weight is not None:
                    m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                    m.bias.copy_(torch.rand(c, generator=g) - 0.5)
    return model.eval()


class Interp(nn.Module):
    def __init__(self, **kw):
        super().__init__()
        self.kw = kw

    def forward(self, x):
        return F.interpolate(x, **self.kw)


class DeconvOutputSize(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1)

    def forward(self, x):
        return self.up(x, output_size=[x.shape[2] * 2, x.shape[3] * 2])


class AsymPad(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 5, 3, stride=2)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class AddConst(nn.Module):
    def forward(self, x):
        return x + 1.5


class MulConst(nn.Module):
    def forward(self, x):
        return x * 0.25 - 3.0


class ChannelShuffle(nn.Module):
    def __init__(self, groups=2):
        super().__init__()
        self.groups = groups
        self.conv = nn.Conv2d(8, 8, 1)

    def forward(self, x):
        x = self.conv(x)
        n, c, h, w = x.shape
        x = x.view(n, self.groups, c // self.groups, h, w).transpose(1, 2).contiguous()
        return x.view(n, c, h, w)


class SE(nn.Module):
    def __init__(self, c=8, r=4):
        super().__init__()
        self.fc1 = nn.Conv2d(c, c // r, 1)
        self.fc2 = nn.Conv2d(c // r, c, 1)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(s))))
        return x * s


class UNet(nn.Module):
    """Two levels: encoder, bottleneck, transposed-conv decoder with skip concat."""

    def __init__(self):
        super().__init__()
        self.enc1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.enc2 = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.dec = nn.Sequential(nn.Conv2d(16, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        d = self.dec(torch.cat([self.up(e2), e1], 1))
        return self.head(d)


def pitfalls():
    """name -> (module, input shape)"""
    return {
        "bilinear_x2": (Interp(scale_factor=2, mode="bilinear", align_corners=False), (1, 3, 7, 9)),
        "bilinear_align_size": (Interp(size=(11, 13), mode="bilinear", align_corners=True),
                                (1, 3, 5, 6)),
        "bilinear_size": (Interp(size=(10, 15), mode="bilinear", align_corners=False),
                          (1, 2, 4, 6)),
        "nearest_x3": (Interp(scale_factor=3, mode="nearest"), (1, 3, 5, 4)),
        "nearest_size": (Interp(size=(9, 7), mode="nearest"), (1, 2, 4, 5)),
        "deconv_output_padding": (nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1,
                                                     output_padding=1), (1, 4, 6, 7)),
        "deconv_output_size": (DeconvOutputSize(), (1, 4, 5, 6)),
        "maxpool_ceil_pad": (nn.MaxPool2d(3, 2, padding=1, ceil_mode=True), (1, 3, 10, 11)),
        "avgpool_no_pad_count": (nn.AvgPool2d(3, 2, padding=1, count_include_pad=False),
                                 (1, 3, 9, 10)),
        "avgpool_divisor": (nn.AvgPool2d(2, 2, divisor_override=3), (1, 3, 8, 8)),
        "asymmetric_pad": (AsymPad(), (1, 4, 9, 9)),
        "conv_same": (nn.Conv2d(4, 4, 4, padding="same", dilation=1), (1, 4, 7, 8)),
        "instance_norm_affine": (nn.InstanceNorm2d(4, affine=True), (1, 4, 6, 5)),
        "add_constant": (AddConst(), (1, 3, 4, 4)),
        "mul_constant": (MulConst(), (1, 3, 4, 4)),
        "channel_shuffle": (ChannelShuffle(), (1, 8, 5, 5)),
        "pixel_shuffle": (nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.PixelShuffle(2)),
                          (1, 3, 6, 5)),
        "se_block": (SE(), (1, 8, 6, 6)),
        "unet_skip": (UNet(), (1, 3, 16, 16)),
    }
