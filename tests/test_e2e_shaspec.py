"""ShaSpec end to end: nnUNetv2_train -tr nnUNetTrainerShaSpec (all-subsets regime) -> nnunet_prism
predict with absent modality files -> nnunet_prism evaluate on the fold's validation cases. (The
dedicated-subset regime is covered without training in test_shaspec.py.)"""
import csv
import json
import shutil

import pytest
import torch

from conftest import cli

pytestmark = pytest.mark.e2e
TRAINER = "nnUNetTrainerShaSpec"


def test_shaspec_train_predict_evaluate(region_dataset, trained, tmp_path):
    ds = region_dataset
    model = trained(ds, TRAINER)
    env, fold = model.env, model.fold
    log = next(fold.glob("training_log_*.txt")).read_text()
    assert "ShaSpec train: DCO accuracy" in log and "random modality dropout p = 0.5" in log
    hyperparameters = json.loads((fold / "hyperparameters.json").read_text())
    assert (hyperparameters["alpha"], hyperparameters["beta"], hyperparameters["fixed_subset"]) == (0.1, 0.02, None)
    checkpoint = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    accuracy, dao = checkpoint["logging"]["shaspec_dco_accuracy"], checkpoint["logging"]["shaspec_dao"]
    # DAO is 0 when no sample of the epoch had two modalities (possible with p = 0.5 dropping)
    assert len(accuracy) == len(dao) == 1 and 0.0 <= accuracy[0] <= 1.0 and 0.0 <= dao[0] < float("inf")
    assert checkpoint["network_weights"]["allowed_modalities"].tolist() == [True] * 4
    assert (fold / "progress.png").stat().st_size > 0

    given = tmp_path / "given"  # FLAIR and T1c only
    given.mkdir()
    for c in (0, 2):
        shutil.copy(ds.dataset_folder / "imagesTs" / f"SynTest_000_{c:04d}.nii.gz", given)
    out = tmp_path / "pred"
    r = cli("predict", "-i", given, "-o", out, "-d", ds.dataset_id, "-c", "3d_fullres", "-tr", TRAINER,
            "-f", "0", "-device", "cpu", env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert json.loads((out / "modalities_used.json").read_text())["SynTest_000"]["present"] == ["FLAIR", "T1c"]
    assert (out / "SynTest_000.nii.gz").is_file()

    evaluation = tmp_path / "evaluation"  # the fold's 2 validation cases, every subset they have
    r = cli("evaluate", "-d", ds.dataset_id, "-c", "3d_fullres", "-tr", TRAINER, "-f", "0", "-o", evaluation,
            "--disable_tta", "-device", "cpu", env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = list(csv.reader(open(evaluation / "subsets.csv")))
    assert len(rows) == 1 + 15 + 1, "header, 15 subsets, average"

