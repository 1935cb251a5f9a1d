"""Aggregation over cases and subsets, the CSV/Markdown/LaTeX tables, the heatmap and the
published reference numbers."""
import csv
import io
import math

import numpy as np
import pytest

from nnunet_prism.evaluation.metrics import EvaluationError
from nnunet_prism.evaluation.plots import plot_subset_heatmap
from nnunet_prism.evaluation.published import load_published
from nnunet_prism.evaluation.results import (SubsetResults, comparison_text, csv_text, latex_text, markdown_text,
                                             write_all)
from nnunet_prism.modalities import BRATS_MODALITIES, all_subsets, subset_name

NAN = float("nan")


def case(wt, tc, hd=(1.0, 2.0)):
    return {"WT": {"Dice": wt, "HD95": hd[0]}, "TC": {"Dice": tc, "HD95": hd[1]}}


def two_modality_results():
    r = SubsetResults(["A", "B"], ["WT", "TC"])  # subsets: A, B, A+B
    r.add_case((0,), "c1", case(0.5, 0.2, (10.0, 20.0)))
    r.add_case((0,), "c2", case(0.7, NAN, (30.0, NAN)))       # TC NaN (both empty): skipped
    r.add_case("B", "c1", case(0.9, 0.6, (2.0, 4.0)))
    r.add_case([True, True], "c1", case(0.8, 0.8, (1.0, 1.0)))
    r.add_case([True, True], "c2", case(1.0, 0.6, (3.0, 5.0)))
    return r


def test_subset_means_average_and_worst():
    r = two_modality_results()
    assert r.subset_names == ["A", "B", "A+B"]
    means = r.subset_means("Dice")
    np.testing.assert_allclose(means, [[0.6, 0.2], [0.9, 0.6], [0.9, 0.7]])
    np.testing.assert_allclose(r.average("Dice"), [(0.6 + 0.9 + 0.9) / 3, (0.2 + 0.6 + 0.7) / 3])
    np.testing.assert_allclose(r.subset_means("HD95"), [[20.0, 20.0], [2.0, 4.0], [2.0, 3.0]])
    assert r.worst_subset("Dice") == ((0,), pytest.approx(0.4))          # lowest mean Dice
    assert r.worst_subset("HD95") == ((0,), pytest.approx(20.0))         # highest mean HD95
    assert r.worst_subset("Dice", region="WT") == ((0,), pytest.approx(0.6))
    assert list(r.num_cases()) == [2, 1, 2]


def test_nan_handling_and_subsets_without_cases():
    r = SubsetResults(["A", "B"], ["WT", "TC"])
    r.add_case("A", "c1", case(NAN, 0.4))
    r.add_case("A", "c2", case(NAN, 0.6))
    means = r.subset_means("Dice")
    assert np.isnan(means[0, 0]) and means[0, 1] == pytest.approx(0.5)    # all-NaN column: NaN, no warning
    assert np.isnan(means[1:]).all()                                      # subsets without cases
    assert np.isnan(r.average("Dice")[0]) and r.average("Dice")[1] == pytest.approx(0.5)
    assert r.worst_subset("Dice") == ((0,), pytest.approx(0.5))
    empty = SubsetResults(["A"], ["WT"])
    subset, value = empty.worst_subset("Dice")
    assert subset is None and math.isnan(value)


def test_bad_subsets_and_regions_are_clear_errors():
    r = SubsetResults(["A", "B"], ["WT", "TC"])
    with pytest.raises(EvaluationError, match="C"):
        r.add_case("C", "c1", case(1, 1))
    with pytest.raises(EvaluationError):
        r.add_case((), "c1", case(1, 1))
    with pytest.raises(EvaluationError, match="TC"):
        r.add_case("A", "c1", {"WT": {"Dice": 1.0, "HD95": 0.0}})


