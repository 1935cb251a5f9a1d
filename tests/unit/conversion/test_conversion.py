"""BraTS -> nnU-Net conversion: both layouts, labels, availability, simulated missingness, and
nnU-Net's own dataset check."""
import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from dataset_conversion.availability import simulate_availability
from dataset_conversion.brats import convert_brats
from dataset_conversion.errors import ConversionError
from dataset_conversion.labels import brats_predictions_to_original
from dataset_conversion.synthetic import generate_synthetic_brats
from nnunet_prism.modalities import AVAILABILITY_KEY

SHAPE = (24, 24, 24)
KEYS_2020 = ("flair", "t1", "t1ce", "t2")
KEYS_2023 = ("t2f", "t1n", "t1c", "t2w")
TO_NNUNET_2020 = {0: 0, 1: 2, 2: 1, 4: 3}


def read(path):
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def relabel(seg, mapping):
    out = np.zeros_like(seg)
    for a, b in mapping.items():
        out[seg == a] = b
    return out


def dataset_json(folder):
    return json.loads((folder / "dataset.json").read_text())


def to_2023_layout(src, dst):
    """Copy a BraTS 2020-layout folder as the 2023 layout (BraTS-GLI-xxxxx-000-t2f.nii.gz, labels 0/1/2/3)."""
    names = {}
    for i, case in enumerate(sorted(p.name for p in src.iterdir())):
        new = f"BraTS-GLI-{i:05d}-000"
        names[case] = new
        (dst / new).mkdir(parents=True)
        for old_key, key in zip(KEYS_2020, KEYS_2023):
            if (src / case / f"{case}_{old_key}.nii.gz").exists():
                shutil.copy(src / case / f"{case}_{old_key}.nii.gz", dst / new / f"{new}-{key}.nii.gz")
        seg_file = src / case / f"{case}_seg.nii.gz"
        if seg_file.exists():
            image = sitk.ReadImage(str(seg_file))
            seg = sitk.GetImageFromArray(relabel(sitk.GetArrayFromImage(image), {0: 0, 1: 1, 2: 2, 4: 3}))
            seg.CopyInformation(image)
            sitk.WriteImage(seg, str(dst / new / f"{new}-seg.nii.gz"))
    return names


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """4 labelled cases (case 1 without its T1c file) and 2 unlabelled ones (case 0 without T2)."""
    root = tmp_path_factory.mktemp("brats")
    generate_synthetic_brats(root / "train", num_cases=4, shape=SHAPE, seed=0, drop_files={1: ["t1ce"]})
    generate_synthetic_brats(root / "test", num_cases=2, shape=SHAPE, seed=1, prefix="SynTest",
                             labelled=False, drop_files={0: ["t2"]})
    return root


