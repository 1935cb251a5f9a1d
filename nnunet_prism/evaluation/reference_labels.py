"""Read a reference label map for scoring, and refuse one that would be scored wrongly.

Every path of ``nnunet_prism evaluate`` that reads a reference label goes through
``read_reference_label``, which raises ``EvaluationError`` (one line naming the file) when

- the label lies on another grid than the image or prediction it is scored against (size,
  spacing, origin or direction; see ``geometry``): nnU-Net would compare the arrays voxel by voxel;
- it holds non-integer values (float data; nnU-Net would compare 0.6 with no label and score it
  as background);
- it holds a value that is none of dataset.json's ``labels`` (scored as background otherwise);
  labels in the BraTS convention 1/2/4 get their own message, naming the command that converts
  them (4 = enhancing tumour would otherwise give ET Dice 0 on every subset).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Optional, Set, Tuple

import numpy as np

from nnunet_prism.errors import EvaluationError, MissingFileError
from nnunet_prism.evaluation.geometry import geometry_mismatch, read_geometry
from nnunet_prism.image_io import ImageFileError, check_nifti_complete

#: Label values of BraTS 2018-2021 files (0 background, 1 necrosis, 2 edema, 4 enhancing tumour).
BRATS_VALUES = frozenset({0, 1, 2, 4})
CONVERT_COMMAND = "nnunet_prism convert-brats"


def dataset_label_values(dataset_json: Mapping) -> Set[int]:
    """Every label value dataset.json's ``labels`` names (region members and ignore included)."""
    if "labels" not in dataset_json:
        raise EvaluationError("dataset.json has no 'labels'; cannot tell which label values are valid")
    values = set()
    for value in dataset_json["labels"].values():
        values.update(int(v) for v in (value if isinstance(value, (list, tuple)) else [value]))
    return values


def _listed(values) -> str:
    return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def check_label_values(seg: np.ndarray, path: os.PathLike, dataset_json: Mapping) -> None:
    """EvaluationError naming ``path`` unless every value of ``seg`` is one of dataset.json's labels."""
    allowed = dataset_label_values(dataset_json)
    values = np.unique(seg)
    if np.issubdtype(values.dtype, np.floating):
        fractional = values[~np.isfinite(values) | (values != np.round(values))]
        if fractional.size:
            shown = _listed(fractional[:5].tolist()) + (", ..." if fractional.size > 5 else "")
            raise EvaluationError(f"{path}: non-integer label values ({shown}); a label map holds whole numbers "
                                  f"({_listed(sorted(allowed))}), and these would be truncated or scored as background")
    present = {int(v) for v in values.tolist()}
    unknown = sorted(present - allowed)
    if not unknown:
        return
    if 4 in unknown and present <= BRATS_VALUES:
        raise EvaluationError(f"{path}: labels {_listed(sorted(present))} are in the BraTS convention (4 = enhancing "
                              f"tumour), but this dataset's labels are {_listed(sorted(allowed))}; convert the BraTS "
                              f"case folders with '{CONVERT_COMMAND}' (it writes labels 0/1/2/3)")
    if 4 in unknown and present <= BRATS_VALUES | {3}:
        raise EvaluationError(f"{path}: label 4 is not in this dataset's labels ({_listed(sorted(allowed))}); in "
                              f"BraTS 2024-2025 glioma and metastasis files 4 is the resection cavity: convert the "
                              f"case folders with '{CONVERT_COMMAND} --layout 2024' (or met), which keeps it as a "
                              f"region of its own")
    noun = "value" if len(unknown) == 1 else "values"
    raise EvaluationError(f"{path}: label {noun} {_listed(unknown)} not in dataset.json's labels "
                          f"({_listed(sorted(allowed))}); it would be scored as background")


def _grid_mismatch(path: Path, other: Path, reader_writer) -> Optional[str]:
    """What differs between the grids of two files: from the headers (SimpleITK), or, for a
    format SimpleITK cannot read, shape and spacing from nnU-Net's reader."""
    try:
        return geometry_mismatch(read_geometry(path), read_geometry(other))
    except ImageFileError:
        seg, props = reader_writer.read_seg(str(path))
        data, other_props = reader_writer.read_images([str(other)])
        if seg.shape[1:] != data.shape[1:]:
            return f"shape {seg.shape[1:]} vs {data.shape[1:]}"
        if not np.allclose(props["spacing"], other_props["spacing"], rtol=1e-3, atol=1e-6):
            return f"spacing {tuple(props['spacing'])} vs {tuple(other_props['spacing'])}"
        return None


def read_reference_label(path: os.PathLike, dataset_json: Mapping, reader_writer,
                         grid_of: Optional[os.PathLike] = None, what: str = "image") -> Tuple[np.ndarray, np.ndarray]:
    """The label map in ``path`` (numpy axis order, no channel axis) and its spacing, read with
    nnU-Net's ``reader_writer``, after checking that the file is complete, its values against dataset.json and, when
    ``grid_of`` is given, its grid against that file's (``what`` names it in the message)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"label file not found: {path}")
    if path.name.endswith((".nii", ".nii.gz")):
        check_nifti_complete(path)  # a truncated label would lose tumour voxels silently
    if grid_of is not None:
        mismatch = _grid_mismatch(path, Path(grid_of), reader_writer)
        if mismatch:
            raise EvaluationError(f"{path}: the label's grid differs from its {what} {grid_of} ({mismatch}); "
                                  f"resample the label onto the {what}'s grid")
    seg, props = reader_writer.read_seg(str(path))
    check_label_values(seg, path, dataset_json)
    return seg[0], np.asarray(props["spacing"], dtype=float)
