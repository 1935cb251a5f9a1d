"""Semantic (prototype) self-distillation and the semantic knowledge gap D
(PASSION, ACM MM 2024, semantic-wise self-distillation).

Per sample n and class (or region) k, teacher and student prototypes are masked means of the
highest-resolution decoder features over the ground-truth voxels of k:

    c_{n,k} = sum_i z_{n,i} 1[y_{n,i} = k] / sum_i 1[y_{n,i} = k]

Every voxel is compared with its branch's prototype, S_{n,k}(i) = cos(z_{n,i}, c_{n,k}), and the
student's similarity maps are pulled towards the teacher's:

    L_proto^{n,m} = mean_{k present} mean_i (S^{m,s}_{n,k}(i) - S^t_{n,k}(i))^2
    D^{n,m}       = mean_{k present} mean_i |S^{m,s}_{n,k}(i) - S^t_{n,k}(i)|
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F

from nnunet_prism.deep_supervision import Logits, full_resolution
from nnunet_prism.losses.distillation import check_pairs, full_precision
from nnunet_prism.recomputation import in_row_chunks


class PrototypeDistillation(NamedTuple):
    """Result of :func:`prototype_distillation`; all (B, M), float32.

    loss: L_proto per sample and modality (differentiable w.r.t. the student features).
    gap: the knowledge gap D (detached: a statistic for RP, not a loss).
    valid: True where the modality is present and the sample has a foreground class/region;
    loss and gap are exactly 0 elsewhere, and RP must ignore those entries.
    """
    loss: torch.Tensor
    gap: torch.Tensor
    valid: torch.Tensor


#: how region-based targets become prototype classes (``region_classes``)
REGION_CLASSES = ("regions", "disjoint")


def class_masks(target: Logits, region_based: bool,
                num_classes: Optional[int] = None, include_background: bool = True,
                ignore_label: Optional[int] = None, region_classes: str = "regions"):
    """Boolean ground-truth masks per class/region and which of them are foreground.

    target: label-based (B, 1, *spatial) or (B, *spatial) integer label map; region-based
    (B, R, *spatial) binary region maps (nnU-Net's region target, ignore channel removed).
    A list (deep-supervision targets) uses its first, highest-resolution element.
    Returns masks (B, K, *spatial) bool and foreground (K,) bool. Label-based: K = num_classes
    (default max label + 1; pass it to avoid a device sync), class 0 is background and is dropped
    with include_background=False; voxels equal to ignore_label belong to no class (they still
    count in the voxel mean of the similarity maps). Region-based, ``region_classes="regions"``:
    K = R, one class per (overlapping) region, every region is foreground; ``"disjoint"``: the
    disjoint classes the regions cut the volume into, K = 2^R, class c = the voxels whose region
    memberships are the bits of c, background (c = 0) included and the only non-foreground one
    (nested BraTS regions WT ⊃ TC ⊃ ET give background, ED, NCR, ET: PASSION's classes
    1[y_i = k]; classes without voxels are skipped by the callers).
    """
    target = full_resolution(target)
    if region_based:
        masks = target > 0.5 if target.is_floating_point() else target != 0
        if region_classes == "regions":
            return masks, torch.ones(masks.shape[1], dtype=torch.bool, device=masks.device)
        if region_classes != "disjoint":
            raise ValueError(f"region_classes must be one of {REGION_CLASSES}, got {region_classes!r}")
        bits = (1 << torch.arange(masks.shape[1], device=masks.device)).view((1, -1) + (1,) * (masks.ndim - 2))
        codes = (masks.long() * bits).sum(1)                                     # (B, *spatial)
        classes = torch.arange(2 ** masks.shape[1], device=masks.device)
        return codes.unsqueeze(1) == classes.view((1, -1) + (1,) * (codes.ndim - 1)), classes != 0
    labels = target[:, 0] if target.ndim >= 3 and target.shape[1] == 1 else target
    labels = labels.long()
    if num_classes is None:
        valid_labels = labels if ignore_label is None else labels[labels != ignore_label]
        num_classes = int(valid_labels.max().item()) + 1 if valid_labels.numel() else 1
    classes = torch.arange(num_classes, device=labels.device)
    if ignore_label is not None:
        classes = classes[classes != ignore_label]
    if not include_background:
        classes = classes[classes != 0]
    shape = (1, -1) + (1,) * (labels.ndim - 1)
    masks = labels.unsqueeze(1) == classes.view(shape)
    return masks, classes != 0


def _similarity_maps(features: torch.Tensor, masks: torch.Tensor, eps: float) -> torch.Tensor:
    """Cosine similarity of every voxel feature to each class prototype.

    features (N, F, V) float32, masks (N, K, V) float32 -> maps (N, K, V). The prototype of a
    class without voxels is 0, and its map is 0 (callers skip it anyway).
    """
    counts = masks.sum(-1).clamp(min=1.0)                                   # (N, K)
    prototypes = torch.einsum('nfv,nkv->nkf', features, masks) / counts.unsqueeze(-1)
    return torch.einsum('nfv,nkf->nkv', F.normalize(features, dim=1, eps=eps),
                        F.normalize(prototypes, dim=-1, eps=eps))


def prototype_distillation(teacher_features: torch.Tensor, student_features: torch.Tensor,
                           target: Logits,
                           modality_mask: torch.Tensor, region_based: bool = False,
                           num_classes: Optional[int] = None, include_background: bool = True,
                           ignore_label: Optional[int] = None,
                           eps: float = 1e-8, region_classes: str = "regions",
                           *, pairs: Tuple[torch.Tensor, torch.Tensor],
                           class_scope: str = "sample",
                           batch_sum: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
                           recompute_rows: Optional[int] = None) -> PrototypeDistillation:
    """Semantic self-distillation L_proto and knowledge gap D per sample and modality.

    Shapes: teacher_features (B, F, *spatial) (fused branch, highest-resolution decoder
    features); student_features (P, F, *spatial), one row per present (sample, modality) pair,
    ``pairs`` = (samples, modalities) (P,) each naming them (as
    ``MultiModalOutput.student_features`` and ``.pairs``); target at the same spatial size,
    label map (B, 1, *spatial) or region maps (B, R, *spatial) (see :func:`class_masks`);
    modality_mask (B, M) bool; 2D or 3D. Returns :class:`PrototypeDistillation` of (B, M).
    Formula: L = mean_{k in K_n} mean_i (cos(z^{m}_i, c^{m}_k) - cos(z_i, c_k))^2, D the same
    with |.| (PASSION, ACM MM 2024, semantic self-distillation).
    - Normalisation: mean over voxels and over the classes present in the sample (the method
      text sums; the mean, as in the official code, keeps the scale independent of patch size
      and class count, so lambda2 = 0.1 keeps its meaning).
    - Classes: per sample, only classes/regions with at least one voxel (the official code
      needs a class in every sample of the batch; per sample loses nothing). Label-based
      includes background by default (method text: all k in [K]; official code likewise).
      Region-based: ``region_classes`` (:func:`class_masks`): one prototype per region, or per
      disjoint class of the regions with background (the classes of the method text).
    - ``class_scope="batch"`` (official PASSION code): only the classes/regions present in EVERY
      sample of the batch, for every sample (a class absent from one sample is dropped for all);
      a sample is then valid when that set is not empty (background alone counts). ``batch_sum``
      (DDP: the sum over ranks) makes "the batch" the batch of all ranks.
    - A sample without any foreground class/region gives loss 0, D 0 and valid False, so RP
      ignores it; an absent modality likewise, and it is not computed (no gradient).
    - The teacher side is detached; D is returned detached. Computed in float32 (autocast off).
    - recompute_rows (activation checkpointing): the student similarity maps of
      ``recompute_rows`` pairs at a time, each chunk recomputed in the backward pass
      (``in_row_chunks``); same values.
    """
    mask = modality_mask.to(device=student_features.device, dtype=torch.bool)
    batch, num_modalities = mask.shape
    b_idx, m_idx = check_pairs(pairs)
    if teacher_features.shape[0] != batch or \
            tuple(student_features.shape) != (b_idx.shape[0], *teacher_features.shape[1:]):
        raise ValueError(f"student features {tuple(student_features.shape)} (one row per present pair) must be "
                         f"(P = {b_idx.shape[0]}, *teacher.shape[1:]) for teacher features "
                         f"{tuple(teacher_features.shape)} and modality mask {tuple(mask.shape)}")
    masks, foreground = class_masks(target, region_based, num_classes, include_background,
                                    ignore_label, region_classes)
    spatial = teacher_features.shape[2:]
    if masks.shape[0] != batch or masks.shape[2:] != spatial:
        raise ValueError(f"target of spatial size {tuple(masks.shape[2:])} (batch {masks.shape[0]}) "
                         f"does not match decoder features {tuple(spatial)} (batch {batch}); "
                         "pass the full-resolution target and the highest-resolution features")
    if class_scope not in ("sample", "batch"):
        raise ValueError(f"class_scope must be 'sample' or 'batch', got {class_scope!r}")
    with full_precision(student_features):
        return _prototype_terms(teacher_features, student_features, b_idx, m_idx, masks, foreground, mask, eps,
                                (batch_sum or (lambda t: t)) if class_scope == "batch" else None, recompute_rows)


def _prototype_terms(teacher_features, student_features, b_idx, m_idx, masks, foreground, mask, eps,
                     batch_sum=None, recompute_rows=None):
    """The body of :func:`prototype_distillation` after validation, in float32; student_features
    (P, F, *spatial) are the rows of the pairs (b_idx, m_idx)."""
    batch, num_modalities = mask.shape
    masks = masks.flatten(2).to(device=student_features.device, dtype=torch.float32)  # (B, K, V)
    present = masks.sum(-1) > 0                                                        # (B, K)
    if batch_sum is not None:  # official: the classes of every sample (of every rank), for all samples
        counts = batch_sum(torch.cat([present.float().sum(0), present.new_full((1,), batch, dtype=torch.float32)]))
        present = (counts[:-1] == counts[-1]).unsqueeze(0).expand_as(present)
        has_foreground = present.any(1)
    else:
        has_foreground = (present & foreground.to(present.device)).any(1)              # (B,)
    teacher_maps = _similarity_maps(teacher_features.detach().float().flatten(2), masks, eps)

    keep = has_foreground[b_idx]
    if not bool(keep.all()):
        b_idx, m_idx, student_features = b_idx[keep], m_idx[keep], student_features[keep]
    loss = student_features.new_zeros((batch, num_modalities), dtype=torch.float32)
    gap = loss.clone()
    # computed for the valid (sample, modality) pairs only; none still keeps the graph

    def pair_terms(rows, student_features, masks, teacher_maps):  # (R,) loss and gap of the pairs ``rows``
        samples = b_idx[rows]
        student_maps = _similarity_maps(student_features[rows].float().flatten(2), masks[samples], eps)  # (R, K, V)
        diff = student_maps - teacher_maps[samples]
        weights = present[samples].float()
        n_classes = weights.sum(1)                                       # >= 1 (has a foreground)
        return ((diff.square().mean(-1) * weights).sum(1) / n_classes,
                (diff.detach().abs().mean(-1) * weights).sum(1) / n_classes)

    pair_loss, pair_gap = in_row_chunks(pair_terms, b_idx.shape[0], recompute_rows, student_features, masks,
                                        teacher_maps)
    loss = loss.index_put((b_idx, m_idx), pair_loss)
    gap = gap.index_put((b_idx, m_idx), pair_gap)
    valid = mask & has_foreground[:, None]
    return PrototypeDistillation(loss, gap, valid)
