"""Availability from the data: one definition of "absent" (an all-zero channel), the record
checked against the images, ``nnunet_prism record-availability`` through the real command (the
test cases of imagesTs included; NaN or infinite voxels refused)."""
import json
import os

import numpy as np
import pytest
import SimpleITK as sitk

from dataset_conversion.brats import convert_brats
from dataset_conversion.cli import main as conversion_main
from dataset_conversion.synthetic import generate_synthetic_brats
from helpers.cli import cli
from helpers.files import tree_hashes
from helpers.input_checks import assert_one_line_error
from nnunet_prism.availability import FROM_DATA, RECORDED, channel_signal, resolve_availability
from nnunet_prism.cli import main
from nnunet_prism.modalities import AVAILABILITY_KEY, ModalityError, simulate_availability

NAMES = {"channel_names": {"0": "FLAIR", "1": "T1", "2": "T1c", "3": "T2"}}


def test_channel_signal_is_exact_zero():
    data = np.zeros((3, 4, 4))
    data[1, 2, 3] = 1e-30
    data[2, 0, 0] = -2.0
    assert channel_signal(data).tolist() == [False, True, True]


def test_resolve_prefers_the_record_and_checks_it_against_the_data():
    data = np.array([[1, 1, 0, 0], [1, 0, 1, 1]], dtype=bool)
    recorded = {**NAMES, AVAILABILITY_KEY: {"a": [1, 0, 0, 0], "b": [1, 0, 1, 1]}}
    available, source = resolve_availability(recorded, ["a", "b"], lambda keys: data)
    assert available.tolist() == [[True, False, False, False], [True, False, True, True]] and source == RECORDED
    available, source = resolve_availability(NAMES, ["a", "b"], lambda keys: data)
    assert available.tolist() == data.tolist() and source == FROM_DATA
    _, source = resolve_availability({**NAMES, AVAILABILITY_KEY: {"a": [1, 1, 0, 0]}}, ["a", "b"], lambda keys: data)
    assert source == f"{RECORDED} for 1 cases, {FROM_DATA} for 1"
    contradicting = {**NAMES, AVAILABILITY_KEY: {"a": [1, 1, 1, 0]}}
    with pytest.raises(ModalityError, match="case 'a': dataset.json records T1c as present but the image is all zero"):
        resolve_availability(contradicting, ["a", "b"], lambda keys: data)
    with pytest.raises(ModalityError, match="case 'b' has no modality"):
        resolve_availability(NAMES, ["a", "b"], lambda keys: np.array([[1, 0, 0, 0], [0, 0, 0, 0]], bool))


def test_one_simulation_rule_repairs_empty_cases_instead_of_failing():
    """The converter's --missing-rates and the trainers' missing_rates share this function: 300
    complete cases at 0.2/0.4/0.6/0.8 leave no case empty, and the realised rates stay close."""
    rates = [0.2, 0.4, 0.6, 0.8]
    available = simulate_availability(np.ones((300, 4), bool), rates, seed=0)
    assert available.any(axis=1).all()
    np.testing.assert_allclose(1 - available.mean(axis=0), rates, atol=0.05)
    genuine = np.ones((300, 4), bool)
    genuine[:, 0] = False  # FLAIR never there: repairs take the lowest-rate modality the case has
    repaired = simulate_availability(genuine, rates, seed=0)
    assert not repaired[:, 0].any() and repaired.any(axis=1).all()
    with pytest.raises(ModalityError, match="no modality before simulation"):
        simulate_availability(np.zeros((2, 4), bool), rates, seed=0)


@pytest.fixture
def raw_dataset(tmp_path, monkeypatch):
    """A converted phantom set (4 cases, simulated missingness: absent channels are zero files)."""
    src, raw = tmp_path / "src", tmp_path / "raw"
    assert conversion_main(["make-phantom", "-o", str(src), "-n", "4", "--shape", "16", "16", "16", "--seed", "3"]) == 0
    assert conversion_main(["convert-brats", "-i", str(src), "-d", "61", "-n", "Rec", "--raw", str(raw),
                            "--missing-rates", "0.2,0.4,0.6,0.8", "--seed", "1"]) == 0
    monkeypatch.setenv("nnUNet_raw", str(raw))
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path / "pre"))
    return raw / "Dataset061_Rec"


def test_record_availability_writes_the_converters_record_for_a_dataset_without_one(raw_dataset, capsys):
    dataset_json = raw_dataset / "dataset.json"
    original = json.loads(dataset_json.read_text())
    stripped = {k: v for k, v in original.items() if k != AVAILABILITY_KEY}
    dataset_json.write_text(json.dumps(stripped))
    assert main(["record-availability", "-d", "61"]) == 0
    assert json.loads(dataset_json.read_text())[AVAILABILITY_KEY] == original[AVAILABILITY_KEY]
    # run again: the record agrees with the images and is kept untouched
    before = tree_hashes(raw_dataset)
    assert main(["record-availability", "-d", "61"]) == 0
    assert "agrees with the images" in capsys.readouterr().out and tree_hashes(raw_dataset) == before


