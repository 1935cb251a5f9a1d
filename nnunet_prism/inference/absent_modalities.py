"""Complete an input folder in which some modality files are simply absent.

nnU-Net expects every channel file ``CASE_XXXX<ending>`` of every case. For each case we link
the present files into a scratch folder and write each absent channel as an all-zero image with
the geometry of a present one; our networks treat an all-zero channel as absent. The input
folder is never modified.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Dict, List, Mapping, Sequence

import numpy as np
import SimpleITK as sitk

from nnunet_prism.modalities import ModalityError

CaseFiles = Dict[str, Dict[int, Path]]  # case id -> {channel index: file}


def group_case_files(folder: os.PathLike, file_ending: str, num_channels: int) -> CaseFiles:
    """{case: {channel: path}} for files named ``CASE_XXXX<file_ending>`` in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"input folder {folder} does not exist")
    pattern = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})" + re.escape(file_ending) + "$")
    cases: CaseFiles = {}
    for path in sorted(folder.iterdir()):
        match = pattern.match(path.name)
        if not match:
            continue
        channel = int(match["channel"])
        if channel >= num_channels:
            raise ModalityError(f"{path}: channel {channel:04d} does not exist, the model has "
                                f"{num_channels} input channels (_0000.._{num_channels - 1:04d})")
        cases.setdefault(match["case"], {})[channel] = path
    if not cases:
        raise ModalityError(f"no files named CASE_XXXX{file_ending} in {folder}")
    return cases


def _check_geometry(case: str, files: Mapping[int, Path]) -> sitk.ImageFileReader:
    """Header-only geometry check of a case's present files; returns a reader of the first."""
    readers = []
    for path in files.values():
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        readers.append((path, reader))
    ref_path, ref = readers[0]
    for path, reader in readers[1:]:
        if reader.GetSize() != ref.GetSize() or not np.allclose(reader.GetSpacing(), ref.GetSpacing(), atol=1e-4):
            raise ModalityError(f"case '{case}': {path.name} has size {reader.GetSize()} / spacing "
                                f"{reader.GetSpacing()}, but {ref_path.name} has {ref.GetSize()} / {ref.GetSpacing()}")
    return ref


def has_signal(path: Path) -> bool:
    """False for an all-zero image (which our networks treat as an absent modality)."""
    image = sitk.ReadImage(str(path))  # keep the image alive: the array view does not own its buffer
    return bool(np.any(sitk.GetArrayViewFromImage(image)))


def _write_zero_like(reference: Path, destination: Path) -> None:
    image = sitk.ReadImage(str(reference))
    zero = sitk.Image(image.GetSize(), image.GetPixelID(), image.GetNumberOfComponentsPerPixel())
    zero.CopyInformation(image)
    sitk.WriteImage(zero, str(destination))


def _link_or_copy(source: Path, destination: Path) -> None:
    try:
        os.symlink(source.resolve(), destination)
    except OSError:
        shutil.copyfile(source, destination)


def complete_cases(cases: CaseFiles, scratch: os.PathLike, file_ending: str, num_channels: int,
                   channel_names: Sequence[str]) -> Dict[str, Dict[str, List[str]]]:
    """Fill ``scratch`` with every channel of every case; return the per-case record
    ``{case: {"present": [names], "absent": [names]}}``."""
    scratch = Path(scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    record = {}
    for case, files in cases.items():
        if not files:
            raise ModalityError(f"case '{case}' has no modality file")
        _check_geometry(case, files)
        reference = next(iter(files.values()))
        present = [c for c, path in sorted(files.items()) if has_signal(path)]
        if not present:
            raise ModalityError(f"case '{case}': every modality file is missing or all zero "
                                f"({', '.join(p.name for p in files.values())}); nothing to predict from")
        for channel in range(num_channels):
            destination = scratch / f"{case}_{channel:04d}{file_ending}"
            if channel in files:
                _link_or_copy(files[channel], destination)
            else:
                _write_zero_like(reference, destination)
        record[case] = {"present": [channel_names[c] for c in present],
                        "absent": [channel_names[c] for c in range(num_channels) if c not in present]}
    return record
