"""The demo's closing words: its short schedule shows the pipeline end to end and ranks nothing;
the ranking is the quality benchmark's, in a section of docs/benchmarks.md that exists."""
from dataset_conversion.commands.demo import what_the_table_shows
from helpers.paths import REPOSITORY as REPO


def test_the_demo_says_its_table_is_no_ranking_and_points_to_the_quality_benchmark():
    text = what_the_table_shows(4, 15)
    assert "end to end" in text and "not a ranking" in text
    assert "4 epochs x 15 iterations" in text
    assert "docs/benchmarks.md" in text and "'Quality benchmark'" in text
    headings = [line.lstrip("#").strip() for line in (REPO / "docs" / "benchmarks.md").read_text().splitlines()
                if line.startswith("#")]
    assert "Quality benchmark" in headings
