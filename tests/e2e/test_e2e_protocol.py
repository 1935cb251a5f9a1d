"""End to end: a protocol (the tests' tiny list) applied to a copy of the synthetic region set,
a short training on the protocol's fold, and ``nnunet_prism evaluate`` with and without ET
post-processing and with ``--compare`` (about a minute and a half on two CPU cores once the
session's synthetic set exists)."""
import csv
import json
import shutil
from pathlib import Path

import pytest

from helpers.cli import cli
from helpers.datasets import PreparedDataset, nnunet_env
from helpers.paths import DATA

TINY = DATA / "protocol_tiny.json"
TRAINER = "nnUNetTrainerMissingModality"


def copy_dataset(source: PreparedDataset, workdir: Path, dataset_id: int, name: str) -> PreparedDataset:
    """The raw and preprocessed folders of ``source`` under a new id (plans renamed, no splits)."""
    env = nnunet_env(workdir)
    new_name = f"Dataset{dataset_id:03d}_{name}"
    raw = workdir / "nnUNet_raw" / new_name
    shutil.copytree(source.dataset_folder, raw)
    old_pre = source.workdir / "nnUNet_preprocessed" / source.dataset_folder.name
    pre = workdir / "nnUNet_preprocessed" / new_name
    shutil.copytree(old_pre, pre, ignore=shutil.ignore_patterns("splits_final.json"))
    plans = json.loads((pre / "nnUNetPlans.json").read_text())
    plans["dataset_name"] = new_name
    (pre / "nnUNetPlans.json").write_text(json.dumps(plans))
    return PreparedDataset(workdir, dataset_id, raw, env)


@pytest.mark.e2e
def test_protocol_train_evaluate_with_et_postprocessing_and_compare(region_dataset, trained, tmp_path_factory):
    work = tmp_path_factory.mktemp("protocol")
    dataset = copy_dataset(region_dataset, work, 975, "SynProtocol")
    r = cli("protocol", TINY, "-d", 975, "--test-dir", work / "test", env=dataset.env)
    assert r.returncode == 0, r.stderr
    assert "2 test case(s) moved" in r.stdout
    splits = json.loads((work / "nnUNet_preprocessed" / dataset.dataset_folder.name / "splits_final.json").read_text())
    assert splits[0]["val"] == ["SynBraTS_006", "SynBraTS_007"]

    model = trained(dataset, TRAINER)
    common = ["-d", 975, "-c", "3d_fullres", "-tr", TRAINER, "-f", 0, "-device", "cpu", "--disable_tta"]

    # the protocol's validation fold, nnU-Net's convention, no post-processing
    r = cli("evaluate", *common, "-o", work / "eval_val", env=dataset.env)
    assert r.returncode == 0, r.stderr
    with open(work / "eval_val" / "subsets_per_case.csv") as f:
        assert {row["case"] for row in csv.DictReader(f)} == {"SynBraTS_006", "SynBraTS_007"}
    md = (work / "eval_val" / "subsets.md").read_text()
    assert "(pp " not in md and "Evaluation convention: nnunet" in md

    # the protocol's test cases, ET post-processing, lesion-wise Dice, beside the published rows
    r = cli("evaluate", *common, "-i", work / "test" / "imagesTs", "-l", work / "test" / "labelsTs",
            "-o", work / "eval_test", "--et-min-voxels", 500, "--metrics", "Dice", "HD95", "LesionDice",
            "--compare", "BraTS2020", env=dataset.env)
    assert r.returncode == 0, r.stderr
    results = json.loads((work / "eval_test" / "subsets.json").read_text())
    assert results["regions"] == ["WT", "TC", "ET", "ET (pp 500)"]
    assert results["metrics"] == ["Dice", "HD95", "LesionDice"]
    cases = {c for per_subset in results["cases"].values() for c in per_subset}
    assert cases == {"SynBraTS_008", "SynBraTS_009"}
    assert "ET (pp 500) Dice" in r.stdout and "ET raw" in r.stdout
    assert f"Evaluation convention of {TRAINER}: brats; of the published rows: brats" in r.stdout
    assert "| RFNet | BraTS2020 |" in r.stdout and model.fold.is_dir()
