"""BraTS folder layouts: file names per modality and the label convention of each release.

2018-2021 ("2020"): ``<case>/<case>_{flair,t1,t1ce,t2,seg}.nii.gz``, labels 0/1/2/4
(1 necrotic/non-enhancing core, 2 edema, 4 enhancing).
2023 glioma ("2023"): ``<case>/<case>-{t2f,t1n,t1c,t2w,seg}.nii.gz``, labels 0/1/2/3
(1 necrotic core, 2 edema, 3 enhancing).
Both map to nnU-Net's BraTS convention 0 background, 1 edema, 2 necrosis, 3 enhancing.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

from dataset_conversion.errors import ConversionError

#: file extensions accepted in a source folder (nnU-Net output is always .nii.gz)
EXTENSIONS = (".nii.gz", ".nii")


@dataclass(frozen=True)
class BratsLayout:
    name: str                       # "2020" (covers 2018-2021) or "2023"
    separator: str                  # between case id and file key
    image_keys: Tuple[str, ...]     # file keys in channel order FLAIR, T1, T1c, T2
    seg_key: str
    to_nnunet: Dict[int, int]       # BraTS label -> nnU-Net label (0 bg, 1 edema, 2 necrosis, 3 enhancing)

    @property
    def brats_labels(self) -> Tuple[int, ...]:
        return tuple(sorted(self.to_nnunet))

    def file_name(self, case_id: str, key: str, extension: str = ".nii.gz") -> str:
        return f"{case_id}{self.separator}{key}{extension}"

    def key_of(self, file_name: str) -> Optional[str]:
        """The file key (``flair``, ``seg``, ...) of ``file_name`` in this layout, or None."""
        for key in self.image_keys + (self.seg_key,):
            if any(file_name.endswith(f"{self.separator}{key}{ext}") for ext in EXTENSIONS):
                return key
        return None


LAYOUT_2020 = BratsLayout("2020", "_", ("flair", "t1", "t1ce", "t2"), "seg", {0: 0, 1: 2, 2: 1, 4: 3})
LAYOUT_2023 = BratsLayout("2023", "-", ("t2f", "t1n", "t1c", "t2w"), "seg", {0: 0, 1: 2, 2: 1, 3: 3})
LAYOUTS = {"2020": LAYOUT_2020, "2023": LAYOUT_2023}
_ALIASES = {"2018": "2020", "2019": "2020", "2021": "2020"}


def get_layout(name: str) -> BratsLayout:
    """Layout by release name ("2018".."2021" are the 2020 layout, "2023")."""
    key = _ALIASES.get(str(name), str(name))
    if key not in LAYOUTS:
        raise ConversionError(f"unknown BraTS layout '{name}'; use one of 2018, 2019, 2020, 2021, 2023 or auto.")
    return LAYOUTS[key]


def detect_layout(case_folder: Path) -> Optional[BratsLayout]:
    """The layout whose image files appear in ``case_folder`` (None if neither's do)."""
    names = [p.name for p in case_folder.iterdir() if p.is_file()]
    found = [layout for layout in LAYOUTS.values()
             if any(layout.key_of(n) in layout.image_keys for n in names)]
    if len(found) > 1:
        raise ConversionError(f"case '{case_folder.name}': folder {case_folder} holds files of both the "
                              f"2018-2021 and the 2023 BraTS layout; keep one.")
    return found[0] if found else None
