"""Synthesise the missing modalities of a whole preprocessed volume, slice by slice."""
from __future__ import annotations

import numpy as np
import torch

from nnunet_prism.modalities import ModalityError


def synthesise_volume(network, diffusion, images: np.ndarray, present: np.ndarray, num_steps: int = 10,
                      seed: int = 0, batch_size: int = 32, region: np.ndarray = None, device: str = "cpu") -> np.ndarray:
    """images (M, D, H, W) normalised (missing channels ignored), present (M,) bool -> (M, D, H, W):
    the given images where present, M2DN's synthesis (DDIM, ``num_steps``) elsewhere. Slices along
    axis 1 (nnU-Net's 2d axis); batch ``b`` uses seed ``seed + b`` so results do not depend on
    the device. ``region`` (D, H, W) bool: synthesis is set to 0 outside it (nnU-Net's nonzero
    region, where normalised background is 0)."""
    present = np.asarray(present, dtype=bool)
    if not present.any():
        raise ModalityError("no modality present: nothing to synthesise from")
    M, D = images.shape[:2]
    out = np.array(images, dtype=np.float32, copy=True)
    if present.all():
        return out
    mask = torch.from_numpy(present)[None]
    for b, start in enumerate(range(0, D, batch_size)):
        x = torch.from_numpy(np.ascontiguousarray(images[:, start:start + batch_size].transpose(1, 0, 2, 3))).float()
        x = torch.where(mask[:, :, None, None], x, torch.zeros_like(x)).to(device)
        y = diffusion.sample(network, x, mask.expand(x.shape[0], -1).to(device), num_steps=num_steps, seed=seed + b)
        out[:, start:start + batch_size] = y.cpu().numpy().transpose(1, 0, 2, 3)
    if region is not None:
        out[~present] *= region[None]
    out[present] = images[present]
    return out


def zero_fill(images: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Baseline: missing modalities = 0 (the normalised mean intensity). (M, ...) -> (M, ...)."""
    out = np.array(images, dtype=np.float32, copy=True)
    out[~np.asarray(present, dtype=bool)] = 0
    return out


def mean_of_present(images: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Baseline: every missing modality = voxel-wise mean of the present (normalised) ones."""
    present = np.asarray(present, dtype=bool)
    out = np.array(images, dtype=np.float32, copy=True)
    out[~present] = images[present].mean(axis=0)
    return out
