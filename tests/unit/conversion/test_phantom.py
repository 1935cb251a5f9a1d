"""The synthetic BraTS-like generator: layout, determinism, speed, and modality-specific evidence."""
import time

import numpy as np
import pytest
import SimpleITK as sitk

from dataset_conversion.errors import ConversionError
from dataset_conversion.synthetic import generate_synthetic_brats

KEYS = ("flair", "t1", "t1ce", "t2")


def read(path):
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def case_arrays(folder, case):
    images = {k: read(folder / case / f"{case}_{k}.nii.gz").astype(np.float64) for k in KEYS}
    return images, read(folder / case / f"{case}_seg.nii.gz")


def test_brats_2020_layout_and_labels(tmp_path):
    ids = generate_synthetic_brats(tmp_path, num_cases=3, shape=(24, 28, 32), seed=1, spacing=(2.0, 1.0, 1.5))
    assert ids == ["SynBraTS_000", "SynBraTS_001", "SynBraTS_002"]
    for case in ids:
        names = sorted(p.name for p in (tmp_path / case).iterdir())
        assert names == sorted(f"{case}_{k}.nii.gz" for k in KEYS + ("seg",))
        image = sitk.ReadImage(str(tmp_path / case / f"{case}_t1.nii.gz"))
        assert image.GetSize() == (32, 28, 24) and image.GetSpacing() == (1.5, 1.0, 2.0)
        seg = read(tmp_path / case / f"{case}_seg.nii.gz")
        assert set(np.unique(seg)) == {0, 1, 2, 4}, "every case has all three tumour labels"


def test_same_seed_identical_files_other_seed_differs(tmp_path):
    a = generate_synthetic_brats(tmp_path / "a", num_cases=2, shape=(24, 24, 24), seed=7)
    generate_synthetic_brats(tmp_path / "b", num_cases=2, shape=(24, 24, 24), seed=7)
    generate_synthetic_brats(tmp_path / "c", num_cases=2, shape=(24, 24, 24), seed=8)
    for case in a:
        for key in KEYS + ("seg",):
            name = f"{case}/{case}_{key}.nii.gz"
            assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        assert not np.array_equal(read(tmp_path / "a" / f"{case}/{case}_flair.nii.gz"),
                                  read(tmp_path / "c" / f"{case}/{case}_flair.nii.gz"))


def test_cases_differ_and_do_not_depend_on_num_cases(tmp_path):
    generate_synthetic_brats(tmp_path / "one", num_cases=1, shape=(24, 24, 24), seed=3)
    generate_synthetic_brats(tmp_path / "two", num_cases=2, shape=(24, 24, 24), seed=3)
    first = "SynBraTS_000/SynBraTS_000_seg.nii.gz"
    assert (tmp_path / "one" / first).read_bytes() == (tmp_path / "two" / first).read_bytes()
    assert not np.array_equal(read(tmp_path / "two" / first),
                              read(tmp_path / "two" / "SynBraTS_001/SynBraTS_001_seg.nii.gz"))


def test_speed_of_a_48_cube_case(tmp_path):
    generate_synthetic_brats(tmp_path / "warmup", num_cases=1, shape=(16, 16, 16))
    start = time.perf_counter()
    generate_synthetic_brats(tmp_path, num_cases=2, shape=(48, 48, 48), seed=0)
    print(f"synthetic 48^3 case: {(time.perf_counter() - start) / 2:.3f} s")


def test_modalities_carry_different_evidence(tmp_path):
    ids = generate_synthetic_brats(tmp_path, num_cases=4, shape=(32, 32, 32), seed=0)
    for case in ids:
        images, seg = case_arrays(tmp_path, case)
        brain = images["t1"] > 0
        healthy, edema, core, enhancing = brain & (seg == 0), seg == 2, seg == 1, seg == 4
        mean = {k: {n: v[m].mean() for n, m in (("healthy", healthy), ("edema", edema), ("core", core),
                                                    ("enhancing", enhancing))} for k, v in images.items()}
        assert mean["flair"]["edema"] > 1.4 * mean["flair"]["healthy"]
        assert mean["t2"]["edema"] > 1.4 * mean["t2"]["healthy"]
        assert mean["t1ce"]["enhancing"] > 1.4 * mean["t1ce"]["core"]
        assert mean["t1ce"]["enhancing"] > 1.3 * mean["t1ce"]["healthy"]
        # T1 shows little: the tumour at most slightly darker than healthy brain, never brighter
        assert 0.6 * mean["t1"]["healthy"] < mean["t1"]["edema"] < 1.1 * mean["t1"]["healthy"]
        assert np.all(images["flair"][~brain] == 0), "skull-stripped: zero background"


def test_drop_files_and_unlabelled(tmp_path):
    generate_synthetic_brats(tmp_path, num_cases=3, shape=(24, 24, 24), drop_files={1: ["T1c", "t2"]},
                             labelled=False, prefix="Test")
    assert sorted(p.name for p in (tmp_path / "Test_001").iterdir()) == ["Test_001_flair.nii.gz", "Test_001_t1.nii.gz"]
    assert len(list((tmp_path / "Test_000").iterdir())) == 4
    # writing again into the same folder removes files that are now dropped
    generate_synthetic_brats(tmp_path, num_cases=3, shape=(24, 24, 24), drop_files={0: ["flair"]},
                             labelled=False, prefix="Test")
    assert not (tmp_path / "Test_000" / "Test_000_flair.nii.gz").exists()


@pytest.mark.parametrize("kwargs, words", [
    ({"shape": (8, 24, 24)}, "shape"),
    ({"drop_files": {5: ["t1"]}}, "index 5"),
    ({"drop_files": {0: ["pd"]}}, "'pd'"),
    ({"seed": -1}, "seed"),
])
def test_bad_arguments(tmp_path, kwargs, words):
    with pytest.raises(ConversionError, match=words):
        generate_synthetic_brats(tmp_path, num_cases=2, **{"shape": (24, 24, 24), **kwargs})


def test_demo_test_cases_lack_modalities_and_the_copy_leaves_zero_files_out(tmp_path):
    from dataset_conversion.phantom_dataset import copy_present_files, test_case_absent_modalities
    from nnunet_prism.modalities import BRATS_MODALITIES

    pattern = test_case_absent_modalities(5)
    assert pattern[0] == ("T1c", "T2") and 3 not in pattern and pattern[4] == pattern[0]
    assert all(set(names) < set(BRATS_MODALITIES) for names in pattern.values())  # never all four
    source = tmp_path / "imagesTs"
    source.mkdir()
    for name, value in [("Case_000_0000.nii.gz", 1.0), ("Case_000_0001.nii.gz", 0.0)]:
        sitk.WriteImage(sitk.GetImageFromArray(np.full((4, 4, 4), value, np.float32)), str(source / name))
    copied = copy_present_files(source, tmp_path / "given")
    assert [p.name for p in copied.iterdir()] == ["Case_000_0000.nii.gz"]
    assert sorted(p.name for p in source.iterdir()) == ["Case_000_0000.nii.gz", "Case_000_0001.nii.gz"]
