"""What the networks of this package offer, as ``typing.Protocol``s.

The common surface of ``MultiEncoderUNet``, ``ShaSpecUNet`` and ``DynamicSharingUNet``:

* ``forward(x, modality_mask=None)``: x (B, M, *spatial), modality_mask (B, M) bool or None
  (an all-zero channel counts as absent) -> logits like nnU-Net's networks (a list of
  deep-supervision levels, or one tensor (B, C, *spatial));
* ``forward_subsets(x, subset_masks, modality_mask=None)``: full-resolution logits
  (B, S, C, *spatial) for S subsets (S, M) bool (the 15-subset evaluation).

Not common: ``return_all=True`` exists on the multi-encoder (returns ``MultiModalOutput``) and the
ShaSpec network (returns ``ShaSpecOutput``), not on the dynamic-sharing one; ``forward_all``
(fused and per-modality outputs in one pass) only on the multi-encoder network.

``runtime_checkable`` ``isinstance`` checks only that the methods exist, not their signatures;
every ``nn.Module`` has a ``forward``, so ``MissingModalityNetwork`` documents rather than
discriminates. ``SubsetEvaluable`` and ``FusedAndUnimodal`` do tell networks apart.
"""
from __future__ import annotations

from typing import Optional, Protocol, runtime_checkable

import torch

from nnunet_prism.deep_supervision import Logits


@runtime_checkable
class MissingModalityNetwork(Protocol):
    """Every network here: fused logits for inputs with absent modalities."""

    def forward(self, x: torch.Tensor, modality_mask: Optional[torch.Tensor] = None) -> Logits:
        ...


@runtime_checkable
class SubsetEvaluable(Protocol):
    """Logits of many modality subsets from one encoder pass (all three networks)."""

    def forward_subsets(self, x: torch.Tensor, subset_masks: torch.Tensor,
                        modality_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        ...


@runtime_checkable
class FusedAndUnimodal(Protocol):
    """Fused and per-modality (unimodal) outputs with decoder features in one pass
    (``MultiModalOutput``; the multi-encoder network only). Used by the CCH."""

    def forward_all(self, x: torch.Tensor, modality_mask: Optional[torch.Tensor] = None):
        ...
