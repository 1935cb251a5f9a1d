"""The contributor recipe's trainer (tests/data/recipe_trainer.py), kept in a folder of the
user's own, trains through nnU-Net's real ``nnUNetv2_train`` with its hyperparameter set."""
import json
import re

from helpers.datasets import train_users_trainer
from helpers.paths import DATA

RECIPE = DATA / "recipe_trainer.py"


def test_the_recipe_trainer_trains_through_nnunetv2_train(region_dataset, tmp_path):
    fold, log, _ = train_users_trainer(region_dataset, RECIPE, "nnUNetTrainerRecipeConsistency", tmp_path,
                                       num_epochs=1, num_iterations_per_epoch=2, num_val_iterations_per_epoch=1,
                                       final_validation=False, consistency_weight=0.5)
    assert json.loads((fold / "hyperparameters.json").read_text())["consistency_weight"] == 0.5
    assert (fold / "checkpoint_final.pth").is_file()
    value = float(re.search(r"consistency: ([0-9.]+)", log.read_text()).group(1))
    # A mean squared difference of probabilities; exactly 0 when every sample of the two batches
    # had one modality (its student row is then its fused row), which these missing rates allow.
    assert 0.0 <= value < 1.0
