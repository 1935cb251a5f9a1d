"""Completing an input folder with absent modality files (``nnunet_prism predict``'s first step)."""
import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_prism.inference.absent_modalities import complete_cases, group_case_files
from nnunet_prism.modalities import BRATS_MODALITIES, ModalityError


def write(path, array, spacing=(1.0, 1.0, 1.0)):
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.SetSpacing(spacing)
    image.SetOrigin((1.0, 2.0, 3.0))
    sitk.WriteImage(image, str(path))


@pytest.fixture
def folder(tmp_path):
    given = tmp_path / "given"
    given.mkdir()
    signal = np.random.default_rng(0).random((6, 7, 8)) + 0.1
    write(given / "caseA_0000.nii.gz", signal)                 # FLAIR present
    write(given / "caseA_0001.nii.gz", np.zeros((6, 7, 8)))    # T1 given but all zero
    write(given / "caseA_0003.nii.gz", signal * 2)             # T2 present; T1c file absent
    return given


def test_absent_and_all_zero_files_are_recorded_absent_and_filled_with_zeros(folder, tmp_path):
    scratch = tmp_path / "scratch"
    cases = group_case_files(folder, ".nii.gz", 4)
    record = complete_cases(cases, scratch, ".nii.gz", 4, BRATS_MODALITIES)
    assert record == {"caseA": {"present": ["FLAIR", "T2"], "absent": ["T1", "T1c"]}}
    assert sorted(p.name for p in scratch.iterdir()) == [f"caseA_{c:04d}.nii.gz" for c in range(4)]
    filled = sitk.ReadImage(str(scratch / "caseA_0002.nii.gz"))
    assert not sitk.GetArrayFromImage(filled).any()
    assert filled.GetSize() == (8, 7, 6) and filled.GetOrigin() == (1.0, 2.0, 3.0)
    assert sorted(p.name for p in folder.iterdir()) == ["caseA_0000.nii.gz", "caseA_0001.nii.gz",
                                                       "caseA_0003.nii.gz"], "input untouched"


def test_case_with_only_zero_files_is_one_clear_error(tmp_path):
    given = tmp_path / "given"
    given.mkdir()
    write(given / "caseB_0002.nii.gz", np.zeros((4, 4, 4)))
    with pytest.raises(ModalityError, match="case 'caseB'.*all zero"):
        complete_cases(group_case_files(given, ".nii.gz", 4), tmp_path / "s", ".nii.gz", 4, BRATS_MODALITIES)


def test_mismatched_geometry_names_the_files(folder, tmp_path):
    write(folder / "caseA_0002.nii.gz", np.ones((6, 7, 8)), spacing=(2.0, 1.0, 1.0))
    with pytest.raises(ModalityError, match="caseA_0002.nii.gz"):
        complete_cases(group_case_files(folder, ".nii.gz", 4), tmp_path / "s", ".nii.gz", 4, BRATS_MODALITIES)