def test_2020_layout_region_based(source, tmp_path):
    folder = convert_brats([source / "train", source / "test"], 11, "Syn", raw_root=tmp_path)
    assert folder == tmp_path / "Dataset011_Syn"
    assert [p.name for p in tmp_path.iterdir()] == ["Dataset011_Syn"], "no temporary folder left behind"
    dj = dataset_json(folder)
    assert dj["channel_names"] == {"0": "FLAIR", "1": "T1", "2": "T1c", "3": "T2"}
    assert dj["labels"] == {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": [3]}
    assert dj["regions_class_order"] == [1, 2, 3]
    assert (dj["numTraining"], dj["numTest"], dj["file_ending"], dj["brats_layout"]) == (4, 2, ".nii.gz", "2020")
    assert "missing_simulation" not in dj

    case = "SynBraTS_002"
    for channel, key in enumerate(KEYS_2020):  # channel order FLAIR, T1, T1c, T2, files unchanged
        assert (folder / "imagesTr" / f"{case}_{channel:04d}.nii.gz").read_bytes() == \
               (source / "train" / case / f"{case}_{key}.nii.gz").read_bytes()
    label = read(folder / "labelsTr" / f"{case}.nii.gz")
    np.testing.assert_array_equal(label, relabel(read(source / "train" / case / f"{case}_seg.nii.gz"), TO_NNUNET_2020))
    assert sorted(p.name for p in (folder / "labelsTr").iterdir()) == [f"SynBraTS_{i:03d}.nii.gz" for i in range(4)]
    assert sorted(p.name for p in (folder / "imagesTs").iterdir()) == \
           [f"SynTest_{i:03d}_{c:04d}.nii.gz" for i in range(2) for c in range(4)]


def test_label_based(source, tmp_path):
    folder = convert_brats(source / "train", 12, raw_root=tmp_path, label_based=True)
    dj = dataset_json(folder)
    assert folder.name == "Dataset012_BraTS"
    assert dj["labels"] == {"background": 0, "edema": 1, "necrosis": 2, "enhancing": 3}
    assert "regions_class_order" not in dj
    assert set(np.unique(read(folder / "labelsTr" / "SynBraTS_000.nii.gz"))) == {0, 1, 2, 3}


def test_absent_files_become_zero_images_and_are_recorded(source, tmp_path):
    folder = convert_brats([source / "train", source / "test"], 13, raw_root=tmp_path)
    record = dataset_json(folder)[AVAILABILITY_KEY]
    assert record == {"SynBraTS_000": [1, 1, 1, 1], "SynBraTS_001": [1, 1, 0, 1], "SynBraTS_002": [1, 1, 1, 1],
                      "SynBraTS_003": [1, 1, 1, 1], "SynTest_000": [1, 1, 1, 0], "SynTest_001": [1, 1, 1, 1]}
    for zero_file, other in ((folder / "imagesTr" / "SynBraTS_001_0002.nii.gz", "SynBraTS_001_0000.nii.gz"),
                             (folder / "imagesTs" / "SynTest_000_0003.nii.gz", "SynTest_000_0000.nii.gz")):
        zero, ref = sitk.ReadImage(str(zero_file)), sitk.ReadImage(str(zero_file.parent / other))
        assert not sitk.GetArrayViewFromImage(zero).any()
        assert zero.GetSize() == ref.GetSize() and zero.GetSpacing() == ref.GetSpacing()
        assert zero.GetOrigin() == ref.GetOrigin() and zero.GetDirection() == ref.GetDirection()


def test_all_zero_file_counts_as_absent(source, tmp_path):
    train = tmp_path / "train"
    shutil.copytree(source / "train", train)
    flair = train / "SynBraTS_003" / "SynBraTS_003_flair.nii.gz"
    image = sitk.ReadImage(str(flair))
    sitk.WriteImage(image * 0, str(flair))
    folder = convert_brats(train, 14, raw_root=tmp_path / "raw")
    assert dataset_json(folder)[AVAILABILITY_KEY]["SynBraTS_003"] == [0, 1, 1, 1]


def test_2023_layout_autodetected_and_forced(source, tmp_path):
    names = to_2023_layout(source / "train", tmp_path / "brats23")
    reference = convert_brats(source / "train", 15, raw_root=tmp_path / "raw")
    for layout in ("auto", "2023"):
        folder = convert_brats(tmp_path / "brats23", 16, raw_root=tmp_path / "raw", layout=layout, overwrite=True)
        dj = dataset_json(folder)
        assert dj["brats_layout"] == "2023" and dj["numTraining"] == 4
        for old, new in names.items():
            np.testing.assert_array_equal(read(folder / "labelsTr" / f"{new}.nii.gz"),
                                          read(reference / "labelsTr" / f"{old}.nii.gz"))
            assert (folder / "imagesTr" / f"{new}_0000.nii.gz").read_bytes() == \
                   (reference / "imagesTr" / f"{old}_0000.nii.gz").read_bytes()
        assert dj[AVAILABILITY_KEY]["BraTS-GLI-00001-000"] == [1, 1, 0, 1]
    with pytest.raises(ConversionError, match="no modality file"):
        convert_brats(tmp_path / "brats23", 17, raw_root=tmp_path / "raw", layout="2020")


@pytest.mark.parametrize("layout", ["2020", "2023"])
def test_predictions_back_to_brats_labels_round_trip(source, tmp_path, layout):
    src = source / "train"
    if layout == "2023":
        to_2023_layout(src, tmp_path / "brats23")
        src = tmp_path / "brats23"
    folder = convert_brats(src, 18, raw_root=tmp_path / "raw")
    out = tmp_path / "back"
    written = brats_predictions_to_original(folder / "labelsTr", out, layout)
    assert len(written) == 4
    sep = "_" if layout == "2020" else "-"
    for path in written:
        case = path.name[:-len(".nii.gz")]
        original = sitk.ReadImage(str(src / case / f"{case}{sep}seg.nii.gz"))
        back = sitk.ReadImage(str(path))
        np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(original))
        assert back.GetOrigin() == original.GetOrigin() and back.GetSpacing() == original.GetSpacing()
    assert set(np.unique(read(written[0]))) == ({0, 1, 2, 4} if layout == "2020" else {0, 1, 2, 3})


