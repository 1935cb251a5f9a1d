"""Check one source case before anything is written: readable and complete files, one voxel
grid for all modalities and the label, known label values. Returns which modalities
are really there (file present and not all zero)."""
from __future__ import annotations

from pathlib import Path
from typing import Tuple

import numpy as np
import SimpleITK as sitk

from dataset_conversion.errors import ConversionError, check_complete
from dataset_conversion.labels import brats_to_nnunet
from nnunet_prism.brats_label_sets import BratsLayout
from dataset_conversion.sources import SourceCase
from nnunet_prism.evaluation.geometry import Geometry
from nnunet_prism.image_io import ImageFileError, read_image_information


def read_geometry(path: Path, case_id: str) -> Geometry:
    """Header-only read of ``path``; unreadable files and non-3D images are a ConversionError."""
    try:
        reader = read_image_information(path)
    except ImageFileError as e:
        raise ConversionError(f"case '{case_id}': {e}") from None
    if reader.GetDimension() != 3 or reader.GetNumberOfComponents() != 1:
        raise ConversionError(f"case '{case_id}': {path.name} is not a single-channel 3D image "
                              f"(dimension {reader.GetDimension()}, {reader.GetNumberOfComponents()} components).")
    return Geometry.of(reader)


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:g}" for v in np.round(values, 4) + 0.0) + ")"


def check_same_grid(case_id: str, path: Path, geometry: Geometry, ref_path: Path, ref: Geometry) -> None:
    """ConversionError if ``geometry`` differs from ``ref`` in shape, spacing, origin or direction."""
    for name in ("size", "spacing", "origin", "direction"):
        a, b = getattr(geometry, name), getattr(ref, name)
        same = a == b if name == "size" else np.allclose(a, b, rtol=1e-5, atol=1e-5)
        if not same:
            shown = "shape" if name == "size" else name
            raise ConversionError(f"case '{case_id}': {path.name} has {shown} {_fmt(a)} but {ref_path.name} has "
                                  f"{_fmt(b)}; all modalities and the label must share one voxel grid.")


def _read_array(path: Path, case_id: str) -> np.ndarray:
    """The voxels of ``path``, after checking that the file is complete (SimpleITK would fill a
    truncated file's missing voxels with zeros)."""
    check_complete(path, f"case '{case_id}': ")
    try:
        return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    except RuntimeError:
        raise ConversionError(f"case '{case_id}': cannot read {path} as an image.") from None


def check_case(case: SourceCase, layout: BratsLayout) -> Tuple[Tuple[bool, ...], Tuple[int, ...]]:
    """Validate ``case``; return (per channel whether the modality is really present (file there
    and not all zero), the label values its label file holds (empty without one)). Raises
    ConversionError with one sentence naming the case and file."""
    present = case.present_files
    ref_path = present[0]
    ref = read_geometry(ref_path, case.case_id)
    for path in present[1:] + ([case.seg] if case.seg is not None else []):
        check_same_grid(case.case_id, path, read_geometry(path, case.case_id), ref_path, ref)

    available = []
    for path in case.images:
        if path is None:
            available.append(False)
            continue
        # (_read_array refuses NaN and inf: SimpleITK, and nnU-Net with it, would read them as 0)
        available.append(bool(np.any(_read_array(path, case.case_id) != 0)))
    if not any(available):
        raise ConversionError(f"case '{case.case_id}': every modality file in {case.folder} is all zero.")

    values: Tuple[int, ...] = ()
    if case.seg is not None:
        seg = _read_array(case.seg, case.case_id)
        brats_to_nnunet(seg, layout, f"case '{case.case_id}': label file {case.seg.name}")
        values = tuple(int(v) for v in np.unique(seg))
    return tuple(available), values
