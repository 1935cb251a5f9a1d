"""Where a dataset goes and how it gets there atomically.

A dataset is written into a hidden folder beside its destination (``.tmp_DatasetXXX_...``; nnU-Net
only looks at ``DatasetXXX_*``) and renamed into place once complete, so a failure never leaves a
half-written dataset that nnU-Net would accept. An existing dataset is replaced only with
``overwrite=True``, and only after the new one is complete.
"""
from __future__ import annotations

import numbers
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Union

from dataset_conversion.errors import ConversionError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def raw_root_folder(raw_root: Optional[Union[str, os.PathLike]]) -> Path:
    """``raw_root`` or, when None, the ``nnUNet_raw`` environment variable."""
    if raw_root is None:
        raw_root = os.environ.get("nnUNet_raw")
        if not raw_root:
            raise ConversionError("nnUNet_raw is not set; export it or pass the raw folder explicitly.")
    return Path(raw_root).resolve()


def dataset_folder(raw_root: Path, dataset_id: int, dataset_name: str, overwrite: bool) -> Path:
    """``<raw_root>/DatasetXXX_<name>`` after checking id, name and what already exists there."""
    if isinstance(dataset_id, bool) or not isinstance(dataset_id, numbers.Integral) or not 1 <= dataset_id <= 999:
        raise ConversionError(f"dataset id must be an integer from 1 to 999, got {dataset_id!r}.")
    if not _NAME.match(dataset_name or ""):
        raise ConversionError(f"dataset name '{dataset_name}' must be letters, digits, '_', '-' or '.', "
                              f"starting with a letter or digit.")
    dataset_id = int(dataset_id)
    folder = raw_root / f"Dataset{dataset_id:03d}_{dataset_name}"
    others = sorted(p.name for p in raw_root.glob(f"Dataset{dataset_id:03d}_*") if p != folder) \
        if raw_root.is_dir() else []
    if others:
        raise ConversionError(f"dataset id {dataset_id} is already used by {raw_root / others[0]}; "
                              f"choose another id or remove that folder.")
    if folder.exists() and not overwrite:
        raise ConversionError(f"dataset folder {folder} already exists; pass overwrite to replace it.")
    return folder


@contextmanager
def staged(folder: Path, overwrite: bool) -> Iterator[Path]:
    """Yield an empty hidden folder beside ``folder``; on success it becomes ``folder`` (replacing
    an existing one if ``overwrite``), on any error it is removed and ``folder`` is untouched."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".tmp_{folder.name}_", dir=folder.parent))
    try:
        yield stage
        os.chmod(stage, 0o777 & ~_umask())
        _swap_into_place(stage, folder, overwrite)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _swap_into_place(stage: Path, folder: Path, overwrite: bool) -> None:
    if not folder.exists():
        os.rename(stage, folder)
        return
    if not overwrite:
        raise ConversionError(f"dataset folder {folder} appeared while converting; nothing was replaced.")
    old = Path(tempfile.mkdtemp(prefix=f".old_{folder.name}_", dir=folder.parent))
    os.rename(folder, old / folder.name)
    try:
        os.rename(stage, folder)
    except OSError:
        os.rename(old / folder.name, folder)
        shutil.rmtree(old, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
