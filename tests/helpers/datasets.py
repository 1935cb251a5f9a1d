"""The tests' synthetic BraTS-like datasets: made by the phantom generator, converted by
``nnunet_prism convert-brats`` and planned by nnU-Net's real ``nnUNetv2_plan_and_preprocess``;
trained models of them on a short schedule (the fixtures in ``conftest.py`` share both)."""
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from dataset_conversion.brats import convert_brats
from dataset_conversion.synthetic import generate_synthetic_brats
from helpers.cli import cli
from nnunet_prism import pipeline

SHAPE = (40, 40, 40)

# nnU-Net's validation export after training runs once, in the foundation test; the others skip it
SHORT_SCHEDULE = dict(num_epochs=1, num_iterations_per_epoch=2, num_val_iterations_per_epoch=1,
                      final_validation=False)


@dataclass
class PreparedDataset:
    workdir: Path
    dataset_id: int
    dataset_folder: Path
    env: dict  # for nnU-Net commands; nnUNet_extTrainer deliberately left to the site hook

    def train_env(self, **hyperparameters):
        env = pipeline.nnunet_environment(self.workdir, hyperparameters, base=self.env)
        env.pop("nnUNet_extTrainer", None)  # the installed site hook must find our trainers
        env["nnUNet_n_proc_DA"] = "0"
        return env


@dataclass
class TrainedModel:
    dataset: PreparedDataset
    trainer: str
    folder: Path  # nnUNet_results/DatasetXXX_*/<trainer>__nnUNetPlans__3d_fullres
    env: dict

    @property
    def fold(self) -> Path:
        return self.folder / "fold_0"


def nnunet_env(workdir: Path) -> dict:
    env = pipeline.nnunet_environment(workdir)
    env.pop("nnUNet_extTrainer", None)
    env.pop("nnUNet_prism_hparams", None)
    env["nnUNet_def_n_proc"] = "1"
    env.pop("nnUNet_n_proc_DA", None)  # the planner fails on 0
    env.pop("nnUNet_compile", None)
    return env


def prepare_dataset(workdir: Path, name: str, dataset_id: int, label_based: bool) -> PreparedDataset:
    """10 labelled phantom cases and 2 unlabelled test cases, converted with missing rates
    0.2/0.4/0.6/0.8 and planned + preprocessed for 3d_fullres, all through the real commands."""
    env = nnunet_env(workdir)
    source = workdir / "source"
    test_source = workdir / "source_test"
    for args in (["synthetic", "-o", source, "-n", 10, "--shape", *SHAPE, "--seed", 0],
                 ["synthetic", "-o", test_source, "-n", 2, "--shape", *SHAPE, "--seed", 99,
                  "--prefix", "SynTest", "--unlabelled"]):
        r = cli(*args, env=env)
        assert r.returncode == 0, r.stderr
    convert = ["convert-brats", "-i", source, test_source, "-d", dataset_id, "-n", name,
               "--missing-rates", "0.2,0.4,0.6,0.8", "--seed", 1]
    r = cli(*convert, *(["--label-based"] if label_based else []), env=env)
    assert r.returncode == 0, r.stderr
    pipeline.plan_and_preprocess(dataset_id, env, echo=False, log_file=workdir / "plan.log")
    folder = next((workdir / "nnUNet_raw").glob(f"Dataset{dataset_id:03d}_*"))
    return PreparedDataset(workdir, dataset_id, folder, env)


def complete_labelled_folder(ds: PreparedDataset, tmp_path: Path, dataset_id: int) -> Path:
    """Two complete labelled cases in nnU-Net's naming, converted with the dataset's label setup."""
    source = tmp_path / "complete_source"
    generate_synthetic_brats(source, num_cases=2, shape=SHAPE, seed=123, prefix="SynComplete")
    label_based = "regions_class_order" not in json.loads((ds.dataset_folder / "dataset.json").read_text())
    return convert_brats([source], dataset_id, "Complete", raw_root=tmp_path / "raw", label_based=label_based)


def train_users_trainer(ds: PreparedDataset, trainer_file: Path, trainer: str, workdir: Path,
                        **hyperparameters) -> tuple:
    """``nnUNetv2_train`` of ``trainer`` from ``trainer_file``, kept in a folder of the user's own
    (``nnUNet_extTrainer``; the site hook appends ours), fold 0 of ``ds`` with ``hyperparameters``.
    Returns (the fold folder, the log of the run, the environment it ran in)."""
    folder = workdir / "my_trainers"
    folder.mkdir()
    shutil.copy(trainer_file, folder / trainer_file.name)
    env = ds.train_env(**hyperparameters)
    env["nnUNet_extTrainer"] = str(folder)
    log = workdir / "train.log"
    pipeline.train(ds.dataset_id, "3d_fullres", 0, trainer, env, echo=False, log_file=log)
    fold = next((ds.workdir / "nnUNet_results").glob(f"*/{trainer}__nnUNetPlans__3d_fullres")) / "fold_0"
    return fold, log, env
