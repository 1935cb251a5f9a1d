"""ShaSpec's auxiliary objectives (Wang et al., CVPR 2023), on present modalities only.

L = L_seg + alpha * L_dao + beta * L_dco  (paper Eq. 9; alpha = 0.1, beta = 0.02)

- DCO, domain classification (Eq. 5-6): cross-entropy of a classifier predicting modality m from
  the pooled specific feature p_m; it makes the specific features modality-specific.
- DAO, distribution alignment (Eq. 7-8, L1 as the paper's ablation selects): L1 distance between
  the shared features of two modalities; it makes the shared features modality-invariant.

Both work on any task (segmentation region- or label-based alike): they see features only.
"""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F

DEFAULT_ALPHA = 0.1   # DAO weight (paper and official code)
DEFAULT_BETA = 0.02   # DCO weight (paper and official code)


def domain_classification_loss(domain_logits: torch.Tensor, modality_mask: torch.Tensor
                               ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DCO: mean over present (b, m) of CE(domain_logits[b, m], m).

    domain_logits: (B, M, M) classifier logits for each sample's modality m; modality_mask: (B, M)
    bool. Returns (loss, number of correct predictions, number of present entries), the counts as
    0-d long tensors for an accuracy over an epoch. No present entry -> loss 0 (still in the graph).
    Choice: absent modalities are left out (paper); the official code classifies all four.
    """
    batch, modalities = modality_mask.shape
    target = torch.arange(modalities, device=domain_logits.device).expand(batch, modalities)
    present = modality_mask.bool()
    logits, labels = domain_logits[present].float(), target[present]
    count = present.sum()
    if logits.shape[0] == 0:
        return domain_logits.sum() * 0.0, count.new_zeros(()), count
    loss = F.cross_entropy(logits, labels)
    correct = (logits.argmax(dim=1) == labels).sum()
    return loss, correct.detach(), count


def distribution_alignment_loss(shared: torch.Tensor, modality_mask: torch.Tensor) -> torch.Tensor:
    """DAO: mean over samples and unordered pairs i < j of present modalities of mean|s_i - s_j|.

    shared: (B, M, C, *spatial) shared features; modality_mask: (B, M) bool -> 0-d loss (0, still in
    the graph, when no sample has two present modalities). Choice: all present pairs, averaged, so
    the scale does not grow with the number of present modalities; the official code sums the four
    cyclic pairs (0-1, 1-2, 2-3, 3-0) of all modalities, present or not.
    """
    present = modality_mask.bool()
    modalities = present.shape[1]
    total = shared.new_zeros((), dtype=torch.float32)
    pairs = 0
    for i in range(modalities):
        for j in range(i + 1, modalities):
            both = present[:, i] & present[:, j]
            if not bool(both.any()):
                continue
            distance = (shared[both, i].float() - shared[both, j].float()).abs().flatten(1).mean(dim=1)
            total = total + distance.sum()
            pairs += int(both.sum())
    if pairs == 0:
        return shared.sum() * 0.0
    return total / pairs
