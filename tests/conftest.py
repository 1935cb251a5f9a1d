"""Shared fixtures: small synthetic BraTS-like datasets that went through nnU-Net's real
``nnUNetv2_plan_and_preprocess`` once per test session (that step alone takes about a minute),
and short trainings of them shared by the tests that only need a model. Also: every test under
``tests/e2e/`` is marked ``e2e``, and ``gpu`` tests are skipped where torch sees no CUDA device."""
from pathlib import Path

import pytest

from helpers.datasets import SHORT_SCHEDULE, PreparedDataset, TrainedModel, prepare_dataset
from nnunet_prism import pipeline

E2E_FOLDER = Path(__file__).parent / "e2e"


def pytest_collection_modifyitems(config, items):
    import torch

    no_cuda = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if E2E_FOLDER in Path(item.fspath).parents:
            item.add_marker(pytest.mark.e2e)
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(no_cuda)


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
    return prepare_dataset(tmp_path_factory.mktemp("SynRegions"), "SynRegions", 971, label_based=False)


@pytest.fixture(scope="session")
def label_dataset(tmp_path_factory):
    """Label-based (softmax) version of the same synthetic set."""
    return prepare_dataset(tmp_path_factory.mktemp("SynLabels"), "SynLabels", 972, label_based=True)


@pytest.fixture(scope="module")
def single_torch_thread():
    """One torch thread for a module's tests (small networks: thread start-up costs more than it
    saves, and the timings of gradient tests stay stable)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
