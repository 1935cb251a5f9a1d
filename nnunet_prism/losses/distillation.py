"""Pixel-wise multi-uni self-distillation (PASSION, ACM MM 2024, pixel-wise self-distillation).

The fused (multimodal) output is the teacher, every unimodal output of the same network is a
student. At every voxel the temperature-softened teacher distribution is matched by the
student's:

    L_pixel^m = sum_l w_l * T^2 * mean_voxels KL( p_T(z^l / T) || p_S(z^{m,l} / T) )

Label-based sets (softmax over C classes) use the categorical KL; region-based sets (nnU-Net's
sigmoid regions, e.g. BraTS WT/TC/ET) use one Bernoulli KL per region channel.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from nnunet_prism.deep_supervision import Logits, as_level_list
from nnunet_prism.recomputation import in_row_chunks

#: Distillation temperature T of the official PASSION code.
DEFAULT_TEMPERATURE = 4.0


def deep_supervision_weights(num_levels: int,
                             weights: Optional[Sequence[float]] = None) -> List[float]:
    """Per-level weights normalised to sum 1.

    None gives nnU-Net's halving scheme 1, 1/2, 1/4, ... (normalised); given weights (for
    example the trainer's own deep-supervision weights) are only normalised, so passing weights
    that are already normalised changes nothing. A level with weight 0 is skipped.
    """
    if weights is None:
        weights = [1.0 / 2 ** i for i in range(num_levels)]
    weights = [float(w) for w in weights]
    if len(weights) != num_levels:
        raise ValueError(f"got {len(weights)} deep-supervision weights for {num_levels} output levels")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"deep-supervision weights must be >= 0 with a positive sum, got {weights}")
    total = sum(weights)
    return [w / total for w in weights]


def official_level_weights(num_levels: int) -> List[float]:
    """The official PASSION code's pixel-KL weights per deep-supervision level, not normalised.

    The official decoder (RFNet-style) has a full-resolution output (weight 1) and four auxiliary
    outputs at scales 1, 1/2, 1/4, 1/8 (weights 1/2, 1/4, 1/8, 1/16, each upsampled to full
    resolution before its KL). Our decoder has one output per scale, so level 0 (scale 1) takes
    1 + 1/2, levels 1-3 take 1/4, 1/8, 1/16, and coarser levels (the official decoder has none) 0.
    """
    weights = [1.5, 0.25, 0.125, 0.0625]
    return (weights + [0.0] * num_levels)[:num_levels]


def upsample_probabilities(probabilities: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """(N, C, *s) probabilities -> (N, C, *size), linearly interpolated with ``align_corners=True``
    (the official PASSION code's ``nn.Upsample(mode='trilinear', align_corners=True)``, applied to
    probabilities, not logits; interpolation keeps them summing to 1)."""
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[probabilities.ndim - 2]
    return F.interpolate(probabilities, size=tuple(size), mode=mode, align_corners=True)


def full_precision(tensor: torch.Tensor):
    """Context that switches autocast off on the tensor's device, so the losses are computed in
    float32 even inside the trainer's mixed-precision region."""
    return torch.autocast(device_type=tensor.device.type, enabled=False)


def _outcomes(logits: torch.Tensor, region_based: bool, prob_floor: Optional[float],
              size: Optional[Sequence[int]] = None):
    """[(p, log p), ...] of the outcomes at every voxel, float32: one pair (softmax over dim 1)
    or, region-based, two pairs (p and 1 - p of the per-channel sigmoid). With ``size`` (another
    spatial size than the logits'), the probabilities are upsampled to it first (official PASSION
    code) and clamped at ``prob_floor`` (or at the smallest float, so that log stays finite)."""
    logits = logits.float()
    if size is not None and tuple(size) != tuple(logits.shape[2:]):
        p = upsample_probabilities(torch.sigmoid(logits) if region_based else F.softmax(logits, dim=1), size)
        floor = prob_floor if prob_floor is not None else torch.finfo(torch.float32).tiny
        return [(q.clamp(floor, 1.0), torch.log(q.clamp(floor, 1.0))) for q in ([p, 1 - p] if region_based else [p])]
    if region_based:
        pairs = [(torch.sigmoid(logits), F.logsigmoid(logits)),
                 (torch.sigmoid(-logits), F.logsigmoid(-logits))]
    else:
        pairs = [(F.softmax(logits, dim=1), F.log_softmax(logits, dim=1))]
    if prob_floor is not None:
        pairs = [(p.clamp(prob_floor, 1.0), torch.log(p.clamp(prob_floor, 1.0))) for p, _ in pairs]
    return pairs


