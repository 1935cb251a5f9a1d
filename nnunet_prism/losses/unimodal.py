"""The unimodal part of PASSION's baseline objective: every present modality's own output is
segmented on the samples that have it.

L_uni = sum_{m present} l_seg(z^{m,0}, y)   (PASSION, ACM MM 2024, baseline objective L_task;
l_seg = nnU-Net's Dice+CE, Dice+BCE for regions; optionally deep-supervised).
"""
import torch
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper

from nnunet_prism.deep_supervision import Logits, as_level_list


def unimodal_losses(loss, students: Logits, samples: torch.Tensor, modalities: torch.Tensor,
                    num_modalities: int, target: Logits, deep_supervision: bool = False) -> torch.Tensor:
    """Segmentation loss of each modality's student rows.

    loss: nnU-Net's loss (a ``DeepSupervisionWrapper`` around Dice+CE/BCE, or the plain loss);
    students: per deep-supervision level (P, C, *spatial), one row per present (sample, modality)
    pair; samples, modalities: (P,) the pair of every row; target: per level (B, 1|R, *spatial).
    deep_supervision: all levels (needs the wrapper) or the full resolution only.
    Returns (M,) with 0 for a modality no sample has.
    """
    levels, targets = as_level_list(students), as_level_list(target)
    wrapped = isinstance(loss, DeepSupervisionWrapper)
    if wrapped and not deep_supervision:
        loss, levels, targets, wrapped = loss.loss, levels[:1], targets[:1], False
    losses = []
    for m in range(num_modalities):
        rows = (modalities == m).nonzero(as_tuple=True)[0]
        if not rows.numel():
            losses.append(levels[0].new_zeros(()))
            continue
        outputs = [u[rows] for u in levels]
        own_targets = [t[samples[rows]] for t in targets]
        losses.append(loss(outputs, own_targets) if wrapped else loss(outputs[0], own_targets[0]))
    return torch.stack(losses)

