"""``nnunet_prism predict`` refuses what it cannot read instead of dropping or guessing it: each
check runs through the real command and must give exit code 2, one line naming the file or
case, and leave the input folder and any earlier output unchanged. All of them fire before
nnU-Net is started, so a stand-in model folder (no weights) is enough."""
import json

import pytest

from helpers.cli import cli
from helpers.input_checks import (CONFIGURATION, DATASET_ID, TRAINER, assert_one_line_error, fake_model, hashes,
                                  run_cli, signal, use_results, write_image)
from nnunet_prism import pipeline


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """A stand-in model with fold 0 only, and an input folder with one good case."""
    use_results(monkeypatch, tmp_path)
    model = fake_model(tmp_path)
    given = tmp_path / "given"
    given.mkdir()
    write_image(given / "caseA_0000.nii.gz", signal(0))
    write_image(given / "caseA_0002.nii.gz", signal(1))
    out = tmp_path / "out"
    out.mkdir()
    (out / "earlier.nii.gz").write_bytes(b"an earlier prediction of the same run")
    (out / "modalities_used.json").write_text(json.dumps({"earlier": {
        "present": ["FLAIR"], "absent": ["T1", "T1c", "T2"], "predicted_by": {
            "model": f"{model.parent.name}/{model.name}", "folds": [0], "checkpoint": "checkpoint_final.pth",
            "options": []}}}))
    calls = []
    monkeypatch.setattr(pipeline, "predict", lambda scratch, output, *a, **kw: calls.append(
        dict(kw, files=sorted(p.name for p in __import__("pathlib").Path(scratch).iterdir()))))
    return model, given, out, calls


def predict(capsys, given, out, *extra):
    return run_cli(capsys, "predict", "-i", given, "-o", out, "-d", DATASET_ID, "-c", CONFIGURATION,
                   "-tr", TRAINER, "-device", "cpu", *extra)


def test_good_folder_runs_with_the_trained_folds(setup, capsys):
    model, given, out, calls = setup
    code, stdout, err = predict(capsys, given, out)
    assert code == 0, err
    assert calls[0]["folds"] == [0], "default: the folds that exist in the model folder"
    assert calls[0]["files"] == [f"caseA_{c:04d}.nii.gz" for c in range(4)]
    assert "caseA: present FLAIR+T1c, absent T1+T2" in stdout


@pytest.mark.parametrize("names", [["caseB_t1.nii.gz"], ["caseA_0001.nii", "notes.txt", "caseC_001.nii.gz"]])
def test_files_without_case_id_or_channel_are_listed_and_refused(setup, capsys, names):
    model, given, out, calls = setup
    for name in names:
        write_image(given / name, signal(2)) if ".nii" in name else (given / name).write_text("x")
    before = hashes(given, out)
    code, _, err = predict(capsys, given, out)
    assert_one_line_error(code, err, "predict", *names, "--ignore-unknown-files", str(given))
    assert hashes(given, out) == before and not calls


def test_ignore_unknown_files_lists_them_and_goes_on(setup, capsys):
    model, given, out, calls = setup
    write_image(given / "caseB_t1.nii.gz", signal(2))
    (given / "sub").mkdir()
    before = hashes(given, out)
    code, stdout, err = predict(capsys, given, out, "--ignore-unknown-files")
    assert code == 0, err
    assert any("caseB_t1.nii.gz" in line and "sub/" in line and line.startswith("ignoring") for line in err), err
    assert calls[0]["files"] == [f"caseA_{c:04d}.nii.gz" for c in range(4)]
    assert "caseB" not in stdout
    after = hashes(given, out)
    assert {k: after.get(k) for k in before} == before, "input and earlier output unchanged"


def test_channel_outside_the_datasets_channels_names_the_file(setup, capsys):
    model, given, out, calls = setup
    write_image(given / "caseA_0004.nii.gz", signal(3))
    before = hashes(given, out)
    code, _, err = predict(capsys, given, out)
    assert_one_line_error(code, err, "predict", given / "caseA_0004.nii.gz", "_0000.._0003")
    assert hashes(given, out) == before and not calls


@pytest.mark.parametrize("what, kwargs", [("origin", dict(origin=(1.0, 2.0, 9.0))),
                                          ("direction", dict(direction=(-1, 0, 0, 0, 1, 0, 0, 0, 1))),
                                          ("spacing", dict(spacing=(2.0, 1.0, 1.0)))])
