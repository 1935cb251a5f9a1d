"""Availability from the data: one definition of "absent" (an all-zero channel), the record
checked against the images, ``nnunet_prism record-availability`` through the real command."""
import json

import numpy as np
import pytest

from dataset_conversion.cli import main as conversion_main
from helpers.files import tree_hashes
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
