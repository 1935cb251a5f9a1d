"""Dice and HD95 per region (region-based sets such as BraTS WT/TC/ET) or per label.

Dice follows nnU-Net exactly, so numbers agree with ``nnUNetv2_evaluate_folder``: the masks come
from nnU-Net's ``region_or_label_to_mask``, the counts from its ``compute_tp_fp_fn_tn`` (voxels of
the ignore label in the reference are left out), Dice = 2TP / (2TP + FP + FN), and NaN when
reference and prediction are both empty (nnU-Net's convention; NaN-aware means skip such cases).
The regions or labels come from ``dataset.json`` through nnU-Net's own ``LabelManager``, the same
way ``compute_metrics_on_folder2`` picks them.

HD95 (no medpy, surface-distance or MONAI is installed, so it is written here with scipy):
the symmetric 95th percentile of surface distances in mm, defined as medpy's ``hd95``, which is what
the missing-modality BraTS literature (RFNet, mmFormer, DeMoSeg, ...) computes: surface voxels are
the mask minus its erosion by the face-connected structuring element (voxels on the image border
count as surface), distances are Euclidean with the voxel spacing, and the 95th percentile is taken
over the distances of both directions pooled together (pred->ref and ref->pred).
Empty cases (documented choice, overridable per call):

* both masks empty -> NaN (``hd95_both_empty``), like Dice: nothing to segment, nothing predicted,
  so the case carries no information about boundaries and NaN-aware means skip it;
* exactly one mask empty -> the image diagonal in mm, ``sqrt(sum((shape * spacing)^2))``
  (``hd95_one_empty="diagonal"``). For a BraTS volume (240 x 240 x 155 at 1 mm) this is the
  373.13 mm that the BraTS challenge assigns to a missed or hallucinated region; generalising it to
  the image at hand keeps the penalty "worst possible distance" for any dataset. Pass ``"nan"`` to
  skip such cases instead, or a number to use a fixed value (e.g. 373.13).

Axes of size 1 are dropped before the surface computation (nnU-Net reads a 2D image as a
(1, y, x) volume with a dummy spacing of 999 x the in-plane spacing along the first axis; eroding
along that axis would make every voxel a surface voxel).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from scipy import ndimage

from nnunetv2.evaluation.evaluate_predictions import compute_tp_fp_fn_tn, region_or_label_to_mask

from nnunet_prism.errors import EvaluationError, MissingFileError
from nnunet_prism.evaluation.reference_labels import read_reference_label

LabelOrRegion = Union[int, Tuple[int, ...]]

#: The metrics a case evaluation reports, in table order.
METRICS: Tuple[str, ...] = ("Dice", "HD95")

#: BraTS 2023 lesion-wise metrics (``evaluation/lesionwise.py``), computed on request.
LESION_METRICS: Tuple[str, ...] = ("LesionDice", "LesionHD95")

#: Normalised surface Dice (``nsd``), computed on request.
SURFACE_METRICS: Tuple[str, ...] = ("NSD",)

#: Every metric ``nnunet_prism evaluate --metrics`` accepts, in table order (``brats2025`` adds the
#: official BraTS 2025 columns of ``evaluation/brats2025.py``).
AVAILABLE_METRICS: Tuple[str, ...] = METRICS + SURFACE_METRICS + LESION_METRICS

#: Short column names for the BraTS regions as nnU-Net's BraTS conversion names them.
BRATS_SHORT_NAMES: Dict[str, str] = {
    "whole tumor": "WT", "whole tumour": "WT",
    "tumor core": "TC", "tumour core": "TC",
    "enhancing tumor": "ET", "enhancing tumour": "ET",
    "resection cavity": "RC", "cystic component": "CC",
}


@dataclass(frozen=True)
class Target:
    """One row of nnU-Net's evaluation: a label or a region, with the names used in tables.

    ``name``: the key in dataset.json ``labels`` (e.g. "whole tumor"); ``short``: the column name
    (e.g. "WT"); ``value``: nnU-Net's label (int) or region (tuple of labels)."""
    name: str
    short: str
    value: LabelOrRegion


def short_name(label_name: str) -> str:
    """Column name for a label/region: WT/TC/ET for the BraTS region names, else the name itself."""
    key = re.sub(r"[\s_\-]+", " ", label_name.strip().lower())
    return BRATS_SHORT_NAMES.get(key, label_name)


def label_manager_from_dataset_json(dataset_json: Mapping, plans: Optional[Mapping] = None):
    """nnU-Net's LabelManager for a dataset.json (the plans, if given, may name another class)."""
    if plans is not None:
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
        return PlansManager(dict(plans)).get_label_manager(dict(dataset_json))
    from nnunetv2.utilities.label_handling.label_handling import LabelManager
    if "labels" not in dataset_json:
        raise EvaluationError("dataset.json has no 'labels'; cannot tell which labels or regions to evaluate.")
    return LabelManager(dataset_json["labels"], dataset_json.get("regions_class_order"))


