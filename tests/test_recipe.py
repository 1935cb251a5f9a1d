"""A new trainer written to the README's recipe (tests/data/recipe_trainer.py) is found by the
trainer discovery, gets its hyperparameter checked and documented, and trains through nnU-Net."""
import importlib
import json
import re
import shutil
import sys
from pathlib import Path

import pytest

import nnunet_prism.training.trainers as trainers_package
from nnunet_prism import pipeline
from nnunet_prism.training import hyperparameters as hp
from nnunet_prism.training.hyperparameters.table import markdown_table
from nnunet_prism.training.registry import trainer_classes

RECIPE = Path(__file__).parent / "data" / "recipe_trainer.py"


def test_a_new_trainer_module_is_discovered_without_editing_a_list(tmp_path, monkeypatch):
    shutil.copy(RECIPE, tmp_path / "nnUNetTrainerRecipeConsistency.py")
    monkeypatch.setattr(trainers_package, "__path__", [*trainers_package.__path__, str(tmp_path)])
    try:
        found = {c.__name__: c for c in trainer_classes()}
        assert "nnUNetTrainerRecipeConsistency" in found
        recipe = found["nnUNetTrainerRecipeConsistency"]
        assert hp.collect_defaults(recipe)["consistency_weight"] == 0.1
        assert hp.collect_defaults(recipe)["unimodal_loss_weight"] == 1.0, "inherits its parent's schema"
        with pytest.raises(hp.HyperparameterError, match="consistency_weight=-1: must be >= 0"):
            hp.resolve(recipe, {"consistency_weight": -1}, [recipe.__name__])
        table = markdown_table(list(found.values()))
        assert re.search(r"\| RecipeConsistency \| `consistency_weight` \| 0.1 \|", table)
        network_builder = recipe.network_builder
        assert network_builder is found["nnUNetTrainerMissingModality"].network_builder, "one-line reuse"
    finally:
        sys.modules.pop("nnunet_prism.training.trainers.nnUNetTrainerRecipeConsistency", None)
        importlib.invalidate_caches()


def test_the_recipe_loss_is_zero_when_students_agree_with_the_teacher():
    spec = importlib.util.spec_from_file_location("recipe_trainer", RECIPE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    import torch

    fused = torch.randn(2, 3, 4, 4)
    samples = torch.tensor([0, 1, 1])
    assert module.student_consistency_loss(fused, fused[samples], samples).item() == pytest.approx(0.0, abs=1e-12)
    shifted = fused[samples] + 100.0  # sigmoid -> 1 everywhere
    expected = ((1 - torch.sigmoid(fused[samples])) ** 2).mean()
    torch.testing.assert_close(module.student_consistency_loss(fused, shifted, samples), expected)


@pytest.mark.e2e
def test_the_recipe_trainer_trains_through_nnunetv2_train(region_dataset, tmp_path):
    folder = tmp_path / "my_trainers"
    folder.mkdir()
    shutil.copy(RECIPE, folder / "recipe_trainer.py")
    env = region_dataset.train_env(num_epochs=1, num_iterations_per_epoch=2, num_val_iterations_per_epoch=1,
                                   final_validation=False, consistency_weight=0.5)
    env["nnUNet_extTrainer"] = str(folder)  # the site hook appends our own trainer folder
    log = tmp_path / "train.log"
    pipeline.train(region_dataset.dataset_id, "3d_fullres", 0, "nnUNetTrainerRecipeConsistency", env,
                   echo=False, log_file=log)
    fold = next((region_dataset.workdir / "nnUNet_results").glob(
        "*/nnUNetTrainerRecipeConsistency__nnUNetPlans__3d_fullres")) / "fold_0"
    assert json.loads((fold / "hyperparameters.json").read_text())["consistency_weight"] == 0.5
    assert (fold / "checkpoint_final.pth").is_file()
    value = float(re.search(r"consistency: ([0-9.]+)", log.read_text()).group(1))
    assert 0.0 < value < 1.0, "a mean squared difference of probabilities"
