"""Which cases a subset evaluation runs on: a fold's validation cases, or a labelled folder.

Each case carries its image files (one per channel), its reference label file and its
availability (M,) bool, so that a subset containing a modality the case does not really have
is skipped for that case instead of being scored on a zero image.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Mapping, Optional

import numpy as np

from nnunet_prism.errors import MissingFileError
from nnunet_prism.evaluation.reference_labels import read_reference_label
from nnunet_prism.availability import image_has_signal, raw_availability, resolve_availability
from nnunet_prism.inference.absent_modalities import check_case_geometry, group_case_files
from nnunet_prism.modalities import ModalityError, modality_names


@dataclass
class EvaluationCase:
    name: str
    image_files: List[str]          # one per channel, channel order
    label_file: str
    availability: np.ndarray        # (M,) bool


def validation_cases(dataset_name: str, fold: int, dataset_json: Mapping,
                     raw_root: Optional[os.PathLike] = None,
                     preprocessed_root: Optional[os.PathLike] = None) -> List[EvaluationCase]:
    """The validation cases of ``fold`` (nnU-Net's ``splits_final.json``) from the raw dataset."""
    from nnunetv2.paths import nnUNet_preprocessed, nnUNet_raw

    raw = Path(raw_root or str(nnUNet_raw)) / dataset_name
    splits_file = Path(preprocessed_root or str(nnUNet_preprocessed)) / dataset_name / "splits_final.json"
    if not splits_file.is_file():
        raise MissingFileError(f"{splits_file} not found; train the fold first (nnU-Net writes it)")
    splits = json.loads(splits_file.read_text())
    if not 0 <= fold < len(splits):
        raise ModalityError(f"fold {fold} does not exist in {splits_file} ({len(splits)} folds)")
    names = sorted(splits[fold]["val"])
    ending = dataset_json["file_ending"]
    num_channels = len(modality_names(dataset_json))
    # the record where there is one, else the images (all-zero = absent), checked against them
    availability, _ = resolve_availability(dataset_json, names, lambda keys: raw_availability(raw, dataset_json, keys))
    cases = []
    for name, available in zip(names, availability):
        images = [str(raw / "imagesTr" / f"{name}_{c:04d}{ending}") for c in range(num_channels)]
        cases.append(EvaluationCase(name, images, str(raw / "labelsTr" / f"{name}{ending}"), available))
    _check_exist(cases)
    return cases


def folder_cases(images_folder: os.PathLike, labels_folder: os.PathLike, dataset_json: Mapping) -> List[EvaluationCase]:
    """Cases of a labelled test folder; a modality file that is absent or all zero is unavailable."""
    ending = dataset_json["file_ending"]
    num_channels = len(modality_names(dataset_json))
    cases = []
    for name, files in group_case_files(images_folder, ending, num_channels).items():
        available = np.array([c in files and image_has_signal(files[c]) for c in range(num_channels)])
        if not available.any():
            raise ModalityError(f"case '{name}' in {images_folder} has no modality with signal")
        missing = [c for c in range(num_channels) if c not in files]
        if missing:
            raise ModalityError(f"case '{name}': files for channels {missing} are absent; subset evaluation "
                                f"needs every channel file (write absent ones as all-zero images)")
        images = [str(files[c]) for c in range(num_channels)]
        cases.append(EvaluationCase(name, images, str(Path(labels_folder) / f"{name}{ending}"), available))
    _check_exist(cases)
    return cases


def _check_exist(cases: List[EvaluationCase]) -> None:
    for case in cases:
        for path in case.image_files + [case.label_file]:
            if not os.path.isfile(path):
                raise MissingFileError(f"case '{case.name}': {path} does not exist")


def check_case_files(cases: List[EvaluationCase], dataset_json: Mapping, reader_writer) -> None:
    """Before any model runs: every case's image files lie on one grid, and its label passes
    ``read_reference_label`` (values in dataset.json's labels, the images' grid). The evaluation
    reads each label through the same function again, so no path scores an unchecked label."""
    for case in cases:
        check_case_geometry(case.name, dict(enumerate(map(Path, case.image_files))))
        read_reference_label(case.label_file, dataset_json, reader_writer, grid_of=case.image_files[0])
