"""Per-subset evaluation: nnU-Net-compatible Dice and HD95 per region or label (``metrics``),
per-subset aggregation and CSV/Markdown/LaTeX tables (``results``), heatmaps (``plots``) and
published reference averages (``published``).

Names are imported lazily, so ``import nnunet_prism.evaluation`` stays cheap (``metrics`` pulls in
nnU-Net and torch)."""
from importlib import import_module

_EXPORTS = {
    "metrics": ["METRICS", "EvaluationError", "Target", "targets_from_dataset_json", "targets_from_labels",
                "dice", "hd95", "surface_distances", "image_diagonal", "evaluate_case", "evaluate_case_files",
                "evaluate_folder", "short_name"],
    "results": ["SubsetResults", "write_csv", "write_per_case_csv", "write_markdown", "write_latex",
                "write_all", "comparison_text"],
    "plots": ["plot_subset_heatmap", "plot_heatmap"],
    "comparison": ["TrainerComparison", "write_comparison"],
    "published": ["PublishedResult", "load_published", "rows_convention"],
    "conventions": ["Convention", "CONVENTIONS", "get_convention"],
    "postprocessing": ["suppress_small_et", "suppress_small_et_regions"],
    "lesionwise": ["LesionScores", "lesion_wise"],
    "scoring": ["CaseScorer"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
