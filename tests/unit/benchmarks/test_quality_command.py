"""benchmarks/quality.py without training: it records its command line in summary.md and
results.json without the machine's paths (the work folder relative to the repository, or WORKDIR
outside it); the 3d preset and its options, which cases a fold trains on and their realised
missing rates, the comparisons tested, and that a work folder written before ``--fold`` existed
still resumes."""
import json
from pathlib import Path

import pytest

from helpers.benchmarks import benchmark_module
from helpers.paths import REPOSITORY as REPO


@pytest.fixture(scope="module")
def quality():
    with benchmark_module("quality") as module:
        yield module


@pytest.mark.parametrize("argv", [["--workdir", "/root/quality_run", "--seeds", "0"],
                                  ["--workdir=/root/quality_run", "--seeds", "0"],
                                  ["--work", "/root/quality_run", "--seeds", "0"]])
def test_a_work_folder_outside_the_repository_is_recorded_as_a_placeholder(quality, argv):
    command = quality.recorded_command(argv, Path("/root/quality_run"))
    assert "/root" not in command
    assert command.startswith("python benchmarks/quality.py --work")
    assert command.endswith("WORKDIR --seeds 0")


def test_a_work_folder_inside_the_repository_is_recorded_relative_to_it(quality):
    command = quality.recorded_command(["--smoke", "--workdir", "x"], REPO / "benchmarks" / "output" / "x")
    assert command == "python benchmarks/quality.py --smoke --workdir benchmarks/output/x"
    assert quality.recorded_command([], REPO / "benchmarks" / "output" / "quality") == "python benchmarks/quality.py"


def test_default_is_the_2d_benchmark_and_preset_3d_sets_the_3d_one(quality):
    args = quality.parse_args([])
    assert (args.configuration, args.fold, args.missing_rates, args.comparisons) == ("2d", 0, (0.2, 0.4, 0.6, 0.8), None)
    assert args.batch_size == 12 and args.num_cases == 24 and args.test_cases == 8 and args.epochs == 10
    args = quality.parse_args(["--preset", "3d"])
    assert args.configuration == "3d_fullres" and args.batch_size == 0 and tuple(args.shape) == (48, 48, 48)
    assert args.fold == "all" and args.missing_rates == (0.55, 0.10, 0.35, 0.70)
    assert (args.num_cases, args.test_cases, args.epochs, args.iterations) == (40, 12, 6, 50)
    assert args.trainers == ["nnUNetTrainerPRISM", "nnUNetTrainerMissingModality", "nnUNetTrainerModalityDropout"]
    assert args.workdir.endswith("quality3d")
    # explicit options win over the preset
    args = quality.parse_args(["--preset", "3d", "--num-cases", "32", "--fold", "2", "--missing-rates", "0", ".1", ".2", ".3"])
    assert args.num_cases == 32 and args.fold == 2 and args.missing_rates == (0.0, 0.1, 0.2, 0.3)
    with pytest.raises(SystemExit):
        quality.parse_args(["--fold", "first"])


def test_comparison_pairs(quality):
    trainers = ["nnUNetTrainerPrismBase", "nnUNetTrainerMissingModality", "nnUNetTrainerPRISM"]
    assert quality.comparison_pairs(trainers) == [
        ("nnUNetTrainerMissingModality", "nnUNetTrainerPrismBase"), ("nnUNetTrainerPRISM", "nnUNetTrainerPrismBase"),
        ("nnUNetTrainerPRISM", "nnUNetTrainerMissingModality")]
    preset = quality.PRESET_3D["comparisons"]
    assert quality.comparison_pairs(quality.PRESET_3D["trainers"], preset) == [
        ("nnUNetTrainerPRISM", "nnUNetTrainerMissingModality"), ("nnUNetTrainerPRISM", "nnUNetTrainerModalityDropout"),
        ("nnUNetTrainerMissingModality", "nnUNetTrainerModalityDropout")]
    # a pair with an unfinished trainer is left out
    assert quality.comparison_pairs(["nnUNetTrainerPRISM", "nnUNetTrainerMissingModality"], preset) == [
        ("nnUNetTrainerPRISM", "nnUNetTrainerMissingModality")]
    with pytest.raises(SystemExit, match="not A:B"):
        quality.comparison_pairs(trainers, ["nnUNetTrainerPRISM"])