def test_json_round_trip(tmp_path):
    r = two_modality_results()
    back = SubsetResults.load_json(r.save_json(tmp_path / "r.json"))
    for metric in ("Dice", "HD95"):
        np.testing.assert_array_equal(back.subset_means(metric), r.subset_means(metric))
    assert back.cases("A") == ["c1", "c2"]


@pytest.fixture(scope="module")
def brats_results():
    r = SubsetResults(BRATS_MODALITIES, ["WT", "TC", "ET"])
    rng = np.random.default_rng(0)
    for s in r.subsets:
        for c in range(2):
            r.add_case(s, f"case{c}", {k: {"Dice": rng.uniform(0.3, 0.95), "HD95": rng.uniform(1, 30)}
                                       for k in r.regions})
    return r


def _expected_presence():
    return [[m in s for m in range(4)] for s in all_subsets(4)]


def test_csv_has_15_subsets_and_average(brats_results):
    rows = list(csv.reader(io.StringIO(csv_text(brats_results))))
    header, body = rows[0], rows[1:]
    assert header[:5] == ["subset", "FLAIR", "T1", "T1c", "T2"]
    assert header[5:8] == ["Dice_WT", "Dice_TC", "Dice_ET"] and header[-1] == "n_cases"
    assert len(body) == 16 and body[-1][0] == "Average"
    assert [row[0] for row in body[:15]] == [subset_name(s, BRATS_MODALITIES) for s in all_subsets(4)]
    assert [[v == "1" for v in row[1:5]] for row in body[:15]] == _expected_presence()
    avg = brats_results.average("Dice")
    assert [float(v) for v in body[-1][5:8]] == pytest.approx(avg * 100, abs=0.005)


def test_markdown_marks_and_average(brats_results):
    text = markdown_text(brats_results, title="BraTS test")
    assert "### BraTS test" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and ("●" in line or "○" in line)]
    assert len(rows) == 15
    marks = [[cell.strip() == "●" for cell in row.strip("|").split("|")[:4]] for row in rows]
    assert marks == _expected_presence()
    assert sum(1 for line in text.splitlines() if line.startswith("| **Average**")) == 1
    assert "Worst subset by mean Dice" in text


def test_latex_marks_and_average(brats_results):
    text = latex_text(brats_results)
    rows = [line for line in text.splitlines() if line.startswith("$\\")]
    assert len(rows) == 15
    marks = [[cell.strip() == "$\\bullet$" for cell in row.split("&")[:4]] for row in rows]
    assert marks == _expected_presence()
    assert sum(1 for line in text.splitlines() if "{Average}" in line) == 1
    assert "\\begin{tabular}{cccc|rrr|rrr}" in text and "\\bottomrule" in text


def test_write_all_and_heatmap(tmp_path, brats_results):
    paths = write_all(brats_results, tmp_path / "out")
    for path in paths.values():
        assert path.is_file() and path.stat().st_size > 0
    png = plot_subset_heatmap(brats_results, tmp_path / "out" / "dice.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    png2 = plot_subset_heatmap(two_modality_results(), tmp_path / "out" / "hd95.png", metric="HD95")
    assert png2.stat().st_size > 0


def test_published_numbers_load_with_sources():
    rows = load_published()
    assert rows
    for row in rows:
        assert row.source.strip(), row
        assert "http" in row.source
        assert row.dataset in ("BraTS2018", "BraTS2020")
        assert all(0 < v < 100 for v in (row.WT, row.TC, row.ET))
    assert {r.dataset for r in load_published("brats 2018")} == {"BraTS2018"}
    assert {r.dataset for r in load_published("2020")} == {"BraTS2020"}
    assert len({(r.method, r.dataset) for r in rows}) == len(rows)  # no duplicates


def test_comparison_beside_published(brats_results):
    text = comparison_text(brats_results, "BraTS2020", label="nnU-Net PRISM")
    assert "nnU-Net PRISM" in text and "RFNet" in text and "Sources:" in text
    assert "BraTS2018" not in text.split("Sources:")[0]
    with pytest.raises(EvaluationError):
        comparison_text(two_modality_results())
