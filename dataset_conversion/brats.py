"""BraTS folder(s) -> nnU-Net raw dataset ``<nnUNet_raw>/DatasetXXX_Name``.

Input: the 2018-2021 layout (``<case>/<case>_{flair,t1,t1ce,t2,seg}.nii.gz``, labels 0/1/2/4) or
the 2023-and-later layout (``<case>/<case>-{t2f,t1n,t1c,t2w,seg}.nii.gz``) with the label set of
its task (``nnunet_prism.brats_label_sets.LAYOUTS``: 2023 glioma 0/1/2/3; 2024-2025 post-treatment glioma 0-4 with 4
the resection cavity; BraTS-MET, -PED, -MEN). With ``layout="auto"`` the file names choose the
family, the case ids' prefix the task (BraTS-MET/-PED/-MEN), and a glioma label file holding 4
the 2024 set. Output: ``imagesTr/<case>_{0000..0003}.nii.gz`` in channel order FLAIR, T1, T1c,
T2, ``labelsTr/<case>.nii.gz`` with 0 background, 1 edema, 2 necrosis / non-enhancing core,
3 enhancing (as nnU-Net's own BraTS example) and 4 the set's extra class (RC or CC),
``imagesTs`` for cases without a label file, and ``dataset.json`` with:

- ``channel_names``, ``labels`` (the set's regions, e.g. whole/core/enhancing tumour and
  resection cavity, and ``regions_class_order``, or plain labels with ``label_based=True``),
  ``numTraining``, ``file_ending``;
- ``modality_availability`` (``nnunet_prism.modalities.AVAILABILITY_KEY``): ``{case: [0/1] * 4}``
  for every case, training and test alike (case ids are unique, so one dict serves both);
  0 where the modality file is absent, all zero, or removed by the simulated missingness;
- ``numTest``, ``brats_layout`` (the set: "2020", "2023", "2024", "met", "ped", "men") and, when
  simulating, ``missing_simulation`` ``{"rates": [...], "seed": S}``.

A modality that is absent (in the source or by simulation) is written as an all-zero image on
the case's voxel grid, so nnU-Net's own tools accept the set. Every case is validated before
anything is written, and the dataset is written into a hidden folder that is renamed into place
only when complete (the next run removes the hidden folder of an interrupted one).
"""
from __future__ import annotations

import json
import numbers
import os
import re
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np

from dataset_conversion.availability import check_rates, simulate_availability
from dataset_conversion.errors import ConversionError
from dataset_conversion.labels import brats_predictions_to_original, dataset_json_labels  # noqa: F401 (re-export)
from nnunet_prism.brats_label_sets import LAYOUT_2023, LAYOUT_2024, BratsLayout
from dataset_conversion.sources import SourceCase, find_cases
from dataset_conversion.staging import (check_apart, check_destination, clean_interrupted, dataset_folder,
                                        raw_root_folder, staged)
from dataset_conversion.validation import check_case
from dataset_conversion.writing import FILE_ENDING, write_case
from nnunet_prism.modalities import AVAILABILITY_KEY, BRATS_MODALITIES, availability_to_json

PathLike = Union[str, os.PathLike]


def split_labelled(cases: Sequence[SourceCase], layout: BratsLayout,
                   require_labels: Optional[bool]) -> Tuple[List[SourceCase], List[SourceCase]]:
    """(training cases, test cases) by whether a label file exists.

    ``require_labels``: True - every case needs one; False - unlabelled cases go to imagesTs;
    None (default) - per source folder: a folder where some case has a label is a labelled set,
    and a case without one there is an error; a folder without any label goes to imagesTs.
    """
    labelled_sources = {c.source for c in cases if c.seg is not None}
    for case in cases:
        if case.seg is None and (require_labels or (require_labels is None and case.source in labelled_sources)):
            why = "labels are required" if require_labels else f"other cases in {case.source} have one"
            expected = layout.file_name(case.case_id, layout.seg_key)
            raise ConversionError(f"case '{case.case_id}': label file {expected} is missing in {case.folder}, "
                                  f"but {why}.")
    return [c for c in cases if c.seg is not None], [c for c in cases if c.seg is None]


