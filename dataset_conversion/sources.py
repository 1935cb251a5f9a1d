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


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(EXTENSIONS)


def _why_unused(name: str, case_id: str, layout: BratsLayout) -> str:
    """Why ``name`` (an image file name in case ``case_id``'s folder) is not one of its files."""
    lower = name.lower()
    for key in layout.image_keys + (layout.seg_key,):
        for ext in EXTENSIONS:
            expected = layout.file_name(case_id, key, ext)
            if lower == expected.lower():
                return f"{name} is not named {expected} (BraTS file names are lower case)"
            if lower.endswith(f"{layout.separator}{key}{ext}"):
                other = name[:-len(f"{layout.separator}{key}{ext}")]
                return f"{name} carries the case id '{other}', not its folder's '{case_id}'"
    return f"{name} is not a file of the BraTS {layout.name} layout"


def _collect_files(folder: Path, layout: BratsLayout) -> Dict[str, Path]:
    """{file key: path} for the files of ``layout`` in ``folder``, named exactly
    ``<case><sep><key><ext>``. Everything else in the folder that is named like an image, and a
    file of the right name that is a folder or a broken link, is a ConversionError naming it: a
    modality file that is not read would be written as an all-zero image and recorded absent."""
    case_id, found, unused = folder.name, {}, []
    names = {layout.file_name(case_id, key, ext): key
             for key in layout.image_keys + (layout.seg_key,) for ext in EXTENSIONS}
    for path in sorted(folder.iterdir()):
        key = names.get(path.name)
        if key is None:
            if _is_image_name(path.name) and not path.name.startswith("."):  # hidden: e.g. macOS's ._ files
                unused.append(_why_unused(path.name, case_id, layout))
            continue
        if path.is_dir():
            raise ConversionError(f"case '{case_id}': {path} is a folder, not an image file.")
        if not path.is_file():
            target = f" to {os.readlink(path)}" if path.is_symlink() else ""
            raise ConversionError(f"case '{case_id}': {path} is a broken link{target}: the file it names does "
                                  f"not exist.")
        if key in found:
            raise ConversionError(f"case '{case_id}': two files for '{key}' in {folder} "
                                  f"({found[key].name} and {path.name}); keep one.")
        found[key] = path
    if unused and any(key in found for key in layout.image_keys):  # else: the error of no modality file
        raise ConversionError(f"case '{case_id}': {'; '.join(unused)}; rename or move "
                              f"{'it' if len(unused) == 1 else 'them'} out of {folder} (expected "
                              f"{layout.file_name(case_id, layout.image_keys[0])}, ...).")
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


def _describe(path: Path) -> str:
    """``path``'s name, marked when it is a folder or a broken link."""
    if path.is_dir():
        return f"{path.name} (a folder)"
    return f"{path.name} (a broken link)" if path.is_symlink() and not path.exists() else path.name


def _no_modality_error(folder: Path, layout: Optional[BratsLayout]) -> ConversionError:
    entries = sorted(p.name for p in folder.iterdir())
    if not entries:
        return ConversionError(f"case '{folder.name}': folder {folder} is empty.")
    examples = ([layout.file_name(folder.name, layout.image_keys[0])] if layout else
                [f"{folder.name}_flair.nii.gz", f"{folder.name}-t2f.nii.gz"])
    images = [_describe(folder / n) for n in entries if _is_image_name(n)]
    held = f"; it holds {', '.join(images)}" if images else ""
    return ConversionError(f"case '{folder.name}': no modality file in {folder} "
                           f"(expected e.g. {' or '.join(examples)}){held}.")


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
