"""BraTS 2023 lesion-wise Dice and HD95 (our implementation of the challenge's definition).

The BraTS 2023 challenge (glioma task, BraTS-GLI) ranks by lesion-wise scores, defined in its
metrics description (R. Saluja et al., "BraTS 2023 Lesion-Wise Performance Metrics for
Segmentation Challenges", github.com/rachitsaluja/BraTS-2023-Metrics):

1. per region (WT, TC, ET) binary masks of reference and prediction;
2. connected components with 26-connectivity (full connectivity in any dimension);
3. reference components are grouped into lesions by dilating the reference mask
   (``dilation`` = 3 iterations of the 18-connected structuring element for gliomas) and taking
   the connected components of the dilated mask: reference components inside one dilated
   component form one lesion; the reference itself is not changed;
4. a prediction component is matched to a lesion when it meets the lesion dilated the same way;
   the lesion's Dice and HD95 are computed between the lesion and all its matched components;
   a lesion without a match scores Dice 0 and HD95 ``hd95_penalty`` (374);
5. prediction components matched to no lesion are false positives, each Dice 0 and HD95 374;
6. lesions whose volume (mm^3) is at most ``min_volume`` (50 for gliomas) are left out, matched
   or not;
7. lesion-wise Dice = sum of the lesions' Dice / (lesions + false positives), lesion-wise HD95 =
   (sum of the lesions' HD95 + 374 x false positives) / (lesions + false positives); with
   neither lesions nor false positives: Dice 1, HD95 0.

HD95 per lesion is the challenge's robust Hausdorff distance: the larger of the two directed 95th
percentiles of surface distances, each surface element weighted by its area
(``surface_elements.robust_hausdorff``, the surface-distance definition the reference code uses).
The BraTS 2023 tasks differ only in ``dilation`` and ``min_volume`` (GLI, SSA, PED: 3 and
50 mm^3; MEN: 1 and 50; MET: 1 and 2); ``nnunet_prism.brats_label_sets`` holds them per set.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from nnunet_prism.evaluation.metrics import EvaluationError
from nnunet_prism.evaluation.surface_elements import robust_hausdorff

#: BraTS 2023 glioma (BraTS-GLI) parameters.
BRATS2023_DILATION = 3
BRATS2023_MIN_VOLUME = 50.0
BRATS2023_HD95_PENALTY = 374.0


@dataclass(frozen=True)
class LesionScores:
    dice: float
    hd95: float
    num_lesions: int          # reference lesions above the volume threshold
    num_detected: int         # of those, lesions with at least one matched prediction component
    num_false_positives: int  # prediction components matched to no lesion


def robust_hd95(mask_a: np.ndarray, mask_b: np.ndarray, spacing=None) -> float:
    """max(area-weighted 95th percentile of distances a->b, of b->a) in mm; both masks non-empty."""
    return robust_hausdorff(mask_a, mask_b, spacing, 95.0)


def _squeeze(mask: np.ndarray, spacing: np.ndarray):
    keep = np.asarray(mask.shape) > 1
    if keep.all() or not keep.any():
        return mask, spacing
    return mask.reshape([s for s, k in zip(mask.shape, keep) if k]), spacing[keep]


def _padded_box(slices, pad: int, shape):
    return tuple(slice(max(s.start - pad, 0), min(s.stop + pad, n)) for s, n in zip(slices, shape))


def lesion_wise(reference: np.ndarray, prediction: np.ndarray, spacing=None,
                dilation: int = BRATS2023_DILATION, min_volume: float = BRATS2023_MIN_VOLUME,
                hd95_penalty: float = BRATS2023_HD95_PENALTY) -> LesionScores:
    """Lesion-wise Dice and HD95 of one region of one case (boolean masks of the same shape,
    ``spacing`` in mm per axis, None = 1 mm). See the module docstring for the definition."""
    ref = np.asarray(reference, bool)
    pred = np.asarray(prediction, bool)
    if ref.shape != pred.shape:
        raise EvaluationError(f"reference {ref.shape} and prediction {pred.shape} differ in shape")
    sp = np.ones(ref.ndim) if spacing is None else np.asarray(spacing, dtype=float).ravel()
    if sp.shape != (ref.ndim,):
        raise EvaluationError(f"spacing {tuple(sp)} does not match an image with {ref.ndim} axes")
    ref, sp_sq = _squeeze(ref, sp)
    pred, _ = _squeeze(pred, sp)
    sp = sp_sq
    ndim = ref.ndim
    connectivity = ndimage.generate_binary_structure(ndim, ndim)   # 26-connectivity in 3D
    grow = ndimage.generate_binary_structure(ndim, min(2, ndim))  # 18-connected dilation in 3D
    voxel_volume = float(np.prod(sp))

    pred_cc, num_pred = ndimage.label(pred, connectivity)
    if ref.any():
        grown = ndimage.binary_dilation(ref, grow, iterations=dilation) if dilation > 0 else ref
        grown_cc, _ = ndimage.label(grown, connectivity)
        lesions = np.where(ref, grown_cc, 0)  # reference voxels labelled by their dilated component
    else:
        lesions = np.zeros(ref.shape, dtype=np.int32)

    matched_all = set()
    dices, hds, detected = [], [], 0
    for lesion_id, box in enumerate(ndimage.find_objects(lesions), start=1):
        if box is None:
            continue
        box = _padded_box(box, dilation + 1, ref.shape)
        lesion = lesions[box] == lesion_id
        reach = ndimage.binary_dilation(lesion, grow, iterations=dilation) if dilation > 0 else lesion
        matched = np.unique(pred_cc[box][reach])
        matched = matched[matched != 0]
        matched_all.update(int(m) for m in matched)
        keep = lesion.sum() * voxel_volume > min_volume
        if not keep:
            continue
        if matched.size == 0:
            dices.append(0.0)
            hds.append(hd95_penalty)
            continue
        detected += 1
        full_lesion = lesions == lesion_id
        matched_pred = np.isin(pred_cc, matched)
        overlap = np.logical_and(full_lesion, matched_pred).sum()
        dices.append(float(2 * overlap / (full_lesion.sum() + matched_pred.sum())))
        hds.append(robust_hd95(full_lesion, matched_pred, sp))
    num_fp = num_pred - len(matched_all)
    denominator = len(dices) + num_fp
    if denominator == 0:
        return LesionScores(1.0, 0.0, 0, 0, 0)
    dice_value = float(sum(dices) / denominator)
    hd_value = float((sum(hds) + hd95_penalty * num_fp) / denominator)
    return LesionScores(dice_value, hd_value, len(dices), detected, num_fp)


__all__ = ["BRATS2023_DILATION", "BRATS2023_MIN_VOLUME", "BRATS2023_HD95_PENALTY", "LesionScores",
           "robust_hd95", "lesion_wise"]
