"""``nnunet_prism evaluate --predictions DIR -l LABELS``: an existing segmentation folder scored by
modality subset, no model; and every refusal through the real command (exit 2, one line naming
the case or file, inputs and earlier outputs unchanged). Also issue 27's items 8 (``--compare`` on a
dataset without WT/TC/ET refused before the model is loaded) and 10 (``-f all``, fold lists)."""
import json

import numpy as np
import pytest

from dataset_conversion.labels import dataset_json_labels
from helpers.input_checks import (CONFIGURATION, DATASET_ID, TRAINER, assert_one_line_error, fake_model, hashes,
                                  run_cli, signal, use_results, write_image)
from nnunet_prism.evaluation.results import SubsetResults

SHAPE = (6, 7, 8)
DATASET = {"name": "Toy", "channel_names": {"0": "FLAIR", "1": "T1", "2": "T1c", "3": "T2"}, "file_ending": ".nii.gz",
           **dataset_json_labels(False)}


def seg(values_by_slab):
    out = np.zeros(SHAPE, np.uint8)
    for i, v in enumerate(values_by_slab):
        out[i] = v
    return out


@pytest.fixture
def folders(tmp_path):
    """Three cases: predictions (with nnU-Net's dataset.json and predict's modalities_used.json),
    labels, and an output folder holding an earlier result."""
    preds, labels, out = tmp_path / "preds", tmp_path / "labels", tmp_path / "out"
    for f in (preds, labels, out):
        f.mkdir()
    (out / "subsets.csv").write_text("an earlier result")
    (preds / "dataset.json").write_text(json.dumps(DATASET))
    label = seg([1, 2, 3, 0, 0, 0])                               # WT 3 slabs, TC 2, ET 1
    for case, pred in (("a", label), ("b", seg([1, 2, 0, 0, 0, 0])), ("c", seg([1, 1, 0, 0, 0, 0]))):
        write_image(labels / f"{case}.nii.gz", label, dtype=np.uint8)
        write_image(preds / f"{case}.nii.gz", pred, dtype=np.uint8)
    used = {"a": {"present": ["FLAIR", "T1c"], "absent": ["T1", "T2"]},
            "b": {"present": ["FLAIR", "T1c"], "absent": ["T1", "T2"]},
            "c": {"present": ["T2"], "absent": ["FLAIR", "T1", "T1c"]}}
    (preds / "modalities_used.json").write_text(json.dumps(used))
    return preds, labels, out


def test_folder_is_scored_by_the_subsets_it_was_predicted_from(folders, capsys):
    preds, labels, out = folders
    code, stdout, err = run_cli(capsys, "evaluate", "--predictions", preds, "-l", labels, "-o", out,
                                "--metrics", "Dice", "NSD")
    assert code == 0, err
    results = SubsetResults.load_json(out / "subsets.json")
    assert results.cases("FLAIR+T1c") == ["a", "b"] and results.cases("T2") == ["c"]
    assert sum(results.num_cases()) == 3
    dice = dict(zip(results.regions, results.subset_means("Dice")[results.subsets.index((0, 2))]))
    # a: perfect; b: WT 2 of 3 slabs (Dice 0.8), TC 1 of 2 (2/3), ET none (0)
    assert dice["WT"] == pytest.approx((1 + 0.8) / 2) and dice["TC"] == pytest.approx((1 + 2 / 3) / 2)
    assert dice["ET"] == pytest.approx(0.5)
    t2 = dict(zip(results.regions, results.subset_means("Dice")[results.subsets.index((3,))]))
    assert t2["WT"] == pytest.approx(0.8) and t2["TC"] == 0.0        # c: all edema
    assert "modalities_used.json" in (out / "subsets.md").read_text()
    assert "NSD" in results.metrics


