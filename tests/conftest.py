"""Shared fixtures: small synthetic BraTS-like datasets that went through nnU-Net's real
``nnUNetv2_plan_and_preprocess`` once per test session (that step alone takes about a minute)."""
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from nnunet_prism import pipeline

SHAPE = (40, 40, 40)


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


def cli(*args, env=None):
    """Run ``nnunet_prism ARGS`` as a user would; return the completed process."""
    return subprocess.run([sys.executable, "-m", "nnunet_prism.cli", *map(str, args)], env=env,
                          capture_output=True, text=True)


def nnunet_env(workdir: Path) -> dict:
    env = pipeline.nnunet_environment(workdir)
    env.pop("nnUNet_extTrainer", None)
    env.pop("nnUNet_prism_hparams", None)
    env["nnUNet_def_n_proc"] = "1"
    env.pop("nnUNet_n_proc_DA", None)  # the planner fails on 0
    env.pop("nnUNet_compile", None)
    return env


def _prepare(tmp_path_factory, name, dataset_id, label_based):
    workdir = tmp_path_factory.mktemp(name)
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


# nnU-Net's validation export after training runs once, in the foundation test; the others skip it
SHORT_SCHEDULE = dict(num_epochs=1, num_iterations_per_epoch=2, num_val_iterations_per_epoch=1,
                      final_validation=False)


@dataclass
class TrainedModel:
    dataset: PreparedDataset
    trainer: str
    folder: Path  # nnUNet_results/DatasetXXX_*/<trainer>__nnUNetPlans__3d_fullres
    env: dict

    @property
    def fold(self) -> Path:
        return self.folder / "fold_0"


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """``trained(dataset, trainer)``: fold 0 of ``trainer`` after ``nnUNetv2_train`` with
    SHORT_SCHEDULE, trained once per session and shared by the tests that only need a model."""
    cache = {}

    def get(dataset: PreparedDataset, trainer: str) -> TrainedModel:
        key = (dataset.dataset_id, trainer)
        if key not in cache:
            env = dataset.train_env(**SHORT_SCHEDULE)
            log = tmp_path_factory.mktemp(f"train_{trainer}") / "train.log"
            pipeline.train(dataset.dataset_id, "3d_fullres", 0, trainer, env, echo=False, log_file=log)
            results = dataset.workdir / "nnUNet_results"
            folder = next(results.glob(f"Dataset{dataset.dataset_id:03d}_*/{trainer}__nnUNetPlans__3d_fullres"))
            cache[key] = TrainedModel(dataset, trainer, folder, env)
        return cache[key]

    return get


@pytest.fixture(scope="session")
def region_dataset(tmp_path_factory):
    """Region-based (WT/TC/ET, sigmoid) synthetic set, incomplete with rates 0.2/0.4/0.6/0.8."""
    return _prepare(tmp_path_factory, "SynRegions", 971, label_based=False)


@pytest.fixture(scope="session")
def label_dataset(tmp_path_factory):
    """Label-based (softmax) version of the same synthetic set."""
    return _prepare(tmp_path_factory, "SynLabels", 972, label_based=True)


@pytest.fixture(scope="module")
def single_torch_thread():
    """One torch thread for a module's tests (small networks: thread start-up costs more than it
    saves, and the timings of gradient tests stay stable)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
