"""Modality masks for a batch and the masked-mean fusion of per-modality features."""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from nnunet_prism.modalities import mask_from_nonzero_channels


def resolve_modality_mask(x: torch.Tensor, modality_mask: Optional[torch.Tensor],
                          num_modalities: int) -> torch.Tensor:
    """Boolean (B, M) mask on ``x.device`` for an input ``x`` of shape (B, M, *spatial).
    None means: present unless the channel is all zero. Raises ValueError for a wrong channel
    count or mask shape."""
    if x.shape[1] != num_modalities:
        raise ValueError(f"the network was built for {num_modalities} modalities but the input has "
                         f"{x.shape[1]} channels")
    if modality_mask is None:
        return mask_from_nonzero_channels(x)
    mask = torch.as_tensor(modality_mask, device=x.device).bool()
    if tuple(mask.shape) != (x.shape[0], num_modalities):
        raise ValueError(f"modality_mask must have shape (batch, modalities) = {(x.shape[0], num_modalities)}, "
                         f"got {tuple(mask.shape)}")
    return mask


def masked_mean(features: Sequence[torch.Tensor], modality_mask: torch.Tensor) -> torch.Tensor:
    """Mean over present modalities: sum_m mask[b, m] f_m[b] / max(1, sum_m mask[b, m]).

    features: M tensors (B, C, *spatial); modality_mask: (B, M) bool -> (B, C, *spatial).
    A sample with no present modality gets zeros. Absent features are selected away
    (torch.where), not multiplied by 0, so NaN or Inf in them cannot leak into the result.
    """
    expand = (slice(None),) + (None,) * (features[0].ndim - 1)
    total = torch.zeros_like(features[0])
    for m, feature in enumerate(features):
        total = total + torch.where(modality_mask[:, m][expand], feature, torch.zeros_like(feature))
    count = modality_mask.sum(dim=1).clamp(min=1).to(total.dtype)
    return total / count[expand]
