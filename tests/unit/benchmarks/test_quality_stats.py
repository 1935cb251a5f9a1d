"""benchmarks/quality_stats.py on hand-made numbers: mean ± std over seeds, Wilcoxon p-values that
can be worked out by hand (exact null distribution), counts of improving subsets, the summary
of one trainer, and the Markdown and PNG outputs."""
import math

import numpy as np
import pytest

from helpers.benchmarks import benchmark_module


@pytest.fixture(scope="module")
def qs():
    with benchmark_module("quality_stats") as module:
        yield module


def table(qs, trainer, dice, subsets=("T1", "T2", "T1+T2"), regions=("WT", "TC")):
    dice = np.asarray(dice, dtype=float)
    return qs.DiceTable(trainer, list(range(dice.shape[0])), list(subsets),
                        [f"case{i}" for i in range(dice.shape[2])], list(regions), dice)


def test_mean_std_is_sample_std_over_finite_values(qs):
    assert qs.mean_std([0.5, 0.7, 0.9]) == pytest.approx((0.7, 0.2))  # sqrt((0.04 + 0 + 0.04) / 2)
    assert qs.mean_std([0.5, np.nan, 0.7]) == pytest.approx((0.6, math.sqrt(0.02)))
    mean, std = qs.mean_std([0.4])
    assert mean == 0.4 and math.isnan(std)
    assert all(math.isnan(v) for v in qs.mean_std([np.nan]))


def test_wilcoxon_exact_p_values_by_hand(qs):
    # five positive differences: the statistic (smaller rank sum) is 0; under the null each of the
    # 2^5 sign patterns is equally likely, two of them as extreme (all +, all -): p = 2/32
    r = qs.wilcoxon_test([0.6, 0.7, 0.8, 0.9, 1.0], [0.5, 0.5, 0.5, 0.5, 0.5])
    assert r["n"] == 5 and r["statistic"] == 0 and r["p_value"] == pytest.approx(0.0625)
    assert r["mean_diff"] == pytest.approx(0.3) and r["median_diff"] == pytest.approx(0.3)
    # differences +1 -2 +3 +4 -5 +6: negative rank sum 2 + 5 = 7; P(W <= 7) = 18/64 per side -> 0.5625
    r = qs.wilcoxon_test([1, -2, 3, 4, -5, 6], np.zeros(6))
    assert r["statistic"] == 7 and r["p_value"] == pytest.approx(36 / 64)
    # three pairs, differences +0.1 -0.05 +0.2: W = 1, P(W <= 1) = 2/8 per side -> 0.5
    r = qs.wilcoxon_test([0.5, 0.6, 0.7], [0.4, 0.65, 0.5])
    assert r["statistic"] == 1 and r["p_value"] == pytest.approx(0.5)


def test_wilcoxon_matches_scipy_and_handles_zeros_and_nan(qs):
    from scipy.stats import wilcoxon

    rng = np.random.default_rng(3)
    a, b = rng.uniform(size=12), rng.uniform(size=12)
    assert qs.wilcoxon_test(a, b)["p_value"] == pytest.approx(wilcoxon(a - b).pvalue)
    # a zero difference is dropped (zero_method="wilcox"): the five others are all positive
    r = qs.wilcoxon_test([0.5, 0.6, 0.7, 0.8, 0.9, 1.0], [0.5, 0.5, 0.5, 0.5, 0.5, 0.5])
    assert r["p_value"] == pytest.approx(0.0625) and r["n"] == 6
    # a NaN drops its pair
    r = qs.wilcoxon_test([0.6, np.nan, 0.7, 0.8, 0.9, 1.0], [0.5, 0.5, 0.5, 0.5, 0.5, 0.5])
    assert r["n"] == 5 and r["p_value"] == pytest.approx(0.0625)
    same = qs.wilcoxon_test([0.3, 0.4], [0.3, 0.4])
    assert same["p_value"] == 1.0 and same["mean_diff"] == 0
    assert math.isnan(qs.wilcoxon_test([np.nan], [0.2])["p_value"])
    with pytest.raises(ValueError, match="one length"):
        qs.wilcoxon_test([0.1, 0.2], [0.1])


