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


DAO_PAIRS = ("present_mean", "cyclic_sum")


def cyclic_pairs(num_modalities: int):
    """[(0, 1), (1, 2), ..., (M-1, 0)]: the official ShaSpec code's DAO pairs for M = 4; M = 2
    gives the one pair (0, 1), M = 1 none."""
    if num_modalities < 3:
        return [(0, 1)] if num_modalities == 2 else []
    return [(m, (m + 1) % num_modalities) for m in range(num_modalities)]


def distribution_alignment_loss(shared: torch.Tensor, modality_mask: torch.Tensor,
                                pairs: str = "present_mean") -> torch.Tensor:
    """DAO: mean over samples and unordered pairs i < j of present modalities of mean|s_i - s_j|.

    shared: (B, M, C, *spatial) shared features; modality_mask: (B, M) bool -> 0-d loss (0, still in
    the graph, when no sample has two present modalities). Choice: all present pairs, averaged, so
    the scale does not grow with the number of present modalities; the official code sums the four
    cyclic pairs (0-1, 1-2, 2-3, 3-0) of all modalities, present or not.
    pairs="cyclic_sum" (official ShaSpec code): sum over the cyclic pairs (i, j) of
    mean_{samples, elements} |s_i - s_j| over all samples and modalities, the mask ignored (an
    absent modality's shared feature is the encoder's response to its zeroed image, as there).
    """
    if pairs == "cyclic_sum":
        terms = [(shared[:, i].float() - shared[:, j].float()).abs().mean() for i, j in cyclic_pairs(shared.shape[1])]
        return torch.stack(terms).sum() if terms else shared.sum() * 0.0
    if pairs != "present_mean":
        raise ValueError(f"DAO pairs must be one of {DAO_PAIRS}, got {pairs!r}")
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
