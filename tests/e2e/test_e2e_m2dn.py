"""M2DN through the command line on the preprocessed synthetic set: synth train (a few
iterations, then --c resume), synth impute on a folder with absent files, synth evaluate."""
import json
import shutil

import pytest
import SimpleITK as sitk

from helpers.cli import cli

pytestmark = pytest.mark.e2e


def test_synth_train_resume_impute_evaluate(region_dataset, tmp_path):
    env = {**region_dataset.env, "OMP_NUM_THREADS": "1"}
    ds = str(region_dataset.dataset_id)
    r = cli("synth", "train", "-d", ds, "-f", "0", "--iterations", "2", "--batch-size", "4", "-device", "cpu", env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    r = cli("synth", "train", "-d", ds, "-f", "0", "--iterations", "3", "--batch-size", "4", "--c", env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resumed from checkpoint_latest.pth at iteration 2" in r.stdout and "iteration 3/3" in r.stdout
    fold = next((region_dataset.workdir / "nnUNet_results").glob("Dataset971_*/M2DN__nnUNetPlans__2d/fold_0"))
    assert (fold / "checkpoint_final.pth").is_file() and (fold / "checkpoint_latest.pth").is_file()

    # impute: case 0 misses T1c and T2 (absent files), case 1 misses FLAIR (all-zero file)
    source = region_dataset.dataset_folder / "imagesTs"
    inp, out = tmp_path / "in", tmp_path / "out"
    shutil.copytree(source, inp)
    cases = sorted({p.name[:-len("_0000.nii.gz")] for p in inp.glob("*.nii.gz")})
    (inp / f"{cases[0]}_0002.nii.gz").unlink()
    (inp / f"{cases[0]}_0003.nii.gz").unlink()
    flair = sitk.ReadImage(str(inp / f"{cases[1]}_0000.nii.gz"))
    sitk.WriteImage(flair * 0, str(inp / f"{cases[1]}_0000.nii.gz"))
    r = cli("synth", "impute", "-d", ds, "-f", "0", "-i", inp, "-o", out, "--steps", "2", env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    record = json.loads((out / "m2dn_imputation.json").read_text())["cases"]
    assert record[cases[0]]["synthesised"] == ["T1c", "T2"] and record[cases[1]]["synthesised"] == ["FLAIR"]
    for case in cases[:2]:
        reference = sitk.ReadImage(str(source / f"{case}_0001.nii.gz"))
        for c in range(4):  # every channel file on the case's grid: nnUNetv2_predict can run on OUT
            image = sitk.ReadImage(str(out / f"{case}_{c:04d}.nii.gz"))
            assert image.GetSize() == reference.GetSize() and image.GetOrigin() == reference.GetOrigin()
    assert (out / f"{cases[0]}_0000.nii.gz").read_bytes() == (inp / f"{cases[0]}_0000.nii.gz").read_bytes()

    # evaluate on one held-out case with 2 DDIM steps
    r = cli("synth", "evaluate", "-d", ds, "-f", "0", "--steps", "2", "--max-cases", "1", "-o", tmp_path / "eval", env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    table = (tmp_path / "eval" / "synthesis_metrics.csv").read_text().splitlines()
    assert table[0].startswith("present,missing (scored),n,PSNR M2DN,SSIM M2DN,PSNR zero fill")
    assert table[-1].startswith("average")