def test_compare_pairs_on_seed_and_case_and_counts_subsets(qs):
    # 2 seeds x 3 subsets x 3 cases x 1 region; b is 0.5 everywhere
    a = np.full((2, 3, 3, 1), 0.5)
    a[:, 0] += np.array([0.1, 0.2, 0.3])[None, :, None]    # T1: six positive differences
    a[:, 1] -= 0.01 * np.arange(1, 7).reshape(2, 3, 1)    # T2: six negative differences
    a[0, 2, 0, 0] = 0.6                                   # T1+T2: one positive, rest zero
    b = np.full((2, 3, 3, 1), 0.5)
    c = qs.compare(table(qs, "A", a, regions=("WT",)), table(qs, "B", b, regions=("WT",)))
    t1, t2, full = (c["per_subset"][s] for s in ("T1", "T2", "T1+T2"))
    assert t1["n"] == 6 and t1["mean_diff"] == pytest.approx(0.2) and t1["p_value"] == pytest.approx(2 / 64)
    assert t2["mean_diff"] == pytest.approx(-0.035) and t2["p_value"] == pytest.approx(2 / 64)
    assert full["mean_diff"] == pytest.approx(0.1 / 6) and full["p_value"] == pytest.approx(1.0)
    assert c["improved"] == 2 and c["improved_significant"] == 1 and c["worse_significant"] == 1
    # Holm over the 3 subsets: 2/64 * 3 and max(that, 2/64 * 2); neither stays below 0.05
    assert [c["per_subset"][s]["p_holm"] for s in ("T1", "T2", "T1+T2")] == pytest.approx([3 * 2 / 64] * 2 + [1.0])
    assert c["improved_significant_holm"] == 0 and c["worse_significant_holm"] == 0
    # pooled: one pair per (seed, case), its mean over the 3 subsets
    assert c["pooled"]["n"] == 6 and c["pooled"]["mean_diff"] == pytest.approx(1.09 / 18)
    assert c["seeds"] == [0, 1] and c["subsets"] == 3


def test_compare_uses_common_seeds_and_cases_only(qs):
    a = table(qs, "A", np.full((3, 3, 2, 1), 0.7), regions=("WT",))
    b = qs.DiceTable("B", [0, 2], ["T1", "T2", "T1+T2"], ["case1", "case9"], ["WT"], np.full((2, 3, 2, 1), 0.6))
    c = qs.compare(a, b)
    assert c["seeds"] == [0, 2] and c["per_subset"]["T1"]["n"] == 2  # seeds 0, 2 x case1
    with pytest.raises(ValueError, match="different subsets"):
        qs.compare(a, qs.DiceTable("C", [0], ["T1", "T1+T2", "T2"], ["case1"], ["WT"], np.zeros((1, 3, 1, 1))))


def test_trainer_summary_mean_std_worst_most_missing_full(qs):
    # 3 seeds x 3 subsets x 2 cases x 2 regions
    dice = np.zeros((3, 3, 2, 2))
    dice[:, 0] = 0.2                                      # T1 alone: worst
    dice[:, 1] = np.array([0.5, 0.6, 0.7])[:, None, None]  # T2: the most-missing modality
    dice[:, 2, :, 0] = 0.9                                # full set: WT 0.9, TC 0.7 (+ seed offset)
    dice[:, 2, :, 1] = np.array([0.6, 0.7, 0.8])[:, None]
    s = qs.trainer_summary(table(qs, "A", dice), most_missing="T2")
    assert s["worst_subset"]["subset"] == "T1" and s["worst_subset"]["mean"] == pytest.approx(0.2)
    assert s["worst_subset"]["std"] == pytest.approx(0.0)
    assert s["most_missing_alone"]["subset"] == "T2"
    assert s["most_missing_alone"]["mean"]["mean"] == pytest.approx(0.6)
    assert s["most_missing_alone"]["mean"]["std"] == pytest.approx(0.1)
    assert s["full_set"]["subset"] == "T1+T2" and s["full_set"]["WT"]["mean"] == pytest.approx(0.9)
    assert s["full_set"]["TC"]["mean"] == pytest.approx(0.7) and s["full_set"]["TC"]["std"] == pytest.approx(0.1)
    # mean over subsets per seed: WT (0.2 + T2 + 0.9) / 3, TC (0.2 + T2 + TC_full) / 3
    assert s["mean_15"]["WT"]["per_seed"] == pytest.approx([1.6 / 3, 1.7 / 3, 1.8 / 3])
    assert s["mean_15"]["TC"]["per_seed"] == pytest.approx([1.3 / 3, 1.5 / 3, 1.7 / 3])
    assert s["mean_15"]["mean"]["mean"] == pytest.approx((1.7 / 3 + 1.5 / 3) / 2)
    assert s["per_subset"]["T1+T2"]["mean"] == pytest.approx(0.8)


