"""BraTS 2023 lesion-wise HD95 with area-weighted surface elements (``evaluation/surface_elements.py``,
``evaluation/lesionwise.py``), checked on hand-made volumes whose values are worked out by hand in
the comments. The BraTS 2023 reference code (rachitsaluja/BraTS-2023-Metrics) computes the same
definition; MONAI's surface elements (a well-kept implementation of the same approach) are
compared where MONAI is installed (the brats2025 CI lane installs it)."""
import math

import numpy as np
import pytest
from scipy import ndimage

from nnunet_prism.evaluation.lesionwise import lesion_wise
from nnunet_prism.evaluation.surface_elements import (area_weighted_percentile, neighbourhood_codes,
                                                      robust_hausdorff, surface_area_table,
                                                      surface_element_distances)


def blocks(shape, *boxes):
    mask = np.zeros(shape, bool)
    for lo, hi in boxes:
        mask[tuple(slice(a, b) for a, b in zip(lo, hi))] = True
    return mask


def code(corners):
    """The neighbourhood code with the given corners (in product((0, 1), repeat=3) order) inside."""
    order = [(i, j, k) for i in (0, 1) for j in (0, 1) for k in (0, 1)]
    return sum(1 << order.index(c) for c in corners)


def test_area_table_by_hand_at_1x1x3_mm():
    t = surface_area_table((1.0, 1.0, 3.0))
    # one corner inside: a triangle through three edge midpoints, edges (0.5, 0, -1.5) and
    # (0.5, -0.5, 0): area = |cross| / 2 = sqrt(0.75^2 + 0.75^2 + 0.25^2) / 2
    assert t[code([(0, 0, 0)])] == pytest.approx(math.sqrt(0.75 ** 2 * 2 + 0.25 ** 2) / 2)
    # four corners of the face k = 0 inside: the mid-plane k = 1.5 mm, 1 x 1 mm
    assert t[code([(0, 0, 0), (0, 1, 0), (1, 0, 0), (1, 1, 0)])] == pytest.approx(1.0)
    # face i = 0 inside: plane i = 0.5 mm, 1 x 3 mm
    assert t[code([(0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 1, 1)])] == pytest.approx(3.0)
    # two corners along k inside: a rectangle 3 mm long, from (0.5, 0) to (0, 0.5): sqrt(0.5) wide
    assert t[code([(0, 0, 0), (0, 0, 1)])] == pytest.approx(3 * math.sqrt(0.5))
    assert t[0] == t[255] == 0.0
    assert np.allclose(t, t[::-1]), "a configuration and its complement share one surface"


def test_single_voxel_has_eight_equal_elements():
    mask = blocks((3, 3, 3), ((1, 1, 1), (2, 2, 2)))
    codes = neighbourhood_codes(mask)
    border = (codes != 0) & (codes != 255)
    assert codes.shape == (4, 4, 4) and border.sum() == 8
    assert sorted(codes[border].tolist()) == [1, 2, 4, 8, 16, 32, 64, 128]


def test_area_weighted_percentile_by_hand():
    distances, areas = np.array([4.0, 0.0, 3.0]), np.array([1.0, 18.0, 1.0])
    assert area_weighted_percentile(distances, areas, 95) == 3.0    # shares 0.90, 0.95, 1.0
    assert area_weighted_percentile(distances, areas, 96) == 4.0
    assert area_weighted_percentile(np.zeros(0), np.zeros(0), 95) == math.inf


def test_shifted_voxels_at_1x1x3_mm():
    # two single voxels 2 apart along the 3 mm axis: each voxel's 8 elements lie at 2 (4 of them)
    # and 1 (the other 4) steps of 3 mm from the other's; 95th percentile: 6 mm
    a = blocks((1, 1, 6), ((0, 0, 1), (1, 1, 2)))
    b = blocks((1, 1, 6), ((0, 0, 3), (1, 1, 4)))
    a3, b3 = a.reshape(1, 1, 6), b.reshape(1, 1, 6)
    assert robust_hausdorff(a3, b3, (1.0, 1.0, 3.0)) == pytest.approx(6.0)


def test_area_weighting_chooses_the_near_side_where_counting_would_not():
    # reference: a 2x2x2 block; prediction: the block and a far voxel 2 voxels beyond it along
    # axis 2 (1 mm). The block's 26 elements: 8 corners (0.2165 mm^2), 12 edges (0.7071) and 6
    # faces (1.0) = 16.22 mm^2, all at 0 mm from the reference. The far voxel's 8 corner elements
    # (0.2165 each): 4 at 2 mm (near side), 4 at 3 mm. Cumulative area: 16.22 / 17.95 = 0.904,
    # + 4 x 0.2165 -> 0.952 >= 0.95: the 95th percentile is 2 mm. Counted by elements instead
    # (26 + 4 = 30 of 34 = 0.88 < 0.95) it would be 3 mm.
    block = ((0, 0, 0), (2, 2, 2))
    ref = blocks((3, 3, 8), block)
    pred = blocks((3, 3, 8), block, ((0, 0, 4), (1, 1, 5)))
    d_pred, area_pred, d_ref, _ = surface_element_distances(pred, ref)
    assert len(d_pred) == 34 and area_pred.sum() == pytest.approx(6 + 12 * math.sqrt(0.5) + 16 * math.sqrt(3) / 8)
    assert d_ref.max() == 0.0
    assert robust_hausdorff(ref, pred) == pytest.approx(2.0)
    s = lesion_wise(ref, pred, min_volume=0)     # one lesion; the far voxel is within 3 dilations
    assert (s.num_lesions, s.num_false_positives) == (1, 0)
    assert s.dice == pytest.approx(2 * 8 / 17) and s.hd95 == pytest.approx(2.0)


