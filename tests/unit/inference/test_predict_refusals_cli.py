"""``nnunet_prism predict`` run as the user runs it (its own process), with the stand-in model of
``helpers.input_checks``: what used to run the model on the wrong input, end in nnU-Net's
traceback or mix with another run's outputs is refused before the model is loaded, as one line
with exit code 2 naming the case and file, and the input and earlier outputs stay as they were.
A run that nnU-Net itself fails leaves the output folder as it was, too."""
import json
import os

import numpy as np
import pytest
import SimpleITK as sitk

from helpers.cli import cli
from helpers.input_checks import (CONFIGURATION, DATASET_ID, TRAINER, assert_one_line_error, fake_model, hashes,
                                  signal, write_image)
from nnunet_prism import pipeline


@pytest.fixture
def setup(tmp_path):
    """A stand-in model (fold 0), an input folder with one good case, an output folder with an
    earlier run's prediction of another case, and the environment of the commands."""
    model = fake_model(tmp_path)
    given, out = tmp_path / "given", tmp_path / "out"
    given.mkdir()
    write_image(given / "caseA_0000.nii.gz", signal(0))
    out.mkdir()
    (out / "caseZ.nii.gz").write_bytes(b"an earlier prediction")
    (out / "caseZ.npz").write_bytes(b"its probabilities")
    return model, given, out, pipeline.nnunet_environment(tmp_path)


def predict(given, out, env, *extra):
    r = cli("predict", "-i", given, "-o", out, "-d", DATASET_ID, "-c", CONFIGURATION, "-tr", TRAINER,
            "-device", "cpu", *extra, env=env)
    return r.returncode, r.stderr.strip().splitlines()


def earlier_record(model, folds=(0,)):
    return {"caseZ": {"present": ["FLAIR"], "absent": ["T1", "T1c", "T2"], "predicted_by": {
        "model": f"{model.parent.name}/{model.name}", "folds": list(folds), "checkpoint": "checkpoint_final.pth",
        "options": []}}}


def image_2d(path):
    sitk.WriteImage(sitk.GetImageFromArray(signal(1)[0].astype(np.float32)), str(path))


def image_4d(path):
    sitk.WriteImage(sitk.JoinSeries([sitk.GetImageFromArray(signal(s).astype(np.float32)) for s in (1, 2)]), str(path))


def broken_link(path):
    os.symlink(path.parent / "moved_away.nii.gz", path)


def some_nan(path):
    array = signal(1)
    array[0, 0, :2] = np.nan
    write_image(path, array)


BAD_FILES = {
    "2D file": (image_2d, ["case 'caseB'", "is a 2D image, but the model was trained on single-channel 3D images"]),
    "4D file": (image_4d, ["case 'caseB'", "is a 4D image"]),
    "broken link": (broken_link, ["is a broken link to ", "moved_away.nii.gz"]),
    "NaN voxels": (some_nan, ["case 'caseB'", "has 2 non-finite voxels (2 NaN, 0 infinite, of 336)"]),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_a_file_the_model_would_read_wrongly_is_refused_before_it_loads(setup, name):
    model, given, out, env = setup
    (out / "modalities_used.json").write_text(json.dumps(earlier_record(model)))
    write, needles = BAD_FILES[name]
    bad = given / "caseB_0001.nii.gz"
    write(bad)
    before = hashes(given, out)
    code, err = predict(given, out, env)
    assert_one_line_error(code, err, "predict", str(bad), *needles)
    assert hashes(given, out) == before
    assert not (out / "plans.json").exists() and sorted(p.name for p in out.parent.iterdir() if p.name[0] == ".") == []


@pytest.mark.parametrize("record", ["none", "other folds"])
def test_outputs_of_another_run_are_refused_unless_overwrite(setup, record):
    model, given, out, env = setup
    (model / "fold_1").mkdir()
    (model / "fold_1" / "checkpoint_final.pth").write_bytes(b"placeholder")
    if record == "other folds":
        (out / "modalities_used.json").write_text(json.dumps(earlier_record(model, folds=(0, 1))))
    before = hashes(given, out)
    code, err = predict(given, out, env, "-f", "0")
    needles = (["1 case(s) that modalities_used.json does not record (caseZ)"] if record == "none" else
               ["another run", "fold(s) 0,1", "1 case(s) (caseZ)"])
    assert_one_line_error(code, err, "predict", str(out), *needles, "pass --overwrite to replace all of them")
    assert hashes(given, out) == before


def test_a_run_that_nnunet_fails_leaves_the_output_folder_as_it_was(setup):
    """--overwrite gets past the check; nnU-Net then fails on the stand-in checkpoint (no weights):
    the earlier outputs are still there, and nothing of the failed run is."""
    model, given, out, env = setup
    before = hashes(given, out)
    code, err = predict(given, out, env, "--overwrite")
    assert code == 2 and err[0].startswith("nnunet_prism predict: error: 'nnUNetv2_predict "), err[:3]
    assert hashes(given, out) == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["given", "nnUNet_preprocessed", "nnUNet_raw",
                                                             "nnUNet_results", "out"]
