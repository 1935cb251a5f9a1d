"""GMD end to end: nnUNetv2_train -tr nnUNetTrainerGMD on the synthetic incomplete set (GMD's
conflict statistics in the log, the checkpoint and progress.png), then ``nnunet_prism predict``
with an absent modality file and ``nnunet_prism evaluate`` on all 15 subsets."""
import json
import math
import shutil

import pytest
import torch

from conftest import cli
from nnunet_prism.evaluation.results import SubsetResults
from test_e2e_core import complete_labelled_folder

pytestmark = pytest.mark.e2e
TRAINER = "nnUNetTrainerGMD"


def test_gmd_train_predict_evaluate(region_dataset, trained, tmp_path):
    ds = region_dataset
    trained_model = trained(ds, TRAINER)
    env, fold = trained_model.env, trained_model.fold
    log = next(fold.glob("training_log_*.txt")).read_text()
    assert "GMD (k=5): conflicting subset-gradient pairs" in log
    assert json.loads((fold / "hyperparameters.json").read_text())["gmd_subsets"] == 5
    checkpoint = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    fraction = checkpoint["logging"]["gmd_conflict_fraction"]
    before, after = checkpoint["logging"]["gmd_cosine_before"], checkpoint["logging"]["gmd_cosine_after"]
    assert len(fraction) == 1 and 0.0 <= fraction[0] <= 1.0
    assert -1.0 <= before[0] <= 1.0 and -1.0 <= after[0] <= 1.0
    if fraction[0] > 0:
        assert after[0] > before[0], "decoupling raises the mean cosine when pairs conflict"
    sampler = checkpoint["logging"]["nnunet_prism_state"]["gmd_sampler"]
    assert (sampler["k"], len(sampler["deck"])) == (5, 5), "2 steps dealt 10 of a deck of 15 subsets"
    assert (fold / "progress.png").stat().st_size > 0

    # predict one case that lacks T1 and T2 files
    given = tmp_path / "given"
    given.mkdir()
    for c in (0, 2):
        shutil.copy(ds.dataset_folder / "imagesTs" / f"SynTest_000_{c:04d}.nii.gz", given)
    out = tmp_path / "pred"
    r = cli("predict", "-i", given, "-o", out, "-d", ds.dataset_id, "-c", "3d_fullres", "-tr", TRAINER,
            "-f", "0", "-device", "cpu", "--disable_tta", env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    used = json.loads((out / "modalities_used.json").read_text())
    assert used["SynTest_000"] == {"present": ["FLAIR", "T1c"], "absent": ["T1", "T2"]}
    assert (out / "SynTest_000.nii.gz").is_file()

    # all 15 subsets on two complete labelled cases (the DS network's forward_subsets)
    complete = complete_labelled_folder(ds, tmp_path, ds.dataset_id + 20)
    evaluation = tmp_path / "evaluation"
    r = cli("evaluate", "-d", ds.dataset_id, "-c", "3d_fullres", "-tr", TRAINER, "-f", "0",
            "-i", complete / "imagesTr", "-l", complete / "labelsTr", "-o", evaluation, "-device", "cpu",
            "--disable_tta", env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    results = SubsetResults.load_json(evaluation / "subsets.json")
    assert len(results.subset_names) == 15 and (results.num_cases() == 2).all()
    dice = results.subset_means("Dice")
    assert all(0.0 <= v <= 1.0 for v in dice.ravel() if not math.isnan(v))
