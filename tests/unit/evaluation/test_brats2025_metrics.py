"""``--metrics brats2025``: the official BraTS 2025 numbers computed by panoptica (an optional extra).

Marked ``brats2025``: they run where panoptica is installed (the CI lane of ``.ci/run`` installs it
into its own venv) and are skipped elsewhere, except the test that the missing extra is named.
Values are worked out by hand on hand-made volumes, and compared with panoptica's own evaluator
run, as the official ``brats-evaluation`` runner does, on the same files."""
import json
import math

import numpy as np
import pytest
import SimpleITK as sitk

from dataset_conversion.labels import dataset_json_labels
from helpers.input_checks import hashes, run_cli, write_image
from nnunet_prism.brats_label_sets import LAYOUT_2024
from nnunet_prism.evaluation.metrics import targets_from_dataset_json
from nnunet_prism.evaluation.scoring import CaseScorer

DATASET = {"channel_names": {"0": "FLAIR", "1": "T1", "2": "T1c", "3": "T2"}, "file_ending": ".nii.gz",
           "brats_layout": "2024", **dataset_json_labels(False, LAYOUT_2024)}


def scorer():
    return CaseScorer(targets_from_dataset_json(DATASET), "nnunet", metrics=["brats2025"],
                      labels=DATASET["labels"], dataset_json=DATASET)


def cube(volume, lo, hi, value):
    volume[tuple(slice(a, b) for a, b in zip(lo, hi))] = value
    return volume


@pytest.mark.brats2025
def test_hand_made_glioma_case():
    pytest.importorskip("panoptica")
    s = scorer()
    assert s.regions == ["WT", "TC", "ET", "RC", "NETC", "SNFH"]
    ref = np.zeros((12, 24, 24), np.uint8)                         # nnU-Net labels
    cube(ref, (1, 1, 1), (4, 6, 6), 3)                             # lesion A: ET, 75 voxels
    cube(ref, (6, 14, 14), (9, 19, 19), 3)                         # lesion B: ET, 75 voxels, missed
    cube(ref, (1, 10, 1), (3, 12, 3), 4)                           # RC, 8 voxels, predicted exactly
    pred = np.zeros_like(ref)
    cube(pred, (1, 1, 1), (4, 6, 6), 3)
    cube(pred, (1, 10, 1), (3, 12, 3), 4)
    out = s(ref, pred, (1.0, 1.0, 1.0))
    et = out["ET"]
    # global: Dice 2 x 75 / (150 + 75) = 2/3; per lesion: one matched lesion (Dice 1, HD95 0)
    assert et["B25Dice"] == pytest.approx(2 / 3)
    assert (et["B25LesionDice"], et["B25LesionHD95"], et["B25LesionNSD"]) == (1.0, 0.0, 1.0)
    assert et["B25HD95"] > 0
    assert (out["RC"]["B25Dice"], out["RC"]["B25HD95"], out["RC"]["B25NSD"]) == (1.0, 0.0, 1.0)
    # NETC and SNFH exist on neither side: NaN, skipped in means
    assert math.isnan(out["NETC"]["B25Dice"]) and math.isnan(out["SNFH"]["B25LesionHD95"])
    # everything ET missed: panoptica's inf HD95 is written as 373, Dice 0
    out = s(ref, np.where(pred == 3, 0, pred), (1.0, 1.0, 1.0))
    assert (out["ET"]["B25Dice"], out["ET"]["B25HD95"], out["ET"]["B25LesionHD95"]) == (0.0, 373.0, 373.0)


@pytest.mark.brats2025
def test_anisotropic_spacing_is_applied_on_the_right_axis(tmp_path):
    panoptica = pytest.importorskip("panoptica")
    from nnunet_prism.evaluation.brats2025 import official_evaluator

    ref = cube(np.zeros((10, 20, 20), np.uint8), (2, 5, 5), (5, 10, 10), 3)
    pred = cube(np.zeros_like(ref), (4, 5, 5), (7, 10, 10), 3)      # moved 2 voxels along the 3 mm axis
    out = scorer()(ref, pred, (3.0, 1.0, 1.0))["ET"]
    # both surfaces' far slabs lie 2 x 3 mm from the other surface; medpy-style pooled 95th percentile: 6 mm
    assert out["B25HD95"] == pytest.approx(6.0) and out["B25LesionHD95"] == pytest.approx(6.0)
    # panoptica on the files themselves, as the official runner calls it: 2 (voxels, wrong axis)
    for name, array in (("ref", ref), ("pred", pred)):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((1.0, 1.0, 3.0))                          # (x, y, z): z is array axis 0
        sitk.WriteImage(image, str(tmp_path / f"{name}.nii.gz"))
    official = official_evaluator({"et": (3,)}).evaluate(str(tmp_path / "pred.nii.gz"), str(tmp_path / "ref.nii.gz"))
    assert official["et"].global_bin_hd95 == pytest.approx(2.0) and official["et"].sq_hd95 == pytest.approx(2.0)
    assert panoptica is not None


