"""DS and GMD through nnU-Net's real ``nnUNetv2_train``: DS (dynamic sharing without GMD) trains
with one summed loss and claims no decoupling; a GMD fold resumed with ``--c`` continues its
subset sampler from the checkpoint, and a resume with changed hyperparameters is refused unless
allowed."""
import json
import shutil
import subprocess

import pytest
import torch

from helpers.datasets import SHORT_SCHEDULE
from helpers.files import training_logs
from nnunet_prism import pipeline
from nnunet_prism.training.hyperparameters import ALLOW_CHANGES_ENV_VAR
from nnunet_prism.training.progress import STATE_KEY

pytestmark = pytest.mark.e2e
SUBSETS = 15  # 2^4 - 1
K = 5         # subsets per step (default)


def deck_after(draws: int) -> int:
    """Cards left in SubsetSampler's deck after ``draws`` hands of K: a fresh deck of all 15
    subsets is dealt whenever fewer than K are left."""
    return (-K * draws) % SUBSETS


def _checkpoint(fold):
    return torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)


def test_ds_trains_with_one_summed_loss_and_no_decoupling(region_dataset, trained):
    fold = trained(region_dataset, "nnUNetTrainerDS").fold
    assert (fold / "checkpoint_final.pth").is_file()
    hyperparameters = json.loads((fold / "hyperparameters.json").read_text())
    assert (hyperparameters["trainer"], hyperparameters["gradient_mode"]) == ("nnUNetTrainerDS", "sum")
    log = training_logs(fold)
    assert "conflicting subset-gradient pairs" not in log and "GMD (k=" not in log
    checkpoint = _checkpoint(fold)
    assert checkpoint["logging"]["gmd_conflict_fraction"] == [], "no GMD statistics without decoupling"
    sampler = checkpoint["logging"][STATE_KEY]["gmd_sampler"]
    draws = SHORT_SCHEDULE["num_epochs"] * SHORT_SCHEDULE["num_iterations_per_epoch"]
    assert (sampler["k"], len(sampler["deck"])) == (K, deck_after(draws)), "one hand of subsets per step"


def test_gmd_resume_restores_the_sampler_and_refuses_changed_hyperparameters(region_dataset, trained, tmp_path):
    ds = region_dataset
    model = trained(ds, "nnUNetTrainerGMD")  # test_e2e_trainers reads this fold: resume a copy
    results = tmp_path / "nnUNet_results"
    shutil.copytree(model.folder, results / model.folder.parent.name / model.folder.name)
    fold = results / model.folder.parent.name / model.folder.name / "fold_0"
    saved = _checkpoint(fold)["logging"]
    iterations = SHORT_SCHEDULE["num_iterations_per_epoch"]
    assert len(saved[STATE_KEY]["gmd_sampler"]["deck"]) == deck_after(iterations)

    env = ds.train_env(**{**SHORT_SCHEDULE, "num_epochs": 2})
    env["nnUNet_results"] = str(results)
    env.pop(ALLOW_CHANGES_ENV_VAR, None)
    command = pipeline.nnunet_command("nnUNetv2_train") + [
        str(ds.dataset_id), "3d_fullres", "0", "-tr", "nnUNetTrainerGMD", "-device", "cpu", "--c"]
    refused = subprocess.run(command, env=env, capture_output=True, text=True)
    assert refused.returncode != 0
    assert "Traceback" not in refused.stderr
    message = refused.stderr.strip().splitlines()[-1]
    assert message.startswith("nnunet_prism: error: --c resumes") and "num_epochs: 1 -> 2" in message, \
        refused.stderr[-2000:]
    assert len(json.loads((fold / "hyperparameters.json").read_text())["history"]) == 1, "nothing recorded"

    env[ALLOW_CHANGES_ENV_VAR] = "1"
    pipeline.train(ds.dataset_id, "3d_fullres", 0, "nnUNetTrainerGMD", env, echo=False, extra=["--c"],
                   log_file=tmp_path / "resume.log")
    resumed = _checkpoint(fold)["logging"]
    deck = resumed[STATE_KEY]["gmd_sampler"]["deck"]
    # 2 epochs of draws in all; a sampler started afresh at the resume would hold deck_after(iterations)
    assert deck_after(2 * iterations) != deck_after(iterations)
    assert len(deck) == deck_after(2 * iterations) and len(set(deck)) == len(deck)
    assert len(resumed["gmd_conflict_fraction"]) == 2
    assert resumed["gmd_conflict_fraction"][0] == saved["gmd_conflict_fraction"][0], "epoch-0 history kept"
    record = json.loads((fold / "hyperparameters.json").read_text())
    assert record["num_epochs"] == 2
    assert [(run["resumed_at_epoch"], run["values"]["num_epochs"]) for run in record["history"]] == [(None, 1), (1, 2)]
    assert len(_checkpoint(model.fold)["logging"]["gmd_conflict_fraction"]) == 1, "the shared fold is untouched"
