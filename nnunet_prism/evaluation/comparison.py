"""Several trainers side by side on the same modality subsets.

One number per subset and trainer: the per-subset mean Dice (``SubsetResults.subset_means``)
averaged over regions. Below the 15 subset rows come "Average" (mean over subsets, as the
missing-modality papers report it) and "Worst subset" (the lowest subset of each trainer).
Written as CSV, Markdown and a subsets x trainers heatmap.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Sequence

import numpy as np

from nnunet_prism.evaluation.metrics import EvaluationError
from nnunet_prism.evaluation.results import MD_ABSENT, MD_PRESENT, SubsetResults, _nanmean, _write, format_value


@dataclass
class TrainerComparison:
    trainers: List[str]
    modalities: List[str]
    regions: List[str]
    subset_names: List[str]
    presence: List[List[bool]]
    dice: np.ndarray  # (n_subsets, n_trainers): mean over regions of each subset's mean Dice

    @classmethod
    def from_results(cls, results: Mapping[str, SubsetResults]) -> "TrainerComparison":
        """``results``: trainer name -> its ``SubsetResults``; all must share modalities and regions."""
        if not results:
            raise EvaluationError("nothing to compare: no trainer results given")
        first_name, first = next(iter(results.items()))
        for name, r in results.items():
            if list(r.modalities) != list(first.modalities) or list(r.regions) != list(first.regions):
                raise EvaluationError(f"{name} was evaluated on modalities {list(r.modalities)} / regions "
                                      f"{list(r.regions)}, {first_name} on {list(first.modalities)} / "
                                      f"{list(first.regions)}: not comparable")
        dice = np.stack([_nanmean(r.subset_means("Dice"), axis=1) for r in results.values()], axis=1)
        presence = [[k in s for k in range(len(first.modalities))] for s in first.subsets]
        return cls(list(results), list(first.modalities), list(first.regions), list(first.subset_names),
                   presence, dice)

    def averages(self) -> np.ndarray:
        """(n_trainers,) mean over subsets."""
        return _nanmean(self.dice, axis=0)

    def worst(self) -> List[tuple]:
        """Per trainer: (subset name, its Dice) of the lowest subset, or (None, nan)."""
        out = []
        for t in range(len(self.trainers)):
            column = self.dice[:, t]
            if np.isnan(column).all():
                out.append((None, float("nan")))
            else:
                i = int(np.nanargmin(column))
                out.append((self.subset_names[i], float(column[i])))
        return out

    def summary(self) -> Dict[str, dict]:
        """trainer -> {mean_dice, worst_subset, worst_dice, dice_per_subset}; raw Dice in [0, 1]."""
        return {t: {"mean_dice": float(avg), "worst_subset": w[0], "worst_dice": w[1],
                    "dice_per_subset": dict(zip(self.subset_names, self.dice[:, i].tolist()))}
                for i, (t, avg, w) in enumerate(zip(self.trainers, self.averages(), self.worst()))}


def comparison_csv(c: TrainerComparison) -> str:
    """subset, modality 1/0 columns, one Dice (%) column per trainer; then Average and Worst subset."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["subset", *c.modalities, *c.trainers])
    for name, presence, row in zip(c.subset_names, c.presence, c.dice):
        writer.writerow([name, *map(int, presence), *(format_value(v, "Dice", missing="") for v in row)])
    blanks = [""] * len(c.modalities)
    writer.writerow(["Average", *blanks, *(format_value(v, "Dice", missing="") for v in c.averages())])
    writer.writerow(["Worst subset", *blanks, *(format_value(v, "Dice", missing="") for _, v in c.worst())])
    return buf.getvalue()


def comparison_markdown(c: TrainerComparison, title: str = "") -> str:
    """Markdown table (● present / ○ absent), the best trainer of each row in bold."""
    lines = [f"## {title or 'Dice per modality subset, trainers side by side'}", "",
             "| " + " | ".join([*c.modalities, *c.trainers]) + " |",
             "|" + "|".join([":-:"] * len(c.modalities) + ["--:"] * len(c.trainers)) + "|"]

    def cells(values: Sequence[float]) -> List[str]:
        best = np.nanmax(values) if not np.isnan(values).all() else np.nan
        return [f"**{format_value(v, 'Dice')}**" if v == best and len(values) > 1 else format_value(v, "Dice")
                for v in values]

    for presence, row in zip(c.presence, c.dice):
        lines.append("| " + " | ".join([MD_PRESENT if p else MD_ABSENT for p in presence] + cells(row)) + " |")
    blank = [""] * (len(c.modalities) - 1)
    lines.append("| " + " | ".join(["**Average**", *blank, *cells(c.averages())]) + " |")
    worst = c.worst()
    lines.append("| " + " | ".join(["Worst subset", *blank, *(f"{format_value(v, 'Dice')} ({n})" for n, v in worst)])
                 + " |")
    lines += ["", f"Dice in %, mean over regions ({', '.join(c.regions)}) of the mean over cases; "
                  f"Average = mean over the {len(c.subset_names)} subsets. {MD_PRESENT} present, {MD_ABSENT} absent.",
              ""]
    return "\n".join(lines)


def write_comparison(c: TrainerComparison, folder, stem: str = "comparison", title: str = "") -> Dict[str, Path]:
    """Write ``<stem>.csv``, ``<stem>.md`` and ``<stem>_dice.png`` into ``folder``; return their paths."""
    from nnunet_prism.evaluation.plots import plot_heatmap

    folder = Path(folder)
    values = np.vstack([c.dice, c.averages()[None]])
    return {"csv": _write(folder / f"{stem}.csv", comparison_csv(c)),
            "md": _write(folder / f"{stem}.md", comparison_markdown(c, title)),
            "heatmap": plot_heatmap(values, [*c.subset_names, "Average"], c.trainers, folder / f"{stem}_dice.png",
                                    "Dice", title or "Dice (%) per modality subset and trainer",
                                    separate_last_row=True)}
