"""Trainers side by side: per-subset Dice averaged over regions, average, worst subset, files."""
import csv
import io

import numpy as np
import pytest

from nnunet_prism.evaluation.comparison import TrainerComparison, comparison_csv, comparison_markdown, write_comparison
from nnunet_prism.evaluation.metrics import EvaluationError
from nnunet_prism.evaluation.results import SubsetResults

NAN = float("nan")


def results(a_wt, b_wt, ab_wt, tc=0.5):
    r = SubsetResults(["A", "B"], ["WT", "TC"])  # subsets A, B, A+B
    for subset, wt in (("A", a_wt), ("B", b_wt), ("A+B", ab_wt)):
        r.add_case(subset, "c1", {"WT": {"Dice": wt, "HD95": 1.0}, "TC": {"Dice": tc, "HD95": 1.0}})
    return r


def comparison():
    return TrainerComparison.from_results({"Dropout": results(0.1, 0.7, 0.9), "PRISM": results(0.5, 0.7, 0.7)})


def test_dice_is_region_mean_per_subset_and_trainer():
    c = comparison()
    np.testing.assert_allclose(c.dice, [[0.3, 0.5], [0.6, 0.6], [0.7, 0.6]])
    np.testing.assert_allclose(c.averages(), [1.6 / 3, 1.7 / 3])
    assert c.worst() == [("A", pytest.approx(0.3)), ("A", pytest.approx(0.5))]
    summary = c.summary()
    assert summary["PRISM"]["worst_dice"] == pytest.approx(0.5) and summary["Dropout"]["dice_per_subset"]["A+B"] == pytest.approx(0.7)


def test_nan_subset_is_skipped_not_averaged_as_zero():
    c = TrainerComparison.from_results({"x": results(NAN, 0.4, 0.8, tc=NAN)})
    assert np.isnan(c.dice[0, 0])
    np.testing.assert_allclose(c.averages(), [0.6])
    assert c.worst() == [("B", pytest.approx(0.4))]


def test_incompatible_results_are_refused():
    other = SubsetResults(["A", "B"], ["WT"])
    with pytest.raises(EvaluationError, match="not comparable"):
        TrainerComparison.from_results({"a": results(0.1, 0.2, 0.3), "b": other})
    with pytest.raises(EvaluationError):
        TrainerComparison.from_results({})


def test_csv_markdown_and_heatmap(tmp_path):
    c = comparison()
    rows = list(csv.reader(io.StringIO(comparison_csv(c))))
    assert rows[0] == ["subset", "A", "B", "Dropout", "PRISM"]
    assert rows[1] == ["A", "1", "0", "30.00", "50.00"]
    assert rows[-2][0] == "Average" and rows[-1] == ["Worst subset", "", "", "30.00", "50.00"]
    md = comparison_markdown(c)
    assert "| ● | ○ | 30.00 | **50.00** |" in md and "50.00 (A)" in md
    files = write_comparison(c, tmp_path)
    assert files["csv"].read_text() == comparison_csv(c)
    assert files["heatmap"].stat().st_size > 1000
