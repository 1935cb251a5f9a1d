"""Statistics of the multi-seed quality benchmark (``benchmarks/quality.py``), on plain arrays.

One trainer's results are a ``DiceTable``: Dice per (seed, modality subset, held-out case,
region), e.g. (3, 15, 8, 3). From it:

* ``trainer_summary``: per seed, the mean over the subsets (per region and averaged over
  regions), the worst subset, the most-missing modality alone and the full set, each reported as
  mean +- sample standard deviation over the seeds (``mean_std``);
* ``compare``: trainer A against trainer B, paired on (seed, case): per subset the mean
  difference of the per-(seed, case) mean-over-regions Dice (or one region's Dice, ``region=``)
  and a two-sided Wilcoxon signed-rank test (``scipy.stats.wilcoxon``, zero differences
  dropped), the same on each (seed, case)'s mean over the subsets (``pooled``: one pair per image
  and seed, so shared images are not counted twice), and how many subsets improve (mean
  difference > 0) and how many do so significantly;
* ``plot_subset_dice``: per-subset Dice of every trainer with seed error bars (PNG), averaged over
  regions or one panel per region;
* ``summary_markdown``: the tables of ``summary.md`` (``region_comparisons_markdown``: the
  per-region tests of one pair of trainers side by side).

Seed s of trainer A is paired with seed s of trainer B: seeds are independent replicates, the
pairing that matters is the case (both trainers scored on the same image). The pooled test
averages a case's subsets first (they share the image, so they are not independent pairs). NaN Dice (nnU-Net's convention: a region absent from the
reference and the prediction) is skipped in every mean and drops the pair from a test.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

SIGNIFICANCE = 0.05


def nanmean(values, axis=None):
    """Mean that skips NaN and gives NaN (no warning) where nothing is left."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(np.asarray(values, dtype=float), axis=axis)