def test_nan_dice_is_skipped_in_means(qs):
    dice = np.full((1, 3, 2, 2), 0.5)
    dice[0, 0, 0, 1] = np.nan  # a region absent from reference and prediction
    dice[0, 0, 1, 1] = 0.8
    s = qs.trainer_summary(table(qs, "A", dice), most_missing="T2")
    # per region over cases first (as evaluate's subset means): WT 0.5, TC 0.8 (the NaN skipped)
    assert s["per_subset"]["T1"]["mean"] == pytest.approx((0.5 + 0.8) / 2)
    assert math.isnan(s["per_subset"]["T1"]["std"])  # one seed


def test_from_subset_results_orders_seeds_and_cases(qs):
    class Fake:
        subset_names, regions = ["T1", "T2"], ["WT"]

        def __init__(self, value):
            self.value = value

        def cases(self, subset):
            return ["b", "a"]

        def per_case(self, subset, metric):
            return np.array([[self.value], [self.value + 0.1]])

    t = qs.DiceTable.from_subset_results("A", {2: Fake(0.3), 0: Fake(0.5)})
    assert t.seeds == [0, 2] and t.cases == ["a", "b"] and t.dice.shape == (2, 2, 2, 1)
    assert t.dice[0, 0, :, 0] == pytest.approx([0.6, 0.5]) and t.dice[1, 1, :, 0] == pytest.approx([0.4, 0.3])
    with pytest.raises(ValueError, match="expected"):
        qs.DiceTable("X", [0], ["T1"], ["a"], ["WT"], np.zeros((2, 1, 1, 1)))


def test_summary_markdown_and_plot(qs, tmp_path):
    rng = np.random.default_rng(0)
    a = table(qs, "nnUNetTrainerPRISM", rng.uniform(0.5, 1, (3, 3, 4, 2)))
    b = table(qs, "nnUNetTrainerPrismBase", rng.uniform(0, 0.5, (3, 3, 4, 2)))
    summaries = {t.trainer: qs.trainer_summary(t, "T2") for t in (a, b)}
    text = qs.summary_markdown(summaries, [qs.compare(a, b)], ["WT", "TC"], header=["# Quality"])
    assert text.startswith("# Quality")
    assert "| nnUNetTrainerPRISM | 3 |" in text and "Improved subsets: **3 of 3**" in text
    assert "### nnUNetTrainerPRISM vs nnUNetTrainerPrismBase" in text and "| T1+T2 | +" in text
    path = qs.plot_subset_dice([a, b], tmp_path / "quality_dice.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_holm_adjustment(qs):
    assert qs.holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    adjusted = qs.holm([0.02, np.nan, 0.01])  # NaN is not a test: m = 2
    assert adjusted[0] == pytest.approx(0.02) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.02)


def test_compare_per_region_uses_that_regions_dice_only(qs):
    # 2 seeds x 3 subsets x 3 cases x 2 regions: A loses WT everywhere, wins TC by more
    a = np.full((2, 3, 3, 2), 0.5)
    b = np.full((2, 3, 3, 2), 0.5)
    a[..., 0] -= 0.01 * np.arange(1, 7).reshape(2, 1, 3)   # WT: six different negative differences per subset
    a[..., 1] += 0.1
    ta, tb = table(qs, "A", a), table(qs, "B", b)
    wt, tc, both = qs.compare(ta, tb, region="WT"), qs.compare(ta, tb, region="TC"), qs.compare(ta, tb)
    assert wt["region"] == "WT" and both["region"] is None
    assert wt["per_subset"]["T1"]["mean_diff"] == pytest.approx(-0.035) and wt["improved"] == 0
    assert wt["per_subset"]["T1"]["p_value"] == pytest.approx(2 / 64) and wt["pooled"]["mean_diff"] == pytest.approx(-0.035)
    assert tc["per_subset"]["T2"]["mean_diff"] == pytest.approx(0.1) and tc["improved"] == 3
    assert both["per_subset"]["T1"]["mean_diff"] == pytest.approx((0.1 - 0.035) / 2)  # the mean over regions
    with pytest.raises(ValueError, match="no region 'ET'"):
        qs.compare(ta, tb, region="ET")


