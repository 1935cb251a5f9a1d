"""benchmarks/gpu.py's arithmetic and table (hand-made rows: no GPU needed), and the compile part
of ``nnunet_prism doctor --cuda``'s line. The script itself runs end to end on the CPU in
tests/e2e/test_e2e_gpu_benchmark.py."""
import json
import math

import pytest

from helpers.benchmarks import benchmark_module
from nnunet_prism.commands.doctor import describe


@pytest.fixture(scope="module")
def gpu():
    with benchmark_module("gpu") as module:
        yield module


def row(trainer, mode, seconds, graphs, warmup=2, **extra):
    """A measured row: steps with these seconds and graphs compiled in each."""
    return {"trainer": trainer, "mode": mode, "compiled": "regions" if mode == "compiled" else "off",
            "steps": [{"seconds": s, "graphs": g} for s, g in zip(seconds, graphs)], "warmup": warmup,
            "peak_memory_mb": 2048.0, "patch_size": [128, 128, 128], "batch_size": 2, "graphs_warmup": sum(graphs[:warmup]), "graphs_later": sum(graphs[warmup:]),
            "graphs_validation": 1, "graph_breaks": 0, "present_modalities_per_sample": 2.0,
            "relative_difference_to_eager": 2e-7 if mode == "compiled" else None, **extra}


def results(rows):
    header = {"device": "GPU X (80 GiB)", "torch": "2.11", "nnunet": "2.8.1", "date": "2026-12-04", "dataset": "990",
              "configuration": "3d_fullres", "warmup": 2, "iterations": 3,
              "memory": "torch.cuda.max_memory_allocated", "precision": "under autocast, float16", "command": "python gpu.py -d 990"}
    return {"header": header, "rows": rows}


def test_seconds_per_iteration_leave_out_the_steps_that_compiled_and_count_them_as_compile_time(gpu):
    # warm-up 30 s (compiling) and 1 s; timed 1.0, 9.0 (recompiled), 2.0
    summary = gpu.summarise(row("A", "compiled", [30.0, 1.0, 1.0, 9.0, 2.0], [4, 0, 0, 1, 0]))
    assert summary["s_per_it"] == pytest.approx(1.5)
    assert summary["compile_s"] == pytest.approx((30 - 1.5) + (9 - 1.5))
    assert (summary["timed_steps"], summary["timed_steps_compiling"]) == (3, 1)
    assert math.isnan(gpu.summarise(row("A", "compiled", [3.0, 3.0, 3.0], [1, 1, 1], warmup=1))["s_per_it"])


def test_ratios_are_to_nnunet_in_the_same_mode(gpu):
    rows = {(r["trainer"], r["mode"]): r for r in [
        row("nnUNetTrainer", "compiled", [9, 9, 1, 1, 1], [1, 0, 0, 0, 0]),
        row("nnUNetTrainer", "eager", [2, 2, 2, 2, 2], [0] * 5),
        row("nnUNetTrainerPRISM", "compiled", [9, 9, 3, 3, 3], [1, 0, 0, 0, 0]),
        row("nnUNetTrainerPRISM", "eager", [5, 5, 5, 5, 5], [0] * 5)]}
    assert gpu.ratio(rows, "nnUNetTrainerPRISM", "compiled") == pytest.approx(3.0)
    assert gpu.ratio(rows, "nnUNetTrainerPRISM", "eager") == pytest.approx(2.5)
    assert math.isnan(gpu.ratio(rows, "nnUNetTrainerGMD", "compiled"))  # not measured


def test_table_has_versions_targets_and_one_line_per_trainer_failures_included(gpu):
    table = gpu.markdown(results([
        row("nnUNetTrainerPRISM", "compiled", [9, 9, 3, 3, 3], [5, 0, 0, 0, 0]),
        row("nnUNetTrainer", "compiled", [9, 9, 1, 1, 1], [1, 0, 0, 0, 0]),
        row("nnUNetTrainer", "eager", [2, 2, 2, 2, 2], [0] * 5),
        row("nnUNetTrainerMissingModality", "compiled", [9, 9, 1.2, 1.2, 1.2], [5, 0, 0, 0, 0]),
        {"trainer": "nnUNetTrainerGMD", "mode": "compiled", "error": "CUDA out of memory"}]))
    lines = table.splitlines()
    assert lines[0].startswith("GPU X (80 GiB); torch 2.11; nnU-Net 2.8.1; 2026-12-04; dataset 990 3d_fullres "
                               "(patch 128x128x128, batch 2)")
    body = [line for line in lines if line.startswith("| nnUNet")]
    assert [line.split(" | ")[0] for line in body] == ["| nnUNetTrainer", "| nnUNetTrainerMissingModality",
                                                 "| nnUNetTrainerPRISM", "| nnUNetTrainerGMD"]  # TRAINERS' order
    prism = body[2].split(" | ")
    assert prism[1:4] == ["regions", "3.000 s", "–"] and prism[5] == "3.00x (NOT met: <= 2.0)"
    assert prism[7] == "6 s" and prism[8] == "5 / 0 / 1"  # only the first step compiled: 9 - 3
    assert prism[10] == "2.0e-07"
    assert body[1].split(" | ")[5] == "1.20x (met: <= 1.5)"
    assert "FAILED: compiled: CUDA out of memory" in body[3]
    assert all(line.count("|") == lines[2].count("|") for line in body), "every row has every column"


def test_doctor_line_says_what_torch_compile_did():
    measured = {"batch": 2, "patch": [128, 128, 128], "train": (0.5, 9.0), "validation": (0.2, 3.0),
                "predict": (1.0, 2.0), "compiled": "regions", "graphs_warmup": 6, "graphs_later": 3, "graph_breaks": 0}
    assert describe(measured).endswith("torch.compile regions: 6 graphs in the warm-up step, 3 recompiled after it, "
                                       "0 graph breaks")
    assert describe({**measured, "compiled": "off"}).endswith("; torch.compile off")


def test_append_keeps_measured_rows_and_the_budget_leaves_the_rest_not_run(gpu, tmp_path, capsys):
    out = tmp_path / "gpu.json"
    measured = row("nnUNetTrainer", "compiled", [9, 9, 1, 1, 1], [1, 0, 0, 0, 0])
    out.write_text(json.dumps(results([measured, {"trainer": "nnUNetTrainer", "mode": "eager",
                                                                 "error": "timed out after 480 s"}])))
    code = gpu.main(["-d", "990", "--device", "cpu", "--trainers", "nnUNetTrainerPRISM", "--json", str(out),
                     "--append", "--budget-s", "-1"])  # a spent budget: nothing is started
    rows = {(r["trainer"], r["mode"]): r for r in json.loads(out.read_text())["rows"]}
    assert code == 1 and rows[("nnUNetTrainer", "compiled")] == measured
    assert {k: v["error"] for k, v in rows.items() if k != ("nnUNetTrainer", "compiled")} == {
        ("nnUNetTrainer", "eager"): "not run (--budget-s -1)",  # a failed row is tried again
        ("nnUNetTrainerPRISM", "compiled"): "not run (--budget-s -1)",
        ("nnUNetTrainerPRISM", "eager"): "not run (--budget-s -1)"}
    assert "| nnUNetTrainerPRISM | FAILED: compiled: not run" in capsys.readouterr().out
