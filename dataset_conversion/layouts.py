"""Which BraTS label set a source folder holds: detected from file names and case ids, and where
a label value that the chosen set lacks belongs, and a converter's choice of set. The sets themselves are one table, in
``nnunet_prism.brats_label_sets`` (evaluation reads it too)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from dataset_conversion.errors import ConversionError
from nnunet_prism.brats_label_sets import (LAYOUT_2020, LAYOUT_2023, LAYOUT_MEN, LAYOUT_MET, LAYOUT_PED, LAYOUTS,
                                           BratsLayout, LabelSetError, get_layout)


def conversion_layout(name: str) -> BratsLayout:
    """The table row of a release or task name given to a converter (``get_layout``); an unknown
    name is a ConversionError, the converters' error."""
    try:
        return get_layout(name)
    except LabelSetError as e:
        raise ConversionError(str(e)) from None


def layout_by_prefix(case_id: str) -> BratsLayout:
    """The 2023-style layout of a case id: by its task prefix (BraTS-MET, -PED, -MEN), else the
    2023 glioma set (a label 4 then means the 2024 set; see ``convert_brats``)."""
    for layout in (LAYOUT_MET, LAYOUT_PED, LAYOUT_MEN):
        if case_id.startswith(layout.case_prefix):
            return layout
    return LAYOUT_2023


def detect_layout(case_folder: Path) -> Optional[BratsLayout]:
    """The layout whose image files appear in ``case_folder`` (None if none's do)."""
    names = [p.name for p in case_folder.iterdir() if p.is_file()]
    found = {layout.naming for layout in (LAYOUT_2020, LAYOUT_2023)
             if any(layout.key_of(n) in layout.image_keys for n in names)}
    if len(found) > 1:
        raise ConversionError(f"case '{case_folder.name}': folder {case_folder} holds files of both the "
                              f"2018-2021 and the 2023 BraTS layout; keep one.")
    if not found:
        return None
    return LAYOUT_2020 if found == {"2020"} else layout_by_prefix(case_folder.name)


def label_hint(value: int, layout: BratsLayout) -> str:
    """Where a label value that ``layout`` does not have belongs: the sets that define it and
    their ``--layout``, or ""."""
    owners = [other for other in LAYOUTS.values()
              if other.naming == layout.naming and value in other.brats_names and other is not layout]
    if not owners:
        return ""
    shown = "; ".join(f"{o.brats_names[value]} in the {o.title} set (--layout {o.name})" for o in owners)
    return f" Label {value} is the {shown}."
