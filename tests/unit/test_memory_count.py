"""``nnunet_prism.memory_count`` and ``nnunet_prism doctor --vram``: the fit verdict and by how
much a step misses, the CPU estimate's arithmetic, the reduced patch it counts at, nnU-Net's
planner estimate, and the one-line errors of the command (the GPU paths with a stand-in for the
measurement)."""
import json
from types import SimpleNamespace

import pytest
import torch

from helpers.benchmarks import benchmark_module
from helpers.paths import BENCHMARKS
from nnunet_prism import cli
from nnunet_prism.commands import doctor
from nnunet_prism.memory_count import Fit, SavedBytes, estimate_need, nnunet_vram_estimate, reduced_patch


def test_fit_says_what_is_left_or_by_how_much_it_misses():
    fits = Fit(need=7.4, budget=12)
    assert fits.fits and fits.margin == pytest.approx(4.6)
    assert fits.describe() == "fits 12 GiB (7.40 GiB, 4.60 GiB to spare)"
    misses = Fit(need=9.4, budget=8)
    assert not misses.fits and misses.margin == pytest.approx(-1.4)
    assert misses.describe() == "DOES NOT FIT 8 GiB: needs 9.40 GiB, 1.40 GiB over"
    assert Fit(need=8.0, budget=8).fits, "exactly the budget fits"


def test_estimate_scales_nnunets_need_by_the_counted_ratio():
    assert estimate_need(counted=3.0, nnunet_counted=2.0, nnunet_need=6.0) == pytest.approx(9.0)
    assert estimate_need(counted=2.0, nnunet_counted=2.0, nnunet_need=6.0) == pytest.approx(6.0)


def test_reduced_patch_halves_the_longest_axes_and_keeps_the_strides():
    strides = [[1, 1, 1]] + [[2, 2, 2]] * 5  # the BraTS2021-like plan: total stride 32
    assert reduced_patch([128, 128, 128], strides) == [32, 32, 64]
    assert reduced_patch([128, 128, 128], strides, max_voxels=128 ** 3) == [128, 128, 128]
    anisotropic = [[1, 1, 1], [1, 2, 2], [2, 2, 2]]  # total stride 2, 4, 4
    assert reduced_patch([8, 64, 64], anisotropic, max_voxels=1024) == [4, 16, 16]
    assert reduced_patch([2, 4, 4], [[1, 1, 1], [2, 4, 4]], max_voxels=1) == [2, 4, 4], "nothing to halve"


def test_nnunet_planner_estimate_at_the_brats_plan():
    """nnU-Net's planner formula (feature maps x batch / reference x 8 GB) for its own network at
    the BraTS2021-like plan: 6.48 (its AMP step measured 4.76 GiB on an H200)."""
    with benchmark_module("memory") as memory:
        plans_manager, cm, label_manager, _ = memory.load_plans(BENCHMARKS / "brats2021_like_plans.json",
                                                                BENCHMARKS / "brats2021_like_dataset.json",
                                                                "3d_fullres")
        network = memory.build_network("nnUNetTrainer", plans_manager, cm, 4, label_manager.num_segmentation_heads)
    assert nnunet_vram_estimate(network, cm.patch_size, cm.batch_size) == pytest.approx(6.48, abs=0.01)


def test_saved_bytes_count_each_storage_once_and_leave_parameters_out():
    weight = torch.nn.Parameter(torch.randn(64, 64))
    x = torch.randn(16, 64)
    with SavedBytes(exclude=[weight], include=[x]) as counter:
        y = x @ weight          # saves x (included already) and the weight (a parameter)
        z = (y * y).sum()       # saves y once, although both factors are y
    del z
    assert counter.total == x.nbytes + y.nbytes and counter.largest_region == 0


def test_doctor_cuda_line_says_whether_the_step_fits():
    measured = {"batch": 2, "patch": [128, 128, 128], "train": (0.5, 9.0, 9.4), "validation": (0.2, 3.0, 3.1),
                "predict": (1.0, 2.0, 2.2), "compiled": "off", "graphs_warmup": 0, "graphs_later": 0,
                "graph_breaks": 0}
    assert doctor.describe(measured, 8).endswith("; torch.compile off; training step DOES NOT FIT 8 GiB: needs "
                                                 "9.40 GiB, 1.40 GiB over reserved")
    assert doctor.describe(measured, 12).endswith("training step fits 12 GiB (9.40 GiB, 2.60 GiB to spare) reserved")
    assert "fits" not in doctor.describe(measured)