def _normalise(value) -> LabelOrRegion:
    if isinstance(value, (list, tuple)):
        return tuple(int(v) for v in value)
    return int(value)


def targets_from_dataset_json(dataset_json: Mapping, plans: Optional[Mapping] = None) -> List[Target]:
    """The foreground regions (region-based sets) or labels (label-based sets) that
    ``nnUNetv2_evaluate_folder`` evaluates, in its order, with their names from ``labels``."""
    lm = label_manager_from_dataset_json(dataset_json, plans)
    values = lm.foreground_regions if lm.has_regions else lm.foreground_labels
    names: Dict[LabelOrRegion, str] = {}
    for name, value in dataset_json["labels"].items():
        if name in ("background", "ignore"):
            continue
        v = _normalise(value)
        names.setdefault(v, name)
        if isinstance(v, tuple) and len(v) == 1:  # a one-label region matches the label too
            names.setdefault(v[0], name)
    targets = []
    for value in values:
        v = _normalise(value)
        name = names.get(v, str(v))
        targets.append(Target(name=name, short=short_name(name), value=v))
    shorts = [t.short for t in targets]
    if len(set(shorts)) != len(shorts):  # two names share a short form: keep the full names
        targets = [Target(t.name, t.name, t.value) for t in targets]
    return targets


def targets_from_labels(labels: Mapping[str, Union[int, Sequence[int]]],
                        regions_class_order: Optional[Sequence[int]] = None) -> List[Target]:
    """Shortcut for a bare ``labels`` dict (as in dataset.json)."""
    return targets_from_dataset_json({"labels": dict(labels), "regions_class_order": regions_class_order})


# ----------------------------------------------------------------------------------------- Dice

def dice(mask_ref: np.ndarray, mask_pred: np.ndarray, ignore_mask: Optional[np.ndarray] = None,
         both_empty: float = float("nan")) -> float:
    """nnU-Net's Dice: 2TP / (2TP + FP + FN) on boolean masks; ``both_empty`` (NaN, nnU-Net's
    convention; 1 in the BraTS convention, see ``evaluation/conventions.py``) when both are empty."""
    tp, fp, fn, _ = compute_tp_fp_fn_tn(np.asarray(mask_ref, bool), np.asarray(mask_pred, bool), ignore_mask)
    if tp + fp + fn == 0:
        return float(both_empty)
    return float(2 * tp / (2 * tp + fp + fn))


# ----------------------------------------------------------------------------------------- HD95

def _squeeze(mask: np.ndarray, spacing: np.ndarray, keep: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    return mask.reshape([s for s, k in zip(mask.shape, keep) if k]), spacing[keep]


def _spacing(spacing, ndim: int) -> np.ndarray:
    if spacing is None:
        return np.ones(ndim)
    spacing = np.asarray(spacing, dtype=float).ravel()
    if spacing.shape != (ndim,):
        raise EvaluationError(f"spacing {tuple(spacing)} does not match an image with {ndim} axes")
    if np.any(spacing <= 0) or not np.all(np.isfinite(spacing)):
        raise EvaluationError(f"spacing must be positive and finite, got {tuple(spacing)}")
    return spacing


def image_diagonal(shape: Sequence[int], spacing=None) -> float:
    """Length in mm of the image diagonal, sqrt(sum((shape_i * spacing_i)^2)), over axes longer
    than one voxel (373.13 for 240 x 240 x 155 at 1 mm)."""
    shape = np.asarray(shape)
    sp = _spacing(spacing, len(shape))
    keep = shape > 1
    return float(np.sqrt(np.sum((shape[keep] * sp[keep]) ** 2)))


def _surface(mask: np.ndarray) -> np.ndarray:
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, iterations=1, border_value=0)


def surface_distances(mask_a: np.ndarray, mask_b: np.ndarray, spacing=None) -> Tuple[np.ndarray, np.ndarray]:
    """Distances in mm from every surface voxel of ``mask_a`` to the surface of ``mask_b``, and
    from every surface voxel of ``mask_b`` to the surface of ``mask_a``. Both masks non-empty.

    The work is done on the bounding box of both masks plus one voxel (clipped to the image), which
    gives the same surfaces and distances as the whole image: every surface voxel lies inside it and
    erosion sees the same neighbourhood (outside the image counts as background either way)."""
    a = np.asarray(mask_a, bool)
    b = np.asarray(mask_b, bool)
    sp = _spacing(spacing, a.ndim)
    keep = np.asarray(a.shape) > 1
    if not keep.all():
        (a, _), (b, sp) = _squeeze(a, sp, keep), _squeeze(b, sp, keep)
    if a.ndim == 0:  # a single voxel image
        return np.zeros(1), np.zeros(1)
    coords = np.argwhere(a | b)
    lo = np.maximum(coords.min(axis=0) - 1, 0)
    hi = np.minimum(coords.max(axis=0) + 2, a.shape)
    box = tuple(slice(start, stop) for start, stop in zip(lo, hi))
    surf_a, surf_b = _surface(a[box]), _surface(b[box])
    dist_to_b = ndimage.distance_transform_edt(~surf_b, sampling=sp)
    dist_to_a = ndimage.distance_transform_edt(~surf_a, sampling=sp)
    return dist_to_b[surf_a], dist_to_a[surf_b]


