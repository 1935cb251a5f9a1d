"""The contributor recipe's trainer (tests/data/recipe_trainer.py), kept in a folder of the
user's own, trains through nnU-Net's real ``nnUNetv2_train`` with its hyperparameter set."""
import json
import re
import shutil

from helpers.paths import DATA
from nnunet_prism import pipeline

RECIPE = DATA / "recipe_trainer.py"


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
