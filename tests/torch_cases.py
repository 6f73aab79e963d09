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


class Activations(nn.Module):
    def __init__(self):
        super().__init__()
        self.prelu = nn.PReLU(4)
        self.prelu1 = nn.PReLU()

    def forward(self, x):
        parts = [F.relu(x), F.relu6(x * 4), F.leaky_relu(x, 0.2), self.prelu(x), self.prelu1(x),
                 F.elu(x, 0.7), torch.sigmoid(x), torch.tanh(x), F.hardtanh(x, -0.5, 0.8),
                 F.hardswish(x * 3), F.hardsigmoid(x * 3), F.silu(x), F.softplus(x),
                 F.softplus(x, beta=2.0), torch.abs(x), torch.exp(x), torch.log(x.abs() + 0.1),
                 torch.pow(x.abs() + 0.5, 1.5), torch.sqrt(x.abs() + 0.1),
                 torch.rsqrt(x.abs() + 0.1), torch.clamp(x, -0.3, 0.4),
                 torch.clamp(x, min=0.1), -x, 1.0 / (x.abs() + 1.0)]
        return torch.cat(parts, 1)


class Arithmetic(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("chan", torch.linspace(-1, 1, 4).view(1, 4, 1, 1))
        self.register_buffer("full", torch.linspace(0.5, 2, 4 * 5 * 6).view(4, 5, 6))

    def forward(self, x, y):
        s = x.mean((2, 3), keepdim=True)
        row = x[:, :, :1, :]          # (N, C, 1, W): broadcast along H
        return [x + y, x - y, x * y, x / (y.abs() + 1), torch.add(x, y, alpha=0.5),
                x * s, s * x, x + s, x - row, x * self.chan, x + self.chan, x - self.full,
                self.full - x, x / self.chan.abs().clamp(min=0.5), 2.0 - x, 3.0 / (x.abs() + 1),
                x / 4.0]


class Shapes(nn.Module):
    def forward(self, x):
        a, b = torch.chunk(x, 2, 1)
        c, d, e = torch.split(x, [1, 2, 1], dim=1)
        f = x.narrow(2, 1, 3)
        g = x[:, 2]                         # select
        h = torch.stack([a, b], 2).flatten(1, 2)
        i = x.permute(0, 2, 1, 3).contiguous().permute(0, 2, 1, 3)
        j = x.unsqueeze(1).squeeze(1).reshape(x.shape[0], -1)
        k = x[:, 1:3, 2:, :-1]
        m = torch.cat(list(torch.unbind(x, 1)), 1)
        n = x[:, :1].expand(-1, 4, -1, -1)
        return a * b, c + e, d, f, g, h, i, j, k, m, n


class Reductions(nn.Module):
    def forward(self, x):
        return (x.mean((2, 3)), x.sum((2, 3), keepdim=True), x.mean(1, keepdim=True),
                x.sum(1), F.softmax(x, 1), F.log_softmax(x, 1), torch.softmax(x.flatten(1), -1))


class Pads(nn.Module):
    def forward(self, x):
        return (F.pad(x, (2, 1, 1, 3), mode="reflect"), F.pad(x, (1, 2, 3, 0), mode="replicate"),
                F.pad(x, (1, 1, 2, 0), value=0.5), F.pad(x, (-1, 0, 1, -2)))


class Pools(nn.Module):
    def forward(self, x):
        # kernel < stride without padding (FPN's LastLevelMaxPool is max_pool2d(x, 1, 2)):
        # Caffe keeps a last window starting past the input there, PyTorch does not
        return (F.max_pool2d(x, 1, 2), F.avg_pool2d(x, 1, 2), F.max_pool2d(x, 2, 3),
                F.max_pool2d(x, 1, 2, ceil_mode=True),
                F.adaptive_avg_pool2d(x, (3, 2)), F.adaptive_max_pool2d(x, 1),
                # windows of different sizes (6 -> 4, 4 -> 3) and one size at one step
                F.adaptive_avg_pool2d(x, (4, 3)), F.adaptive_avg_pool2d(x, (5, 3)),
                F.adaptive_avg_pool2d(x, (12, 8)), F.max_pool2d(x, (3, 2), (2, 1), (1, 0)),
                F.avg_pool2d(x, 3, 2, 1, ceil_mode=True),
                F.avg_pool2d(x, 2, 2, ceil_mode=True, count_include_pad=False),
                F.max_pool2d(x, 2))


class Norms(nn.Module):
    def __init__(self):
        super().__init__()
        self.gn = nn.GroupNorm(2, 4)
        self.inorm = nn.InstanceNorm2d(4)
        self.bn_plain = nn.BatchNorm2d(4, affine=False)
        self.bn_tracked = nn.InstanceNorm2d(4, affine=True, track_running_stats=True)

    def forward(self, x):
        return self.gn(x), self.inorm(x), self.bn_plain(x), self.bn_tracked(x)


class Dense(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 3)
        self.fc2 = nn.Linear(24, 5, bias=False)
        self.w = nn.Parameter(torch.randn(6, 2))

    def forward(self, x):
        return self.fc(x), self.fc2(x.flatten(1)), x @ self.w, torch.matmul(x, self.w)


class Convs(nn.Module):
    def __init__(self):
        super().__init__()
        self.dil = nn.Conv2d(4, 6, 3, padding=2, dilation=2, groups=2)
        self.rect = nn.Conv2d(4, 4, (3, 1), stride=(2, 1), padding=(1, 0), groups=4)
        self.same = nn.Conv2d(4, 3, 3, padding="same", dilation=2)
        self.deconv = nn.ConvTranspose2d(4, 4, 4, stride=2, padding=1, groups=2, dilation=1)
        self.deconv_d = nn.ConvTranspose2d(4, 2, 3, stride=3, padding=2, output_padding=2,
                                           dilation=2)
        self.ps = nn.PixelUnshuffle(2)

    def forward(self, x):
        return self.dil(x), self.rect(x), self.same(x), self.deconv(x), self.deconv_d(x), \
            self.ps(x)


class InPlace(nn.Module):
    """In-place ops whose operand is used afterwards (the graph keeps the name)."""

    def forward(self, x):
        y = x * 2
        y.relu_()
        z = y + 1
        z.mul_(3)
        return y, z


class MoreOps(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln = nn.LayerNorm(6)
        self.ln2 = nn.LayerNorm([5, 6], elementwise_affine=False)
        self.gelu = nn.GELU(approximate="tanh")

    def forward(self, x):
        return (self.ln(x), self.ln2(x), self.gelu(x), F.mish(x), F.selu(x), F.celu(x, 0.5),
                F.logsigmoid(x), torch.square(x), torch.zeros_like(x) + x.float(),
                torch.full_like(x, 2.5) * x, torch.ones_like(x) - x)


class ConstAfterConv(nn.Module):
    """A constant tensor that is not one value per channel, added to or multiplied
    with a convolution's output (OpenCV fuses a Scale right after a Convolution as
    per-channel weights; the converter keeps them apart)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.register_buffer("q", torch.linspace(-1, 1, 4 * 4 * 4).reshape(1, 4, 4, 4))
        self.register_buffer("q2", torch.tensor([[[[0.5, -2.0], [3.0, 1.5]]]]))
        self.conv3 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)    # BatchNorm + Scale, which OpenCV fuses too

    def forward(self, x):
        return self.conv(x) + self.q, self.conv2(x) * self.q2, self.bn(self.conv3(x)) * self.q


class Extremes(nn.Module):
    """maximum/minimum (with a computed side and a constant one), max/min over an
    axis (values), amin, repeat, and F.normalize (a 2-norm, a clamp, a division)."""

    def forward(self, x):
        return (torch.maximum(x, torch.full_like(x, 0.3)), torch.minimum(x, torch.relu(x) - 0.5),
                torch.max(x, 1)[0], torch.min(x, 2, keepdim=True)[0], x.repeat(1, 2, 1, 3),
                F.normalize(x, dim=1), x.amin((2, 3)))


class ConstJoin(nn.Module):
    """Constant tensors joined to computed ones: CoordConv's coordinate channels
    and a ViT-style class token before the tokens."""

    def __init__(self):
        super().__init__()
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, 6), torch.linspace(-1, 1, 5),
                                indexing="ij")
        self.register_buffer("coords", torch.stack([ys, xs])[None])
        self.conv = nn.Conv2d(5, 4, 3, padding=1)
        self.token = nn.Parameter(torch.linspace(-1, 1, 4).reshape(1, 1, 4))

    def forward(self, x):
        y = self.conv(torch.cat([x, self.coords.expand(x.shape[0], -1, -1, -1)], 1))
        return y, torch.cat([self.token.expand(x.shape[0], -1, -1), y.flatten(2).transpose(1, 2)], 1)


class Indexing(nn.Module):
    """Advanced indexing with constant indices (reordered, repeated, negative) on
    adjacent non-batch axes, index_select on the channel axis, strided slices, flips."""

    def __init__(self):
        super().__init__()
        self.register_buffer("rows", torch.tensor([[3, 0], [0, -1]]))
        self.register_buffer("cols", torch.tensor([[1, 1], [5, 2]]))
        self.register_buffer("chans", torch.tensor([2, 0, 2]))

    def forward(self, x):
        return x[:, :, self.rows, self.cols], torch.index_select(x, 1, self.chans), \
            x[:, :, torch.tensor([4, 1, 1])], x[:, ::2, 1::3, 1:6:2], x.flip(3), x.flip((1, 2))


def coverage():
    """name -> (module, input shapes, target) over the op table's families."""
    return {
        "activations": (Activations(), [(1, 4, 5, 6)], "opencv"),
        "arithmetic": (Arithmetic(), [(2, 4, 5, 6), (2, 4, 5, 6)], "opencv"),
        "shapes": (Shapes(), [(1, 4, 5, 6)], "opencv"),
        "reductions": (Reductions(), [(1, 4, 5, 6)], "opencv"),
        "pads": (Pads(), [(1, 3, 5, 6)], "opencv"),
        "pools": (Pools(), [(1, 3, 6, 4)], "opencv"),
        "norms": (Norms(), [(2, 4, 5, 6)], "opencv"),
        "dense": (Dense(), [(2, 4, 6)], "opencv"),
        "convs": (Convs(), [(1, 4, 6, 8)], "opencv"),
        "inplace": (InPlace(), [(1, 2, 3, 4)], "opencv"),
        "more": (MoreOps(), [(1, 4, 5, 6)], "opencv"),
        "indexing": (Indexing(), [(1, 3, 5, 6)], "opencv"),
        "const_after_conv": (ConstAfterConv(), [(1, 3, 4, 4)], "opencv"),
        "extremes": (Extremes(), [(2, 3, 4, 5)], "opencv"),
        "const_join": (ConstJoin(), [(2, 3, 6, 5)], "opencv"),
    }


# -- what deployers convert today (issue 26) -----------------------------------------------

class LayerNorm2d(nn.Module):
    """Channels-first LayerNorm as ConvNeXt's reference code and detectors write it:
    statistics over C of each pixel, then a per-channel affine."""

    def __init__(self, c: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.rand(c) + 0.5)
        self.bias = nn.Parameter(torch.rand(c) - 0.5)
        self.eps = eps

    def forward(self, x):
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class ConvNeXtBlock(nn.Module):
    """ConvNeXt's block: depthwise 7x7, channels-last LayerNorm via permute, an
    MLP with erf GELU (nn.GELU() and F.gelu), layer scale, residual."""

    def __init__(self, dim: int = 16):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.rand(dim) + 0.1)
        self.down = nn.Sequential(LayerNorm2d(dim), nn.Conv2d(dim, dim, 2, stride=2))

    def forward(self, x):
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        y = (self.gamma * y).permute(0, 3, 1, 2)
        x = x + y
        return self.down(F.gelu(x))


class DetectV5(nn.Module):
    """YOLOv5's Detect before v7: sigmoid, then the box decoding written into
    slices of the same tensor in place."""

    def __init__(self, c: int = 8, na: int = 3, nc: int = 2, ny: int = 4, nx: int = 5,
                 stride: float = 8.0):
        super().__init__()
        self.na, self.no, self.stride = na, nc + 5, stride
        self.m = nn.Conv2d(c, na * self.no, 1)
        yv, xv = torch.meshgrid(torch.arange(ny), torch.arange(nx), indexing="ij")
        self.register_buffer("grid", torch.stack((xv, yv), 2).expand(1, na, ny, nx, 2).float())
        self.register_buffer("anchor_grid", (torch.rand(1, na, 1, 1, 2) * 30 + 5).expand(
            1, na, ny, nx, 2).contiguous())

    def forward(self, x):
        bs, _, ny, nx = x.shape
        p = self.m(x).view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()
        y = p.sigmoid()
        y[..., 0:2] = (y[..., 0:2] * 2 - 0.5 + self.grid) * self.stride
        y[..., 2:4] = (y[..., 2:4] * 2) ** 2 * self.anchor_grid
        return y.view(bs, -1, self.no)


class DetectV7(DetectV5):
    """The same decoding in the v7 form: split, decode each part, cat."""

    def forward(self, x):
        bs, _, ny, nx = x.shape
        p = self.m(x).view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()
        xy, wh, conf = p.sigmoid().split((2, 2, self.no - 4), 4)
        xy = (xy * 2 + self.grid - 0.5) * self.stride
        wh = (wh * 2) ** 2 * self.anchor_grid
        return torch.cat((xy, wh, conf), 4).view(bs, -1, self.no)


class SliceWrites(nn.Module):
    """Writes into slices: constants, selects, strided and index-tensor positions."""

    def forward(self, x):
        y = x * 1
        y[:, 1:3] = 0.5
        y[:, 0, 2] = y[:, 0, 2] + 1
        y[..., ::2] *= 3
        y[:, [3, 0]] = x[:, :2] * 2
        return y


class ConstCanvas(nn.Module):
    """Computed values written into a constant tensor (a canvas of zeros)."""

    def forward(self, x):
        out = torch.zeros(1, 4, 5, 6)
        out[:, 1:3] = x[:, :2] * 2
        out[:, 0, :, 1:4] = torch.sigmoid(x[:, 3, :, :3])
        return out


def modern():
    """name -> (module, input shape): issue 26's acceptance modules."""
    torch.manual_seed(5)
    return {
        "convnext_block": (ConvNeXtBlock(), (1, 16, 8, 8)),
        "layernorm2d": (LayerNorm2d(12), (2, 12, 5, 6)),
        "detect_v5": (DetectV5(), (1, 8, 4, 5)),
        "detect_v7": (DetectV7(), (1, 8, 4, 5)),
        "slice_writes": (SliceWrites(), (1, 4, 5, 6)),
        "const_canvas": (ConstCanvas(), (1, 4, 5, 6)),
    }
