"""Score a folder of existing segmentations (``nnunet_prism evaluate --predictions``), no model.

Any folder of label maps named ``CASE<file ending>`` works: ``nnunet_prism predict`` or
``nnUNetv2_predict`` outputs, ``nnUNetv2_ensemble``, ``nnUNetv2_apply_postprocessing``, another
tool's. Each case is scored under the modality subset it was predicted from, so a real cohort
gets its per-subset table; where that subset comes from, first that applies:

1. ``--images``: the folder the segmentations were predicted from (a file that is absent or all
   zero is an absent modality), its files grouped by case by the command
   (``inference.absent_modalities.group_case_files``: this package knows no inference);
2. ``modalities_used.json`` in the predictions folder (written by ``nnunet_prism predict``);
3. the dataset's availability record (``-d``: ``modality_availability`` in its dataset.json).

Everything is checked before anything is written, each problem one ``EvaluationError`` line
naming the case: a prediction without a reference label or a label without a prediction, a case
the subset source does not know, a label or prediction on another grid (size, spacing, origin,
direction) or with values the dataset's labels do not name.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np

from nnunet_prism.errors import EvaluationError, MissingFileError
from nnunet_prism.evaluation.metrics import read_segmentation
from nnunet_prism.evaluation.reference_labels import check_label_values, read_reference_label
from nnunet_prism.evaluation.results import SubsetResults
from nnunet_prism.image_io import check_nifti_complete
from nnunet_prism.modalities import AVAILABILITY_KEY, modality_names

#: written beside its outputs by ``nnunet_prism predict``: {case: {"present": [...], "absent": [...]}}
MODALITIES_USED = "modalities_used.json"


@dataclass
class ScoredCase:
    name: str
    prediction: Path
    label: Path
    availability: np.ndarray   # (M,) bool: the modalities the prediction was made from


def _segmentations(folder: Path, ending: str, what: str) -> Dict[str, Path]:
    if not folder.is_dir():
        raise MissingFileError(f"{what} folder {folder} does not exist")
    found = {p.name[:-len(ending)]: p for p in sorted(folder.iterdir()) if p.name.endswith(ending) and p.is_file()}
    if not found:
        raise EvaluationError(f"no '*{ending}' files in the {what} folder {folder}")
    return found


def pair_cases(predictions: Path, labels: Path, ending: str) -> List[Tuple[str, Path, Path]]:
    """(case, prediction file, label file) for every case; a case on one side only is an error."""
    pred = _segmentations(predictions, ending, "predictions")
    ref = _segmentations(labels, ending, "labels")
    only_pred, only_ref = sorted(set(pred) - set(ref)), sorted(set(ref) - set(pred))
    if only_pred:
        raise EvaluationError(f"case '{only_pred[0]}': {pred[only_pred[0]]} has no reference label "
                              f"{labels / (only_pred[0] + ending)}" + _more(only_pred))
    if only_ref:
        raise EvaluationError(f"case '{only_ref[0]}': label {ref[only_ref[0]]} has no prediction "
                              f"{predictions / (only_ref[0] + ending)}" + _more(only_ref))
    return [(case, pred[case], ref[case]) for case in sorted(pred)]


def _more(cases: List[str]) -> str:
    if len(cases) < 2:
        return ""
    return f" ({len(cases) - 1} more: {', '.join(cases[1:4])}{', ...' if len(cases) > 4 else ''})"


def availability_of(cases: List[str], dataset_json: Mapping, predictions: Path,
                    images: Optional[os.PathLike] = None,
                    image_files: Optional[Mapping[str, Mapping[int, Path]]] = None) -> Tuple[np.ndarray, str]:
    """(N, M) bool availability of ``cases`` and a phrase naming where it came from (see the
    module docstring for the order); a case the chosen source does not know is an error.
    ``image_files``: {case: {channel: file}} of the folder ``images``."""
    names = modality_names(dataset_json)
    if images is not None:
        from nnunet_prism.availability import image_has_signal

        files = image_files or {}
        unknown = [c for c in cases if c not in files]
        if unknown:
            raise EvaluationError(f"case '{unknown[0]}': no image file {unknown[0]}_XXXX"
                                  f"{dataset_json['file_ending']} in --images {images}" + _more(unknown))
        rows = [[c in files[case] and image_has_signal(files[case][c]) for c in range(len(names))] for case in cases]
        return np.array(rows, dtype=bool).reshape(len(cases), len(names)), f"the images in {images}"
    used = predictions / MODALITIES_USED
    if used.is_file():
        record = json.loads(used.read_text())
        unknown = [c for c in cases if c not in record]
        if unknown:
            raise EvaluationError(f"case '{unknown[0]}' is not in {used}" + _more(unknown) +
                                  "; give --images with the folder it was predicted from")
        bad = [(c, m) for c in cases for m in record[c].get("present", []) if m not in names]
        if bad:
            raise EvaluationError(f"case '{bad[0][0]}': {used} names modality '{bad[0][1]}', the dataset has "
                                  f"{', '.join(names)}")
        rows = [[n in record[c].get("present", []) for n in names] for c in cases]
        return np.array(rows, dtype=bool).reshape(len(cases), len(names)), str(used)
    record = dataset_json.get(AVAILABILITY_KEY)
    if record is None:
        raise EvaluationError(f"cannot tell which modalities the predictions in {predictions} were made from: "
                              f"give --images with the folder they were predicted from, or -d with a dataset "
                              f"whose dataset.json records '{AVAILABILITY_KEY}'")
    unknown = [c for c in cases if c not in record]
    if unknown:
        raise EvaluationError(f"case '{unknown[0]}' has no entry in the dataset's '{AVAILABILITY_KEY}'"
                              + _more(unknown) + "; give --images with the folder it was predicted from")
    rows = [record[c] for c in cases]
    if any(len(r) != len(names) for r in rows):
        raise EvaluationError(f"the '{AVAILABILITY_KEY}' record does not have {len(names)} entries per case")
    return np.array(rows, dtype=bool).reshape(len(cases), len(names)), f"dataset.json's '{AVAILABILITY_KEY}'"


def prediction_cases(predictions: os.PathLike, labels: os.PathLike, dataset_json: Mapping, reader_writer,
                     images: Optional[os.PathLike] = None,
                     image_files: Optional[Mapping[str, Mapping[int, Path]]] = None) -> Tuple[List[ScoredCase], str]:
    """Every case of the two folders, checked (pairs, subset source, grids, label values of both
    sides), and where the subsets came from (``images``, ``image_files``: see ``availability_of``)."""
    predictions, labels = Path(predictions), Path(labels)
    pairs = pair_cases(predictions, labels, dataset_json["file_ending"])
    available, source = availability_of([c for c, _, _ in pairs], dataset_json, predictions, images, image_files)
    cases = []
    for (case, pred, ref), row in zip(pairs, available):
        if not row.any():
            raise EvaluationError(f"case '{case}': no modality was present ({source})")
        read_reference_label(ref, dataset_json, reader_writer, grid_of=pred, what="prediction")
        if pred.name.endswith((".nii", ".nii.gz")):
            check_nifti_complete(pred)
        check_label_values(read_segmentation(pred, reader_writer)[0], pred, dataset_json)
        cases.append(ScoredCase(case, pred, ref, row))
    return cases, source


def score_cases(cases: List[ScoredCase], dataset_json: Mapping, reader_writer, scorer) -> SubsetResults:
    """``scorer`` (``scoring.CaseScorer``) on every case, recorded under its subset."""
    from nnunet_prism.evaluation.metrics import label_manager_from_dataset_json

    results = SubsetResults(modality_names(dataset_json), scorer.regions, scorer.metrics)
    ignore_label = label_manager_from_dataset_json(dataset_json).ignore_label
    for case in cases:
        reference, spacing = read_reference_label(case.label, dataset_json, reader_writer, grid_of=case.prediction,
                                                  what="prediction")
        prediction, _ = read_segmentation(case.prediction, reader_writer)
        results.add_case(case.availability, case.name, scorer(reference, prediction, spacing, ignore_label))
    return results


__all__ = ["MODALITIES_USED", "ScoredCase", "pair_cases", "availability_of", "prediction_cases", "score_cases"]
