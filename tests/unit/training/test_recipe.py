"""A new trainer written to the contributor recipe (tests/data/recipe_trainer.py) is found by the
trainer discovery and gets its hyperparameter checked and documented (it trains through nnU-Net in
tests/e2e/test_e2e_recipe.py)."""
import importlib
import re
import shutil
import sys

import pytest

import nnunet_prism.training.trainers as trainers_package
from helpers.paths import DATA
from nnunet_prism.training import hyperparameters as hp
from nnunet_prism.training.hyperparameters.table import markdown_table
from nnunet_prism.training.registry import trainer_classes

RECIPE = DATA / "recipe_trainer.py"


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
