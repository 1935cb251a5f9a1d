"""``evaluate --predictions`` end to end (issue 26's done-when):

1. two trainers (the session's nnUNetTrainerMissingModality and nnUNetTrainerGMD on the region
   set) predict labelled cases with absent modality files (``nnunet_prism predict
   --save_probabilities``), ``nnUNetv2_ensemble`` averages them, and the ensemble folder is scored
   by modality subset (the subsets from the images it was predicted from);
2. (panoptica lane) a synthetic BraTS 2024 post-treatment glioma set with resection cavities is
   converted, trained briefly, predicted, scored with ``--metrics brats2025`` and exported back to
   BraTS labels."""
import json
import shutil
import subprocess

import numpy as np
import pytest
import SimpleITK as sitk

from dataset_conversion.brats import convert_brats
from dataset_conversion.synthetic import generate_synthetic_brats
from helpers.cli import cli
from helpers.datasets import SHORT_SCHEDULE, PreparedDataset, nnunet_env
from nnunet_prism import pipeline
from nnunet_prism.evaluation.results import SubsetResults

pytestmark = pytest.mark.e2e

SHAPE = (40, 40, 40)


def test_ensemble_of_two_trainers_scored_by_subset(region_dataset, trained, tmp_path):
    ds = region_dataset
    models = [trained(ds, "nnUNetTrainerMissingModality"), trained(ds, "nnUNetTrainerGMD")]
    env = models[0].env
    source = tmp_path / "source"
    generate_synthetic_brats(source, num_cases=2, shape=SHAPE, seed=321, prefix="SynEns")
    complete = convert_brats([source], ds.dataset_id + 20, "Ens", raw_root=tmp_path / "raw")
    given = tmp_path / "given"                   # case 0: FLAIR + T1c, case 1: all four
    given.mkdir()
    for case, channels in (("SynEns_000", (0, 2)), ("SynEns_001", (0, 1, 2, 3))):
        for c in channels:
            shutil.copy(complete / "imagesTr" / f"{case}_{c:04d}.nii.gz", given)

    outputs = []
    for model in models:
        out = tmp_path / f"pred_{model.trainer}"
        r = cli("predict", "-i", given, "-o", out, "-d", ds.dataset_id, "-c", "3d_fullres", "-tr", model.trainer,
                "-f", "0", "-device", "cpu", "--disable_tta", "--save_probabilities", env=env)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        outputs.append(out)
    ensemble = tmp_path / "ensemble"
    subprocess.run(pipeline.nnunet_command("nnUNetv2_ensemble") + ["-i", *map(str, outputs), "-o", str(ensemble),
                   "-np", "1"], env=env, check=True, capture_output=True)
    assert sorted(p.name for p in ensemble.glob("*.nii.gz")) == ["SynEns_000.nii.gz", "SynEns_001.nii.gz"]
    assert not (ensemble / "modalities_used.json").exists()

    evaluation = tmp_path / "evaluation"
    r = cli("evaluate", "--predictions", ensemble, "-l", complete / "labelsTr", "--images", given,
            "-o", evaluation, "--metrics", "Dice", "HD95", "NSD", "LesionDice", env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    results = SubsetResults.load_json(evaluation / "subsets.json")
    assert results.cases("FLAIR+T1c") == ["SynEns_000"] and results.cases("FLAIR+T1+T1c+T2") == ["SynEns_001"]
    assert int(results.num_cases().sum()) == 2
    assert results.metrics == ["Dice", "HD95", "NSD", "LesionDice"]
    dice = results.per_case("FLAIR+T1+T1c+T2", "Dice")
    assert np.all((dice >= 0) & (dice <= 1) | np.isnan(dice))
    assert "modality subsets from the images in" in (evaluation / "subsets.md").read_text()
    assert (evaluation / "subsets_dice.png").stat().st_size > 1000


@pytest.mark.brats2025
def test_brats2024_glioma_with_resection_cavity_end_to_end(tmp_path):
    pytest.importorskip("panoptica")
    workdir = tmp_path
    env = nnunet_env(workdir)
    source, test_source = workdir / "source", workdir / "source_test"
    for args in (["make-phantom", "-o", source, "-n", 6, "--shape", 32, 32, 32, "--seed", 4, "--layout", "2024"],
                 ["make-phantom", "-o", test_source, "-n", 2, "--shape", 32, 32, 32, "--seed", 77, "--layout", "2024",
                  "--prefix", "BraTS-GLI-TEST"]):
        r = cli(*args, env=env)
        assert r.returncode == 0, r.stderr
    r = cli("convert-brats", "-i", source, "-d", 981, "-n", "Post2024", env=env)
    assert r.returncode == 0 and "BraTS 2024 layout" in r.stdout, r.stdout + r.stderr
    tests = convert_brats([test_source], 982, "Post2024Test", raw_root=workdir / "raw_test")
    pipeline.plan_and_preprocess(981, env, echo=False, log_file=workdir / "plan.log")
    train_env = PreparedDataset(workdir, 981, workdir / "nnUNet_raw" / "Dataset981_Post2024", env).train_env(
        **SHORT_SCHEDULE)
    pipeline.train(981, "3d_fullres", 0, "nnUNetTrainerModalityDropout", train_env, echo=False,
                   log_file=workdir / "train.log")

    images = workdir / "images"
    images.mkdir()
    for f in (tests / "imagesTr").glob("*.nii.gz"):
        if not f.name.endswith("_0001.nii.gz") or "00000" not in f.name:     # case 0 without its T1
            shutil.copy(f, images)
    predictions = workdir / "pred"
    r = cli("predict", "-i", images, "-o", predictions, "-d", 981, "-c", "3d_fullres",
            "-tr", "nnUNetTrainerModalityDropout", "-f", "0", "-device", "cpu", "--disable_tta", env=train_env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert json.loads((predictions / "dataset.json").read_text())["brats_layout"] == "2024"

    evaluation = workdir / "evaluation"
    r = cli("evaluate", "--predictions", predictions, "-l", tests / "labelsTr", "-o", evaluation,
            "--metrics", "Dice", "brats2025", env=train_env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    results = SubsetResults.load_json(evaluation / "subsets.json")
    assert results.regions == ["WT", "TC", "ET", "RC", "NETC", "SNFH"]
    assert results.cases("FLAIR+T1c+T2") == ["BraTS-GLI-TEST-00000-100"]
    assert results.cases("FLAIR+T1+T1c+T2") == ["BraTS-GLI-TEST-00001-100"]
    values = np.concatenate([results.per_case(s, m) for s in ("FLAIR+T1+T1c+T2",)
                             for m in ("B25Dice", "B25HD95", "B25LesionDice")], axis=None)
    assert np.all(np.isfinite(values) | np.isnan(values)) and not np.any(np.isinf(values))
    assert "official BraTS 2025 numbers computed by panoptica" in (evaluation / "subsets.md").read_text()

    r = cli("brats-labels", "-i", predictions, "-o", workdir / "brats", "--layout", "2024", env=train_env)
    assert r.returncode == 0, r.stderr
    exported = sitk.GetArrayFromImage(sitk.ReadImage(str(workdir / "brats" / "BraTS-GLI-TEST-00000-100.nii.gz")))
    assert set(np.unique(exported).tolist()) <= {0, 1, 2, 3, 4}