def test_worst_subset_per_region(qs):
    dice = np.full((2, 3, 1, 2), 0.8)
    dice[:, 0, :, 0] = 0.3   # WT lowest with T1 alone
    dice[:, 1, :, 1] = np.array([0.1, 0.3])[:, None]   # TC lowest with T2 alone: 0.2 ± 0.141
    s = qs.trainer_summary(table(qs, "A", dice), most_missing="T2")
    assert s["worst_subset_per_region"]["WT"]["subset"] == "T1"
    assert s["worst_subset_per_region"]["WT"]["mean"] == pytest.approx(0.3)
    tc = s["worst_subset_per_region"]["TC"]
    assert tc["subset"] == "T2" and tc["mean"] == pytest.approx(0.2) and tc["std"] == pytest.approx(math.sqrt(0.02))


def test_summary_markdown_with_region_comparisons_and_region_plot(qs, tmp_path):
    rng = np.random.default_rng(1)
    a = table(qs, "nnUNetTrainerPRISM", rng.uniform(0.5, 1, (3, 3, 4, 2)))
    b = table(qs, "nnUNetTrainerMissingModality", rng.uniform(0, 0.5, (3, 3, 4, 2)))
    comparisons = [qs.compare(a, b, region=r) for r in (None, "WT", "TC")]
    summaries = {t.trainer: qs.trainer_summary(t, "T2") for t in (a, b)}
    text = qs.summary_markdown(summaries, comparisons, ["WT", "TC"])
    assert text.count("### nnUNetTrainerPRISM vs nnUNetTrainerMissingModality") == 1
    assert "| trainer | region | mean (15 subsets) | worst subset | full set |" in text
    assert "| nnUNetTrainerPRISM | WT |" in text and "| subset | WT | TC |" in text
    wt = comparisons[1]["pooled"]
    assert f"| **mean over subsets** | {wt['mean_diff']:+.3f} (p {qs._p(wt['p_value'])})" in text
    assert "WT 3 / 0; TC 3 / 0" in text  # improved / significantly worse after Holm, per region
    path = qs.plot_subset_dice([a, b], tmp_path / "regions.png", per_region=True)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_by_modality_count(qs):
    subsets = ("T1", "T2", "T1+T2")
    dice = np.zeros((2, 3, 1, 2))
    dice[:, 0] = 0.6
    dice[:, 1] = np.array([0.7, 0.9])[:, None, None]
    dice[:, 2, :, 0] = 0.9
    dice[:, 2, :, 1] = 0.5
    s = qs.trainer_summary(table(qs, "A", dice, subsets=subsets), most_missing="T2")
    assert list(qs.subset_sizes(subsets)) == [1, 1, 2] and list(s["by_modality_count"]) == ["1", "2"]
    one = s["by_modality_count"]["1"]
    assert one["WT"]["per_seed"] == pytest.approx([0.65, 0.75]) and one["mean"]["mean"] == pytest.approx(0.7)
    assert s["by_modality_count"]["2"]["TC"]["mean"] == pytest.approx(0.5)
    assert s["by_modality_count"]["2"]["mean"]["mean"] == pytest.approx(0.7)
    text = qs.summary_markdown({"A": s}, [], ["WT", "TC"])
    assert "| trainer | Dice | 1 of 2 | 2 of 2 |" in text and "| A | WT | 0.700 ± 0.071 | 0.900 ± 0.000 |" in text


def test_fusion_gain_is_the_full_set_minus_the_single_modalities_and_is_tested_per_region(qs):
    subsets = ("T1", "T2", "T1+T2")
    a = np.full((2, 3, 3, 2), 0.6)
    b = np.full((2, 3, 3, 2), 0.6)
    a[:, 1] = 0.8                                                        # T2 alone better: mean single 0.7
    a[:, 2, :, 0] = 0.9 + 0.01 * np.arange(6).reshape(2, 3)             # WT full set: gains 0.20 .. 0.25
    b[:, 2, :, 0] = 0.7                                                  # b gains 0.1
    ta, tb = table(qs, "A", a, subsets=subsets), table(qs, "B", b, subsets=subsets)
    gains = qs.fusion_gain(ta.case_dice("WT"), subsets)
    assert gains.shape == (2, 3) and gains[0, 0] == pytest.approx(0.2) and gains[1, 2] == pytest.approx(0.25)
    wt = qs.compare(ta, tb, region="WT")
    assert wt["fusion_gain"]["mean_diff"] == pytest.approx(0.225 - 0.1) and wt["fusion_gain"]["n"] == 6
    assert wt["fusion_gain"]["p_value"] == pytest.approx(2 / 64)
    text = qs.summary_markdown({t.trainer: qs.trainer_summary(t, "T2") for t in (ta, tb)},
                               [qs.compare(ta, tb), wt], ["WT", "TC"])
    assert "| **fusion gain** (full set − mean of the single modalities) | +0.125 (p 0.031) * |" in text
