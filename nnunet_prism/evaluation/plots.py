"""Heatmap of a metric per modality subset (rows) and region (columns), as PNG.

Uses matplotlib's object API with the Agg canvas (no pyplot, no global backend switch), so it works
headless and does not disturb a caller's matplotlib state.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from nnunet_prism.evaluation.results import DISPLAY, HIGHER_IS_BETTER, SubsetResults, format_value


def plot_subset_heatmap(results: SubsetResults, path, metric: str = "Dice", title: Optional[str] = None,
                        with_average: bool = True, dpi: int = 120) -> Path:
    """Write a subsets x regions heatmap of the per-subset mean ``metric`` (Dice in %, HD95 in
    mm) with the values written in the cells and subset names as y tick labels; an "Average" row
    at the bottom if ``with_average``. Better is brighter for both metrics. Returns the path."""
    values = results.subset_means(metric)
    labels = list(results.subset_names)
    if with_average:
        values = np.vstack([values, results.average(metric)[None]])
        labels.append("Average")
    return plot_heatmap(values, labels, list(results.regions), path, metric, title, separate_last_row=with_average,
                        dpi=dpi)


def plot_heatmap(values: np.ndarray, row_labels: Sequence[str], column_labels: Sequence[str], path,
                 metric: str = "Dice", title: Optional[str] = None, separate_last_row: bool = False,
                 dpi: int = 120) -> Path:
    """Heatmap of raw metric ``values`` (rows x columns; Dice in [0, 1], shown in %) with the
    values in the cells; NaN cells grey and marked n/a; a white line above the last row if
    ``separate_last_row`` (an average). Returns the path."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    scale, unit = DISPLAY.get(metric, (1.0, ""))
    values = np.asarray(values, dtype=float) * scale
    labels = list(row_labels)
    n_rows, n_cols = values.shape
    column_width = max(1.1, 0.085 * max(len(c) for c in column_labels))
    fig = Figure(figsize=(1.6 + column_width * n_cols + 0.09 * max(len(label) for label in labels), 0.9 + 0.36 * n_rows))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    cmap = colormaps["viridis" if HIGHER_IS_BETTER.get(metric, False) else "viridis_r"].with_extremes(bad="lightgrey")
    masked = np.ma.masked_invalid(values)
    finite = values[np.isfinite(values)]
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if vmin == vmax:
        vmin, vmax = vmin - 1.0, vmax + 1.0
    image = ax.imshow(masked, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    for i in range(n_rows):
        for j in range(n_cols):
            v = values[i, j]
            text = format_value(v / scale, metric) if np.isfinite(v) else "n/a"
            shade = (v - vmin) / (vmax - vmin) if np.isfinite(v) else 1.0
            if not HIGHER_IS_BETTER.get(metric, False):
                shade = 1.0 - shade
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="black" if shade > 0.5 else "white")
    ax.set_xticks(range(n_cols))
    ax.set_xticklabels(column_labels, fontsize=8 if column_width > 1.1 else None)
    ax.set_yticks(range(n_rows))
    ax.set_yticklabels(labels, fontsize=8)
    if separate_last_row:
        ax.axhline(n_rows - 1.5, color="white", linewidth=2)
    ax.set_title(title or (f"{metric} ({unit}) per modality subset" if unit else f"{metric} per modality subset"))
    fig.colorbar(image, ax=ax, label=f"{metric} ({unit})" if unit else metric)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path