def nsd_tolerance(spacing, ndim: int) -> float:
    """The NSD tolerance in mm: the smallest voxel spacing (1 mm for BraTS), panoptica's default."""
    return float(np.min(_spacing(spacing, ndim)))


def nsd(mask_ref: np.ndarray, mask_pred: np.ndarray, spacing=None, tolerance: Optional[float] = None,
        both_empty: float = float("nan")) -> float:
    """Normalised surface Dice (Nikolov et al., JMIR 2021): the share of both surfaces (surface
    voxels as for HD95, pooled) that lies within ``tolerance`` mm of the other surface;
    ``tolerance`` None: ``nsd_tolerance``. 0 when exactly one mask is empty, ``both_empty`` (NaN,
    or 1 in the BraTS convention) when both are. panoptica's NSD instead averages the two directed
    shares; they agree when both surfaces have as many voxels."""
    ref, pred = np.asarray(mask_ref, bool), np.asarray(mask_pred, bool)
    if not ref.any() and not pred.any():
        return float(both_empty)
    if not ref.any() or not pred.any():
        return 0.0
    tau = nsd_tolerance(spacing, ref.ndim) if tolerance is None else float(tolerance)
    d_pred, d_ref = surface_distances(pred, ref, spacing)
    return float(((d_pred <= tau).sum() + (d_ref <= tau).sum()) / (d_pred.size + d_ref.size))


def hd95(mask_ref: np.ndarray, mask_pred: np.ndarray, spacing=None,
         both_empty: float = float("nan"), one_empty: Union[str, float] = "diagonal") -> float:
    """Symmetric 95th-percentile Hausdorff distance in mm (medpy's definition: percentile of the
    pooled surface distances of both directions). Empty cases: see the module docstring."""
    ref = np.asarray(mask_ref, bool)
    pred = np.asarray(mask_pred, bool)
    if ref.shape != pred.shape:
        raise EvaluationError(f"reference {ref.shape} and prediction {pred.shape} differ in shape")
    ref_empty, pred_empty = not ref.any(), not pred.any()
    if ref_empty and pred_empty:
        return float(both_empty)
    if ref_empty or pred_empty:
        if isinstance(one_empty, str):
            if one_empty == "diagonal":
                return image_diagonal(ref.shape, spacing)
            if one_empty.lower() == "nan":
                return float("nan")
            raise ValueError(f"one_empty must be 'diagonal', 'nan' or a number, got '{one_empty}'")
        return float(one_empty)
    d_pred_to_ref, d_ref_to_pred = surface_distances(pred, ref, spacing)
    return float(np.percentile(np.concatenate([d_pred_to_ref, d_ref_to_pred]), 95))


# ------------------------------------------------------------------------------------ per case

def evaluate_case(reference: np.ndarray, prediction: np.ndarray, targets: Sequence[Target],
                  spacing=None, ignore_label: Optional[int] = None,
                  hd95_both_empty: float = float("nan"),
                  hd95_one_empty: Union[str, float] = "diagonal",
                  dice_both_empty: float = float("nan"), with_nsd: bool = False) -> Dict[str, Dict[str, float]]:
    """Dice, HD95 and NSD for every target of one case (empty-mask values: see ``conventions``).

    ``reference``/``prediction``: integer label maps of the same shape (2D or 3D); ``spacing``: one
    value per axis in mm (None: 1 mm). Returns ``{short name: {"Dice": float, "HD95": float,
    "NSD": float, "n_ref": int, "n_pred": int}}`` in target order; Dice follows nnU-Net exactly.
    NSD is computed only when ``with_nsd``."""
    reference = np.asarray(reference)
    prediction = np.asarray(prediction)
    if reference.shape != prediction.shape:
        raise EvaluationError(f"reference shape {reference.shape} and prediction shape {prediction.shape} differ")
    ignore_mask = reference == ignore_label if ignore_label is not None else None
    out: Dict[str, Dict[str, float]] = {}
    for target in targets:
        mask_ref = region_or_label_to_mask(reference, target.value)
        mask_pred = region_or_label_to_mask(prediction, target.value)
        if ignore_mask is not None:
            d = dice(mask_ref, mask_pred, ignore_mask, dice_both_empty)
            mask_ref, mask_pred = mask_ref & ~ignore_mask, mask_pred & ~ignore_mask
        else:
            d = dice(mask_ref, mask_pred, both_empty=dice_both_empty)
        out[target.short] = {
            "Dice": d,
            "HD95": hd95(mask_ref, mask_pred, spacing, hd95_both_empty, hd95_one_empty),
            "n_ref": int(mask_ref.sum()),
            "n_pred": int(mask_pred.sum()),
        }
        if with_nsd:
            out[target.short]["NSD"] = nsd(mask_ref, mask_pred, spacing, both_empty=dice_both_empty)
    return out