def test_images_folder_and_the_availability_record_give_the_subsets(folders, capsys, tmp_path, monkeypatch):
    preds, labels, out = folders
    (preds / "modalities_used.json").unlink()
    images = tmp_path / "images"
    images.mkdir()
    for case, channels in (("a", (0, 1, 2, 3)), ("b", (1,)), ("c", (1, 3))):
        for c in channels:
            write_image(images / f"{case}_{c:04d}.nii.gz", signal(c))
    write_image(images / "c_0000.nii.gz", np.zeros(SHAPE))         # all zero: absent
    code, _, err = run_cli(capsys, "evaluate", "--predictions", preds, "-l", labels, "-i", images, "-o", out)
    assert code == 0, err
    results = SubsetResults.load_json(out / "subsets.json")
    assert (results.cases("FLAIR+T1+T1c+T2"), results.cases("T1"), results.cases("T1+T2")) == (["a"], ["b"], ["c"])

    use_results(monkeypatch, tmp_path / "root")                     # -d: the raw dataset's record
    raw = tmp_path / "root" / "nnUNet_raw" / "Dataset991_Toy"
    raw.mkdir()
    (raw / "dataset.json").write_text(json.dumps({**DATASET, "modality_availability": {
        "a": [1, 0, 0, 0], "b": [1, 0, 0, 0], "c": [0, 0, 0, 1]}}))
    code, _, err = run_cli(capsys, "evaluate", "--predictions", preds, "-l", labels, "-d", 991, "-o", out)
    assert code == 0, err
    results = SubsetResults.load_json(out / "subsets.json")
    assert results.cases("FLAIR") == ["a", "b"] and results.cases("T2") == ["c"]


def _refused(capsys, folders, needles, *extra, setup=None):
    preds, labels, out = folders
    before = hashes(preds, labels, out)
    code, _, err = run_cli(capsys, "evaluate", "--predictions", preds, "-l", labels, "-o", out, *extra)
    assert_one_line_error(code, err, "evaluate", *needles)
    assert hashes(preds, labels, out) == before


def test_a_prediction_without_a_label_is_refused(folders, capsys):
    preds, labels, _ = folders
    (labels / "b.nii.gz").unlink()
    _refused(capsys, folders, ["case 'b'", str(preds / "b.nii.gz"), "has no reference label"])


def test_a_label_without_a_prediction_is_refused(folders, capsys):
    preds, labels, _ = folders
    write_image(labels / "d.nii.gz", seg([1]), dtype=np.uint8)
    _refused(capsys, folders, ["case 'd'", "has no prediction", str(preds / "d.nii.gz")])


def test_a_prediction_on_another_grid_is_refused(folders, capsys):
    preds, labels, _ = folders
    write_image(preds / "b.nii.gz", seg([1, 2]), origin=(1.0, 2.0, 9.0), dtype=np.uint8)
    _refused(capsys, folders, [str(labels / "b.nii.gz"), "grid differs", str(preds / "b.nii.gz"), "origin"])


def test_a_prediction_in_the_brats_convention_is_refused(folders, capsys):
    preds, _, _ = folders
    write_image(preds / "c.nii.gz", seg([1, 2, 4]), dtype=np.uint8)
    _refused(capsys, folders, [str(preds / "c.nii.gz"), "BraTS convention"])


def test_a_label_with_a_resection_cavity_on_a_2023_dataset_names_the_route(folders, capsys):
    _, labels, _ = folders
    write_image(labels / "b.nii.gz", seg([1, 2, 3, 4]), dtype=np.uint8)      # a BraTS 2024 label file
    _refused(capsys, folders, [str(labels / "b.nii.gz"), "label 4", "resection cavity", "--layout 2024"])


def test_a_case_missing_from_modalities_used_is_refused(folders, capsys):
    preds, _, _ = folders
    used = json.loads((preds / "modalities_used.json").read_text())
    del used["c"]
    (preds / "modalities_used.json").write_text(json.dumps(used))
    _refused(capsys, folders, ["case 'c' is not in", "modalities_used.json", "--images"])