@pytest.mark.brats2025
def test_agrees_with_panoptica_on_the_same_files(tmp_path):
    """The 2024 phantom's label against a perturbed copy, at 1 mm: panoptica's own evaluator on the
    BraTS-label files (groups as brats-evaluation's glioma config) and our scorer on the nnU-Net
    labels give the same numbers (inf -> 373 aside)."""
    pytest.importorskip("panoptica")
    from scipy import ndimage

    from dataset_conversion.cli import main
    from nnunet_prism.evaluation.brats2025 import official_evaluator

    assert main(["make-phantom", "-o", str(tmp_path / "src"), "-n", "2", "--shape", "24", "24", "24",
                 "--layout", "2024", "--seed", "11"]) == 0
    s = scorer()
    evaluator = official_evaluator(dict(LAYOUT_2024.groups))
    to_nnunet = np.zeros(5, np.uint8)
    for brats, nnunet in LAYOUT_2024.to_nnunet.items():
        to_nnunet[brats] = nnunet
    worst = 0.0
    for case in sorted((tmp_path / "src").iterdir()):
        brats_ref = sitk.GetArrayFromImage(sitk.ReadImage(str(case / f"{case.name}-seg.nii.gz")))
        brats_pred = brats_ref.copy()
        brats_pred[ndimage.binary_erosion(brats_ref == 2, iterations=1) & (brats_ref == 2)] = 0  # shrink SNFH
        brats_pred = np.roll(brats_pred, 1, axis=2)                                              # and shift
        for name, array in (("ref", brats_ref), ("pred", brats_pred)):
            sitk.WriteImage(sitk.GetImageFromArray(array.astype(np.uint8)), str(tmp_path / f"{name}.nii.gz"))
        theirs = evaluator.evaluate(str(tmp_path / "pred.nii.gz"), str(tmp_path / "ref.nii.gz"))
        ours = s(to_nnunet[brats_ref], to_nnunet[brats_pred], (1.0, 1.0, 1.0))
        for group, result in theirs.items():
            region = s.group_regions[group]
            for column, key in (("B25Dice", "global_bin_dsc"), ("B25NSD", "global_bin_nsd"),
                                ("B25HD95", "global_bin_hd95"), ("B25LesionDice", "sq_dsc"),
                                ("B25LesionNSD", "sq_nsd"), ("B25LesionHD95", "sq_hd95")):
                a, b = ours[region][column], getattr(result, key)
                b = 373.0 if b is not None and math.isinf(b) else b
                if b is None or math.isnan(b):
                    assert math.isnan(a), (case.name, group, column)
                    continue
                worst = max(worst, abs(a - b))
                assert a == pytest.approx(b, abs=1e-9), (case.name, group, column, a, b)
    print(f"largest difference to panoptica's own evaluator: {worst:.3g}")


def test_missing_extra_is_named_in_one_line(tmp_path, capsys):
    try:
        import panoptica  # noqa: F401
        pytest.skip("panoptica is installed here")
    except ImportError:
        pass
    preds, labels = tmp_path / "preds", tmp_path / "labels"
    preds.mkdir(), labels.mkdir()
    (preds / "dataset.json").write_text(json.dumps(DATASET))
    seg = cube(np.zeros((6, 7, 8)), (1, 1, 1), (3, 3, 3), 3)
    write_image(preds / "c1.nii.gz", seg, dtype=np.uint8)
    write_image(labels / "c1.nii.gz", seg, dtype=np.uint8)
    before = hashes(preds, labels)
    code, _, err = run_cli(capsys, "evaluate", "--predictions", preds, "-l", labels, "-o", tmp_path / "out",
                           "--metrics", "brats2025")
    assert code == 2 and len(err) == 1 and 'pip install "nnunet_prism[brats2025]"' in err[0], err
    assert hashes(preds, labels) == before and not (tmp_path / "out").exists()
