"""PRISM end to end: nnUNetv2_train -tr nnUNetTrainerPRISM on the synthetic incomplete set, then
``--c`` resumes with E^m restored exactly from the checkpoint. (The label-based set trains PRISM
in test_e2e_trainers, which predicts and evaluates with it.)"""
import json

import pytest
import torch

from helpers.datasets import SHORT_SCHEDULE
from helpers.files import training_logs
from nnunet_prism import pipeline
from nnunet_prism.modalities import missing_rates, read_availability
from nnunet_prism.training.hyperparameters import ALLOW_CHANGES_ENV_VAR
from nnunet_prism.training.progress import STATE_KEY

pytestmark = pytest.mark.e2e
TRAINER = "nnUNetTrainerPRISM"
MODALITIES = ["FLAIR", "T1", "T1c", "T2"]


def _curve(checkpoint, kind):
    return [checkpoint["logging"][f"prism_{kind}_{m}"] for m in MODALITIES]


def test_prism_trains_and_resumes_with_exact_coefficients(region_dataset, trained, tmp_path):
    ds = region_dataset
    fold = trained(ds, TRAINER).fold  # one epoch of SHORT_SCHEDULE
    first = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    e_after_epoch0 = first["logging"][STATE_KEY]["preference"]["E"].clone()
    log = training_logs(fold)
    assert "PRISM FLAIR: E=" in log and "student pseudo Dice" in log
    assert (fold / "progress.png").stat().st_size > 0
    fixed = first["logging"][STATE_KEY]["preference"]["fixed"]
    preprocessed = ds.workdir / "nnUNet_preprocessed" / ds.dataset_folder.name
    train_cases = sorted(json.loads((preprocessed / "splits_final.json").read_text())[0]["train"])
    rates = missing_rates(read_availability(json.loads((preprocessed / "dataset.json").read_text()), train_cases))
    assert fixed.tolist() == (1.0 / (1.0 - torch.as_tensor(rates, dtype=torch.float64))).tolist(), \
        "E^m starts at 1/(1-FR^m) of the fold's training cases"

    env = ds.train_env(**{**SHORT_SCHEDULE, "num_epochs": 2})
    env[ALLOW_CHANGES_ENV_VAR] = "1"  # --c with another num_epochs is refused otherwise
    pipeline.train(ds.dataset_id, "3d_fullres", 0, TRAINER, env, echo=False, extra=["--c"],
                   log_file=tmp_path / "train2.log")
    second = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    e_curve, rp_curve = _curve(second, "E"), _curve(second, "RP")
    assert [c[0] for c in e_curve] == e_after_epoch0.tolist(), "epoch-0 history kept"
    gamma = json.loads((fold / "hyperparameters.json").read_text())["gamma"]
    for m in range(4):  # epoch 1 continued from the restored E, not from 1/(1-FR)
        expected = max(0.0, e_curve[m][0] - gamma * rp_curve[m][1])
        assert e_curve[m][1] == pytest.approx(expected, abs=1e-12)