def _map(function: Callable, items: Sequence, num_workers: int) -> list:
    """``[function(i) for i in items]``, in ``num_workers`` spawned processes when > 1."""
    if num_workers <= 1 or len(items) <= 1:
        return [function(item) for item in items]
    with ProcessPoolExecutor(min(num_workers, len(items)), mp_context=get_context("spawn")) as pool:
        return list(pool.map(function, items, chunksize=max(1, len(items) // (4 * num_workers))))


def _write_one(job, layout: BratsLayout, stage: Path) -> None:
    case, available, labelled = job
    write_case(case, layout, available, stage / ("imagesTr" if labelled else "imagesTs"),
               stage / "labelsTr" if labelled else None)


def _dataset_json(name: str, layout: BratsLayout, label_based: bool, train: Sequence[SourceCase],
                  test: Sequence[SourceCase], availability: np.ndarray, rates, seed: int) -> dict:
    cases = [c.case_id for c in list(train) + list(test)]
    content = {
        "name": name,
        "description": f"BraTS ({layout.name} layout) converted by nnunet_prism dataset_conversion",
        "channel_names": {str(i): m for i, m in enumerate(BRATS_MODALITIES)},
        **dataset_json_labels(label_based, layout),
        "numTraining": len(train),
        "numTest": len(test),
        "file_ending": FILE_ENDING,
        "brats_layout": layout.name,
        AVAILABILITY_KEY: availability_to_json(cases, availability),
        "reference": "https://www.synapse.org/brats",
        "license": "see the data terms of the BraTS release that was converted",
    }
    if rates is not None:
        content["missing_simulation"] = {"rates": [float(r) for r in rates], "seed": int(seed)}
    return content


def _to_json(content: dict) -> str:
    """Indented JSON with lists of numbers kept on one line (one line per case of availability)."""
    text = json.dumps(content, indent=2)
    return re.sub(r"\[\s*(-?[\d.]+(?:,\s*-?[\d.]+)*)\s*\]",
                  lambda m: "[" + re.sub(r",\s*", ", ", m.group(1)) + "]", text) + "\n"


def convert_brats(source_dirs: Union[PathLike, Sequence[PathLike]], dataset_id: int, dataset_name: str = "BraTS",
                  raw_root: Optional[PathLike] = None, missing_rates: Optional[Sequence[float]] = None,
                  seed: int = 0, label_based: bool = False, layout: str = "auto", overwrite: bool = False,
                  num_workers: int = 1, require_labels: Optional[bool] = None) -> Path:
    """Convert BraTS ``source_dirs`` into ``<raw_root>/Dataset{dataset_id:03d}_{dataset_name}``; return it.

    ``raw_root`` defaults to ``$nnUNet_raw``. ``missing_rates`` (FLAIR, T1, T1c, T2), each in [0, 1):
    simulated missingness of the training cases (sorted by case id), drawn with ``seed`` by
    ``nnunet_prism.modalities.sample_availability`` and ANDed with what the files hold; every
    case keeps >= 1 modality. ``layout``: "auto", "2020" (2018-2021) or "2023".
    ``require_labels``: see ``split_labelled``. Auto-detected 2023 glioma files whose labels hold 4
    (the resection cavity) are converted as the 2024 set. Bad input raises ConversionError; nothing is
    written then and an existing dataset is only replaced with ``overwrite=True``. Every file is
    read completely first (a truncated file is an error); the destination and the source folders
    must not contain one another.
    """
    folder = dataset_folder(raw_root_folder(raw_root), dataset_id, dataset_name)
    rates = check_rates(missing_rates, len(BRATS_MODALITIES))
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ConversionError(f"seed must be a non-negative integer, got {seed!r}.")
    chosen, cases = find_cases(source_dirs, layout)
    check_apart({c.source for c in cases}, folder)
    clean_interrupted(folder)
    check_destination(folder, overwrite)
    train, test = split_labelled(cases, chosen, require_labels)

    # an auto-detected glioma set is read with the 2024 labels (a superset of 2023's, same meaning
    # of 1-3); a label 4 anywhere makes it the 2024 post-treatment set
    reading = LAYOUT_2024 if layout == "auto" and chosen is LAYOUT_2023 else chosen
    checked = _map(partial(check_case, layout=reading), train + test, num_workers)
    if reading is LAYOUT_2024:
        chosen = LAYOUT_2024 if any(4 in values for _, values in checked) else LAYOUT_2023
    genuine = np.array([available for available, _ in checked], dtype=bool)
    available = np.concatenate([simulate_availability(genuine[:len(train)], rates, seed), genuine[len(train):]])

    with staged(folder, overwrite) as stage:
        for sub in ("imagesTr", "labelsTr", "imagesTs"):
            (stage / sub).mkdir()
        jobs = [(c, tuple(a), i < len(train)) for i, (c, a) in enumerate(zip(train + test, available))]
        _map(partial(_write_one, layout=chosen, stage=stage), jobs, num_workers)
        content = _dataset_json(dataset_name, chosen, label_based, train, test, available, rates, seed)
        (stage / "dataset.json").write_text(_to_json(content))
    return folder
