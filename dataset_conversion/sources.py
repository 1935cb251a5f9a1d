"""Find the cases of one or more BraTS source folders: ``<source>/<case>/<case><sep><key>.nii.gz``.

Only the folder structure and file names are looked at here (no image is read); every problem
found is a ``ConversionError`` naming the case and folder.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

from dataset_conversion.errors import ConversionError
from dataset_conversion.layouts import conversion_layout, detect_layout
from nnunet_prism.brats_label_sets import EXTENSIONS, BratsLayout

PathLike = Union[str, os.PathLike]


@dataclass(frozen=True)
class SourceCase:
    """One case folder: image files in channel order (None where absent) and the label file."""
    case_id: str
    folder: Path
    source: Path
    images: Tuple[Optional[Path], ...]
    seg: Optional[Path]

    @property
    def present_files(self) -> List[Path]:
        return [p for p in self.images if p is not None]


def _case_folders(source: Path) -> List[Path]:
    if not source.is_dir():
        raise ConversionError(f"source folder {source} does not exist or is not a folder.")
    folders = sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        loose = [p.name for p in source.iterdir() if p.name.endswith(EXTENSIONS)]
        what = (f"holds image files ({loose[0]}, ...) but no case folders; pass the folder above it"
                if loose else "is empty: it holds no case folders (expected <case>/<case>_flair.nii.gz, ...)")
        raise ConversionError(f"source folder {source} {what}.")
    return folders


def _collect_files(folder: Path, layout: BratsLayout) -> Dict[str, Path]:
    """{file key: path} for the files of ``layout`` in ``folder``; two files for one key is an error."""
    found: Dict[str, Path] = {}
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        key = layout.key_of(path.name)
        if key is None:
            continue
        if key in found:
            raise ConversionError(f"case '{folder.name}': two files for '{key}' in {folder} "
                                  f"({found[key].name} and {path.name}); keep one.")
        found[key] = path
    return found


def _resolve_layout(folders: Sequence[Path], layout: str) -> BratsLayout:
    if layout != "auto":
        return conversion_layout(layout)
    detected: Dict[str, Path] = {}
    for folder in folders:
        found = detect_layout(folder)
        if found is None:
            raise _no_modality_error(folder, None)
        detected.setdefault(found.name, folder)
    if len(detected) > 1:
        (a, fa), (b, fb) = list(detected.items())[:2]
        raise ConversionError(f"case '{fa.name}' uses the BraTS {a} layout but case '{fb.name}' uses the "
                              f"{b} layout; convert them separately or choose the layout explicitly.")
    return conversion_layout(next(iter(detected)))


def _no_modality_error(folder: Path, layout: Optional[BratsLayout]) -> ConversionError:
    if not any(folder.iterdir()):
        return ConversionError(f"case '{folder.name}': folder {folder} is empty.")
    examples = ([layout.file_name(folder.name, layout.image_keys[0])] if layout else
                [f"{folder.name}_flair.nii.gz", f"{folder.name}-t2f.nii.gz"])
    return ConversionError(f"case '{folder.name}': no modality file in {folder} "
                           f"(expected e.g. {' or '.join(examples)}).")


def find_cases(source_dirs: Sequence[PathLike], layout: str = "auto") -> Tuple[BratsLayout, List[SourceCase]]:
    """All cases of ``source_dirs`` (sorted by case id) and the layout they use.

    ``layout``: "auto" (detect; all cases must agree) or a release name ("2020", "2023", ...).
    """
    if isinstance(source_dirs, (str, os.PathLike)):
        source_dirs = [source_dirs]
    if not source_dirs:
        raise ConversionError("no source folder given.")
    by_source = [(Path(s).resolve(), _case_folders(Path(s).resolve())) for s in source_dirs]
    seen: Dict[str, Path] = {}
    for _, folders in by_source:
        for folder in folders:
            if folder.name in seen:
                raise ConversionError(f"case '{folder.name}' appears twice, in {seen[folder.name]} and in "
                                      f"{folder}; case ids must be unique.")
            seen[folder.name] = folder
    chosen = _resolve_layout([f for _, folders in by_source for f in folders], layout)

    cases = []
    for source, folders in by_source:
        for folder in folders:
            files = _collect_files(folder, chosen)
            images = tuple(files.get(key) for key in chosen.image_keys)
            if not any(images):
                raise _no_modality_error(folder, chosen)
            cases.append(SourceCase(folder.name, folder, source, images, files.get(chosen.seg_key)))
    return chosen, sorted(cases, key=lambda c: c.case_id)
