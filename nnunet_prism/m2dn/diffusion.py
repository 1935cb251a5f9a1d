"""Modality-masked diffusion (M2DN, IEEE TMI 2024, method section).

Forward process, masked per modality: with p (B, M) True where present and the DDPM marginal
q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I),

    x_t^m = x_0^m                                        if p^m   (available: never noised)
    x_t^m = sqrt(abar_t) x_0^m + sqrt(1 - abar_t) eps^m  otherwise (missing: diffused)

Loss (image prediction, joint synthesis): L = mean over modalities with a ground truth and
pixels of (f(x_t, p, t) - x_0)^2 -- the present modalities are reconstructed too.

Training masks: uniform over the non-empty proper subsets of the modalities a sample really
has (never all present, never all absent; with complete data exactly the 2^M - 2 subsets).

Sampling: deterministic DDIM (Song et al. 2021, eta = 0) on an evenly spaced sub-sequence of
the T training steps; missing modalities start as seeded Gaussian noise; present ones are
reset to the given images before every step (the paper: self-reconstructed available
modalities are not fed to the next step). eps is recovered from the predicted image:
eps_hat = (x_t - sqrt(abar_t) x0_hat) / sqrt(1 - abar_t).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from nnunet_prism.modalities import ModalityError, subset_masks


class MaskedDiffusion:
    """Linear beta schedule (DDPM: 1e-4 .. 0.02 over T steps) and the masked process above."""

    def __init__(self, num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02):
        self.num_timesteps = int(num_timesteps)
        betas = torch.linspace(beta_start, beta_end, self.num_timesteps, dtype=torch.float64)
        self.alphas_cumprod = torch.cumprod(1.0 - betas, dim=0).float()

    def config(self) -> dict:
        return {"num_timesteps": self.num_timesteps}

    def _abar(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return self.alphas_cumprod.to(like.device)[t.long().to(like.device)].to(like.dtype)[:, None, None, None]

    def q_sample(self, x0: torch.Tensor, present: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x0, noise (B, M, H, W); present (B, M) bool; t (B,) -> x_t with only missing channels noised."""
        abar = self._abar(t, x0)
        noised = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
        return torch.where(present.bool()[:, :, None, None], x0, noised)

    def training_loss(self, network, x0: torch.Tensor, available: torch.Tensor, present: torch.Tensor,
                      pixel_weight: Optional[torch.Tensor] = None, generator: Optional[torch.Generator] = None):
        """One M2DN training objective. x0 (B, M, H, W) normalised images; available (B, M): which
        modalities have a ground truth (the loss covers all of them); present (B, M) subset of
        ``available`` given to the network clean; pixel_weight (B, 1, H, W) or None.
        Returns the scalar image MSE over available modalities and weighted pixels."""
        B = x0.shape[0]
        t = torch.randint(0, self.num_timesteps, (B,), generator=generator, device="cpu").to(x0.device)
        noise = torch.randn(x0.shape, generator=generator, device="cpu").to(x0.device, x0.dtype)
        present = present.bool() & available.bool()
        x_t = self.q_sample(torch.where(available.bool()[:, :, None, None], x0, torch.zeros_like(x0)), present, t, noise)
        x0_hat = network(x_t, present, t)
        weight = available.to(x0.dtype)[:, :, None, None].expand_as(x0)
        if pixel_weight is not None:
            weight = weight * pixel_weight.to(x0.dtype)
        return (weight * (x0_hat.float() - x0.float()) ** 2).sum() / weight.sum().clamp_min(1.0)

    def timesteps(self, num_steps: int):
        """Evenly spaced descending timesteps from T-1 (pure noise) towards 0, ``num_steps`` of them."""
        if num_steps < 1:
            raise ValueError(f"need at least one sampling step, got {num_steps}")
        num_steps = min(int(num_steps), self.num_timesteps)
        steps = np.round(np.linspace(self.num_timesteps - 1, 0, num_steps)).astype(int)  # one step: T-1
        return [int(v) for v in np.unique(steps)[::-1]]

    @torch.no_grad()
    def sample(self, network, x: torch.Tensor, present: torch.Tensor, num_steps: int = 10, seed: int = 0) -> torch.Tensor:
        """DDIM (eta = 0). x (B, M, H, W): present channels hold the images (missing ones are
        ignored), present (B, M) bool. Returns (B, M, H, W): the given images where present, the
        synthesis elsewhere. Same seed -> same result."""
        present = present.bool().to(x.device)
        if not bool(present.any(dim=1).all()):
            raise ModalityError("every slice needs at least one present modality to synthesise from")
        keep = present[:, :, None, None]
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
        noise = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
        x_t = torch.where(keep, x, noise)
        steps = self.timesteps(num_steps)
        x0_hat = x_t
        for i, t in enumerate(steps):
            tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
            x0_hat = network(x_t, present, tt).to(x.dtype)
            if i + 1 == len(steps):
                break
            abar, abar_next = self._abar(tt, x), self._abar(torch.full_like(tt, steps[i + 1]), x)
            eps = (x_t - abar.sqrt() * x0_hat) / (1 - abar).sqrt().clamp_min(1e-6)
            x_t = torch.where(keep, x, abar_next.sqrt() * x0_hat + (1 - abar_next).sqrt() * eps)
        return torch.where(keep, x, x0_hat)


def sample_training_masks(available: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Present-modality masks for training, (B, M) bool -> (B, M) bool: for each sample uniform
    over the non-empty subsets of its available modalities, excluding the full set of all M
    (so never all present, never all absent). With every modality available that is exactly
    the 2^M - 2 non-empty proper subsets, each with probability 1 / (2^M - 2)."""
    available = available.bool()
    B, M = available.shape
    if M < 2:
        raise ModalityError(f"masked diffusion needs at least 2 modalities, got {M}")
    if not bool(available.any(dim=1).all()):
        raise ModalityError("a training sample has no available modality")
    subsets = torch.from_numpy(subset_masks(M)).to(available.device)           # (K, M)
    proper = ~subsets.all(dim=1)                                                # (K,)
    inside = ~(subsets[None] & ~available[:, None]).any(dim=2)                  # (B, K)
    valid = inside & proper[None]
    scores = torch.rand(valid.shape, generator=generator, device="cpu").to(available.device)
    choice = scores.masked_fill(~valid, -1.0).argmax(dim=1)
    return subsets[choice]
