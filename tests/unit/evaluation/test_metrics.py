"""Dice and HD95 against hand-computed values, and Dice against nnU-Net's own compute_metrics."""
import math

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from nnunet_prism.evaluation.metrics import (EvaluationError, dice, evaluate_case, evaluate_case_files, evaluate_folder,
                                             hd95, image_diagonal, surface_distances, targets_from_dataset_json)

BRATS_JSON = {
    "channel_names": {"0": "FLAIR", "1": "T1", "2": "T1c", "3": "T2"},
    "labels": {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": 3},
    "regions_class_order": [1, 2, 3],
    "file_ending": ".nii.gz",
}
LABEL_JSON = {
    "channel_names": {"0": "FLAIR", "1": "T1", "2": "T1c", "3": "T2"},
    "labels": {"background": 0, "edema": 1, "non-enhancing": 2, "enhancing": 3},
    "file_ending": ".nii.gz",
}


def cube(shape, lo, size):
    m = np.zeros(shape, bool)
    m[tuple(slice(start, start + size) for start in lo)] = True
    return m


# ------------------------------------------------------------------------------------- Dice

def test_dice_of_two_overlapping_cubes():
    ref = cube((10, 10, 10), (2, 2, 2), 4)          # 64 voxels
    pred = cube((10, 10, 10), (4, 2, 2), 4)         # shifted by 2: 32 shared
    assert dice(ref, pred) == pytest.approx(2 * 32 / (64 + 64))
    assert dice(ref, ref) == 1.0
    assert dice(ref, np.zeros_like(ref)) == 0.0
    assert math.isnan(dice(np.zeros_like(ref), np.zeros_like(ref)))  # nnU-Net: both empty -> NaN


# ------------------------------------------------------------------------------------- HD95

def test_hd95_parallel_plates_with_anisotropic_spacing():
    ref = np.zeros((6, 5, 12), bool)
    pred = np.zeros_like(ref)
    ref[:, :, 3] = True
    pred[:, :, 7] = True                             # every distance is 4 voxels along the last axis
    assert hd95(ref, pred) == pytest.approx(4.0)
    assert hd95(ref, pred, spacing=(1.0, 1.0, 2.5)) == pytest.approx(10.0)
    assert hd95(ref, pred, spacing=(3.0, 7.0, 2.5)) == pytest.approx(10.0)  # other axes do not matter
    # the same along the first axis: spacing is in numpy axis order
    assert hd95(ref.transpose(2, 1, 0), pred.transpose(2, 1, 0), spacing=(2.5, 1.0, 1.0)) == pytest.approx(10.0)


def test_hd95_is_the_95th_percentile_of_pooled_distances():
    # a line of 20 voxels against its first voxel: pred->ref distances 0..19, ref->pred 0;
    # pooled sorted [0, 0, 1, ..., 19] (21 values), 95th percentile at index 19 -> 18
    ref = np.zeros((20, 3, 3), bool)
    pred = np.zeros_like(ref)
    pred[:, 1, 1] = True
    ref[0, 1, 1] = True
    assert hd95(ref, pred) == pytest.approx(18.0)
    assert hd95(ref, pred, spacing=(0.5, 1, 1)) == pytest.approx(9.0)
    assert hd95(pred, ref, spacing=(0.5, 1, 1)) == pytest.approx(9.0)  # symmetric


def test_hd95_single_voxels_and_2d():
    a = np.zeros((9, 9, 9), bool)
    b = np.zeros_like(a)
    a[1, 2, 3] = True
    b[4, 6, 3] = True                                # offset (3, 4, 0)
    assert hd95(a, b) == pytest.approx(5.0)
    assert hd95(a, b, spacing=(2, 1, 1)) == pytest.approx(math.hypot(6, 4))
    a2, b2 = a[:, :, 3], b[:, :, 3]                  # 2D arrays work too
    assert hd95(a2, b2, spacing=(2, 1)) == pytest.approx(math.hypot(6, 4))
    # nnU-Net reads 2D images as (1, y, x) with a dummy spacing of 999 x; the singleton axis is dropped
    assert hd95(a2[None], b2[None], spacing=(999.0, 2, 1)) == pytest.approx(math.hypot(6, 4))


def test_hd95_empty_conventions():
    shape = (6, 8, 10)
    empty = np.zeros(shape, bool)
    some = cube(shape, (1, 1, 1), 2)
    assert math.isnan(hd95(empty, empty))
    assert hd95(empty, empty, both_empty=0.0) == 0.0
    diagonal = math.sqrt((6 * 2.0) ** 2 + 8 ** 2 + 10 ** 2)
    assert hd95(some, empty, spacing=(2, 1, 1)) == pytest.approx(diagonal)
    assert hd95(empty, some, spacing=(2, 1, 1)) == pytest.approx(diagonal)
    assert math.isnan(hd95(empty, some, one_empty="nan"))
    assert hd95(empty, some, one_empty=373.13) == 373.13
    assert image_diagonal((240, 240, 155)) == pytest.approx(373.13, abs=0.005)  # the BraTS value


def _naive_surface_distances(a, b, spacing):
    """Whole image, brute force: the definition, written without any shortcut."""
    st = ndimage.generate_binary_structure(a.ndim, 1)
    sa = np.argwhere(a & ~ndimage.binary_erosion(a, st, border_value=0)) * spacing
    sb = np.argwhere(b & ~ndimage.binary_erosion(b, st, border_value=0)) * spacing
    d = np.linalg.norm(sa[:, None, :] - sb[None, :, :], axis=2)
    return d.min(axis=1), d.min(axis=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_surface_distances_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    shape = (11, 9, 7)
    a = ndimage.gaussian_filter(rng.random(shape), 1.2) > 0.52
    b = ndimage.gaussian_filter(rng.random(shape), 1.2) > 0.52
    a[0, :3, :3] = True                             # touch the image border too
    b[1:4, 2:5, 1:3] = True
    spacing = np.array([1.5, 0.8, 2.0])
    got_ab, got_ba = surface_distances(a, b, spacing)
    want_ab, want_ba = _naive_surface_distances(a, b, spacing)
    np.testing.assert_allclose(np.sort(got_ab), np.sort(want_ab), atol=1e-9)
    np.testing.assert_allclose(np.sort(got_ba), np.sort(want_ba), atol=1e-9)
    assert hd95(b, a, spacing) == pytest.approx(np.percentile(np.concatenate([want_ab, want_ba]), 95))


def test_hd95_rejects_bad_input():
    a = np.zeros((3, 3), bool)
    with pytest.raises(EvaluationError):
        hd95(a, np.zeros((3, 4), bool))
    a[1, 1] = True
    with pytest.raises(EvaluationError):
        hd95(a, a, spacing=(1, 1, 1))


# ------------------------------------------------------------------------- regions and labels

def test_targets_region_based_and_label_based():
    regions = targets_from_dataset_json(BRATS_JSON)
    assert [t.short for t in regions] == ["WT", "TC", "ET"]
    assert [t.name for t in regions] == ["whole tumor", "tumor core", "enhancing tumor"]
    assert [t.value for t in regions] == [(1, 2, 3), (2, 3), 3]
    labels = targets_from_dataset_json(LABEL_JSON)
    assert [(t.short, t.value) for t in labels] == [("edema", 1), ("non-enhancing", 2), ("enhancing", 3)]


def test_evaluate_case_region_based_by_hand():
    ref = np.zeros((8, 8, 8), int)
    pred = np.zeros_like(ref)
    ref[2:6, 2:6, 2:6] = 1        # 64 voxels edema
    ref[3:5, 3:5, 3:5] = 3        # 8 voxels enhancing inside
    pred[2:6, 2:6, 2:6] = 2       # WT identical, TC = pred core 64 vs ref core 8
    out = evaluate_case(ref, pred, targets_from_dataset_json(BRATS_JSON), spacing=(1, 1, 1))
    assert list(out) == ["WT", "TC", "ET"]
    assert out["WT"]["Dice"] == 1.0 and out["WT"]["HD95"] == 0.0
    assert out["TC"]["Dice"] == pytest.approx(2 * 8 / (64 + 8))
    assert out["ET"]["Dice"] == 0.0                  # reference has ET, prediction has none
    assert out["ET"]["HD95"] == pytest.approx(image_diagonal(ref.shape))
    assert (out["TC"]["n_ref"], out["TC"]["n_pred"]) == (8, 64)


def test_evaluate_case_label_based_with_empty_label():
    ref = np.zeros((6, 6), int)
    pred = np.zeros_like(ref)
    ref[1:3, 1:3] = 1
    pred[1:3, 1:4] = 1
    out = evaluate_case(ref, pred, targets_from_dataset_json(LABEL_JSON))
    assert out["edema"]["Dice"] == pytest.approx(2 * 4 / (4 + 6))
    assert out["edema"]["HD95"] == pytest.approx(1.0)
    assert math.isnan(out["enhancing"]["Dice"]) and math.isnan(out["enhancing"]["HD95"])


# ----------------------------------------------------------- agreement with nnU-Net's Dice

def _random_label_map(rng, shape, num_labels, drop_label=None):
    fields = [ndimage.gaussian_filter(rng.random(shape), 1.0) for _ in range(num_labels + 1)]
    seg = np.argmax(np.stack(fields), axis=0).astype(np.uint8)
    if drop_label is not None:
        seg[seg == drop_label] = 0
    return seg


def _write(path, seg, spacing_xyz):
    img = sitk.GetImageFromArray(seg)
    img.SetSpacing(spacing_xyz)
    sitk.WriteImage(img, str(path))


@pytest.mark.parametrize("dataset_json, num_labels", [(BRATS_JSON, 3), (LABEL_JSON, 3)])
def test_dice_agrees_with_nnunet_compute_metrics(tmp_path, dataset_json, num_labels):
    from nnunetv2.evaluation.evaluate_predictions import compute_metrics
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

    rng = np.random.default_rng(42)
    (tmp_path / "ref").mkdir()
    (tmp_path / "pred").mkdir()
    spacing_xyz = (0.9, 1.1, 2.0)
    cases = []
    for i in range(3):
        shape = (10, 14, 12)
        ref = _random_label_map(rng, shape, num_labels)
        pred = _random_label_map(rng, shape, num_labels)
        if i == 2:  # label 3 in neither map: Dice NaN in both implementations
            ref[ref == 3] = 0
            pred[pred == 3] = 0
        _write(tmp_path / "ref" / f"case{i}.nii.gz", ref, spacing_xyz)
        _write(tmp_path / "pred" / f"case{i}.nii.gz", pred, spacing_xyz)
        cases.append(f"case{i}")

    lm = LabelManager(dataset_json["labels"], dataset_json.get("regions_class_order"))
    regions_or_labels = lm.foreground_regions if lm.has_regions else lm.foreground_labels
    ours = evaluate_folder(tmp_path / "ref", tmp_path / "pred", dataset_json)
    assert sorted(ours) == cases
    targets = targets_from_dataset_json(dataset_json)
    saw_nan = False
    for case in cases:
        theirs = compute_metrics(str(tmp_path / "ref" / f"{case}.nii.gz"), str(tmp_path / "pred" / f"{case}.nii.gz"),
                                 SimpleITKIO(), regions_or_labels)["metrics"]
        for target, key in zip(targets, regions_or_labels):
            want, got = theirs[key]["Dice"], ours[case][target.short]["Dice"]
            if np.isnan(want):
                saw_nan = True
                assert np.isnan(got)
            else:
                assert got == want                   # exactly, not approximately
            assert ours[case][target.short]["n_ref"] == theirs[key]["n_ref"]
            assert ours[case][target.short]["n_pred"] == theirs[key]["n_pred"]
    assert saw_nan
    # spacing is taken from the file header, in numpy axis order (z, y, x)
    single = evaluate_case_files(tmp_path / "ref" / "case0.nii.gz", tmp_path / "ref" / "case0.nii.gz", dataset_json)
    assert all(v["Dice"] == 1.0 and v["HD95"] == 0.0 for v in single.values())


def test_ignore_label_agrees_with_nnunet(tmp_path):
    from nnunetv2.evaluation.evaluate_predictions import compute_metrics
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    dj = {"labels": {"background": 0, "a": 1, "b": 2, "ignore": 3}, "file_ending": ".nii.gz"}
    rng = np.random.default_rng(3)
    ref = _random_label_map(rng, (8, 10, 9), 3)
    pred = _random_label_map(rng, (8, 10, 9), 2)
    _write(tmp_path / "r.nii.gz", ref, (1.0, 1.0, 1.0))
    _write(tmp_path / "p.nii.gz", pred, (1.0, 1.0, 1.0))
    theirs = compute_metrics(str(tmp_path / "r.nii.gz"), str(tmp_path / "p.nii.gz"), SimpleITKIO(), [1, 2],
                             ignore_label=3)["metrics"]
    ours = evaluate_case_files(tmp_path / "r.nii.gz", tmp_path / "p.nii.gz", dj)
    assert ours["a"]["Dice"] == theirs[1]["Dice"] and ours["b"]["Dice"] == theirs[2]["Dice"]


def test_missing_prediction_names_the_file(tmp_path):
    (tmp_path / "ref").mkdir()
    (tmp_path / "pred").mkdir()
    _write(tmp_path / "ref" / "c1.nii.gz", np.zeros((4, 4, 4), np.uint8), (1.0, 1.0, 1.0))
    with pytest.raises(FileNotFoundError, match="c1"):
        evaluate_folder(tmp_path / "ref", tmp_path / "pred", BRATS_JSON, case_ids=["c1"])
    _write(tmp_path / "pred" / "c1.nii.gz", np.zeros((4, 4, 5), np.uint8), (1.0, 1.0, 1.0))
    with pytest.raises(EvaluationError, match="c1.nii.gz"):
        evaluate_folder(tmp_path / "ref", tmp_path / "pred", BRATS_JSON)
