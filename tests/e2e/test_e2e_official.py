"""preset=official end to end: nnUNetTrainerPRISM (through ``nnunet_prism train --hp preset=official``),
nnUNetTrainerShaSpec and nnUNetTrainerGMD (through nnUNetv2_train with the preset in
nnUNet_prism_hparams) train on the synthetic region set, and hyperparameters.json and the
checkpoints hold the official switches. Fold 1, so the fold-0 models of the other e2e tests stay."""
import json

import pytest
import torch

from helpers.cli import cli
from helpers.datasets import SHORT_SCHEDULE
from nnunet_prism import pipeline
from nnunet_prism.training.hyperparameters import collect_presets
from nnunet_prism.training.progress import STATE_KEY
from nnunet_prism.training.trainers.nnUNetTrainerGMD import nnUNetTrainerGMD
from nnunet_prism.training.trainers.nnUNetTrainerPRISM import nnUNetTrainerPRISM
from nnunet_prism.training.trainers.nnUNetTrainerShaSpec import nnUNetTrainerShaSpec

pytestmark = pytest.mark.e2e
FOLD = 1


def _fold(ds, trainer):
    results = ds.workdir / "nnUNet_results"
    return next(results.glob(f"Dataset{ds.dataset_id:03d}_*/{trainer}__nnUNetPlans__3d_fullres")) / f"fold_{FOLD}"


def _recorded(fold, trainer_class, explicit=()):
    values = json.loads((fold / "hyperparameters.json").read_text())
    assert values["preset"] == "official"
    for name, value in collect_presets(trainer_class)["official"].items():
        if name not in explicit:
            assert values[name] == value, f"{name} in hyperparameters.json"
    return values


def test_preset_official_trains_prism_shaspec_and_gmd(region_dataset, tmp_path):
    ds = region_dataset

    # PRISM: epoch 0 is the warm-up (an explicit value wins over the preset's 0), epoch 1 official
    env = ds.train_env(**{**SHORT_SCHEDULE, "num_epochs": 2, "num_iterations_per_epoch": 1})
    r = cli("train", ds.dataset_id, "3d_fullres", FOLD, "-tr", "nnUNetTrainerPRISM", "--hp", "preset=official",
            "--hp", "region_fusion_start_epoch=1", "-device", "cpu", env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    fold = _fold(ds, "nnUNetTrainerPRISM")
    values = _recorded(fold, nnUNetTrainerPRISM, explicit=("region_fusion_start_epoch",))
    assert values["region_fusion_start_epoch"] == 1
    checkpoint = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    state = checkpoint["logging"][STATE_KEY]["preference"]
    assert (state["rule"], state["rp_statistic"], state["gamma_growth"], state["epochs"]) == \
        ("official", "pooled_gap", 1.5, 2)
    assert float(state["beta"].norm()) == pytest.approx(2.0), "beta renormalised after epoch 1"
    assert torch.allclose(state["E"], state["fixed"] * state["beta"])
    e_curve = [checkpoint["logging"][f"prism_E_{m}"] for m in ("FLAIR", "T1", "T1c", "T2")]
    assert [c[0] for c in e_curve] == state["fixed"].tolist(), "E^m does not move during the warm-up"

    # ShaSpec and GMD: the preset for every trainer, through nnUNetv2_train (GMD: 2 subsets per step,
    # each needs its own encoder backward with the official merge)
    env = ds.train_env(**SHORT_SCHEDULE, preset="official", nnUNetTrainerGMD={"gmd_subsets": 2})
    for trainer, trainer_class in (("nnUNetTrainerShaSpec", nnUNetTrainerShaSpec),
                                   ("nnUNetTrainerGMD", nnUNetTrainerGMD)):
        pipeline.train(ds.dataset_id, "3d_fullres", FOLD, trainer, env, echo=False, log_file=tmp_path / f"{trainer}.log")
        fold = _fold(ds, trainer)
        _recorded(fold, trainer_class)
        checkpoint = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
        if trainer == "nnUNetTrainerShaSpec":
            assert bool(checkpoint["network_weights"]["fill_from_first"]), "the fill rule is saved with the weights"
            assert len(checkpoint["logging"]["shaspec_dao"]) == 1
        else:
            fraction = checkpoint["logging"]["gmd_conflict_fraction"]
            assert len(fraction) == 1 and (fraction[0] != fraction[0] or 0.0 <= fraction[0] <= 1.0)
