"""The ``seed`` hyperparameter makes a CPU run repeatable (nnUNet_n_proc_DA=0): the same seed gives
identical losses and weights after a few steps, another seed does not. The trainer runs in this
process (nnU-Net 2.8 reads its folders from the environment when it needs them), so three runs
cost seconds of set-up."""
import json

import nnunetv2.run.run_training as run_training
import numpy as np
import pytest
import torch

STEPS = 2  # the first step's losses and the weights after the second tell repeatability


def seeded_steps(dataset, trainer_name, seed, monkeypatch, results):
    """Losses of STEPS training steps (fresh batches each) and the final weights."""
    for name in ("nnUNet_raw", "nnUNet_preprocessed"):
        monkeypatch.setenv(name, str(dataset.workdir / name))
    monkeypatch.setenv("nnUNet_results", str(results))  # away from the session's trained models
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    monkeypatch.setenv("nnUNet_prism_hparams", json.dumps({"seed": seed, "num_iterations_per_epoch": STEPS}))
    trainer = run_training.get_trainer_from_args(str(dataset.dataset_id), "3d_fullres", 0, trainer_name,
                                                 device=torch.device("cpu"))
    trainer.on_train_start()
    trainer.network.train()
    losses = [float(trainer.train_step(next(trainer.dataloader_train))["loss"]) for _ in range(STEPS)]
    weights = torch.cat([p.detach().flatten() for p in trainer.network.parameters()]).clone()
    trainer.on_train_end()
    return np.array(losses), weights


@pytest.mark.e2e
@pytest.mark.parametrize("trainer", ["nnUNetTrainerModalityDropout", "nnUNetTrainerPRISM"])
def test_same_seed_same_run_other_seed_other_run(region_dataset, monkeypatch, trainer, tmp_path):
    first = seeded_steps(region_dataset, trainer, 7, monkeypatch, tmp_path)
    second = seeded_steps(region_dataset, trainer, 7, monkeypatch, tmp_path)
    other = seeded_steps(region_dataset, trainer, 8, monkeypatch, tmp_path)
    np.testing.assert_array_equal(first[0], second[0])
    assert torch.equal(first[1], second[1])
    assert not np.array_equal(first[0], other[0]) and not torch.equal(first[1], other[1])
