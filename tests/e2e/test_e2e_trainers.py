"""Every trainer family end to end: ``nnUNetv2_train`` on the short schedule (the session's shared
training) -> ``nnunet_prism predict`` from a folder where modality files are absent ->
``nnunet_prism evaluate`` on all 15 modality subsets.

One test, parametrised over the trainers: nnUNetTrainerMissingModality on the region set;
nnUNetTrainerPRISM, its subclass, on the label set (the PRISM resume test shares the region
set's PRISM run); nnUNetTrainerGMD and nnUNetTrainerShaSpec on the region set. Each trainer's own
record (log lines, checkpointed curves and state) is checked first; the evaluation on complete
held-out cases must give, for the full subset, nnUNetv2_evaluate_folder's Dice on the same
predictions; ShaSpec is evaluated on the fold's validation cases instead (the command's other path).
"""
import csv
import json
import math
import pickletools
import shutil
import subprocess
import zipfile
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
import torch

from helpers.cli import cli
from helpers.datasets import TrainedModel, complete_labelled_folder
from helpers.files import training_logs
from nnunet_prism import pipeline
from nnunet_prism.evaluation.metrics import targets_from_dataset_json
from nnunet_prism.evaluation.results import SubsetResults


def load_checkpoint(fold):
    return torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)


def check_multi_encoder(model: TrainedModel) -> None:
    log = training_logs(model.fold)
    assert "student pseudo Dice" in log and "train unimodal losses" in log
    checkpoint = load_checkpoint(model.fold)
    assert [len(checkpoint["logging"][f"student_dice_{m}"]) for m in ("FLAIR", "T1", "T1c", "T2")] == [1] * 4


def check_gmd(model: TrainedModel) -> None:
    fold = model.fold
    assert "GMD (k=5): conflicting subset-gradient pairs" in training_logs(fold)
    assert json.loads((fold / "hyperparameters.json").read_text())["gmd_subsets"] == 5
    checkpoint = load_checkpoint(fold)
    fraction = checkpoint["logging"]["gmd_conflict_fraction"]
    before, after = checkpoint["logging"]["gmd_cosine_before"], checkpoint["logging"]["gmd_cosine_after"]
    assert len(fraction) == 1 and 0.0 <= fraction[0] <= 1.0
    assert -1.0 <= before[0] <= 1.0 and -1.0 <= after[0] <= 1.0
    if fraction[0] > 0:
        assert after[0] > before[0], "decoupling raises the mean cosine when pairs conflict"
    sampler = checkpoint["logging"]["nnunet_prism_state"]["gmd_sampler"]
    assert (sampler["k"], len(sampler["deck"])) == (5, 5), "2 steps dealt 10 of a deck of 15 subsets"


def check_shaspec(model: TrainedModel) -> None:
    fold = model.fold
    log = training_logs(fold)
    assert "ShaSpec train: DCO accuracy" in log and "random modality dropout p = 0.5" in log
    hyperparameters = json.loads((fold / "hyperparameters.json").read_text())
    assert (hyperparameters["alpha"], hyperparameters["beta"], hyperparameters["fixed_subset"]) == (0.1, 0.02, None)
    checkpoint = load_checkpoint(fold)
    accuracy, dao = checkpoint["logging"]["shaspec_dco_accuracy"], checkpoint["logging"]["shaspec_dao"]
    # DAO is 0 when no sample of the epoch had two modalities (possible with p = 0.5 dropping)
    assert len(accuracy) == len(dao) == 1 and 0.0 <= accuracy[0] <= 1.0 and 0.0 <= dao[0] < float("inf")
    assert checkpoint["network_weights"]["allowed_modalities"].tolist() == [True] * 4


@dataclass(frozen=True)
class TrainerCase:
    dataset: str                                  # fixture name
    trainer: str
    check_training: Callable[[TrainedModel], None]
    predict_tta: bool = False                     # test-time mirroring in predict
    evaluate_on: str = "complete"                 # "complete" held-out cases, or the fold's "validation" cases
    evaluation_id_offset: int = 10                # dataset id of the complete cases: the set's id + this


CASES = [TrainerCase("region_dataset", "nnUNetTrainerMissingModality", check_multi_encoder),
         TrainerCase("label_dataset", "nnUNetTrainerPRISM", check_multi_encoder),
         TrainerCase("region_dataset", "nnUNetTrainerGMD", check_gmd, evaluation_id_offset=20),
         TrainerCase("region_dataset", "nnUNetTrainerShaSpec", check_shaspec, predict_tta=True,
                     evaluate_on="validation")]


