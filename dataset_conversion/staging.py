"""Where a dataset goes and how it gets there atomically.

A dataset is written into a hidden folder beside its destination (``.tmp_DatasetXXX_...``; nnU-Net
only looks at ``DatasetXXX_*``) and renamed into place once complete, so a failure never leaves a
half-written dataset that nnU-Net would accept. An existing dataset is replaced only with
``overwrite=True``, and only after the new one is complete. The next run cleans up after an
interrupted one (``clean_interrupted``).
"""
from __future__ import annotations

import numbers
import os
import re
import logging
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Union

from dataset_conversion.errors import ConversionError

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def raw_root_folder(raw_root: Optional[Union[str, os.PathLike]]) -> Path:
    """``raw_root`` or, when None, the ``nnUNet_raw`` environment variable."""
    if raw_root is None:
        raw_root = os.environ.get("nnUNet_raw")
        if not raw_root:
            raise ConversionError("nnUNet_raw is not set; export it or pass the raw folder explicitly.")
    return Path(raw_root).resolve()


def dataset_folder(raw_root: Path, dataset_id: int, dataset_name: str) -> Path:
    """``<raw_root>/DatasetXXX_<name>`` after checking id and name (nothing on disk is looked at)."""
    if isinstance(dataset_id, bool) or not isinstance(dataset_id, numbers.Integral) or not 1 <= dataset_id <= 999:
        raise ConversionError(f"dataset id must be an integer from 1 to 999, got {dataset_id!r}.")
    if not _NAME.match(dataset_name or ""):
        raise ConversionError(f"dataset name '{dataset_name}' must be letters, digits, '_', '-' or '.', "
                              f"starting with a letter or digit.")
    return raw_root / f"Dataset{int(dataset_id):03d}_{dataset_name}"


def check_destination(folder: Path, overwrite: bool) -> None:
    """ConversionError if the id of ``folder`` (``<raw_root>/DatasetXXX_<name>``) is used by another
    dataset, or ``folder`` exists and ``overwrite`` is false."""
    raw_root, dataset_id = folder.parent, int(folder.name[len("Dataset"):len("Dataset") + 3])
    others = sorted(p.name for p in raw_root.glob(f"Dataset{dataset_id:03d}_*") if p != folder) \
        if raw_root.is_dir() else []
    if others:
        raise ConversionError(f"dataset id {dataset_id} is already used by {raw_root / others[0]}; "
                              f"choose another id or remove that folder.")
    if folder.exists() and not overwrite:
        raise ConversionError(f"dataset folder {folder} already exists; pass --overwrite to replace it.")


def check_apart(sources: Sequence[Path], folder: Path) -> None:
    """ConversionError if ``folder`` (the destination) is a source folder, lies inside one or holds
    one: replacing it would delete the source, writing into it would change the source."""
    folder = Path(folder).resolve()
    for source in sources:
        source = Path(source).resolve()
        if source == folder or folder in source.parents or source in folder.parents:
            where = ("is" if source == folder else "lies inside" if source in folder.parents else "holds")
            raise ConversionError(f"destination {folder} {where} the source folder {source}; "
                                  f"choose a destination apart from the source.")


def _leftovers(folder: Path, kind: str) -> List[Path]:
    """Hidden ``.tmp_``/``.old_`` folders that ``tempfile.mkdtemp`` made beside ``folder``."""
    pattern = re.compile(rf"^\.{kind}_{re.escape(folder.name)}_[a-z0-9_]{{8}}$")
    return sorted(p for p in folder.parent.iterdir() if p.is_dir() and pattern.match(p.name)) \
        if folder.parent.is_dir() else []


def clean_interrupted(folder: Path) -> None:
    """Tidy up after a run that was killed while writing ``folder``, with a one-line notice each
    (a warning of this module's logger, printed on stderr by the commands): its temporary folder is removed; a replaced dataset kept aside (``.old_``) is
    put back if ``folder`` is missing, else (the replacement had finished) removed."""
    for stage in _leftovers(folder, "tmp"):
        shutil.rmtree(stage)
        logger.warning(f"nnunet_prism: removed {stage}, the temporary folder of an interrupted run")
    for old in _leftovers(folder, "old"):
        if not folder.exists() and (old / folder.name).is_dir():
            os.rename(old / folder.name, folder)
            logger.warning(f"nnunet_prism: restored {folder} from {old}, left by an interrupted run")
        else:
            logger.warning(f"nnunet_prism: removed {old}, the replaced copy of {folder.name} left by an "
                           f"interrupted run")
        shutil.rmtree(old)


@contextmanager
def _stage_beside(folder: Path) -> Iterator[Path]:
    """An empty hidden folder beside ``folder`` (after ``clean_interrupted``), removed on any error."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    clean_interrupted(folder)
    stage = Path(tempfile.mkdtemp(prefix=f".tmp_{folder.name}_", dir=folder.parent))
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


@contextmanager
def staged(folder: Path, overwrite: bool) -> Iterator[Path]:
    """Yield an empty hidden folder beside ``folder``; on success it becomes ``folder`` (replacing
    an existing one if ``overwrite``), on any error it is removed and ``folder`` is untouched."""
    with _stage_beside(folder) as stage:
        yield stage
        os.chmod(stage, 0o777 & ~_umask())
        _swap_into_place(stage, folder, overwrite)


@contextmanager
def staged_files(folder: Path) -> Iterator[Path]:
    """Yield an empty hidden folder beside ``folder``; on success its files move into ``folder``
    (created if missing; files of the same name replaced, other files kept), on any error it is
    removed and ``folder`` is untouched."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConversionError(f"output {folder} exists and is not a folder.")
    with _stage_beside(folder) as stage:
        yield stage
        if not folder.exists():
            os.chmod(stage, 0o777 & ~_umask())
            os.rename(stage, folder)
            return
        for path in sorted(stage.iterdir()):
            os.replace(path, folder / path.name)
        stage.rmdir()


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