def test_prediction_conversion_errors(source, tmp_path):
    folder = convert_brats(source / "train", 19, raw_root=tmp_path / "raw")
    with pytest.raises(ConversionError, match="prediction folder"):
        brats_predictions_to_original(folder / "labelsTr", folder / "labelsTr", "2020")
    with pytest.raises(ConversionError, match="layout"):
        brats_predictions_to_original(folder / "labelsTr", tmp_path / "out", "auto")
    bad = tmp_path / "bad"
    bad.mkdir()
    sitk.WriteImage(sitk.GetImageFromArray(np.full((4, 4, 4), 4, np.uint8)), str(bad / "case_x.nii.gz"))
    with pytest.raises(ConversionError, match=r"case_x\.nii\.gz.*value 4"):
        brats_predictions_to_original(bad, tmp_path / "out", "2020")


def test_simulated_missingness_rates_reproducible_and_never_empty():
    rates = [0.2, 0.4, 0.6, 0.8]
    complete = np.ones((50, 4), dtype=bool)
    a = simulate_availability(complete, rates, seed=3)
    np.testing.assert_array_equal(a, simulate_availability(complete, rates, seed=3))
    assert not np.array_equal(a, simulate_availability(complete, rates, seed=4))
    np.testing.assert_allclose(1 - a.mean(axis=0), rates, atol=0.05)
    assert a.any(axis=1).all()

    # combined with genuinely absent files: AND, still >= 1 modality per case
    genuine = complete.copy()
    genuine[:10, 0] = False   # FLAIR file absent in 10 cases
    genuine[10:15, :3] = False  # only T2 in 5 cases
    b = simulate_availability(genuine, rates, seed=3)
    assert not (b & ~genuine).any(), "a genuinely absent modality never becomes present"
    assert b.any(axis=1).all()
    assert b[10:15, 3].all()


def test_missing_rates_in_conversion(source, tmp_path):
    train = tmp_path / "train"
    generate_synthetic_brats(train, num_cases=10, shape=(16, 16, 16), seed=5)
    raw = tmp_path / "raw"
    folder = convert_brats(train, 21, raw_root=raw, missing_rates=[0.2, 0.4, 0.6, 0.8], seed=1)
    dj = dataset_json(folder)
    assert dj["missing_simulation"] == {"rates": [0.2, 0.4, 0.6, 0.8], "seed": 1}
    rows = np.array([dj[AVAILABILITY_KEY][f"SynBraTS_{i:03d}"] for i in range(10)], dtype=bool)
    assert rows.any(axis=1).all()
    assert rows.mean(axis=0)[0] > rows.mean(axis=0)[3]
    for i, row in enumerate(rows):
        for channel, present in enumerate(row):
            data = read(folder / "imagesTr" / f"SynBraTS_{i:03d}_{channel:04d}.nii.gz")
            assert data.any() == present, (i, channel)
    again = convert_brats(train, 22, raw_root=raw, missing_rates=[0.2, 0.4, 0.6, 0.8], seed=1)
    assert dataset_json(again)[AVAILABILITY_KEY] == dj[AVAILABILITY_KEY]


def test_parallel_conversion_matches_serial(source, tmp_path):
    a = convert_brats([source / "train", source / "test"], 23, raw_root=tmp_path / "a",
                      missing_rates=[0.2, 0.4, 0.6, 0.8], seed=2)
    b = convert_brats([source / "train", source / "test"], 23, raw_root=tmp_path / "b",
                      missing_rates=[0.2, 0.4, 0.6, 0.8], seed=2, num_workers=2)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f


def test_nnunet_verify_dataset_integrity_accepts_the_dataset(source, tmp_path, monkeypatch):
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    monkeypatch.setenv("nnUNet_raw", str(tmp_path))
    folder = convert_brats([source / "train", source / "test"], 24, "Verify", missing_rates=[0.2, 0.4, 0.6, 0.8])
    assert folder.parent == tmp_path and dataset_json(folder)["numTraining"] == 4
    verify_dataset_integrity(str(folder), num_processes=1)
