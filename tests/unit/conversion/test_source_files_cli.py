"""``nnunet_prism convert-brats`` (run as the user runs it, in its own process) names every file of
a case folder it would not read correctly instead of writing the modality as an all-zero image:
a broken link or a folder under a modality's name, a modality file in capitals or with another
case's id, NaN or infinite voxels (SimpleITK reads them as 0), a truncated file (with the bytes it
held). Each is one line with exit code 2, and the source and an earlier dataset stay as they were."""
import os
import shutil
import zlib

import numpy as np
import pytest
import SimpleITK as sitk

from dataset_conversion.brats import convert_brats
from dataset_conversion.synthetic import generate_synthetic_brats
from helpers.cli import cli
from helpers.files import tree_hashes
from helpers.input_checks import assert_one_line_error

SHAPE = (16, 16, 16)
CASE = "SynBraTS_000"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("pristine")
    generate_synthetic_brats(root / "src", num_cases=2, shape=SHAPE, seed=0)
    return root / "src"


@pytest.fixture
def src(pristine, tmp_path):
    shutil.copytree(pristine, tmp_path / "src", symlinks=True)
    return tmp_path / "src"


def case_file(src, key, case=CASE):
    return src / case / f"{case}_{key}.nii.gz"


def broken_link(src):
    case_file(src, "t1ce").unlink()
    os.symlink(src / "gone.nii.gz", case_file(src, "t1ce"))


def folder_named_like_a_file(src):
    case_file(src, "t1ce").unlink()
    case_file(src, "t1ce").mkdir()


def capitals(src):
    case_file(src, "t1ce").rename(src / CASE / f"{CASE}_T1CE.nii.gz")


def other_case_id(src):
    case_file(src, "t1ce").unlink()
    shutil.copy(case_file(src, "t1ce", "SynBraTS_001"), src / CASE)


def with_voxels(change):
    """The case's T2 rewritten as float32 with ``change`` applied to its voxels."""
    def breaker(src):
        image = sitk.ReadImage(str(case_file(src, "t2")))
        array = sitk.GetArrayFromImage(image).astype(np.float32)
        change(array)
        changed = sitk.GetImageFromArray(array)
        changed.CopyInformation(image)
        sitk.WriteImage(changed, str(case_file(src, "t2")))
    return breaker


def some_nan_and_inf(array):
    array[0, 0, :2] = np.nan
    array[1, 1, 1] = -np.inf


def all_nan(array):
    array[...] = np.nan


BAD = {
    "broken link": (broken_link, [f"{CASE}_t1ce.nii.gz is a broken link to ", "gone.nii.gz"]),
    "folder": (folder_named_like_a_file, [f"{CASE}_t1ce.nii.gz is a folder, not an image file"]),
    "capitals": (capitals, [f"{CASE}_T1CE.nii.gz is not named {CASE}_t1ce.nii.gz (BraTS file names are lower case)"]),
    "other case id": (other_case_id, ["SynBraTS_001_t1ce.nii.gz carries the case id 'SynBraTS_001', not its "
                                      f"folder's '{CASE}'"]),
    "NaN and inf": (with_voxels(some_nan_and_inf), [f"{CASE}_t2.nii.gz has 3 non-finite voxels (2 NaN, 1 infinite, "
                                                    f"of 4,096)", "would read them as 0"]),
    "all NaN": (with_voxels(all_nan), [f"{CASE}_t2.nii.gz has 4,096 non-finite voxels (4,096 NaN, 0 infinite"]),
}


@pytest.mark.parametrize("name", list(BAD))
def test_a_file_that_would_be_read_wrongly_is_named(src, tmp_path, name):
    breaker, needles = BAD[name]
    breaker(src)
    raw = tmp_path / "raw"
    before = tree_hashes(src)
    r = cli("convert-brats", "-i", src, "-d", 41, "--raw", raw)
    assert_one_line_error(r.returncode, r.stderr.strip().splitlines(), "convert-brats", f"case '{CASE}'", *needles)
    assert tree_hashes(src) == before and not raw.exists()


def test_truncation_names_the_bytes_held_and_an_existing_dataset_names_the_option(src, tmp_path):
    raw = tmp_path / "raw"
    convert_brats(src, 42, raw_root=raw)
    earlier = tree_hashes(raw)
    r = cli("convert-brats", "-i", src, "-d", 42, "--raw", raw)
    assert_one_line_error(r.returncode, r.stderr.strip().splitlines(), "convert-brats", "already exists",
                          "pass --overwrite to replace it")
    path = case_file(src, "seg")
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    held = len(zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data[:len(data) // 2]))
    before = tree_hashes(src)
    r = cli("convert-brats", "-i", src, "-d", 42, "--raw", raw, "--overwrite")
    assert_one_line_error(r.returncode, r.stderr.strip().splitlines(), "convert-brats", f"case '{CASE}'",
                          f"{path} is truncated", f"after {held:,} decompressed bytes")
    assert tree_hashes(src) == before and tree_hashes(raw) == earlier
