"""benchmarks/gpu.py end to end on the CPU (``--device cpu --backend eager``): nnU-Net's real
trainer set-up with its compile step taken (nnU-Net compiles on CUDA only; the script forces it),
so the trainers' own compile choice runs as it will on a GPU: nnU-Net's whole-network compile
for its network, the regions for PRISM's multi-encoder network, one log line, no graph break,
the Markdown table the GPU run will print, and nothing written into the dataset's nnUNet_results
(every network's regions, the dynamic-sharing ones included, are compiled over all 15 masks in
tests/unit/networks/test_compile.py); ``doctor --vram`` without a GPU, its CPU estimate."""
import json
import re
import subprocess
import sys

import pytest

from helpers.cli import cli
from helpers.files import tree_hashes
from helpers.paths import BENCHMARKS

pytestmark = pytest.mark.e2e

SCRIPT = BENCHMARKS / "gpu.py"


def test_gpu_benchmark_smoke_run_on_the_cpu(region_dataset, tmp_path):
    env = {**region_dataset.train_env(), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "gpu.json"
    results = region_dataset.workdir / "nnUNet_results"
    before = tree_hashes(results)
    done = subprocess.run([sys.executable, str(SCRIPT), "-d", str(region_dataset.dataset_id), "--device", "cpu",
                           "--backend", "eager", "--trainers", "nnUNetTrainerPRISM",
                           "--modes", "compiled", "--warmup", "1", "--iterations", "1", "--json", str(out)],
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = {r["trainer"]: r for r in json.loads(out.read_text())["rows"]}
    assert list(rows) == ["nnUNetTrainer", "nnUNetTrainerPRISM"]  # the baseline added
    assert {t: r["compiled"] for t, r in rows.items()} == {
        "nnUNetTrainer": "whole network", "nnUNetTrainerPRISM": "regions"}
    for trainer, r in rows.items():
        assert r["graph_breaks"] == 0, (trainer, r["break_reasons"])
        assert r["relative_difference_to_eager"] == 0.0  # the eager backend runs the very same operations
        assert 0 < r["graphs_warmup"] + r["graphs_later"] + r["graphs_validation"] <= 16
    assert len(rows["nnUNetTrainerPRISM"]["log_lines"]) == 1, rows["nnUNetTrainerPRISM"]["log_lines"]  # nnU-Net's: none
    assert "instead of the whole network" in rows["nnUNetTrainerPRISM"]["log_lines"][0]
    table = [line for line in done.stdout.splitlines() if line.startswith("| nnUNetTrainer")]
    assert [line.split(" | ")[0] for line in table] == ["| nnUNetTrainer", "| nnUNetTrainerPRISM"]
    assert "backend eager; torch " in done.stdout and "nnU-Net 2.8" in done.stdout
    assert tree_hashes(results) == before, "the trial trainers' logs and checkpoints went to a scratch folder"


def test_doctor_vram_estimates_every_trainer_against_the_budget_on_the_cpu(region_dataset):
    """``doctor --vram GB`` without ``--cuda``: the CPU estimate per trainer (nnU-Net's network the
    reference, 1.00x), a budget nobody fits fails every trainer with how much it misses by. GMD
    counts what DS counts plus its own gradient buffers (``backward_held_bytes``), so more."""
    results = region_dataset.workdir / "nnUNet_results"
    before = tree_hashes(results)
    env = {**region_dataset.train_env(), "OMP_NUM_THREADS": "1"}
    r = cli("doctor", "-d", region_dataset.dataset_id, "-c", "3d_fullres", "-tr", "nnUNetTrainer",
            "nnUNetTrainerPRISM", "nnUNetTrainerGMD", "nnUNetTrainerDS", "--vram", "0.0001", env=env)
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]
    assert "ESTIMATE, not a GPU measurement" in r.stdout
    verdicts = {m["name"]: m for m in re.finditer(
        r"^  FAIL (?P<name>\S+): (?P<ratio>[\d.]+)x nnUNetTrainer's activations; estimated DOES NOT FIT "
        r"0\.0001 GiB: needs (?P<need>[\d.]+) GiB", r.stdout, re.MULTILINE)}
    assert set(verdicts) == {"nnUNetTrainer", "nnUNetTrainerPRISM", "nnUNetTrainerGMD", "nnUNetTrainerDS"}, r.stdout
    assert float(verdicts["nnUNetTrainer"]["ratio"]) == 1.0
    prism_ratio, needs = float(verdicts["nnUNetTrainerPRISM"]["ratio"]), {n: float(v["need"]) for n, v in verdicts.items()}
    assert prism_ratio > 0 and needs["nnUNetTrainer"] > 0
    rounding = 0.005 * (1 + prism_ratio + needs["nnUNetTrainer"])  # the printed values have two decimals
    assert needs["nnUNetTrainerPRISM"] == pytest.approx(prism_ratio * needs["nnUNetTrainer"], abs=rounding)
    assert float(verdicts["nnUNetTrainerGMD"]["ratio"]) > float(verdicts["nnUNetTrainerDS"]["ratio"]) > 0
    assert tree_hashes(results) == before