def _reader_writer(dataset_json: Mapping, example_file: str):
    from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json
    return determine_reader_writer_from_dataset_json(dict(dataset_json), example_file, verbose=False)()


def read_segmentation(path: Union[str, Path], reader_writer) -> Tuple[np.ndarray, np.ndarray]:
    """A label map and its spacing (numpy axis order) read with nnU-Net's reader/writer."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"segmentation file not found: {path}")
    seg, props = reader_writer.read_seg(str(path))
    return seg[0], np.asarray(props["spacing"], dtype=float)


def evaluate_case_files(reference_file: Union[str, Path], prediction_file: Union[str, Path],
                        dataset_json: Mapping, targets: Optional[Sequence[Target]] = None,
                        reader_writer=None, **kwargs) -> Dict[str, Dict[str, float]]:
    """``evaluate_case`` on two files, read as ``nnUNetv2_evaluate_folder`` reads them (reader
    chosen from dataset.json, spacing from the reference file's header). Keyword arguments go to
    ``evaluate_case`` (``hd95_both_empty``, ``hd95_one_empty``)."""
    if targets is None:
        targets = targets_from_dataset_json(dataset_json)
    if reader_writer is None:
        reader_writer = _reader_writer(dataset_json, str(reference_file))
    if not Path(prediction_file).is_file():
        raise MissingFileError(f"segmentation file not found: {prediction_file}")
    # the reference's values and its grid (size, spacing, origin, direction) against the prediction's
    ref, spacing = read_reference_label(reference_file, dataset_json, reader_writer, grid_of=prediction_file,
                                        what="prediction")
    pred, _ = read_segmentation(prediction_file, reader_writer)
    ignore_label = label_manager_from_dataset_json(dataset_json).ignore_label
    return evaluate_case(ref, pred, targets, spacing, ignore_label, **kwargs)


def evaluate_folder(reference_folder: Union[str, Path], prediction_folder: Union[str, Path],
                    dataset_json: Mapping, case_ids: Optional[Sequence[str]] = None,
                    **kwargs) -> Dict[str, Dict[str, Dict[str, float]]]:
    """Every case of ``prediction_folder`` (or ``case_ids``) against ``reference_folder``:
    ``{case id: evaluate_case(...)}``. A case without a reference or prediction file is an error
    that names the file."""
    reference_folder, prediction_folder = Path(reference_folder), Path(prediction_folder)
    ending = dataset_json.get("file_ending")
    if not ending:
        raise EvaluationError("dataset.json has no 'file_ending'")
    if case_ids is None:
        if not prediction_folder.is_dir():
            raise MissingFileError(f"prediction folder not found: {prediction_folder}")
        case_ids = sorted(p.name[:-len(ending)] for p in prediction_folder.iterdir() if p.name.endswith(ending))
    if not case_ids:
        raise EvaluationError(f"no '*{ending}' predictions in {prediction_folder}")
    targets = targets_from_dataset_json(dataset_json)
    rw = None
    results = {}
    for case in case_ids:
        ref_file = reference_folder / f"{case}{ending}"
        pred_file = prediction_folder / f"{case}{ending}"
        for f in (ref_file, pred_file):
            if not f.is_file():
                raise MissingFileError(f"case '{case}': file not found: {f}")
        if rw is None:
            rw = _reader_writer(dataset_json, str(ref_file))
        results[case] = evaluate_case_files(ref_file, pred_file, dataset_json, targets, rw, **kwargs)
    return results


__all__ = ["METRICS", "LESION_METRICS", "SURFACE_METRICS", "AVAILABLE_METRICS", "nsd", "nsd_tolerance",
           "BRATS_SHORT_NAMES", "EvaluationError", "Target", "short_name",
           "label_manager_from_dataset_json", "targets_from_dataset_json", "targets_from_labels", "dice",
           "image_diagonal", "surface_distances", "hd95", "evaluate_case", "read_segmentation",
           "evaluate_case_files", "evaluate_folder"]
