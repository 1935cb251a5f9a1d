"""BraTS label conventions: BraTS files <-> nnU-Net labels and the ``dataset.json`` label entries.

nnU-Net side (as in nnU-Net's own BraTS example): 0 background, 1 edema, 2 necrotic /
non-enhancing core, 3 enhancing tumour, 4 the set's extra class (resection cavity in the 2024
glioma and metastasis sets, cystic component in the paediatric set); region-based training uses
the regions of the set's row in ``nnunet_prism.brats_label_sets.LAYOUTS`` (whole tumour {1,2,3}, tumour core {2,3},
enhancing tumour {3}, and e.g. resection cavity {4}, disjoint from the others).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Mapping, Union

import numpy as np
import SimpleITK as sitk

from dataset_conversion.errors import ConversionError, check_complete
from dataset_conversion.layouts import conversion_layout, label_hint
from nnunet_prism.brats_label_sets import LAYOUT_2023, BratsLayout
from dataset_conversion.staging import staged_files


def dataset_json_labels(label_based: bool = False, layout: BratsLayout = LAYOUT_2023) -> Dict:
    """The ``labels`` (and, region-based, ``regions_class_order``) entries of ``dataset.json``
    for ``layout``'s label set."""
    if label_based:
        return {"labels": {"background": 0, **dict(layout.plain_labels)}}
    return {"labels": {"background": 0, **{name: list(members) for name, members, _ in layout.regions}},
            "regions_class_order": [written for _, _, written in layout.regions]}


def _relabel(seg: np.ndarray, mapping: Mapping[int, int], what: str, convention: str,
             hint=lambda value: "") -> np.ndarray:
    """seg (any shape, integer-valued) with every value v replaced by mapping[v], as uint8."""
    values = np.unique(seg)
    bad = [v for v in values.tolist() if not np.isfinite(v) or v != int(v) or int(v) not in mapping]
    if bad:
        shown = ", ".join(f"{v:g}" for v in bad[:5])
        noun = "value" if len(bad) == 1 else "values"
        hints = "".join(hint(int(v)) for v in bad if np.isfinite(v) and v == int(v))
        raise ConversionError(f"{what} contains {noun} {shown} that are not {convention} labels "
                              f"({', '.join(map(str, sorted(mapping)))}).{hints}")
    table = np.zeros(max(mapping) + 1, dtype=np.uint8)
    for source, target in mapping.items():
        table[source] = target
    return table[seg.astype(np.int64)]


def brats_to_nnunet(seg: np.ndarray, layout: BratsLayout, what: str = "label map") -> np.ndarray:
    """BraTS labels of ``layout`` (2020: 0/1/2/4, 2023: 0/1/2/3, 2024: 0-4, ...) -> nnU-Net labels
    (uint8). A value of another BraTS set is named with that set's ``--layout``."""
    return _relabel(seg, layout.to_nnunet, what, f"BraTS {layout.name}", lambda v: label_hint(v, layout))


def nnunet_to_brats(seg: np.ndarray, layout: BratsLayout, what: str = "label map") -> np.ndarray:
    """nnU-Net labels -> BraTS labels of ``layout`` (uint8); exact inverse of ``brats_to_nnunet``."""
    inverse = {v: k for k, v in layout.to_nnunet.items()}
    return _relabel(seg, inverse, what, "nnU-Net BraTS")


def brats_predictions_to_original(in_dir: Union[str, os.PathLike], out_dir: Union[str, os.PathLike],
                                  layout: str, et_min_voxels: int = 0) -> List[Path]:
    """Every ``*.nii.gz`` of ``in_dir`` (nnU-Net predictions) written to ``out_dir`` under the same
    name in the BraTS convention of ``layout`` ("2020": 1/2/4, "2023": 1/2/3, "2024": 1/2/3/4 with
    4 the resection cavity, "ped": 1 ET/2 NETC/3 CC/4 ED, ...), header kept.
    Returns the written paths. ``out_dir`` must differ from ``in_dir``. Every file is checked
    complete before it is read; the files are written into a hidden folder beside ``out_dir`` and
    moved into it only when all are done, so an error leaves ``out_dir`` as it was.
    ``et_min_voxels`` > 0: a predicted enhancing tumour of fewer voxels becomes necrosis first
    (RFNet/mmFormer's post-processing, ``nnunet_prism.evaluation.postprocessing``)."""
    from nnunet_prism.evaluation.postprocessing import NNUNET_ET_LABEL, NNUNET_NCR_LABEL, suppress_small_et
    if et_min_voxels < 0:
        raise ConversionError(f"--et-min-voxels must be >= 0, got {et_min_voxels}.")
    if str(layout) == "auto":
        raise ConversionError("predictions do not tell their BraTS release; pass the layout the dataset was "
                              "converted with (its dataset.json says 'brats_layout').")
    brats_layout = conversion_layout(layout)
    in_dir, out_dir = Path(in_dir).resolve(), Path(out_dir).resolve()
    if not in_dir.is_dir():
        raise ConversionError(f"prediction folder {in_dir} does not exist or is not a folder.")
    if in_dir == out_dir:
        raise ConversionError(f"output folder {out_dir} is the prediction folder; choose another so "
                              f"no file is left half-converted.")
    files = sorted(in_dir.glob("*.nii.gz"))
    if not files:
        raise ConversionError(f"prediction folder {in_dir} holds no .nii.gz file.")
    with staged_files(out_dir) as stage:
        for path in files:
            check_complete(path, "prediction file ")
            try:
                image = sitk.ReadImage(str(path))
            except RuntimeError:
                raise ConversionError(f"cannot read prediction file {path} as an image.") from None
            seg = sitk.GetArrayViewFromImage(image)
            if et_min_voxels > 0:
                seg = suppress_small_et(seg, et_min_voxels, NNUNET_ET_LABEL, NNUNET_NCR_LABEL)
            seg = nnunet_to_brats(seg, brats_layout, f"prediction file {path}")
            out = sitk.GetImageFromArray(seg)
            out.CopyInformation(image)
            sitk.WriteImage(out, str(stage / path.name))
    return [out_dir / path.name for path in files]