def test_a_record_that_contradicts_the_images_is_one_line_and_changes_nothing(raw_dataset, capsys):
    dataset_json = raw_dataset / "dataset.json"
    content = json.loads(dataset_json.read_text())
    case, row = next((c, r) for c, r in content[AVAILABILITY_KEY].items() if 0 in r)
    content[AVAILABILITY_KEY][case] = [1, 1, 1, 1]
    dataset_json.write_text(json.dumps(content))
    before = tree_hashes(raw_dataset)
    assert main(["record-availability", "-d", "61"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"case '{case}': dataset.json records" in err and "all zero" in err
    assert tree_hashes(raw_dataset) == before
    assert main(["record-availability", "-d", "61", "--overwrite"]) == 0
    assert json.loads(dataset_json.read_text())[AVAILABILITY_KEY][case] == row


def test_a_truncated_image_is_named(raw_dataset, capsys):
    image = sorted((raw_dataset / "imagesTr").glob("*_0000.nii.gz"))[0]
    data = image.read_bytes()
    image.write_bytes(data[:len(data) // 2])
    before = tree_hashes(raw_dataset)
    assert main(["record-availability", "-d", "61"]) == 2
    err = capsys.readouterr().err
    assert image.name in err and err.count("\n") == 1 and tree_hashes(raw_dataset) == before


def test_unknown_dataset_is_one_line(raw_dataset, capsys):
    assert main(["record-availability", "-d", "999"]) == 2
    assert capsys.readouterr().err.strip() == ("nnunet_prism record-availability: error: dataset '999' is the id of "
                                               "no dataset in nnUNet_raw, nnUNet_preprocessed or nnUNet_results; "
                                               "give a dataset id or DatasetXXX_Name that exists")


@pytest.fixture
def with_test_cases(tmp_path):
    """A converted phantom set with 3 training cases (simulated missingness) and 2 test cases in
    imagesTs (one without its T1 file), and the environment of the commands."""
    src, test_src, raw = tmp_path / "src", tmp_path / "test_src", tmp_path / "raw"
    generate_synthetic_brats(src, num_cases=3, shape=(16, 16, 16), seed=3)
    generate_synthetic_brats(test_src, num_cases=2, shape=(16, 16, 16), seed=4, prefix="SynTest", labelled=False,
                             drop_files={1: ["t1"]})
    folder = convert_brats([src, test_src], 62, "Both", raw_root=raw, missing_rates=[0.2, 0.4, 0.6, 0.8], seed=1)
    return folder, dict(os.environ, nnUNet_raw=str(raw), nnUNet_preprocessed=str(tmp_path / "pre"))


def test_overwrite_recomputes_the_test_cases_too_and_keeps_other_entries(with_test_cases):
    folder, env = with_test_cases
    dataset_json = folder / "dataset.json"
    converted = json.loads(dataset_json.read_text())[AVAILABILITY_KEY]
    assert converted["SynTest_001"] == [1, 0, 1, 1]
    content = json.loads(dataset_json.read_text())
    content[AVAILABILITY_KEY]["SynGone_000"] = [1, 0, 0, 0]  # a case whose images were moved away
    dataset_json.write_text(json.dumps(content))
    r = cli("record-availability", "-d", 62, "--overwrite", env=env)
    assert r.returncode == 0, r.stderr
    assert "of 3 training and 2 test cases" in r.stdout and "kept the entries of 1 cases without images" in r.stdout
    record = json.loads(dataset_json.read_text())[AVAILABILITY_KEY]
    assert {c: record[c] for c in ("SynTest_000", "SynTest_001")} == {"SynTest_000": [1, 1, 1, 1],
                                                                     "SynTest_001": [1, 0, 1, 1]}
    assert record["SynGone_000"] == [1, 0, 0, 0]
    assert {c: record[c] for c in converted} == converted, "the images show what the converter recorded"


def test_non_finite_voxels_are_refused_with_the_count(with_test_cases):
    folder, env = with_test_cases
    image = folder / "imagesTs" / "SynTest_000_0002.nii.gz"
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(image))).astype(np.float32)
    array[0, 0, 0] = np.inf
    changed = sitk.GetImageFromArray(array)
    changed.CopyInformation(sitk.ReadImage(str(image)))
    sitk.WriteImage(changed, str(image))
    before = tree_hashes(folder)
    r = cli("record-availability", "-d", 62, "--overwrite", env=env)
    assert_one_line_error(r.returncode, r.stderr.strip().splitlines(), "record-availability", str(image),
                          "has 1 non-finite voxel (0 NaN, 1 infinite, of 4,096)")
    assert tree_hashes(folder) == before