def pickled_globals(checkpoint_file) -> set:
    """Module of every class or function a torch checkpoint's pickle refers to by name."""
    with zipfile.ZipFile(checkpoint_file) as archive:
        data = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    found, strings = set(), []
    for opcode, argument, _ in pickletools.genops(data):
        if opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(argument)
        elif opcode.name == "STACK_GLOBAL":
            found.add(strings[-2])
        elif opcode.name == "GLOBAL":
            found.add(argument.split(" ")[0])
    return found


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.trainer}-{c.dataset}")
def test_train_predict_with_absent_files_evaluate_15_subsets(case, request, trained, tmp_path):
    ds = request.getfixturevalue(case.dataset)
    model = trained(ds, case.trainer)
    env, folder, fold = model.env, model.folder, model.fold
    case.check_training(model)
    log = training_logs(fold)
    assert "final validation skipped" in log and not (fold / "validation" / "summary.json").exists()
    assert (fold / "progress.png").stat().st_size > 0
    # the checkpoint names no class of ours: moving a module never breaks loading it
    assert not {m for m in pickled_globals(fold / "checkpoint_final.pth") if m.startswith("nnunet_prism")}

    # prediction with absent files: case 0 has FLAIR and T1c only, case 1 only T2
    given = tmp_path / "given"
    given.mkdir()
    for name, channels in (("SynTest_000", (0, 2)), ("SynTest_001", (3,))):
        for c in channels:
            shutil.copy(ds.dataset_folder / "imagesTs" / f"{name}_{c:04d}.nii.gz", given)
    out = tmp_path / "pred"
    r = cli("predict", "-i", given, "-o", out, "-d", ds.dataset_id, "-c", "3d_fullres", "-tr", case.trainer,
            "-f", "0", "-device", "cpu", *([] if case.predict_tta else ["--disable_tta"]), env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    used = json.loads((out / "modalities_used.json").read_text())
    assert {k: used["SynTest_000"][k] for k in ("present", "absent")} == {"present": ["FLAIR", "T1c"],
                                                                         "absent": ["T1", "T2"]}
    assert used["SynTest_000"]["predicted_by"]["model"].endswith(f"/{case.trainer}__nnUNetPlans__3d_fullres")
    assert used["SynTest_001"]["present"] == ["T2"]
    assert sorted(p.name for p in out.glob("*.nii.gz")) == ["SynTest_000.nii.gz", "SynTest_001.nii.gz"]
    assert sorted(p.name for p in given.iterdir()) == ["SynTest_000_0000.nii.gz", "SynTest_000_0002.nii.gz",
                                                       "SynTest_001_0003.nii.gz"], "input folder untouched"

    evaluation = tmp_path / "evaluation"
    if case.evaluate_on == "validation":  # the fold's 2 validation cases, every subset they have
        r = cli("evaluate", "-d", ds.dataset_id, "-c", "3d_fullres", "-tr", case.trainer, "-f", "0",
                "-o", evaluation, "--disable_tta", "-device", "cpu", env=env)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        rows = list(csv.reader(open(evaluation / "subsets.csv")))
        assert len(rows) == 1 + 15 + 1, "header, 15 subsets, average"
        return

    # 15-subset evaluation on two complete labelled cases
    complete = complete_labelled_folder(ds, tmp_path, ds.dataset_id + case.evaluation_id_offset)
    r = cli("evaluate", "-d", ds.dataset_id, "-c", "3d_fullres", "-tr", case.trainer, "-f", "0",
            "-i", complete / "imagesTr", "-l", complete / "labelsTr", "-o", evaluation,
            "--save-predictions", "-device", "cpu", "--disable_tta", env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = list(csv.reader(open(evaluation / "subsets.csv")))
    assert len(rows) == 1 + 15 + 1, "header, 15 subsets, average"
    assert (evaluation / "subsets.md").read_text().count("●") > 0
    assert (evaluation / "subsets.tex").is_file() and (evaluation / "subsets_dice.png").stat().st_size > 1000

    results = SubsetResults.load_json(evaluation / "subsets.json")
    assert len(results.subset_names) == 15 and (results.num_cases() == 2).all()
    dice = results.subset_means("Dice")
    assert all(0.0 <= v <= 1.0 for v in dice.ravel() if not math.isnan(v))
    full_subset = evaluation / "predictions" / "FLAIR+T1+T1c+T2"
    summary = tmp_path / "summary.json"
    subprocess.run(pipeline.nnunet_command("nnUNetv2_evaluate_folder") + [
        str(complete / "labelsTr"), str(full_subset), "-djfile", str(folder / "dataset.json"),
        "-pfile", str(folder / "plans.json"), "-o", str(summary), "-np", "1"], env=env, check=True,
        capture_output=True)
    nnunet_mean = json.loads(summary.read_text())["mean"]
    targets = targets_from_dataset_json(json.loads((folder / "dataset.json").read_text()))
    ours = dice[-1]
    theirs = [nnunet_mean[str(t.value)]["Dice"] for t in targets]
    assert np.allclose(ours, theirs, equal_nan=True), (ours, theirs)
