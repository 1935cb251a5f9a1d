"""ET post-processing, evaluation conventions, BraTS 2023 lesion-wise metrics and the case scorer,
on hand-made volumes whose values are worked out in the comments."""
import math

import numpy as np
import pytest

from nnunet_prism.evaluation.conventions import BRATS_HD95_PENALTY, get_convention
from nnunet_prism.evaluation.lesionwise import lesion_wise, robust_hd95
from nnunet_prism.evaluation.metrics import EvaluationError, evaluate_case, targets_from_labels
from nnunet_prism.evaluation.postprocessing import et_and_ncr_labels, suppress_small_et, suppress_small_et_regions
from nnunet_prism.evaluation.scoring import CaseScorer, parse_metrics

REGION_LABELS = {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": [3]}
PLAIN_LABELS = {"background": 0, "edema": 1, "necrosis": 2, "enhancing": 3}


def box(shape, lo, hi, value=1, out=None):
    out = np.zeros(shape, np.uint8) if out is None else out
    out[tuple(slice(a, b) for a, b in zip(lo, hi))] = value
    return out


# ------------------------------------------------------------------------- ET post-processing

def test_small_et_becomes_necrosis_and_large_et_stays():
    seg = box((20, 20, 20), (2, 2, 2), (10, 10, 10), 1)      # edema
    seg = box(seg.shape, (4, 4, 4), (7, 7, 7), 3, seg)         # 27 voxels of ET
    out = suppress_small_et(seg, 28)
    assert (out == 3).sum() == 0 and (out == 2).sum() == 27    # ET -> NCR, so TC keeps them
    assert np.array_equal(out > 0, seg > 0)                    # WT unchanged
    assert np.array_equal(suppress_small_et(seg, 27), seg)     # 27 is not below 27
    assert np.array_equal(suppress_small_et(seg, 0), seg)      # 0 = off
    assert (seg == 3).sum() == 27                              # input untouched


def test_region_channels_version_moves_et_into_tc():
    wt = box((10, 10, 10), (1, 1, 1), (8, 8, 8)).astype(bool)
    tc = box((10, 10, 10), (3, 3, 3), (5, 5, 5)).astype(bool)
    et = box((10, 10, 10), (5, 5, 5), (6, 6, 7)).astype(bool)  # 2 voxels, outside TC on purpose
    out = suppress_small_et_regions(np.stack([wt, tc, et]), 500, et_index=2, tc_index=1)
    assert not out[2].any() and out[1].sum() == tc.sum() + 2 and np.array_equal(out[0], wt)


def test_et_and_ncr_labels_from_dataset_json_labels():
    assert et_and_ncr_labels(REGION_LABELS) == (3, 2)
    assert et_and_ncr_labels(PLAIN_LABELS) == (3, 2)
    with pytest.raises(ValueError, match="enhancing"):
        et_and_ncr_labels({"background": 0, "liver": 1})


# ------------------------------------------------------------------------------ conventions

@pytest.mark.parametrize("labels", [REGION_LABELS, PLAIN_LABELS])
def test_conventions_on_empty_reference(labels):
    shape = (24, 24, 24)
    ref = box(shape, (2, 2, 2), (10, 10, 10), 1)               # edema only: no TC, no ET
    pred = ref.copy()
    targets = targets_from_labels(labels, [1, 2, 3] if "tumor core" in labels else None)
    et = targets[-1].short
    diagonal = math.sqrt(3 * 24 ** 2)
    nn = evaluate_case(ref, pred, targets, **get_convention("nnunet").evaluate_case_kwargs())
    br = evaluate_case(ref, pred, targets, **get_convention("brats").evaluate_case_kwargs())
    assert math.isnan(nn[et]["Dice"]) and math.isnan(nn[et]["HD95"])   # nnU-Net: NaN, skipped
    assert br[et]["Dice"] == 1.0 and br[et]["HD95"] == 0.0             # BraTS: 1 and 0
    pred2 = box(shape, (15, 15, 15), (16, 16, 16), 3, pred.copy())      # one false ET voxel
    nn = evaluate_case(ref, pred2, targets, **get_convention("nnunet").evaluate_case_kwargs())
    br = evaluate_case(ref, pred2, targets, **get_convention("brats").evaluate_case_kwargs())
    assert nn[et]["Dice"] == 0.0 and br[et]["Dice"] == 0.0
    assert nn[et]["HD95"] == pytest.approx(diagonal) and br[et]["HD95"] == BRATS_HD95_PENALTY


def test_unknown_convention_is_one_line_error():
    with pytest.raises(EvaluationError, match="nnunet, brats"):
        get_convention("medpy")


# ------------------------------------------------------------------------- lesion-wise

def test_lesion_wise_two_lesions_one_missed_one_fp_one_small():
    shape = (40, 40, 40)
    ref = box(shape, (2, 2, 2), (6, 6, 6))                     # A: 64 voxels, found exactly
    box(shape, (20, 20, 20), (25, 25, 25), 1, ref)             # B: 125 voxels, missed
    box(shape, (2, 30, 30), (5, 33, 33), 1, ref)               # C: 27 voxels <= 50: left out
    pred = box(shape, (2, 2, 2), (6, 6, 6))                    # A
    box(shape, (34, 2, 34), (36, 4, 36), 1, pred)              # FP, far from everything
    s = lesion_wise(ref.astype(bool), pred.astype(bool))
    # lesions A (Dice 1, HD95 0) and B (0, 374); one FP (0, 374); C ignored
    assert (s.num_lesions, s.num_detected, s.num_false_positives) == (2, 1, 1)
    assert s.dice == pytest.approx(1 / 3)
    assert s.hd95 == pytest.approx((0 + 374 + 374) / 3)


def test_lesion_wise_matching_by_dilation_and_merging():
    shape = (1, 20, 20)                                        # nnU-Net's 2D layout: axis 0 dropped
    ref = np.zeros(shape, bool)
    ref[0, 5, 5] = True
    near, far = ref.copy(), ref.copy()
    near[0, 5, 5], near[0, 5, 8] = False, True                 # 3 voxels away: within 3 dilations
    far[0, 5, 5], far[0, 5, 9] = False, True                   # 4 voxels away: not matched
    s = lesion_wise(ref, near, min_volume=0)
    assert (s.dice, s.hd95, s.num_false_positives) == (0.0, 3.0, 0)
    s = lesion_wise(ref, far, min_volume=0)                     # one missed lesion + one FP
    assert (s.dice, s.hd95, s.num_lesions, s.num_false_positives) == (0.0, 374.0, 1, 1)
    two = ref.copy()
    two[0, 5, 9] = True                                        # 4 apart: dilated masks touch -> one lesion
    s = lesion_wise(two, ref, min_volume=0)
    # lesion of 2 pixels vs 1 predicted pixel: Dice 2*1/3. Surface elements (pixel corners, equal
    # contour lengths): the lesion's 8 lie at 0 (4), 3 (2) and 4 mm (2) from the prediction's; the
    # area-weighted 95th percentile is the first distance whose cumulative share reaches 0.95: 4
    assert s.num_lesions == 1 and s.dice == pytest.approx(2 / 3) and s.hd95 == pytest.approx(4.0)


def test_lesion_wise_empty_cases_and_spacing():
    empty = np.zeros((10, 10, 10), bool)
    s = lesion_wise(empty, empty)
    assert (s.dice, s.hd95) == (1.0, 0.0)
    pred = box((10, 10, 10), (1, 1, 1), (3, 3, 3)).astype(bool)
    s = lesion_wise(empty, pred)
    assert (s.dice, s.hd95, s.num_false_positives) == (0.0, 374.0, 1)
    ref = box((10, 10, 10), (1, 1, 1), (4, 4, 4)).astype(bool)  # 27 voxels; 27 x 2 mm^3 = 54 > 50
    assert lesion_wise(ref, ref, spacing=(2, 1, 1)).num_lesions == 1
    assert lesion_wise(ref, ref).num_lesions == 0               # 27 mm^3 <= 50: left out
    assert robust_hd95(ref, ref) == 0.0


# ---------------------------------------------------------------------------- case scorer

def test_scorer_adds_post_processed_et_and_lesion_metrics():
    shape = (30, 30, 30)
    ref = box(shape, (2, 2, 2), (12, 12, 12), 1)               # edema, no ET in the reference
    pred = ref.copy()
    box(shape, (20, 20, 20), (22, 22, 22), 3, pred)            # 8 voxels of false ET
    targets = targets_from_labels(REGION_LABELS, [1, 2, 3])
    scorer = CaseScorer(targets, "brats", et_min_voxels=500, metrics=["Dice", "LesionDice"],
                        labels=REGION_LABELS)
    assert scorer.regions == ["WT", "TC", "ET", "ET (pp 500)"] and scorer.metrics == ["Dice", "LesionDice"]
    out = scorer(ref, pred)
    assert out["ET"]["Dice"] == 0.0 and out["ET (pp 500)"]["Dice"] == 1.0   # BraTS: both empty = 1
    assert out["TC"]["Dice"] == 0.0                                          # the 8 voxels stay in TC
    assert out["ET"]["LesionDice"] == 0.0 and out["ET (pp 500)"]["LesionDice"] == 1.0
    assert out["WT"]["LesionDice"] == 0.5                     # WT lesion found, false ET island is an FP
    plain = CaseScorer(targets_from_labels(PLAIN_LABELS), "nnunet", et_min_voxels=500, labels=PLAIN_LABELS)
    assert plain.regions[-1] == "enhancing (pp 500)"
    assert math.isnan(plain(ref, pred)["enhancing (pp 500)"]["Dice"])       # nnU-Net: NaN


def test_metric_names_are_checked():
    assert parse_metrics(None) == ["Dice", "HD95"]
    assert parse_metrics(["lesionhd95,Dice"]) == ["Dice", "LesionHD95"]
    assert parse_metrics(["nsd", "brats2025"])[:2] == ["NSD", "B25Dice"]
    with pytest.raises(EvaluationError, match="unknown metric"):
        parse_metrics(["NSD2"])
    with pytest.raises(EvaluationError, match="enhancing"):
        CaseScorer(targets_from_labels({"background": 0, "liver": 1}), et_min_voxels=5,
                   labels={"background": 0, "liver": 1})


# ------------------------------------------------------------------ tables and --compare

def _results_with_pp():
    from nnunet_prism.evaluation.results import SubsetResults
    res = SubsetResults(["FLAIR", "T1", "T1c", "T2"], ["WT", "TC", "ET", "ET (pp 500)"])
    for subset in res.subsets:
        res.add_case(subset, "c1", {"WT": {"Dice": 0.9, "HD95": 2.0}, "TC": {"Dice": 0.8, "HD95": 3.0},
                                    "ET": {"Dice": 0.5, "HD95": 9.0}, "ET (pp 500)": {"Dice": 0.7, "HD95": 5.0}})
    return res


def test_compare_shows_post_processed_et_protocol_and_convention():
    from nnunet_prism.evaluation.published import load_published, rows_convention
    from nnunet_prism.evaluation.results import comparison_text
    rows = load_published("BraTS2020")
    assert {r.protocol for r in rows} == {"rfnet-brats2020"}
    assert next(r for r in rows if r.method == "RFNet").et_postprocessed == "yes"
    assert rows_convention(rows) == "brats"
    text = comparison_text(_results_with_pp(), "BraTS2020", "mine", convention="brats", et_min_voxels=500)
    mine = next(line for line in text.splitlines() if line.startswith("| mine"))
    assert "| 90.00 | 80.00 | 70.00 | yes (< 500 voxels) |" in mine and mine.rstrip().endswith("50.00 |")
    assert "| RFNet | BraTS2020 | 86.98 | 78.23 | 61.47 | yes | rfnet-brats2020 |" in text
    assert "Evaluation convention of mine: brats; of the published rows: brats" in text
    text = comparison_text(_results_with_pp(), "BraTS2020", "mine", convention="nnunet")
    assert "not the same convention" in text and "ET raw |" not in text


def test_markdown_notes_name_the_convention():
    from nnunet_prism.evaluation.results import markdown_text
    text = markdown_text(_results_with_pp(), notes=["Evaluation convention: brats."])
    assert "ET (pp 500) Dice" in text and text.rstrip().endswith("Evaluation convention: brats.")


# ------------------------------------------------------------------ brats-labels --et-min-voxels

def test_brats_labels_relabels_small_et_before_conversion(tmp_path):
    import SimpleITK as sitk

    from dataset_conversion.cli import main
    pred = box((12, 12, 12), (1, 1, 1), (9, 9, 9), 1)
    box(pred.shape, (3, 3, 3), (5, 5, 5), 3, pred)             # 8 voxels of ET (nnU-Net label 3)
    box(pred.shape, (6, 6, 6), (7, 7, 7), 2, pred)             # 1 voxel of NCR
    (tmp_path / "pred").mkdir()
    sitk.WriteImage(sitk.GetImageFromArray(pred), str(tmp_path / "pred" / "case.nii.gz"))
    assert main(["brats-labels", "-i", str(tmp_path / "pred"), "-o", str(tmp_path / "raw"), "--layout", "2020"]) == 0
    assert main(["brats-labels", "-i", str(tmp_path / "pred"), "-o", str(tmp_path / "pp"), "--layout", "2020",
                 "--et-min-voxels", "9"]) == 0
    raw = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "raw" / "case.nii.gz")))
    pp = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "pp" / "case.nii.gz")))
    assert (raw == 4).sum() == 8 and (raw == 1).sum() == 1     # BraTS 2020: ET 4, NCR 1
    assert (pp == 4).sum() == 0 and (pp == 1).sum() == 9 and np.array_equal(pp > 0, raw > 0)


# ------------------------------------------------------------------------------------- NSD

def test_nsd_by_hand():
    from nnunet_prism.evaluation.metrics import nsd
    ref = box((10, 10, 10), (2, 2, 2), (5, 5, 5)).astype(bool)     # 27 voxels, 26 surface voxels
    assert nsd(ref, ref) == 1.0
    shifted = box((10, 10, 10), (4, 2, 2), (7, 5, 5)).astype(bool)  # moved by 2 along axis 0
    # ref's surface: slab at 2 (9 voxels), ring at 3 (8), slab at 4 (9); the other's: 4, 5, 6.
    # Distances to the other surface: slab 4 -> 0, ring -> 1, far slab -> 2 mm; so within the
    # 1 mm tolerance: 17 of 26 on each side
    assert nsd(ref, shifted) == pytest.approx((26 - 9 + 26 - 9) / 52)
    assert nsd(ref, shifted, tolerance=2.0) == 1.0
    assert nsd(ref, np.zeros_like(ref)) == 0.0 and math.isnan(nsd(np.zeros_like(ref), np.zeros_like(ref)))