def test_doctor_cuda_vram_fails_the_trainers_that_miss(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "GPU X")
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: type("P", (), {"total_memory": 2 ** 34}))
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(doctor.discovery, "list_trainers", lambda: [])
    peaks = {"nnUNetTrainer": 4.9, "nnUNetTrainerGMD": 8.6}
    monkeypatch.setattr(doctor, "_check_trainer", lambda name, args, device: {
        "batch": 2, "patch": [128] * 3, "train": (0.3, peaks[name] - 0.2, peaks[name]), "validation": (0.1, 1, 1),
        "predict": (0.5, 1, 1), "compiled": "off", "graphs_warmup": 0, "graphs_later": 0, "graph_breaks": 0})
    code = cli.main(["doctor", "--cuda", "-d", "990", "-tr", "nnUNetTrainer", "nnUNetTrainerGMD", "--vram", "8"])
    out = capsys.readouterr().out.splitlines()
    assert code == 1
    assert out[-2].startswith("  ok   nnUNetTrainer: ") and "fits 8 GiB (4.90 GiB, 3.10 GiB to spare)" in out[-2]
    assert out[-1].startswith("  FAIL nnUNetTrainerGMD: ") and out[-1].endswith("needs 8.60 GiB, 0.60 GiB over reserved")


def test_doctor_vram_needs_a_dataset_and_a_positive_budget(monkeypatch, capsys):
    monkeypatch.setattr(doctor.discovery, "list_trainers", lambda: [])
    assert cli.main(["doctor", "--vram", "12"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--vram" in err[0] and "-d ID" in err[0]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["doctor", "-d", "990", "--vram", "-3"])
    assert exit_info.value.code == 2 and "--vram" in capsys.readouterr().err


def test_doctor_vram_estimate_prints_one_line_per_trainer(monkeypatch, capsys):
    """The CPU estimate's arithmetic and lines, with stand-in counts (``_counted_step``, the
    counting through a real trainer, needs a preprocessed dataset and is not tested here)."""
    monkeypatch.setattr(doctor.discovery, "list_trainers", lambda: [])
    counts = {"nnUNetTrainer": 2.0, "nnUNetTrainerPRISM": 1.5, "nnUNetTrainerGMD": 2.6}
    monkeypatch.setattr(doctor, "_counted_step", lambda name, args: {
        "counted": counts[name] * 2 ** 30, "patch": [32, 32, 64], "plan_patch": [128] * 3, "nnunet_estimate": 6.0})
    code = cli.main(["doctor", "-d", "990", "-tr", "nnUNetTrainerPRISM", "nnUNetTrainerGMD", "--vram", "7"])
    out = capsys.readouterr().out.splitlines()
    assert code == 1
    assert out[-3].startswith("ESTIMATE, not a GPU measurement") and "32x32x64" in out[-3] and "6.00 GiB" in out[-3]
    assert out[-2] == ("  ok   nnUNetTrainerPRISM: 0.75x nnUNetTrainer's activations; estimated fits 7 GiB "
                       "(4.50 GiB, 2.50 GiB to spare)")
    assert out[-1] == ("  FAIL nnUNetTrainerGMD: 1.30x nnUNetTrainer's activations; estimated DOES NOT FIT 7 GiB: "
                       "needs 7.80 GiB, 0.80 GiB over")


def test_memory_benchmark_json_lists_every_trainer(tmp_path):
    with benchmark_module("memory") as memory:
        trainers = set(memory.TRAINERS)
    assert trainers == {
        "nnUNetTrainer", "nnUNetTrainerModalityDropout", "nnUNetTrainerMissingModality", "nnUNetTrainerPRISM",
        "nnUNetTrainerShaSpec", "nnUNetTrainerGMD", "nnUNetTrainerDS"}
    assert json.loads((BENCHMARKS / "brats2021_like_plans.json").read_text())["configurations"]


def test_memory_benchmark_adds_gmds_own_gradient_buffers_to_its_peak():
    """GMD's row: saved + recomputed region + its skip-gradient accumulators (scaled with the patch)
    and k subset gradients of the shared decoder (not scaled); DS's row (the same network and
    subset losses, one summed backward) adds nothing, so GMD's peak is above DS's."""
    with benchmark_module("memory") as memory:
        args = SimpleNamespace(plans=memory.DEFAULT_PLANS, dataset_json=memory.DEFAULT_DATASET,
                               configuration="3d_fullres", patch=[32, 32, 64], present=[2], checkpoint_rows=None,
                               only=["nnUNetTrainer", "nnUNetTrainerGMD", "nnUNetTrainerDS"], device="cpu",
                               step_time=0, step_present=[4])
        rows = {(r["trainer"], r["saving"]): r for r in memory.measure(args)["rows"]}
    gmd, ds = rows["nnUNetTrainerGMD", "network"], rows["nnUNetTrainerDS", "network"]
    assert gmd["saved_bytes"] == ds["saved_bytes"] and ds["backward_held_bytes"] == 0
    assert gmd["backward_held_bytes"] > 0.1 * gmd["saved_bytes"]
    assert gmd["peak_bytes"] == pytest.approx(ds["peak_bytes"] + gmd["backward_held_bytes"])
