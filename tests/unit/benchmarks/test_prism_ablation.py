"""benchmarks/prism_ablation.py without training: the paired tests of every variant against PRISM
and MissingModality (mean over regions and per region) and the Markdown that reports them."""
from pathlib import Path

import pytest

from helpers.benchmarks import benchmark_module
from nnunet_prism.evaluation.results import SubsetResults

MODALITIES, REGIONS = ["FLAIR", "T1", "T1c", "T2"], ["WT", "TC", "ET"]


@pytest.fixture(scope="module")
def ablation():
    with benchmark_module("prism_ablation") as module:
        yield module


def results(path: Path, wt: float, seed_offset: float) -> Path:
    """subsets.json: 4 cases, WT = ``wt`` + a per-case step, TC 0.8, ET 0.6 in every subset."""
    r = SubsetResults(MODALITIES, REGIONS)
    for subset in r.subsets:
        for i in range(4):
            r.add_case(subset, f"case{i}", {"WT": {"Dice": wt + 0.01 * i + seed_offset}, "TC": {"Dice": 0.8},
                                            "ET": {"Dice": 0.6}})
    return r.save_json(path)


def row(trainer, variant, seed, path):
    return {"trainer": trainer, "variant": variant, "seed": seed, "hyperparameters": {}, "subsets_json": str(path),
            "regions": REGIONS, "mean_over_subsets": [0.9, 0.8, 0.6], "full_set": [0.9, 0.8, 0.6],
            "worst_subset": "T1", "worst_subset_dice": 0.5, "terms": ""}


def test_paired_tests_per_region_and_markdown(ablation, tmp_path):
    rows = {}
    for seed in (0, 1):
        for trainer, variant, wt in ((ablation.BASELINE, "default", 0.90), (ablation.PRISM, "default", 0.85),
                                     (ablation.PRISM, "no_proto", 0.88)):
            path = results(tmp_path / f"{variant}_{trainer}_{seed}.json", wt, 0.001 * seed)
            rows[f"{trainer}{variant}{seed}"] = row(trainer, variant, seed, path)
    tests = ablation.paired_tests(rows)
    found = {(c["a"], c["b"], c["region"]): c for c in tests}
    # PRISM vs MissingModality and no_proto vs both, each on the mean, on WT, TC, ET and WT's fusion gain
    assert len(tests) == 3 * 5
    assert found[("PRISM", "MissingModality", "WT fusion gain")]["mean_diff"] == pytest.approx(0.0)  # flat WT
    wt = found[("PRISM", "MissingModality", "WT")]
    assert wt["n"] == 8 and wt["mean_diff"] == pytest.approx(-0.05) and wt["p_value"] < 0.01
    assert found[("PRISM", "MissingModality", "mean")]["mean_diff"] == pytest.approx(-0.05 / 3)
    assert found[("PRISM", "MissingModality", "TC")]["p_value"] == 1.0  # every difference zero
    assert found[("PRISM no_proto", "PRISM", "WT")]["mean_diff"] == pytest.approx(0.03)
    text = ablation.markdown(rows, tmp_path / "Dataset985_SynDev", tests)
    assert "| PRISM no_proto | PRISM | WT | 0, 1 | +0.0300 | 8 |" in text
    assert "| PRISM | MissingModality | mean | 0, 1 | -0.0167 | 8 |" in text
