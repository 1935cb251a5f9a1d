"""Multi-encoder trainers end to end, region-based and label-based: nnUNetv2_train of one
(nnUNetTrainerMissingModality on the region set; on the label set nnUNetTrainerPRISM, its subclass,
whose short run the PRISM test shares) -> nnunet_prism predict with absent modality files ->
nnunet_prism evaluate on all 15 subsets, whose full-subset Dice must equal
nnUNetv2_evaluate_folder's on the same predictions."""
import csv
import json
import shutil
import subprocess

import numpy as np
import pytest

from conftest import SHAPE, cli
from dataset_conversion.brats import convert_brats
from dataset_conversion.synthetic import generate_synthetic_brats
from nnunet_prism import pipeline
from nnunet_prism.evaluation.metrics import targets_from_dataset_json
from nnunet_prism.evaluation.results import SubsetResults

pytestmark = pytest.mark.e2e


def complete_labelled_folder(ds, tmp_path, dataset_id):
    """Two complete labelled cases in nnU-Net's naming, converted with the dataset's label setup."""
    source = tmp_path / "complete_source"
    generate_synthetic_brats(source, num_cases=2, shape=SHAPE, seed=123, prefix="SynComplete")
    label_based = "regions_class_order" not in json.loads((ds.dataset_folder / "dataset.json").read_text())
    return convert_brats([source], dataset_id, "Complete", raw_root=tmp_path / "raw", label_based=label_based)


@pytest.mark.parametrize("dataset, trainer", [("region_dataset", "nnUNetTrainerMissingModality"),
                                              ("label_dataset", "nnUNetTrainerPRISM")])
def test_multi_encoder_train_predict_evaluate(dataset, trainer, request, trained, tmp_path):
    ds = request.getfixturevalue(dataset)
    trained_model = trained(ds, trainer)
    env, model = trained_model.env, trained_model.folder
    log = next((model / "fold_0").glob("training_log_*.txt")).read_text()
    assert "student pseudo Dice" in log and "train unimodal losses" in log
    assert "final validation skipped" in log and not (model / "fold_0" / "validation" / "summary.json").exists()

    # prediction with absent files: case 0 has FLAIR and T1c only, case 1 only T2
    given = tmp_path / "given"
    given.mkdir()
    for case, channels in (("SynTest_000", (0, 2)), ("SynTest_001", (3,))):
        for c in channels:
            shutil.copy(ds.dataset_folder / "imagesTs" / f"{case}_{c:04d}.nii.gz", given)
    out = tmp_path / "pred"
    r = cli("predict", "-i", given, "-o", out, "-d", ds.dataset_id, "-c", "3d_fullres", "-tr", trainer,
            "-f", "0", "-device", "cpu", "--disable_tta", env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    used = json.loads((out / "modalities_used.json").read_text())
    assert used["SynTest_000"] == {"present": ["FLAIR", "T1c"], "absent": ["T1", "T2"]}
    assert used["SynTest_001"]["present"] == ["T2"]
    assert sorted(p.name for p in out.glob("*.nii.gz")) == ["SynTest_000.nii.gz", "SynTest_001.nii.gz"]
    assert sorted(p.name for p in given.iterdir()) == ["SynTest_000_0000.nii.gz", "SynTest_000_0002.nii.gz",
                                                       "SynTest_001_0003.nii.gz"], "input folder untouched"

    # 15-subset evaluation on complete labelled cases
    complete = complete_labelled_folder(ds, tmp_path, ds.dataset_id + 10)
    evaluation = tmp_path / "evaluation"
    r = cli("evaluate", "-d", ds.dataset_id, "-c", "3d_fullres", "-tr", trainer, "-f", "0",
            "-i", complete / "imagesTr", "-l", complete / "labelsTr", "-o", evaluation,
            "--save-predictions", "-device", "cpu", "--disable_tta", env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = list(csv.reader(open(evaluation / "subsets.csv")))
    assert len(rows) == 1 + 15 + 1, "header, 15 subsets, average"
    assert (evaluation / "subsets.md").read_text().count("●") > 0
    assert (evaluation / "subsets.tex").is_file() and (evaluation / "subsets_dice.png").stat().st_size > 1000

    results = SubsetResults.load_json(evaluation / "subsets.json")
    assert (results.num_cases() == 2).all()
    full_subset = evaluation / "predictions" / "FLAIR+T1+T1c+T2"
    summary = tmp_path / "summary.json"
    subprocess.run(pipeline.nnunet_command("nnUNetv2_evaluate_folder") + [
        str(complete / "labelsTr"), str(full_subset), "-djfile", str(model / "dataset.json"),
        "-pfile", str(model / "plans.json"), "-o", str(summary), "-np", "1"], env=env, check=True,
        capture_output=True)
    nnunet_mean = json.loads(summary.read_text())["mean"]
    targets = targets_from_dataset_json(json.loads((model / "dataset.json").read_text()))
    ours = results.subset_means("Dice")[-1]
    theirs = [nnunet_mean[str(t.value)]["Dice"] for t in targets]
    assert np.allclose(ours, theirs, equal_nan=True), (ours, theirs)
