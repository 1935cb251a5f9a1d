"""Hyperparameters that only the dataset shows to be wrong, through both commands: refused by
``nnunet_prism train`` before nnU-Net starts and by the trainer itself under plain
``nnUNetv2_train``, each as one line with exit code 2; nothing in nnUNet_results changes."""
import json
import subprocess

from helpers.cli import cli
from helpers.files import tree_hashes
from nnunet_prism import pipeline


def test_dataset_dependent_checks_through_both_commands(region_dataset):
    """missing_rates of the wrong length: refused by nnunet_prism train before nnU-Net starts, and
    by the trainer itself under nnUNetv2_train, each as one line; nothing in nnUNet_results changes."""
    results = region_dataset.workdir / "nnUNet_results"
    before = tree_hashes(results)
    env = region_dataset.train_env()
    r = cli("train", region_dataset.dataset_id, "3d_fullres", "0", "-tr", "nnUNetTrainerPRISM",
            "--hp", "missing_rates=[0.2,0.4]", "-device", "cpu", env=env)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == ("nnunet_prism train: error: hyperparameter missing_rates=[0.2, 0.4]: "
                                                 "need one missing rate per modality (4), got 2 (FLAIR, T1, T1c, T2).")
    env["nnUNet_prism_hparams"] = json.dumps({"nnUNetTrainerShaSpec": {"fixed_subset": "FLAIR+T1ce"}})
    r = subprocess.run([*pipeline.nnunet_command("nnUNetv2_train"), str(region_dataset.dataset_id), "3d_fullres",
                        "0", "-tr", "nnUNetTrainerShaSpec", "-device", "cpu"], env=env, capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("nnunet_prism: error: hyperparameter fixed_subset='FLAIR+T1ce'")
    assert tree_hashes(results) == before
