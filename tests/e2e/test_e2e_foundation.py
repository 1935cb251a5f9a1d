"""The basic nnU-Net pipeline end to end: synthetic set -> convert -> nnUNetv2_plan_and_preprocess ->
nnUNetv2_train -tr nnUNetTrainerModalityDropout -> nnUNetv2_predict, through nnU-Net's real CLI,
with our trainer found by the installed site hook only."""
import json

import numpy as np
import pytest
import SimpleITK as sitk

from helpers.files import training_logs
from nnunet_prism import pipeline
from nnunet_prism.modalities import AVAILABILITY_KEY, sample_availability

pytestmark = pytest.mark.e2e
TRAINER = "nnUNetTrainerModalityDropout"


def test_availability_survives_preprocessing(region_dataset):
    pre = region_dataset.workdir / "nnUNet_preprocessed" / region_dataset.dataset_folder.name / "dataset.json"
    record = json.loads(pre.read_text())[AVAILABILITY_KEY]
    rows = np.array([record[k] for k in sorted(record) if not k.startswith("SynTest")])
    # the 10 complete training cases, sorted, with the converter's missing rates 0.2/0.4/0.6/0.8 and seed 1
    assert rows.tolist() == sample_availability(10, [0.2, 0.4, 0.6, 0.8], 1).tolist()
    assert (rows == 0).sum(axis=0).tolist() == [2, 4, 6, 8]


def test_train_and_predict_through_nnunet_cli(region_dataset, tmp_path):
    ds = region_dataset
    env = ds.train_env(num_epochs=1, num_iterations_per_epoch=2, num_val_iterations_per_epoch=1)
    pipeline.train(ds.dataset_id, "3d_fullres", 0, TRAINER, env, echo=False, log_file=tmp_path / "train.log")

    results = ds.workdir / "nnUNet_results"
    fold = next(results.glob(f"Dataset{ds.dataset_id:03d}_*/{TRAINER}__nnUNetPlans__3d_fullres")) / "fold_0"
    assert (fold / "checkpoint_final.pth").is_file()
    hp = json.loads((fold / "hyperparameters.json").read_text())
    assert hp["num_iterations_per_epoch"] == 2 and hp["modality_dropout"] == 0.5
    log = training_logs(fold)
    assert "training-set missing rates FR^m" in log
    assert (fold / "validation" / "summary.json").is_file(), "nnU-Net's final validation ran (default)"

    out = tmp_path / "pred"
    pipeline.predict(ds.dataset_folder / "imagesTs", out, ds.dataset_id, "3d_fullres", TRAINER, env,
                     echo=False, log_file=tmp_path / "predict.log")
    predictions = sorted(out.glob("*.nii.gz"))
    assert [p.name for p in predictions] == ["SynTest_000.nii.gz", "SynTest_001.nii.gz"]
    seg = sitk.ReadImage(str(predictions[0]))
    ref = sitk.ReadImage(str(ds.dataset_folder / "imagesTs" / "SynTest_000_0000.nii.gz"))
    assert seg.GetSize() == ref.GetSize() and np.allclose(seg.GetSpacing(), ref.GetSpacing())
    assert set(np.unique(sitk.GetArrayFromImage(seg))) <= {0, 1, 2, 3}