def mean_std(values: Sequence[float]) -> Tuple[float, float]:
    """(mean, sample standard deviation, ddof=1) of the finite ``values``; std is NaN for fewer
    than two values, both NaN for none."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return float("nan"), float("nan")
    std = float(np.std(finite, ddof=1)) if finite.size > 1 else float("nan")
    return float(finite.mean()), std


@dataclass
class DiceTable:
    """Dice of one trainer: ``dice[seed, subset, case, region]`` (NaN where not scored)."""
    trainer: str
    seeds: List[int]
    subsets: List[str]
    cases: List[str]
    regions: List[str]
    dice: np.ndarray

    def __post_init__(self):
        self.dice = np.asarray(self.dice, dtype=float)
        expected = (len(self.seeds), len(self.subsets), len(self.cases), len(self.regions))
        if self.dice.shape != expected:
            raise ValueError(f"{self.trainer}: Dice array of shape {self.dice.shape}, expected {expected} "
                             "(seeds, subsets, cases, regions)")

    @classmethod
    def from_subset_results(cls, trainer: str, per_seed: Mapping[int, object]) -> "DiceTable":
        """From ``{seed: SubsetResults}`` (``nnunet_prism evaluate``'s ``subsets.json``, loaded):
        subsets in its order, cases sorted (the union over subsets and seeds; NaN where absent)."""
        seeds = sorted(per_seed)
        if not seeds:
            raise ValueError(f"{trainer}: no results")
        first = per_seed[seeds[0]]
        subsets, regions = list(first.subset_names), list(first.regions)
        cases = sorted({c for r in per_seed.values() for s in subsets for c in r.cases(s)})
        dice = np.full((len(seeds), len(subsets), len(cases), len(regions)), np.nan)
        for i, seed in enumerate(seeds):
            results = per_seed[seed]
            if list(results.subset_names) != subsets or list(results.regions) != regions:
                raise ValueError(f"{trainer}: seed {seed} was evaluated on other subsets or regions than seed "
                                 f"{seeds[0]}")
            for j, subset in enumerate(subsets):
                values = results.per_case(subset, "Dice")
                for case, row in zip(results.cases(subset), values):
                    dice[i, j, cases.index(case)] = row
        return cls(trainer, seeds, subsets, cases, regions, dice)

    def case_dice(self, region: Optional[str] = None) -> np.ndarray:
        """(seeds, subsets, cases): mean over regions, or the Dice of ``region``."""
        if region is None:
            return nanmean(self.dice, axis=3)
        if region not in self.regions:
            raise ValueError(f"{self.trainer}: no region '{region}' (have {', '.join(self.regions)})")
        return self.dice[..., self.regions.index(region)]

    def subset_dice(self) -> np.ndarray:
        """(seeds, subsets, regions): mean over cases, per seed."""
        return nanmean(self.dice, axis=2)

    def subset_index(self, name: str) -> int:
        if name not in self.subsets:
            raise ValueError(f"{self.trainer}: no subset '{name}' (have {', '.join(self.subsets)})")
        return self.subsets.index(name)


def _stat(values) -> Dict[str, object]:
    mean, std = mean_std(values)
    return {"mean": mean, "std": std, "per_seed": [float(v) for v in values]}


def trainer_summary(table: DiceTable, most_missing: str, full_set: Optional[str] = None) -> Dict[str, object]:
    """Per trainer, each as {mean, std, per_seed} over seeds:

    ``mean_15``: {region: ..., "mean": ...} of the mean over subsets (of the per-subset mean over
    cases); ``worst_subset``: the subset lowest in the seed-averaged mean-over-regions Dice and
    its Dice (``worst_subset_per_region``: the same per region); ``most_missing_alone`` and
    ``full_set`` (default: the last subset, all modalities): per region and averaged;
    ``per_subset``: {subset: mean-over-regions Dice}; ``by_modality_count``: {k: the mean over
    the subsets of k modalities, averaged over regions and per region} (what fusing more
    modalities gains)."""
    per_seed = table.subset_dice()                      # (seeds, subsets, regions)
    over_regions = nanmean(per_seed, axis=2)            # (seeds, subsets)
    mean_15 = nanmean(per_seed, axis=1)                 # (seeds, regions)
    summary = {"mean_15": {r: _stat(mean_15[:, k]) for k, r in enumerate(table.regions)}}
    summary["mean_15"]["mean"] = _stat(nanmean(over_regions, axis=1))
    summary["worst_subset"] = _worst(table, over_regions)
    summary["worst_subset_per_region"] = {r: _worst(table, per_seed[:, :, k]) for k, r in enumerate(table.regions)}
    for key, name in (("most_missing_alone", most_missing), ("full_set", full_set or table.subsets[-1])):
        j = table.subset_index(name)
        summary[key] = {"subset": name, "mean": _stat(over_regions[:, j]),
                        **{r: _stat(per_seed[:, j, k]) for k, r in enumerate(table.regions)}}
    summary["per_subset"] = {s: _stat(over_regions[:, j]) for j, s in enumerate(table.subsets)}
    sizes = subset_sizes(table.subsets)
    summary["by_modality_count"] = {
        str(k): {"mean": _stat(nanmean(over_regions[:, sizes == k], axis=1)),
                 **{r: _stat(nanmean(per_seed[:, sizes == k, i], axis=1)) for i, r in enumerate(table.regions)}}
        for k in sorted(set(sizes.tolist()))}
    return summary


def subset_sizes(subsets: Sequence[str]) -> np.ndarray:
    """Number of modalities in each subset name ("FLAIR+T1c" -> 2)."""
    return np.array([len(name.split("+")) for name in subsets])


def _worst(table: DiceTable, values: np.ndarray) -> Dict[str, object]:
    """The subset lowest in the seed-averaged ``values`` (seeds, subsets), with its per-seed values."""
    seed_mean = nanmean(values, axis=0)
    if np.isnan(seed_mean).all():
        return {"subset": None, **_stat([float("nan")] * len(table.seeds))}
    worst = int(np.nanargmin(seed_mean))
    return {"subset": table.subsets[worst], **_stat(values[:, worst])}


def wilcoxon_test(a: Sequence[float], b: Sequence[float]) -> Dict[str, float]:
    """Two-sided Wilcoxon signed-rank test of paired ``a`` - ``b`` (``scipy.stats.wilcoxon``,
    zero differences dropped). Pairs with a NaN are left out. Returns n (pairs used), mean and
    median difference, the statistic and the p-value (1 when every difference is zero, NaN
    without pairs)."""
    from scipy.stats import wilcoxon

    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired test needs arrays of one length, got {a.size} and {b.size}")
    keep = np.isfinite(a) & np.isfinite(b)
    d = a[keep] - b[keep]
    out = {"n": int(d.size), "mean_diff": float(d.mean()) if d.size else float("nan"),
           "median_diff": float(np.median(d)) if d.size else float("nan")}
    if d.size == 0:
        return {**out, "statistic": float("nan"), "p_value": float("nan")}
    if not np.any(d != 0):
        return {**out, "statistic": 0.0, "p_value": 1.0}
    result = wilcoxon(d, zero_method="wilcox", alternative="two-sided")
    return {**out, "statistic": float(result.statistic), "p_value": float(result.pvalue)}


def _paired(a: DiceTable, b: DiceTable, region: Optional[str] = None) -> Tuple[np.ndarray, np.ndarray, List[int]]:
    """(seeds, subsets, cases) Dice of both (mean over regions, or ``region``'s), on their common
    seeds and cases."""
    if a.subsets != b.subsets:
        raise ValueError(f"{a.trainer} and {b.trainer} were evaluated on different subsets")
    seeds = [s for s in a.seeds if s in b.seeds]
    cases = [c for c in a.cases if c in b.cases]
    if not seeds or not cases:
        raise ValueError(f"{a.trainer} and {b.trainer} share no seed or no case")

    def pick(t: DiceTable) -> np.ndarray:
        values = t.case_dice(region)
        return values[[t.seeds.index(s) for s in seeds]][:, :, [t.cases.index(c) for c in cases]]

    return pick(a), pick(b), seeds


def fusion_gain(values: np.ndarray, subsets: Sequence[str]) -> np.ndarray:
    """What fusing every modality gains over one alone: (seeds, subsets, cases) Dice -> (seeds,
    cases) Dice of the full set minus the mean over the single-modality subsets."""
    sizes = subset_sizes(subsets)
    return nanmean(values[:, sizes == sizes.max()], axis=1) - nanmean(values[:, sizes == 1], axis=1)


def compare(a: DiceTable, b: DiceTable, alpha: float = SIGNIFICANCE, region: Optional[str] = None) -> Dict[str, object]:
    """``a`` against ``b``, paired on (seed, case): per subset, and on the mean over the subsets
    (``pooled``), a ``wilcoxon_test`` of the mean-over-regions Dice (``region``: of that region's
    Dice); ``improved``: subsets whose mean difference is > 0; ``improved_significant`` /
    ``worse_significant``: those with p < ``alpha`` too, and ``..._holm`` the same with Holm's
    correction for the number of subsets tested (``p_holm``); ``fusion_gain``: the test of
    ``fusion_gain`` (full set minus the single modalities), a's against b's."""
    va, vb, seeds = _paired(a, b, region)
    per_subset = {s: wilcoxon_test(va[:, j], vb[:, j]) for j, s in enumerate(a.subsets)}
    with warnings.catch_warnings():  # a (seed, case) with NaN in every subset stays NaN and drops out
        warnings.simplefilter("ignore", RuntimeWarning)
        pooled = wilcoxon_test(np.nanmean(va, axis=1), np.nanmean(vb, axis=1))  # (seeds, cases)
        gain = wilcoxon_test(fusion_gain(va, a.subsets), fusion_gain(vb, a.subsets))

    for r, adjusted in zip(per_subset.values(), holm([r["p_value"] for r in per_subset.values()])):
        r["p_holm"] = adjusted

    def count(sign: int, key=None) -> int:
        return sum(1 for r in per_subset.values() if np.sign(r["mean_diff"]) == sign
                   and (key is None or r[key] < alpha))

    return {"a": a.trainer, "b": b.trainer, "region": region, "seeds": seeds, "alpha": alpha, "per_subset": per_subset,
            "pooled": pooled, "fusion_gain": gain, "subsets": len(a.subsets), "improved": count(1),
            "improved_significant": count(1, "p_value"), "worse_significant": count(-1, "p_value"),
            "improved_significant_holm": count(1, "p_holm"), "worse_significant_holm": count(-1, "p_holm")}


def holm(p_values: Sequence[float]) -> List[float]:
    """Holm's step-down adjusted p-values (Holm 1979), in the given order; NaN stays NaN and is
    not counted among the tests: p_(i) -> max_{j <= i} min(1, (m - j + 1) p_(j))."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


# ------------------------------------------------------------------------------------ output

def _pm(stat: Mapping, digits: int = 3) -> str:
    mean, std = stat["mean"], stat["std"]
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    return f"{mean:.{digits}f}" + ("" if std is None or math.isnan(std) else f" ± {std:.{digits}f}")


def _p(p: float) -> str:
    if p is None or math.isnan(p):
        return "–"
    return f"{p:.2g}" if p >= 1e-3 else f"{p:.1e}"


def summary_markdown(summaries: Mapping[str, Mapping], comparisons: Sequence[Mapping], regions: Sequence[str],
                     header: Sequence[str] = ()) -> str:
    """``summary.md``: the per-trainer tables (mean ± std over seeds; averaged over regions, then
    per region), one table per comparison of the mean-over-regions Dice, and for a pair also
    compared per region (``compare(..., region=)``) the per-region tests side by side."""
    lines = list(header)
    lines += ["", "Dice (mean ± std over seeds; per seed: mean over held-out cases, then over the 15 subsets):", "",
              "| trainer | seeds | mean (15 subsets) | " + " | ".join(regions) +
              " | worst subset | most-missing alone | full set |",
              "|---|---|---|" + "---|" * len(regions) + "---|---|---|"]
    for trainer, s in summaries.items():
        w, mm, full = s["worst_subset"], s["most_missing_alone"], s["full_set"]
        lines.append(f"| {trainer} | {len(s['mean_15']['mean']['per_seed'])} | {_pm(s['mean_15']['mean'])} | "
                     + " | ".join(_pm(s["mean_15"][r]) for r in regions)
                     + f" | {w['subset']} {_pm(w)} | {mm['subset']} {_pm(mm['mean'])} | {_pm(full['mean'])} |")
    lines += ["", "Per region (mean ± std over seeds): mean over the 15 subsets, the subset where the region is "
                  "lowest, the full set:", "", "| trainer | region | mean (15 subsets) | worst subset | full set |",
              "|---|---|---|---|---|"]
    for trainer, s in summaries.items():
        for r in regions:
            w = s.get("worst_subset_per_region", {}).get(r)
            worst = f"{w['subset']} {_pm(w)}" if w else "–"
            lines.append(f"| {trainer} | {r} | {_pm(s['mean_15'][r])} | {worst} | {_pm(s['full_set'][r])} |")
    counts = [k for k in next(iter(summaries.values())).get("by_modality_count", {})]
    if counts:
        lines += ["", "By the number of modalities present (mean ± std over seeds of the mean over those subsets):", "",
                  "| trainer | Dice | " + " | ".join(f"{k} of {counts[-1]}" for k in counts) + " |",
                  "|---|---|" + "---|" * len(counts)]
        for trainer, s in summaries.items():
            for key in ("mean", *regions):
                lines.append(f"| {trainer} | {key} | " + " | ".join(_pm(s["by_modality_count"][k][key]) for k in counts)
                             + " |")
    for c in comparisons:
        if c.get("region") is not None:
            continue
        pooled = c["pooled"]
        lines += ["", f"### {c['a']} vs {c['b']}", "",
                  f"Paired on (seed, case), seeds {', '.join(map(str, c['seeds']))}; difference of the "
                  f"mean-over-regions Dice ({c['a']} − {c['b']}); two-sided Wilcoxon signed-rank. "
                  f"Improved subsets: **{c['improved']} of {c['subsets']}** "
                  f"({c['improved_significant']} with p < {c['alpha']}, {c['improved_significant_holm']} after "
                  f"Holm's correction for {c['subsets']} tests; significantly worse: {c['worse_significant']}, "
                  f"{c['worse_significant_holm']} after Holm). Mean over the subsets per (seed, case): difference {pooled['mean_diff']:+.3f}, "
                  f"p = {_p(pooled['p_value'])} (n = {pooled['n']}).", "",
                  "| subset | mean difference | median difference | n | p | p (Holm) |", "|---|---|---|---|---|---|"]
        for subset, r in c["per_subset"].items():
            mark = " *" if r["p_holm"] < c["alpha"] else ""
            lines.append(f"| {subset} | {r['mean_diff']:+.3f} | {r['median_diff']:+.3f} | {r['n']} | "
                         f"{_p(r['p_value'])} | {_p(r['p_holm'])}{mark} |")
        per_region = [d for d in comparisons if d.get("region") is not None and (d["a"], d["b"]) == (c["a"], c["b"])]
        if per_region:
            lines += ["", *region_comparisons_markdown(per_region)]
    return "\n".join(lines) + "\n"


def region_comparisons_markdown(comparisons: Sequence[Mapping]) -> List[str]:
    """One pair of trainers compared per region (``compare(a, b, region=r)`` for each r): a table
    with a row per subset and one for the mean over the subsets per (seed, case), a column per
    region: mean difference and p after Holm's correction (pooled row and fusion-gain row: plain p)."""
    first = comparisons[0]
    regions = [c["region"] for c in comparisons]
    lines = [f"Per region ({first['a']} − {first['b']}): mean difference of the region's Dice, p after Holm "
             f"over the {first['subsets']} subsets (* p < {first['alpha']}); last row: the mean over the subsets "
             f"per (seed, case), plain p. Subsets improved / significantly worse after Holm: "
             + "; ".join(f"{c['region']} {c['improved']} / {c['worse_significant_holm']}" for c in comparisons) + ".",
             "", "| subset | " + " | ".join(regions) + " |", "|---|" + "---|" * len(regions)]

    def cell(r: Mapping, p_key: str) -> str:
        mark = " *" if r[p_key] < first["alpha"] else ""
        return f"{r['mean_diff']:+.3f} (p {_p(r[p_key])}){mark}"

    for subset in first["per_subset"]:
        lines.append(f"| {subset} | " + " | ".join(cell(c["per_subset"][subset], "p_holm") for c in comparisons) + " |")
    lines.append("| **mean over subsets** | " + " | ".join(cell(c["pooled"], "p_value") for c in comparisons) + " |")
    if all("fusion_gain" in c for c in comparisons):
        lines.append("| **fusion gain** (full set − mean of the single modalities) | "
                     + " | ".join(cell(c["fusion_gain"], "p_value") for c in comparisons) + " |")
    return lines


def plot_subset_dice(tables: Sequence[DiceTable], path, title: str = "", per_region: bool = False):
    """Grouped bars: per subset, each trainer's mean-over-regions Dice (mean over seeds), error
    bars the standard deviation over seeds; the 15-subset mean as the last group. ``per_region``:
    one panel per region below the mean-over-regions one."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [None] + (list(tables[0].regions) if per_region else [])
    subsets = list(tables[0].subsets) + ["Mean"]
    x = np.arange(len(subsets))
    width = 0.8 / len(tables)
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(10, 0.9 * len(subsets)), 4.8 + 3.2 * (len(panels) - 1)),
                             squeeze=False)
    for ax, region in zip(axes[:, 0], panels):
        for i, t in enumerate(tables):
            per_subset = t.subset_dice()                                      # (seeds, subsets, regions)
            per_seed = nanmean(per_subset, axis=2) if region is None else per_subset[:, :, t.regions.index(region)]
            per_seed = np.concatenate([per_seed, nanmean(per_seed, axis=1)[:, None]], axis=1)
            stats = [mean_std(per_seed[:, j]) for j in range(per_seed.shape[1])]
            means = np.array([m for m, _ in stats])
            errors = np.nan_to_num(np.array([s for _, s in stats]))
            ax.bar(x - 0.4 + width * (i + 0.5), means, width, yerr=errors, capsize=2, label=t.trainer.replace(
                "nnUNetTrainer", "") or t.trainer)
        ax.set_xticks(x)
        ax.set_xticklabels(subsets, rotation=45, ha="right", fontsize=8)
        ax.set_ylabel("Dice (mean over regions and cases)" if region is None else f"{region} Dice (mean over cases)")
        ax.set_ylim(0, 1)
        ax.axvline(len(subsets) - 1.5, color="grey", lw=0.8)
    axes[0, 0].set_title(title or "Dice per modality subset (error bars: std over seeds)", fontsize=10, pad=24)
    axes[0, 0].legend(fontsize=8, ncol=len(tables), loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
