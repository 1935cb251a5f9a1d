"""A trainer variant made the nnU-Net way (tests/data/init_attribute_trainer.py, in a folder of
the user's own) trains through nnU-Net's real ``nnUNetv2_train`` with the values its ``__init__``
sets, and ``hyperparameters.json`` records those values; an explicit hyperparameter wins over
the subclass's attribute; an invalid attribute is one line, exit code 2."""
import json
import subprocess

import torch

from helpers.datasets import train_users_trainer
from helpers.paths import DATA
from nnunet_prism import pipeline

TRAINERS = DATA / "init_attribute_trainer.py"


def test_the_record_holds_the_values_the_subclass_trained_with(region_dataset, tmp_path):
    # num_iterations_per_epoch given explicitly: wins over the subclass's 1
    fold, log, env = train_users_trainer(region_dataset, TRAINERS, "nnUNetTrainerInitSchedule", tmp_path,
                                         num_iterations_per_epoch=2)
    record = json.loads((fold / "hyperparameters.json").read_text())
    assert {k: record[k] for k in ("num_epochs", "num_iterations_per_epoch", "num_val_iterations_per_epoch",
                                   "final_validation", "modality_dropout")} == {
        "num_epochs": 1, "num_iterations_per_epoch": 2, "num_val_iterations_per_epoch": 1,
        "final_validation": False, "modality_dropout": 0.25}
    assert record["history"][-1]["values"] == {k: v for k, v in record.items() if k not in ("trainer", "history")}
    text = log.read_text()
    assert "num_iterations_per_epoch=2 as given, not the 1 that nnUNetTrainerInitSchedule's __init__ set" in text
    assert "num_epochs=1 as nnUNetTrainerInitSchedule's __init__ sets it" in text
    # what ran: one epoch, no final validation, the subclass's dropout
    assert torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)["current_epoch"] == 1
    assert "final validation skipped" in text and "random modality dropout p = 0.25" in text

    r = subprocess.run([*pipeline.nnunet_command("nnUNetv2_train"), str(region_dataset.dataset_id), "3d_fullres",
                        "0", "-tr", "nnUNetTrainerInitBadSchedule", "-device", "cpu"], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert r.stderr.strip().splitlines()[-1] == (
        "nnunet_prism: error: nnUNetTrainerInitBadSchedule.__init__ sets an invalid value: hyperparameter "
        "modality_dropout=1.5: must be <= 1.")