def test_modality_on_another_grid_names_the_users_file(setup, capsys, what, kwargs):
    model, given, out, calls = setup
    write_image(given / "caseA_0003.nii.gz", signal(4), **kwargs)
    before = hashes(given, out)
    code, _, err = predict(capsys, given, out)
    assert_one_line_error(code, err, "predict", "case 'caseA'", given / "caseA_0003.nii.gz", what)
    assert "nnunet_prism_predict_" not in err[0], "the user's file, not the scratch copy"
    assert hashes(given, out) == before and not calls


@pytest.mark.parametrize("where", ["same", "inside"])
def test_output_equal_to_or_inside_the_input_is_refused_before_anything_is_written(setup, capsys, where):
    model, given, out, calls = setup
    target = given if where == "same" else given / "predictions"
    before = hashes(given)
    code, _, err = predict(capsys, given, target)
    assert_one_line_error(code, err, "predict", str(target), str(given))
    assert hashes(given) == before and not (given / "predictions").exists() and not calls


def test_folds_that_were_never_trained_are_one_line(setup, capsys):
    model, given, out, calls = setup
    before = hashes(given, out)
    code, _, err = predict(capsys, given, out, "-f", "0", "3")
    assert_one_line_error(code, err, "predict", "fold 3", "fold_3/checkpoint_final.pth", "trained folds: 0")
    code, _, err = predict(capsys, given, out, "-f", "0", "-chk", "checkpoint_best.pth")
    assert_one_line_error(code, err, "predict", "fold 0", "fold_0/checkpoint_best.pth")
    assert hashes(given, out) == before and not calls
    (model / "fold_0" / "checkpoint_final.pth").unlink()
    code, _, err = predict(capsys, given, out)
    assert_one_line_error(code, err, "predict", "no trained fold", str(model))


def test_all_trained_folds_are_the_default(setup, capsys):
    model, given, out, calls = setup
    for fold in ("1", "4", "all"):
        (model / f"fold_{fold}").mkdir()
        (model / f"fold_{fold}" / "checkpoint_final.pth").write_bytes(b"placeholder")
    (model / "fold_2").mkdir()  # no checkpoint: not trained
    code, _, err = predict(capsys, given, out.parent / "out_all_folds")
    assert code == 0, err
    assert calls[0]["folds"] == [0, 1, 4, "all"]


def test_unknown_dataset_id_is_one_line_without_traceback(setup, tmp_path):
    model, given, out, calls = setup
    env = pipeline.nnunet_environment(tmp_path)
    before = hashes(given, out)
    r = cli("predict", "-i", given, "-o", out, "-d", 991, "-c", CONFIGURATION, "-tr", TRAINER, env=env)
    err = r.stderr.strip().splitlines()
    assert_one_line_error(r.returncode, err, "predict", "dataset '991'")
    assert "Traceback" not in r.stderr
    assert hashes(given, out) == before


def test_a_truncated_input_file_is_named_instead_of_zero_filled(setup, capsys):
    model, given, out, calls = setup
    image = given / "caseA_0002.nii.gz"
    data = image.read_bytes()
    image.write_bytes(data[:len(data) // 2])  # SimpleITK would fill the missing voxels with zeros
    before = hashes(given, out)
    code, _, err = predict(capsys, given, out)
    assert_one_line_error(code, err, "predict", image, "truncated")
    assert hashes(given, out) == before and not calls


def test_continue_prediction_skips_the_cases_this_run_already_predicted(setup, capsys):
    model, given, out, calls = setup
    (given / "caseA_0000.nii.gz").rename(given / "earlier_0000.nii.gz")
    (given / "caseA_0002.nii.gz").rename(given / "earlier_0002.nii.gz")
    before = hashes(given, out)
    code, stdout, err = predict(capsys, given, out, "--continue_prediction")
    assert code == 0 and not calls, err
    assert "1 case(s) already predicted by this run, skipped: earlier" in stdout and "nothing to do" in stdout
    assert hashes(given, out) == before
    code, _, err = predict(capsys, given, out, "--continue_prediction", "--overwrite")
    assert_one_line_error(code, err, "predict", "--continue_prediction keeps earlier outputs, --overwrite replaces")
