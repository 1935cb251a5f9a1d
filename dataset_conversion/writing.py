"""Write one validated case into an nnU-Net raw folder: ``images/<case>_000{c}.nii.gz`` in channel
order (absent modalities as all-zero images on the case's voxel grid) and, when labelled,
``labels/<case>.nii.gz`` in nnU-Net's 0/1/2/3 convention."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional, Sequence

import SimpleITK as sitk

from dataset_conversion.labels import brats_to_nnunet
from nnunet_prism.brats_label_sets import BratsLayout
from nnunet_prism.image_io import write_zero_like
from dataset_conversion.sources import SourceCase

FILE_ENDING = ".nii.gz"


def _copy_image(source: Path, destination: Path) -> None:
    if source.name.endswith(FILE_ENDING):
        shutil.copyfile(source, destination)
    else:  # .nii -> .nii.gz
        sitk.WriteImage(sitk.ReadImage(str(source)), str(destination))


def write_labels(seg_file: Path, destination: Path, layout: BratsLayout, case_id: str) -> None:
    """BraTS label file -> nnU-Net 0/1/2/3 (uint8), header of the source label file kept."""
    image = sitk.ReadImage(str(seg_file))
    labels = brats_to_nnunet(sitk.GetArrayViewFromImage(image), layout,
                             f"case '{case_id}': label file {seg_file.name}")
    out = sitk.GetImageFromArray(labels)
    out.CopyInformation(image)
    sitk.WriteImage(out, str(destination))


def write_case(case: SourceCase, layout: BratsLayout, available: Sequence[bool], images_dir: Path,
               labels_dir: Optional[Path]) -> None:
    """Write ``case``: channel c copied when ``available[c]``, else an all-zero image; labels into
    ``labels_dir`` when given."""
    reference = case.present_files[0]
    for channel, (source, present) in enumerate(zip(case.images, available)):
        destination = images_dir / f"{case.case_id}_{channel:04d}{FILE_ENDING}"
        if present and source is not None:
            _copy_image(source, destination)
        else:
            write_zero_like(reference, destination)
    if labels_dir is not None:
        write_labels(case.seg, labels_dir / f"{case.case_id}{FILE_ENDING}", layout, case.case_id)