def kl_divergence_map(teacher_logits: torch.Tensor, student_logits: torch.Tensor,
                      temperature: float = DEFAULT_TEMPERATURE, region_based: bool = False,
                      prob_floor: Optional[float] = None, size: Optional[Sequence[int]] = None) -> torch.Tensor:
    """Per-voxel, per-channel temperature-scaled KL(teacher || student), no reduction.

    Shapes: teacher_logits and student_logits (N, C, *spatial) -> (N, C, *spatial), float32, or
    (N, C, *size) with ``size``: both probabilities upsampled to it before the KL (official code).
    Formula: T^2 * p_t,c * (log p_t,c - log p_s,c) with p = softmax(z / T) over C (summing the
    result over C gives the categorical KL), or, region-based, per channel the Bernoulli KL
    T^2 * [p_t (log p_t - log p_s) + (1 - p_t)(log(1 - p_t) - log(1 - p_s))] with p = sigmoid(z / T).
    Source: PASSION (ACM MM 2024), pixel-wise self-distillation.
    Direction KL(teacher || student) as in Hinton et al. and the official code (the method text
    writes the arguments the other way round; the standard direction is the intended one).
    prob_floor: None (default) uses exact log-softmax / log-sigmoid, which is already stable;
    the official code instead clamps probabilities at 0.005 (``prob_floor=0.005`` reproduces it).
    We do not clamp by default because clamping zeroes the gradient of every class below the
    floor and leaves the clamped values unnormalised (the "KL" can then go negative).
    The teacher is NOT detached here; :func:`pixel_distillation_loss` detaches it.
    """
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(f"teacher logits {tuple(teacher_logits.shape)} and student logits "
                         f"{tuple(student_logits.shape)} must have the same shape")
    t = float(temperature)
    if t <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    teacher = _outcomes(teacher_logits / t, region_based, prob_floor, size)
    student = _outcomes(student_logits / t, region_based, prob_floor, size)
    kl = sum(p_t * (log_t - log_s) for (p_t, log_t), (_, log_s) in zip(teacher, student))
    return (t * t) * kl


