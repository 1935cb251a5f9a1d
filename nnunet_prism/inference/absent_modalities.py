"""Complete an input folder in which some modality files are simply absent.

nnU-Net expects every channel file ``CASE_XXXX<ending>`` of every case. For each case we link
the present files into a scratch folder and write each absent channel as an all-zero image with
the geometry of a present one; our networks treat an all-zero channel as absent. The input
folder is never modified.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

from nnunet_prism.availability import image_has_signal
from nnunet_prism.errors import MissingFileError
from nnunet_prism.evaluation.geometry import geometry_mismatch, read_geometry
from nnunet_prism.image_io import ImageFileError, read_image_information, write_zero_like
from nnunet_prism.modalities import ModalityError

logger = logging.getLogger(__name__)

CaseFiles = Dict[str, Dict[int, Path]]  # case id -> {channel index: file}


def group_case_files(folder: os.PathLike, file_ending: str, num_channels: int, ignore_unknown: bool = False,
                     ignore_option: Optional[str] = None) -> CaseFiles:
    """{case: {channel: path}} for files named ``CASE_XXXX<file_ending>`` in ``folder``.

    Nothing is dropped silently: every other entry of ``folder`` (another ending, no 4-digit
    channel, a sub-folder) is a ModalityError that lists them all in one line, unless
    ``ignore_unknown``; then they are listed on stderr and skipped. ``ignore_option`` is the
    command-line option that sets ``ignore_unknown``, named in the error. A channel number the
    dataset does not have is an error naming the file."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingFileError(f"input folder {folder} does not exist")
    pattern = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})" + re.escape(file_ending) + "$")
    cases: CaseFiles = {}
    unknown, bad_channel = [], []
    for path in sorted(folder.iterdir()):
        match = pattern.match(path.name)
        if match and path.is_dir():
            raise ModalityError(f"{path} is a folder, not an image file")
        if match and not path.exists():
            target = f" to {os.readlink(path)}" if path.is_symlink() else ""
            raise ModalityError(f"{path} is a broken link{target}: the file it names does not exist")
        if not match or not path.is_file():
            unknown.append(path.name + ("/" if path.is_dir() else ""))
        elif int(match["channel"]) >= num_channels:
            bad_channel.append(str(path))
        else:
            cases.setdefault(match["case"], {})[int(match["channel"])] = path
    if bad_channel:
        raise ModalityError(f"{', '.join(bad_channel)}: no such channel, the model has {num_channels} input "
                            f"channels (_0000.._{num_channels - 1:04d})")
    if unknown:
        what = (f"{len(unknown)} {'entry' if len(unknown) == 1 else 'entries'} of {folder} not named "
                f"CASE_XXXX{file_ending} (XXXX: channel 0000..{num_channels - 1:04d}): {', '.join(unknown)}")
        if not ignore_unknown:
            hint = f", or pass {ignore_option} to skip them" if ignore_option else ""
            raise ModalityError(f"{what}; no case id or channel can be read from them: rename or move them{hint}")
        logger.warning(f"ignoring {what}")
    if not cases:
        raise ModalityError(f"no files named CASE_XXXX{file_ending} in {folder}")
    return cases


def check_dimension(case: str, path: Path, dimension: Optional[int]) -> None:
    """Header-only check that ``path`` is a single-channel image of ``dimension`` (None: any)
    dimensions; nnU-Net would run a 3D model on a 2D file, or fail on a 4D one after minutes."""
    if dimension is None:
        return
    try:
        reader = read_image_information(path)
    except ImageFileError as e:
        raise ModalityError(f"case '{case}': {e}") from None
    found, components = reader.GetDimension(), reader.GetNumberOfComponents()
    if found != dimension or components != 1:
        what = f"{found}D image" + (f" with {components} components per voxel" if components != 1 else "")
        raise ModalityError(f"case '{case}': {path} is a {what}, but the model was trained on single-channel "
                            f"{dimension}D images; give each modality of the case as its own {dimension}D file")


def check_case_geometry(case: str, files: Mapping[int, Path]) -> None:
    """Header-only check that a case's present files lie on one grid (size, spacing, origin,
    direction); the error names the user's files."""
    (_, ref_path), *others = sorted(files.items())
    ref = read_geometry(ref_path)
    for _, path in others:
        mismatch = geometry_mismatch(read_geometry(path), ref)
        if mismatch:
            raise ModalityError(f"case '{case}': {path} and {ref_path} lie on different grids ({mismatch}); "
                                f"every modality file of a case must have the same size, spacing, origin "
                                f"and direction")


def check_output_outside(output: os.PathLike, inputs: Mapping[str, os.PathLike], command: str) -> None:
    """ModalityError (before anything is written) when ``output`` is one of the ``inputs``
    ({option: folder}) or lies inside one: a command never writes into its input."""
    target = Path(output).resolve()
    for option, folder in inputs.items():
        if folder is None:
            continue
        source = Path(folder).resolve()
        if target == source or source in target.parents:
            where = "is" if target == source else "lies inside"
            raise ModalityError(f"output folder {output} {where} the {option} folder {folder}; {command} never "
                                f"writes into its input: choose an output folder outside it")


def _link_or_copy(source: Path, destination: Path) -> None:
    try:
        os.symlink(source.resolve(), destination)
    except OSError:
        shutil.copyfile(source, destination)


def complete_cases(cases: CaseFiles, scratch: os.PathLike, file_ending: str, num_channels: int,
                   channel_names: Sequence[str], dimension: Optional[int] = None) -> Dict[str, Dict[str, List[str]]]:
    """Fill ``scratch`` with every channel of every case; return the per-case record
    ``{case: {"present": [names], "absent": [names]}}``. Every file is checked first: its
    dimension (``dimension``: the model's images', None: not checked), one grid per case, and
    its voxels (complete, finite, not all zero: ``availability.image_has_signal``)."""
    scratch = Path(scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    record = {}
    for case, files in cases.items():
        if not files:
            raise ModalityError(f"case '{case}' has no modality file")
        for path in files.values():
            check_dimension(case, path, dimension)
        check_case_geometry(case, files)
        reference = next(iter(files.values()))
        try:
            present = [c for c, path in sorted(files.items()) if image_has_signal(path)]
        except ImageFileError as e:
            raise ModalityError(f"case '{case}': {e}") from None
        if not present:
            raise ModalityError(f"case '{case}': every modality file is missing or all zero "
                                f"({', '.join(p.name for p in files.values())}); nothing to predict from")
        for channel in range(num_channels):
            destination = scratch / f"{case}_{channel:04d}{file_ending}"
            if channel in files:
                _link_or_copy(files[channel], destination)
            else:
                write_zero_like(reference, destination)
        record[case] = {"present": [channel_names[c] for c in present],
                        "absent": [channel_names[c] for c in range(num_channels) if c not in present]}
    return record
