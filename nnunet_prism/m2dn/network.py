"""The M2DN denoising network (M2DN, IEEE TMI 2024, "Multi-Modal Modality-Masked Diffusion
Network for Brain MRI Synthesis With Random Modality Missing", network architecture).

    x_t (B, M, H, W)  --per-modality encoders-->  (B, M*C, H, W)
        --U-shaped fusion body (ResBlocks + squeeze-excitation channel attention, bilinear
          down/up-sampling, skips; timestep embedding added in every ResBlock)-->
        bottleneck ++ unpooled missing mask (B, M, h, w)  (concatenated on channels)
        --decoder--> x0_hat (B, M, H, W)

The network predicts the clean images of *all* modalities (joint synthesis, image not noise
prediction). The condition is the paper's binary vector with 1 = missing, 0 = available
(the package's modality masks are True = present; ``forward`` takes the present mask and
inverts it). Blocks follow the paper's "3x3 Conv + GroupNorm + ReLU" ResBlocks and SE channel
attention (Hu et al., CVPR 2018). Deviation: the per-modality encoders keep full resolution
(the paper's first conv has stride 2) so that small slices (40^2 on the synthetic set) keep
their detail; the default widths are small so the network trains on a CPU.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding (Vaswani 2017 / DDPM): t (B,) -> (B, dim), [sin(t w_k), cos(t w_k)],
    w_k = max_period^(-k / (dim/2))."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    return F.pad(emb, (0, dim % 2))


def _groups(channels: int, preferred: int = 8) -> int:
    g = min(preferred, channels)
    while channels % g:
        g -= 1
    return g


class SqueezeExcitation(nn.Module):
    """SE channel attention: x * sigmoid(W2 relu(W1 avgpool(x))), (B, C, H, W) -> same."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.fc = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels))

    def forward(self, x):
        w = torch.sigmoid(self.fc(x.mean(dim=(2, 3))))
        return x * w[:, :, None, None]


class ResBlock(nn.Module):
    """Two 3x3 Conv+GroupNorm(+ReLU) with the timestep embedding added after the first, a
    residual (1x1 conv when widths differ) and optional SE attention. (B, Cin, H, W) -> (B, Cout, H, W).
    ``groups`` > 1 makes every conv grouped (independent per-modality branches)."""

    def __init__(self, cin: int, cout: int, temb_dim: int = 0, groups: int = 1, se: bool = True):
        super().__init__()
        norm_groups = groups * _groups(cout // groups)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, groups=groups)
        self.norm1 = nn.GroupNorm(norm_groups, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, groups=groups)
        self.norm2 = nn.GroupNorm(norm_groups, cout)
        self.temb = nn.Linear(temb_dim, cout) if temb_dim else None
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1, groups=groups)
        self.se = SqueezeExcitation(cout) if se else nn.Identity()

    def forward(self, x, temb=None):
        h = F.relu(self.norm1(self.conv1(x)))
        if self.temb is not None:
            h = h + self.temb(temb)[:, :, None, None]
        h = self.norm2(self.conv2(h))
        return self.se(F.relu(h + self.skip(x)))


class M2DNet(nn.Module):
    """M2DN denoiser. ``forward(x_t, present, t)``: x_t (B, M, H, W) with the missing modalities
    noised and the present ones clean, present (B, M) bool, t (B,) integer timesteps ->
    x0_hat (B, M, H, W). Any H, W: inputs are zero-padded to a multiple of 2^(levels-1)."""

    def __init__(self, num_modalities: int, encoder_channels: int = 8, widths: Sequence[int] = (16, 32, 64),
                 time_dim: int = 64, se_reduction: int = 4):
        super().__init__()
        if num_modalities < 2:
            raise ValueError(f"M2DN synthesises missing modalities from present ones: needs >= 2, got {num_modalities}")
        self.config = dict(num_modalities=num_modalities, encoder_channels=encoder_channels,
                           widths=list(widths), time_dim=time_dim, se_reduction=se_reduction)
        M, C = num_modalities, encoder_channels
        self.num_modalities = M
        self.widths = list(widths)
        self.time_dim = time_dim
        self.time_mlp = nn.Sequential(nn.Linear(time_dim, 4 * time_dim), nn.SiLU(), nn.Linear(4 * time_dim, 4 * time_dim))
        temb = 4 * time_dim
        # per-modality encoders: grouped convs = M independent branches (1 -> C channels each)
        self.encoders = nn.ModuleList([
            nn.Sequential(nn.Conv2d(M, M * C, 3, padding=1, groups=M), nn.GroupNorm(M * _groups(C), M * C), nn.ReLU()),
            ResBlock(M * C, M * C, groups=M, se=False)])
        self.fuse_in = nn.Conv2d(M * C, widths[0], 1)
        self.down = nn.ModuleList()
        self.down_proj = nn.ModuleList()
        for i, w in enumerate(widths[:-1]):
            self.down.append(ResBlock(w, w, temb))
            self.down_proj.append(nn.Conv2d(w, widths[i + 1], 1))
        # bottleneck: features ++ unpooled missing mask (paper: M x 1 x 1 -> M x h x w)
        self.bottleneck = nn.ModuleList([ResBlock(widths[-1] + M, widths[-1], temb), ResBlock(widths[-1], widths[-1], temb)])
        self.up = nn.ModuleList()
        for i in reversed(range(len(widths) - 1)):
            self.up.append(ResBlock(widths[i + 1] + widths[i], widths[i], temb))
        self.head = nn.Conv2d(widths[0], M, 1)

    @property
    def divisor(self) -> int:
        return 2 ** (len(self.widths) - 1)

    def forward(self, x: torch.Tensor, present: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        B, M, H, W = x.shape
        if M != self.num_modalities:
            raise ValueError(f"network built for {self.num_modalities} modalities, input has {M} channels")
        d = self.divisor
        ph, pw = (-H) % d, (-W) % d
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        temb = self.time_mlp(timestep_embedding(t, self.time_dim))
        h = self.encoders[1](self.encoders[0](x))
        h = self.fuse_in(h)
        skips = []
        for block, proj in zip(self.down, self.down_proj):
            h = block(h, temb)
            skips.append(h)
            h = proj(F.interpolate(h, scale_factor=0.5, mode="bilinear", align_corners=False))
        missing = (~present.bool()).to(h.dtype)[:, :, None, None].expand(-1, -1, *h.shape[2:])
        h = self.bottleneck[0](torch.cat([h, missing], dim=1), temb)
        h = self.bottleneck[1](h, temb)
        for block in self.up:
            skip = skips.pop()
            h = F.interpolate(h, size=skip.shape[2:], mode="bilinear", align_corners=False)
            h = block(torch.cat([h, skip], dim=1), temb)
        return self.head(h)[:, :, :H, :W]
