"""Hard TP/FP/FN counts for nnU-Net's online "pseudo Dice", for fused and unimodal outputs alike.

Same definitions as nnU-Net's validation_step: sigmoid > 0.5 per region, or argmax one-hot per
label with the background dropped; voxels of the ignore label do not count.
"""
from typing import Tuple

import numpy as np
import torch
from nnunetv2.training.loss.dice import get_tp_fp_fn_tn


def hard_counts(logits: torch.Tensor, target: torch.Tensor, label_manager) -> Tuple[np.ndarray, ...]:
    """logits (B, C, *spatial), target (B, 1|R(+1 ignore), *spatial) -> tp, fp, fn, each (C',)."""
    axes = [0] + list(range(2, logits.ndim))
    if label_manager.has_regions:
        prediction = (torch.sigmoid(logits) > 0.5).long()
    else:
        prediction = torch.zeros_like(logits, dtype=torch.float16)
        prediction.scatter_(1, logits.argmax(1, keepdim=True), 1)
    mask = None
    if label_manager.has_ignore_label:
        if label_manager.has_regions:
            mask = ~target[:, -1:].bool()
            target = target[:, :-1]
        else:
            mask = (target != label_manager.ignore_label).float()
            target = torch.where(target == label_manager.ignore_label, torch.zeros_like(target), target)
    tp, fp, fn, _ = get_tp_fp_fn_tn(prediction, target, axes=axes, mask=mask)
    counts = [c.detach().cpu().numpy() for c in (tp, fp, fn)]
    if not label_manager.has_regions:
        counts = [c[1:] for c in counts]  # no background Dice
    return tuple(counts)


def counted_classes(label_manager) -> int:
    """C': regions, or labels without the background."""
    heads = label_manager.num_segmentation_heads
    return heads if label_manager.has_regions else heads - 1


def dice_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """Global Dice per class from summed counts (NaN where a class never occurs)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return 2 * tp / (2 * tp + fp + fn)
