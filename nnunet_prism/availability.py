"""Which modalities a case really has: the dataset's record where there is one, else the data.

One definition of "absent", shared by training, prediction and evaluation: a channel whose
image is all zero (``channel_signal``; the usual way other tools fill a missing modality). A
dataset converted by ``nnunet_prism convert-brats`` records availability in dataset.json
(``modality_availability``); a dataset prepared otherwise has no record, and its availability
comes from the images. A record that calls a channel present whose image is all zero
contradicts the data: a one-line ``ModalityError`` naming the case. (The opposite, recorded
absent but with signal, is how simulated missingness is recorded, and is fine.)
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence, Tuple

import numpy as np

from nnunet_prism.modalities import AVAILABILITY_KEY, ModalityError, availability_to_json, modality_names

#: how each source of availability is named in logs
RECORDED, FROM_DATA = "recorded in dataset.json", "from the data (all-zero channel = absent)"


def channel_signal(data) -> np.ndarray:
    """(M,) bool: True where channel m of ``data`` (M, *spatial), numpy or blosc2, is not all zero."""
    return np.array([bool(np.any(np.asarray(data[c][...]))) for c in range(data.shape[0])])


def image_has_signal(path: os.PathLike) -> bool:
    """False for an all-zero image file. The file is read completely first: a truncated NIfTI file
    or one with NaN or infinite voxels (which SimpleITK's NIfTI reader turns into 0) is an
    ``image_io.ImageFileError``; so are non-finite voxels in files of other formats."""
    import SimpleITK as sitk

    from nnunet_prism.image_io import NonFiniteImageError, check_nifti_complete, nonfinite_message

    if str(path).endswith((".nii", ".nii.gz")):
        check_nifti_complete(path)
    image = sitk.ReadImage(str(path))  # keep the image alive: the array view does not own its buffer
    voxels = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(voxels.dtype, np.floating) and not np.isfinite(voxels).all():
        nan = int(np.count_nonzero(np.isnan(voxels)))
        raise NonFiniteImageError(nonfinite_message(path, nan, int(np.count_nonzero(~np.isfinite(voxels))) - nan,
                                                    voxels.size))
    return bool(np.any(voxels))


def raw_availability(raw_dataset: os.PathLike, dataset_json: Mapping, case_ids: Sequence[str],
                     images: str = "imagesTr") -> np.ndarray:
    """(N, M) bool from the raw images ``<images>/<case>_<c:04d><ending>`` (training images by default)."""
    ending, count = dataset_json["file_ending"], len(modality_names(dataset_json))
    rows = []
    for case in case_ids:
        files = [Path(raw_dataset) / images / f"{case}_{c:04d}{ending}" for c in range(count)]
        absent = [str(f) for f in files if not f.is_file()]
        if absent:
            raise ModalityError(f"case '{case}': {absent[0]} does not exist")
        rows.append([image_has_signal(f) for f in files])
    return np.asarray(rows, dtype=bool).reshape(len(case_ids), count)


def resolve_availability(dataset_json: Mapping, case_ids: Sequence[str],
                         from_data: Callable[[Sequence[str]], np.ndarray]) -> Tuple[np.ndarray, str]:
    """(N, M) availability of ``case_ids`` and its source, checked against the data.

    Cases with a record take it; cases without take ``from_data``. Every case is read
    (``from_data`` of all of them), so a record that calls an all-zero channel present is a
    ModalityError naming the case and modality; so is a case with no modality at all.
    """
    names = modality_names(dataset_json)
    record = dataset_json.get(AVAILABILITY_KEY) or {}
    data = np.asarray(from_data(list(case_ids)), dtype=bool).reshape(len(case_ids), len(names))
    rows = []
    for case, signal in zip(case_ids, data):
        if case not in record:
            rows.append(signal)
            continue
        recorded = np.asarray(record[case], dtype=bool)
        if recorded.shape != (len(names),):
            raise ModalityError(f"case '{case}': availability record has {recorded.size} entries, "
                                f"dataset has {len(names)} modalities")
        contradicted = [n for n, r, s in zip(names, recorded, signal) if r and not s]
        if contradicted:
            raise ModalityError(f"case '{case}': dataset.json records {', '.join(contradicted)} as present but "
                                f"the image is all zero; fix the record (nnunet_prism record-availability "
                                f"--overwrite) or the image")
        rows.append(recorded)
    available = np.asarray(rows, dtype=bool).reshape(len(case_ids), len(names))
    empty = [c for c, row in zip(case_ids, available) if not row.any()]
    if empty:
        raise ModalityError(f"case '{empty[0]}' has no modality (every channel all zero or recorded absent)")
    recorded_count = sum(c in record for c in case_ids)
    source = (RECORDED if recorded_count == len(case_ids) else FROM_DATA if recorded_count == 0 else
              f"{RECORDED} for {recorded_count} cases, {FROM_DATA} for {len(case_ids) - recorded_count}")
    return available, source


def write_record(dataset_json_path: os.PathLike, case_ids: Sequence[str], availability: np.ndarray) -> None:
    """Set the availability record of ``case_ids`` in a dataset.json, atomically; the entries of
    other cases are kept."""
    path = Path(dataset_json_path)
    dataset_json = json.loads(path.read_text(encoding="utf-8"))
    record = dict(dataset_json.get(AVAILABILITY_KEY) or {})
    record.update(availability_to_json(case_ids, availability))
    dataset_json[AVAILABILITY_KEY] = record
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(dataset_json, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def load_dataset_json(path: os.PathLike) -> Optional[dict]:
    path = Path(path)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