# ------------------------------------------------- the BraTS 2023 cases the issue names, by hand

SPACING = (3.0, 1.0, 1.0)   # 1 x 1 x 3 mm (array axis 0 is the 3 mm one): a voxel is 3 mm^3


def test_missed_lesions_above_and_below_50_mm3_at_1x1x3_mm():
    # lesion A: 17 voxels = 51 mm^3 (> 50: counts), B: 16 voxels = 48 mm^3 (left out); both missed
    shape = (12, 30, 30)
    ref = blocks(shape, ((1, 1, 1), (2, 2, 18)), ((8, 20, 1), (9, 21, 17)))
    s = lesion_wise(ref, np.zeros(shape, bool), SPACING)
    assert (s.num_lesions, s.num_detected, s.num_false_positives) == (1, 0, 0)
    assert (s.dice, s.hd95) == (0.0, 374.0)


def test_false_positive_lesion_and_exact_lesion():
    shape = (12, 30, 30)
    ref = blocks(shape, ((1, 1, 1), (4, 5, 5)))                     # 48 voxels = 144 mm^3
    pred = blocks(shape, ((1, 1, 1), (4, 5, 5)), ((9, 20, 20), (10, 22, 22)))  # + an FP far away
    s = lesion_wise(ref, pred, SPACING)
    # the lesion scores Dice 1, HD95 0; the FP Dice 0, HD95 374: means over 2
    assert (s.num_lesions, s.num_false_positives) == (1, 1)
    assert s.dice == pytest.approx(0.5) and s.hd95 == pytest.approx(187.0)


def test_lesions_touching_at_a_corner_are_one_component():
    # two 27-voxel cubes meeting at one corner: 26-connected, so one reference component and one
    # lesion of 54 voxels (162 mm^3); the prediction holds only the first cube
    shape = (10, 12, 12)
    first, second = ((1, 1, 1), (4, 4, 4)), ((4, 4, 4), (7, 7, 7))
    ref, pred = blocks(shape, first, second), blocks(shape, first)
    s = lesion_wise(ref, pred, SPACING)
    assert (s.num_lesions, s.num_detected, s.num_false_positives) == (1, 1, 0)
    assert s.dice == pytest.approx(2 * 27 / (54 + 27))
    assert s.hd95 == pytest.approx(robust_hausdorff(ref, pred, SPACING))
    # the far corner of the second cube: 3 voxels away along each axis from the first cube's
    # nearest element, sqrt(9^2 + 3^2 + 3^2) mm; the 95th percentile lies below that maximum
    assert 0 < s.hd95 <= math.sqrt(9 ** 2 + 9 + 9) + 1e-9


def test_empty_reference_and_or_prediction():
    shape = (6, 10, 10)
    empty, lesion = np.zeros(shape, bool), blocks(shape, ((1, 1, 1), (4, 5, 5)))
    assert (lesion_wise(empty, empty, SPACING).dice, lesion_wise(empty, empty, SPACING).hd95) == (1.0, 0.0)
    s = lesion_wise(empty, lesion, SPACING)          # only a false positive
    assert (s.dice, s.hd95, s.num_false_positives) == (0.0, 374.0, 1)
    s = lesion_wise(lesion, empty, SPACING)          # only a missed lesion (144 mm^3)
    assert (s.dice, s.hd95, s.num_lesions) == (0.0, 374.0, 1)


def test_agrees_with_monai_surface_elements():
    """MONAI's area-weighted surface elements (its own table, the same approach) give the same
    HD95 on random smooth masks at anisotropic spacing."""
    utils = pytest.importorskip("monai.metrics.utils")
    rng = np.random.default_rng(0)
    for _ in range(20):
        shape = tuple(rng.integers(8, 16, 3))
        spacing = tuple(float(s) for s in rng.choice([0.5, 1.0, 1.2, 3.0], 3))
        a = ndimage.gaussian_filter(rng.random(shape), 1.5) > 0.52
        b = ndimage.gaussian_filter(rng.random(shape), 1.5) > 0.52
        if not (a.any() and b.any()):
            continue
        edges_a, edges_b, areas_a, areas_b = utils.get_mask_edges(a, b, spacing=spacing)
        d_ab = np.asarray(utils.get_surface_distance(edges_a, edges_b, spacing=spacing))
        d_ba = np.asarray(utils.get_surface_distance(edges_b, edges_a, spacing=spacing))
        theirs = max(area_weighted_percentile(d_ab, np.asarray(areas_a)[edges_a], 95),
                     area_weighted_percentile(d_ba, np.asarray(areas_b)[edges_b], 95))
        assert robust_hausdorff(a, b, spacing) == pytest.approx(theirs, abs=1e-3)