def check_pairs(pairs: Tuple[torch.Tensor, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    """``pairs`` = (samples, modalities), (P,) each (``MultiModalOutput.pairs``: the (sample,
    modality) of every student row), checked and returned."""
    if not isinstance(pairs, (tuple, list)) or len(pairs) != 2:
        raise ValueError(f"pairs must be (samples, modalities), one index tensor each, got {type(pairs).__name__}")
    samples, modalities = pairs
    if samples.ndim != 1 or samples.shape != modalities.shape:
        raise ValueError(f"pairs must be (samples, modalities) of shape (P,) each, got {tuple(samples.shape)} "
                         f"and {tuple(modalities.shape)}")
    return samples, modalities


def pixel_distillation_loss(teacher_logits: Logits, student_logits: Logits,
                            modality_mask: torch.Tensor,
                            ds_weights: Optional[Sequence[float]] = None,
                            temperature: float = DEFAULT_TEMPERATURE,
                            region_based: bool = False,
                            prob_floor: Optional[float] = None,
                            class_reduction: str = "mean",
                            return_per_sample: bool = False,
                            *, pairs: Tuple[torch.Tensor, torch.Tensor],
                            upsample: bool = False, recompute_rows: Optional[int] = None
                            ) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
    """Pixel-wise self-distillation L_pixel^m of every modality, deep-supervised.

    Shapes: teacher_logits per deep-supervision level (B, C, *spatial) (fused output);
    student_logits per level (P, C, *spatial) (unimodal outputs), one row per present (sample,
    modality) pair, ``pairs`` = (samples, modalities) (P,) each naming them (as
    ``MultiModalOutput.students`` and ``.pairs``); modality_mask (B, M) bool; 2D or 3D spatial.
    A single tensor counts as one level. Returns per_modality (M,), and with ``return_per_sample`` also
    per_sample (B, M).
    Formula: L_pixel^{n,m} = sum_l w_l * T^2 * mean_{voxels} red_{c} KL_c(p_t^l || p_s^{m,l})
    (PASSION, ACM MM 2024, pixel-wise self-distillation).
    - ds_weights: normalised to sum 1 (None: 1, 1/2, 1/4, ... like nnU-Net); zero-weight
      levels are skipped.
    - Reduction: mean over voxels; over the class/region axis ``class_reduction="mean"``
      (default: the official code's mean over all elements, which keeps lambda1 = 0.5 on its
      scale; for softmax this is the true per-voxel KL divided by C) or ``"sum"`` (true KL).
    - The teacher is detached inside: no gradient ever reaches it. Computed in float32
      (autocast off), whatever the logits' dtype.
    - Absent modality (mask False): not computed at all, value exactly 0 and no gradient.
      per_modality[m] = mean of per_sample[:, m] over the samples where m is present
      (0 if m is absent from the whole batch).
    - upsample=True (official PASSION code): every level's teacher and student probabilities
      are upsampled to the full resolution (:func:`upsample_probabilities`) before the KL, and
      ds_weights are used as given (None: :func:`official_level_weights`), not normalised.
    - recompute_rows (activation checkpointing): the KL maps of ``recompute_rows`` pairs at a
      time, each chunk recomputed in the backward pass (``in_row_chunks``), so the step holds
      one chunk's maps (float32, at full resolution the largest tensors of the step) instead of
      P pairs'. Same values (per-pair computations).
    See :func:`kl_divergence_map` for the KL direction and the optional official clamp.
    """
    teachers = as_level_list(teacher_logits)
    students = as_level_list(student_logits)
    if len(teachers) != len(students):
        raise ValueError(f"{len(teachers)} teacher levels but {len(students)} student levels")
    if class_reduction not in ("mean", "sum"):
        raise ValueError(f"class_reduction must be 'mean' or 'sum', got {class_reduction!r}")
    mask = modality_mask.to(device=students[0].device, dtype=torch.bool)
    batch, num_modalities = mask.shape
    if upsample:
        weights = official_level_weights(len(teachers)) if ds_weights is None else [float(w) for w in ds_weights]
        size = teachers[0].shape[2:]
    else:
        weights, size = deep_supervision_weights(len(teachers), ds_weights), None
    b_idx, m_idx = check_pairs(pairs)
    values = students[0].new_zeros(b_idx.shape[0], dtype=torch.float32)
    for w, teacher, student in zip(weights, teachers, students):
        if w == 0:
            continue
        if teacher.shape[0] != batch or student.shape != (b_idx.shape[0], *teacher.shape[1:]):
            raise ValueError(f"student logits {tuple(student.shape)} (one row per present pair) must be "
                             f"(P, *teacher.shape[1:]) for teacher logits {tuple(teacher.shape)}")
        def pair_kl(rows, teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:  # (R,) of the pairs rows
            with full_precision(student):
                kl = kl_divergence_map(teacher.detach()[b_idx[rows]], student[rows], temperature, region_based,
                                       prob_floor, size)
            kl = kl.flatten(2)  # (R, C, V)
            return kl.sum(1).mean(1) if class_reduction == "sum" else kl.mean((1, 2))

        values = values + w * in_row_chunks(pair_kl, b_idx.shape[0], recompute_rows, teacher, student)
    per_sample = students[0].new_zeros((batch, num_modalities), dtype=torch.float32)
    per_sample = per_sample.index_put((b_idx, m_idx), values)
    counts = mask.sum(0).clamp(min=1).to(per_sample.dtype)
    per_modality = per_sample.sum(0) / counts
    return (per_modality, per_sample) if return_per_sample else per_modality