def test_no_source_of_subsets_is_refused(folders, capsys):
    preds, _, _ = folders
    (preds / "modalities_used.json").unlink()
    _refused(capsys, folders, ["cannot tell which modalities", "--images", "-d"])


def test_a_predictions_folder_that_does_not_exist_is_refused(folders, capsys, tmp_path):
    _, labels, out = folders
    before = hashes(labels, out)
    code, _, err = run_cli(capsys, "evaluate", "--predictions", tmp_path / "nowhere", "-l", labels, "-o", out)
    assert_one_line_error(code, err, "evaluate", "--predictions folder", str(tmp_path / "nowhere"), "does not exist")
    assert hashes(labels, out) == before


def test_output_inside_the_predictions_is_refused(folders, capsys):
    preds, labels, _ = folders
    before = hashes(preds, labels)
    code, _, err = run_cli(capsys, "evaluate", "--predictions", preds, "-l", labels, "-o", preds / "eval")
    assert_one_line_error(code, err, "evaluate", "lies inside the --predictions folder")
    assert hashes(preds, labels) == before and not (preds / "eval").exists()


def test_brats2025_on_a_dataset_without_a_brats_task_is_refused(folders, capsys):
    _refused(capsys, folders, ["brats2025", "brats_layout"], "--metrics", "brats2025")


def test_compare_on_a_dataset_without_wt_tc_et_is_refused(folders, capsys):
    preds, _, _ = folders
    (preds / "dataset.json").write_text(json.dumps({**DATASET, **dataset_json_labels(True)}))   # plain labels
    _refused(capsys, folders, ["--compare", "WT, TC, ET", "edema"], "--compare", "BraTS2020")


# ---------------------------------------------------------- model evaluation: items 8 and 10

def model_command(tmp_path, monkeypatch, label_based=False, folds=("0", "all")):
    use_results(monkeypatch, tmp_path)
    fake_model(tmp_path, folds=folds, label_based=label_based)
    images, labels, out = tmp_path / "images", tmp_path / "labels", tmp_path / "out"
    for f in (images, labels, out):
        f.mkdir()
    for c in range(4):
        write_image(images / f"case_{c:04d}.nii.gz", signal(c))
    write_image(labels / "case.nii.gz", seg([1, 2, 3]), dtype=np.uint8)
    (out / "subsets.csv").write_text("an earlier result")
    return ["evaluate", "-d", DATASET_ID, "-c", CONFIGURATION, "-tr", TRAINER, "-device", "cpu",
            "-o", out], (images, labels, out)


def test_compare_is_checked_before_the_model_is_loaded(tmp_path, monkeypatch, capsys):
    # the stand-in model has no weights: reaching the model would fail differently
    command, folders_ = model_command(tmp_path, monkeypatch, label_based=True)
    images, labels, _ = folders_
    before = hashes(*folders_)
    code, _, err = run_cli(capsys, *command, "-i", images, "-l", labels, "--compare", "BraTS2020")
    assert_one_line_error(code, err, "evaluate", "--compare: published numbers are for WT, TC, ET")
    assert hashes(*folders_) == before


def test_fold_all_and_fold_lists(tmp_path, monkeypatch, capsys):
    command, folders_ = model_command(tmp_path, monkeypatch)
    before = hashes(*folders_)
    code, _, err = run_cli(capsys, *command, "-f", "0", "1")
    assert_one_line_error(code, err, "evaluate", "one model fold per run (got -f 0 1)", "-f all")
    code, _, err = run_cli(capsys, *command, "-f", "all")
    assert_one_line_error(code, err, "evaluate", "fold 'all' was trained on every case", "-i IMAGES -l LABELS")
    code, _, err = run_cli(capsys, *command, "-f", "3")
    assert_one_line_error(code, err, "evaluate", "fold 3 was never trained", "trained folds: 0, all")
    assert hashes(*folders_) == before