def test_training_cases_and_realised_missing_rates(quality, tmp_path):
    raw, preprocessed = tmp_path / "raw", tmp_path / "preprocessed"
    (raw / "labelsTr").mkdir(parents=True)
    preprocessed.mkdir()
    availability = {"c0": [1, 1, 1, 0], "c1": [0, 1, 1, 0], "c2": [0, 1, 0, 1], "c3": [1, 0, 1, 1],
                    "test0": [0, 0, 0, 1]}  # an unlabelled test case is not trained on
    (raw / "dataset.json").write_text(json.dumps({"channel_names": {"0": "FLAIR", "1": "T1", "2": "T1c", "3": "T2"},
                                                 "file_ending": ".nii.gz", "modality_availability": availability}))
    for case in ("c0", "c1", "c2", "c3"):
        (raw / "labelsTr" / f"{case}.nii.gz").write_bytes(b"")
    all_rates = quality.realised_missing_rates(raw, preprocessed, "all")
    assert all_rates == {"cases": 4, "rates": pytest.approx([0.5, 0.25, 0.25, 0.5])}
    assert quality.realised_missing_rates(raw, preprocessed, 0) == {}  # the split is not written yet
    (preprocessed / "splits_final.json").write_text(json.dumps([{"train": ["c2", "c0"], "val": ["c1", "c3"]}]))
    assert quality.training_cases(["c3", "c1"], "all") == ["c1", "c3"]
    assert quality.realised_missing_rates(raw, preprocessed, 0) == {"cases": 2, "rates": pytest.approx([0.5, 0, 0.5, 0.5])}


def test_work_folder_of_before_the_fold_option_still_resumes(quality, tmp_path):
    args = quality.parse_args(["--workdir", str(tmp_path)])
    old = {k: v for k, v in quality.setup_of(args).items() if k != "fold"}
    (tmp_path / "setup.json").write_text(json.dumps({"setup": old, "dataset": "Dataset983_SynBraTS", "heldout": "x",
                                                     "patch_size": [32, 32], "batch_size": 12}))
    done = quality.prepare(tmp_path, {}, args)  # matches: nothing is prepared again
    assert done["setup"]["fold"] == 0 and done["dataset"] == "Dataset983_SynBraTS"
    with pytest.raises(SystemExit, match="another set-up"):
        quality.prepare(tmp_path, {}, quality.parse_args(["--workdir", str(tmp_path), "--fold", "all"]))


@pytest.mark.parametrize("argv", [[], ["--preset", "3d"], ["--preset", "3d", "--tta", "--fold", "1", "--shape", "40", "40", "32"]])
def test_args_of_setup_reproduce_the_setup(quality, argv, tmp_path):
    setup = quality.setup_of(quality.parse_args(argv))
    again = quality.args_of_setup(setup, tmp_path)
    assert quality.setup_of(again) == setup and again.workdir == str(tmp_path)


def test_report_only_trains_nothing_and_reports_the_finished_runs(quality, tmp_path, monkeypatch):
    (tmp_path / "runs").mkdir()
    finished = {"trainer": "nnUNetTrainerPRISM", "seed": 0, "evaluation": "evaluation/x"}
    (tmp_path / "runs" / "nnUNetTrainerPRISM__seed0.json").write_text(json.dumps(finished))
    setup = {"setup": {"configuration": "2d"}, "dataset": "Dataset983_SynBraTS", "patch_size": [32, 32],
             "batch_size": 12}
    monkeypatch.setattr(quality, "prepare", lambda workdir, env, args: setup)
    monkeypatch.setattr(quality, "realised_missing_rates", lambda *a: None)
    seen = {}

    def analyse(workdir, runs, args, report):
        seen.update(runs=dict(runs), missing=list(report["missing_runs"]))
        return "summary\n"

    monkeypatch.setattr(quality, "analyse", analyse)
    monkeypatch.setattr(quality, "run_one", lambda trainer, seed, *a, **k: (
        json.loads((tmp_path / "runs" / f"{trainer}__seed{seed}.json").read_text())
        if (tmp_path / "runs" / f"{trainer}__seed{seed}.json").is_file() else pytest.fail(f"trained {trainer} {seed}")))
    code = quality.main(["--workdir", str(tmp_path), "--trainers", "nnUNetTrainerPRISM", "nnUNetTrainerModalityDropout",
                         "--seeds", "0", "1", "--report-only"])
    assert code == 0 and list(seen["runs"]) == ["nnUNetTrainerPRISM__seed0"]
    assert seen["missing"] == ["nnUNetTrainerModalityDropout__seed0", "nnUNetTrainerPRISM__seed1",
                               "nnUNetTrainerModalityDropout__seed1"]
    assert (tmp_path / "summary.md").read_text() == "summary\n"
