"""Dice and HD95 per region per modality subset per case, their aggregates, and the tables.

``SubsetResults`` holds ``value[subset][case][region][metric]`` for the 2^M - 1 subsets of
``modalities.all_subsets`` (a subset may have fewer cases than another: a case is only scored on
subsets of the modalities it really has). Aggregation is NaN-aware throughout: a NaN (e.g. Dice of
a case without that region and without a prediction of it, nnU-Net's convention) is skipped, and a
mean over nothing is NaN, never a warning.

* per subset: mean over its cases, ``subset_means(metric)`` -> (n_subsets, n_regions);
* "Average": mean over the subsets of the per-subset means (how the missing-modality papers
  report it), ``average(metric)`` -> (n_regions,);
* worst subset: lowest mean Dice over regions (highest mean HD95), ``worst_subset(metric)``.

Writers fill the templates in ``results_templates/`` (``string.Template`` placeholders): CSV (one
row per subset with 0/1 per modality, then every metric per region, then ``Average``), Markdown
(● present / ○ absent) and LaTeX ($\\bullet$ / $\\circ$, booktabs). Dice is written in percent,
HD95 in mm, both with two decimals.
"""
from __future__ import annotations

import csv
import io
import json
import math
import string
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from nnunet_prism.errors import MissingFileError
from nnunet_prism.modalities import ModalityError, all_subsets, parse_subset_name, subset_name
from nnunet_prism.evaluation.metrics import METRICS, EvaluationError

Subset = Tuple[int, ...]

#: Higher is better for these metrics; lower is better for every other one (HD95).
HIGHER_IS_BETTER = {"Dice": True, "LesionDice": True, "NSD": True, "B25Dice": True, "B25NSD": True,
                    "B25LesionDice": True, "B25LesionNSD": True}

#: How each metric is shown in tables: scale factor and unit.
DISPLAY = {"Dice": (100.0, "%"), "HD95": (1.0, "mm"), "LesionDice": (100.0, "%"), "LesionHD95": (1.0, "mm"),
           "NSD": (100.0, "%"), "B25Dice": (100.0, "%"), "B25NSD": (100.0, "%"), "B25HD95": (1.0, "mm"),
           "B25LesionDice": (100.0, "%"), "B25LesionNSD": (100.0, "%"), "B25LesionHD95": (1.0, "mm")}

TEMPLATE_NAMES = {"md": "subset_table.md.tmpl", "tex": "subset_table.tex.tmpl"}


def _nanmean(values: np.ndarray, axis=None) -> np.ndarray:
    """Mean that skips NaN and gives NaN (no warning) where nothing is left."""
    values = np.asarray(values, dtype=float)
    finite = ~np.isnan(values)
    count = finite.sum(axis=axis)
    total = np.where(finite, values, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


class SubsetResults:
    """Per-case metrics for every modality subset, and their aggregates.

    ``modalities``: modality names in channel order (e.g. ``BRATS_MODALITIES``); ``regions``:
    region/label column names (e.g. ``["WT", "TC", "ET"]``, the ``Target.short`` names)."""

    def __init__(self, modalities: Sequence[str], regions: Sequence[str], metrics: Sequence[str] = METRICS):
        if not modalities:
            raise EvaluationError("need at least one modality")
        if not regions:
            raise EvaluationError("need at least one region or label")
        self.modalities: List[str] = list(modalities)
        self.regions: List[str] = list(regions)
        self.metrics: List[str] = list(metrics)
        self.subsets: List[Subset] = all_subsets(len(self.modalities))
        self._values: Dict[Subset, Dict[str, np.ndarray]] = {s: {} for s in self.subsets}

    # ------------------------------------------------------------------------------ filling
    def subset_key(self, subset: Union[str, Iterable[int], Iterable[bool]]) -> Subset:
        """Normalise a subset given as index tuple, boolean mask or name ("FLAIR+T1c")."""
        if isinstance(subset, str):
            try:
                subset = parse_subset_name(subset, self.modalities)
            except ModalityError:
                raise EvaluationError(f"unknown modality subset '{subset}' "
                                      f"(modalities: {', '.join(self.modalities)})") from None
        items = list(np.asarray(subset).ravel().tolist())
        if items and all(isinstance(v, bool) for v in items):
            if len(items) != len(self.modalities):
                raise EvaluationError(f"subset mask {items} has {len(items)} entries, expected {len(self.modalities)}")
            items = [i for i, v in enumerate(items) if v]
        key = tuple(sorted(int(i) for i in items))
        if key not in self._values:
            raise EvaluationError(f"not a non-empty subset of {len(self.modalities)} modalities: {key}")
        return key

    def add_case(self, subset, case_id: str, case_metrics: Mapping[str, Mapping[str, float]]) -> None:
        """Record one case under one subset: ``case_metrics`` as returned by
        ``metrics.evaluate_case`` (``{region: {metric: value}}``; extra keys are ignored)."""
        key = self.subset_key(subset)
        arr = np.full((len(self.regions), len(self.metrics)), np.nan)
        for r, region in enumerate(self.regions):
            if region not in case_metrics:
                raise EvaluationError(f"case '{case_id}': no metrics for region '{region}' "
                                      f"(got {', '.join(case_metrics)})")
            for m, metric in enumerate(self.metrics):
                value = case_metrics[region].get(metric, np.nan)
                arr[r, m] = np.nan if value is None else float(value)
        self._values[key][str(case_id)] = arr

    # ---------------------------------------------------------------------------- reading
    def name(self, subset) -> str:
        return subset_name(self.subset_key(subset), self.modalities)

    @property
    def subset_names(self) -> List[str]:
        return [subset_name(s, self.modalities) for s in self.subsets]

    def cases(self, subset) -> List[str]:
        return list(self._values[self.subset_key(subset)])

    def num_cases(self) -> np.ndarray:
        """Cases recorded per subset, (n_subsets,)."""
        return np.array([len(self._values[s]) for s in self.subsets])

    def _metric_index(self, metric: str) -> int:
        if metric not in self.metrics:
            raise EvaluationError(f"unknown metric '{metric}' (have {', '.join(self.metrics)})")
        return self.metrics.index(metric)

    def per_case(self, subset, metric: str = "Dice") -> np.ndarray:
        """(n_cases, n_regions) values of one subset, case order of ``cases(subset)``."""
        m = self._metric_index(metric)
        values = list(self._values[self.subset_key(subset)].values())
        if not values:
            return np.empty((0, len(self.regions)))
        return np.stack([v[:, m] for v in values])

    def subset_means(self, metric: str = "Dice") -> np.ndarray:
        """(n_subsets, n_regions): NaN-aware mean over each subset's cases, ``subsets`` order."""
        return np.stack([_nanmean(self.per_case(s, metric), axis=0) if self._values[s]
                         else np.full(len(self.regions), np.nan) for s in self.subsets])

    def average(self, metric: str = "Dice") -> np.ndarray:
        """(n_regions,): NaN-aware mean over subsets of the per-subset means."""
        return _nanmean(self.subset_means(metric), axis=0)

    def worst_subset(self, metric: str = "Dice", region: Optional[str] = None) -> Tuple[Optional[Subset], float]:
        """The subset with the lowest Dice (highest HD95), averaged over regions (or for one
        ``region``), and that value; ``(None, nan)`` when no subset has a value."""
        means = self.subset_means(metric)
        score = means[:, self.regions.index(region)] if region is not None else _nanmean(means, axis=1)
        if np.all(np.isnan(score)):
            return None, float("nan")
        higher_better = HIGHER_IS_BETTER.get(metric, False)
        i = int(np.nanargmin(score) if higher_better else np.nanargmax(score))
        return self.subsets[i], float(score[i])

    # ------------------------------------------------------------------------- persistence
    def to_dict(self) -> dict:
        return {"modalities": self.modalities, "regions": self.regions, "metrics": self.metrics,
                "cases": {subset_name(s, self.modalities): {
                    c: {r: {m: _json_float(v[i, j]) for j, m in enumerate(self.metrics)}
                        for i, r in enumerate(self.regions)} for c, v in self._values[s].items()}
                    for s in self.subsets}}

    @classmethod
    def from_dict(cls, data: Mapping) -> "SubsetResults":
        res = cls(data["modalities"], data["regions"], data.get("metrics", METRICS))
        for name, cases in data.get("cases", {}).items():
            for case, values in cases.items():
                res.add_case(name, case, {r: {m: (np.nan if v is None else v) for m, v in mv.items()}
                                          for r, mv in values.items()})
        return res

    def save_json(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def load_json(cls, path) -> "SubsetResults":
        path = Path(path)
        if not path.is_file():
            raise MissingFileError(f"results file not found: {path}")
        return cls.from_dict(json.loads(path.read_text()))


def _json_float(v: float):
    return None if math.isnan(v) else float(v)


# =============================================================================== formatting

def format_value(value: float, metric: str, digits: int = 2, missing: str = "–") -> str:
    """Dice in percent, HD95 in mm, ``digits`` decimals; NaN as ``missing``."""
    if value is None or np.isnan(value):
        return missing
    scale = DISPLAY.get(metric, (1.0, ""))[0]
    return f"{value * scale:.{digits}f}"


def table_rows(results: SubsetResults, metrics: Optional[Sequence[str]] = None
               ) -> List[Tuple[str, Optional[List[bool]], List[float]]]:
    """(label, presence per modality or None for Average, raw values metric-major) per row:
    the subsets in ``all_subsets`` order, then "Average"."""
    metrics = list(metrics or results.metrics)
    means = [results.subset_means(m) for m in metrics]
    rows = []
    for i, s in enumerate(results.subsets):
        presence = [k in s for k in range(len(results.modalities))]
        rows.append((subset_name(s, results.modalities), presence, [v for mm in means for v in mm[i]]))
    rows.append(("Average", None, [v for m in metrics for v in results.average(m)]))
    return rows


def _columns(results: SubsetResults, metrics: Sequence[str]) -> List[Tuple[str, str]]:
    return [(m, r) for m in metrics for r in results.regions]


def _templates_dirs() -> List[Path]:
    here = Path(__file__).resolve()
    return [here.parents[1] / "results_templates", here.parents[2] / "results_templates"]


def load_template(kind: str, template: Optional[Union[str, Path]] = None) -> string.Template:
    """The ``string.Template`` for ``kind`` ("md" or "tex"): ``template`` if given, else the file
    in ``results_templates/`` (package copy first, then the repository root)."""
    if template is not None:
        path = Path(template)
        if not path.is_file():
            raise MissingFileError(f"template not found: {path}")
        return string.Template(path.read_text(encoding="utf-8"))
    for folder in _templates_dirs():
        path = folder / TEMPLATE_NAMES[kind]
        if path.is_file():
            return string.Template(path.read_text(encoding="utf-8"))
    raise MissingFileError(f"template {TEMPLATE_NAMES[kind]} not found in "
                           f"{' or '.join(str(d) for d in _templates_dirs())}")


def _worst_note(results: SubsetResults, metrics: Sequence[str]) -> List[Tuple[str, str, str]]:
    notes = []
    for m in metrics:
        subset, value = results.worst_subset(m)
        if subset is not None:
            unit = DISPLAY.get(m, (1.0, ""))[1]
            notes.append((m, subset_name(subset, results.modalities), f"{format_value(value, m)} {unit}".strip()))
    return notes


def _write(path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------- CSV

def csv_text(results: SubsetResults, metrics: Optional[Sequence[str]] = None, digits: int = 2) -> str:
    """One row per subset (modality columns 1/0, then ``<metric>_<region>`` columns in display
    units, then ``n_cases``), then ``Average``. Missing values are empty cells."""
    metrics = list(metrics or results.metrics)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["subset", *results.modalities, *[f"{m}_{r}" for m, r in _columns(results, metrics)], "n_cases"])
    counts = list(results.num_cases()) + [int(results.num_cases().sum())]
    for (label, presence, values), n in zip(table_rows(results, metrics), counts):
        marks = [int(p) for p in presence] if presence is not None else [""] * len(results.modalities)
        cells = [format_value(v, m, digits, missing="") for v, (m, _) in zip(values, _columns(results, metrics))]
        writer.writerow([label, *marks, *cells, n])
    return buf.getvalue()


def write_csv(results: SubsetResults, path, metrics: Optional[Sequence[str]] = None, digits: int = 2) -> Path:
    return _write(path, csv_text(results, metrics, digits))


def write_per_case_csv(results: SubsetResults, path) -> Path:
    """Long format: subset, case, region, metric, value (raw: Dice in [0, 1], HD95 in mm)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["subset", "case", "region", "metric", "value"])
    for s in results.subsets:
        name = subset_name(s, results.modalities)
        per_metric = {m: results.per_case(s, m) for m in results.metrics}
        for c, case in enumerate(results.cases(s)):
            for m in results.metrics:
                for r, v in zip(results.regions, per_metric[m][c]):
                    writer.writerow([name, case, r, m, "" if np.isnan(v) else repr(float(v))])
    return _write(path, buf.getvalue())


# ----------------------------------------------------------------------------------- Markdown

MD_PRESENT, MD_ABSENT = "●", "○"


def markdown_text(results: SubsetResults, metrics: Optional[Sequence[str]] = None, title: str = "",
                  digits: int = 2, template: Optional[Union[str, Path]] = None, notes: Sequence[str] = ()) -> str:
    metrics = list(metrics or results.metrics)
    cols = _columns(results, metrics)
    header = "| " + " | ".join([*results.modalities, *[f"{r} {m}" for m, r in cols]]) + " |"
    separator = "|" + "|".join([":-:"] * len(results.modalities) + ["--:"] * len(cols)) + "|"
    lines = []
    average = ""
    for label, presence, values in table_rows(results, metrics):
        cells = [format_value(v, m, digits) for v, (m, _) in zip(values, cols)]
        if presence is None:
            first = ["**Average**"] + [""] * (len(results.modalities) - 1)
            average = "| " + " | ".join(first + [f"**{c}**" for c in cells]) + " |"
        else:
            marks = [MD_PRESENT if p else MD_ABSENT for p in presence]
            lines.append("| " + " | ".join(marks + cells) + " |")
    notes_extra = notes
    units = ", ".join(f"{m} in {DISPLAY.get(m, (1, ''))[1] or 'units'}" for m in metrics)
    notes = [f"{units}; mean over cases per subset, Average = mean over the {len(results.subsets)} subsets. "
             f"{MD_PRESENT} present, {MD_ABSENT} absent."]
    notes += [f"Worst subset by mean {m}: {name} ({val})." for m, name, val in _worst_note(results, metrics)]
    notes += list(notes_extra)
    return load_template("md", template).substitute(
        title=title or "Segmentation per modality subset", header=header, separator=separator,
        rows="\n".join(lines), average=average, notes="\n".join(notes))


def write_markdown(results: SubsetResults, path, metrics: Optional[Sequence[str]] = None, title: str = "",
                   digits: int = 2, template: Optional[Union[str, Path]] = None, notes: Sequence[str] = ()) -> Path:
    return _write(path, markdown_text(results, metrics, title, digits, template, notes))


# -------------------------------------------------------------------------------------- LaTeX

TEX_PRESENT, TEX_ABSENT = r"$\bullet$", r"$\circ$"

_TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def tex_escape(text: str) -> str:
    return "".join(_TEX_ESCAPES.get(c, c) for c in str(text))


def latex_text(results: SubsetResults, metrics: Optional[Sequence[str]] = None, caption: str = "",
               label: str = "tab:subsets", digits: int = 2, template: Optional[Union[str, Path]] = None) -> str:
    metrics = list(metrics or results.metrics)
    cols = _columns(results, metrics)
    n_mod, n_reg = len(results.modalities), len(results.regions)
    colspec = "c" * n_mod + "".join("|" + "r" * n_reg for _ in metrics)
    groups = [r"\multicolumn{%d}{c}{Modalities}" % n_mod]
    for m in metrics:
        unit = DISPLAY.get(m, (1, ""))[1]
        groups.append(r"\multicolumn{%d}{c}{%s%s}" % (n_reg, tex_escape(m), f" ({tex_escape(unit)})" if unit else ""))
    rules = [r"\cmidrule(lr){1-%d}" % n_mod]
    start = n_mod + 1
    for _ in metrics:
        rules.append(r"\cmidrule(lr){%d-%d}" % (start, start + n_reg - 1))
        start += n_reg
    header = " & ".join(groups) + r" \\" + "\n" + " ".join(rules) + "\n" + \
        " & ".join([tex_escape(m) for m in results.modalities] + [tex_escape(r) for _, r in cols]) + r" \\"
    lines, average = [], ""
    for label_, presence, values in table_rows(results, metrics):
        cells = [format_value(v, m, digits, missing="--") for v, (m, _) in zip(values, cols)]
        if presence is None:
            average = r"\multicolumn{%d}{l}{Average} & " % n_mod + " & ".join(cells) + r" \\"
        else:
            marks = [TEX_PRESENT if p else TEX_ABSENT for p in presence]
            lines.append(" & ".join(marks + cells) + r" \\")
    worst = "; ".join(f"worst subset by mean {m}: {tex_escape(name)} ({tex_escape(val)})"
                      for m, name, val in _worst_note(results, metrics))
    caption = caption or ("Segmentation per modality subset ($\\bullet$ present, $\\circ$ absent); "
                          "mean over cases, Average over the %d subsets" % len(results.subsets))
    if worst:
        caption += "; " + worst
    return load_template("tex", template).substitute(
        caption=caption, label=label, colspec=colspec, header=header, rows="\n".join(lines), average=average)


def write_latex(results: SubsetResults, path, metrics: Optional[Sequence[str]] = None, caption: str = "",
                label: str = "tab:subsets", digits: int = 2, template: Optional[Union[str, Path]] = None) -> Path:
    return _write(path, latex_text(results, metrics, caption, label, digits, template))


def write_all(results: SubsetResults, output_folder, stem: str = "subsets", title: str = "",
              notes: Sequence[str] = ()) -> Dict[str, Path]:
    """CSV, per-case CSV, Markdown, LaTeX and JSON side by side in ``output_folder``; ``notes``:
    extra lines under the Markdown table (evaluation convention, ET post-processing)."""
    out = Path(output_folder)
    return {"csv": write_csv(results, out / f"{stem}.csv"),
            "per_case_csv": write_per_case_csv(results, out / f"{stem}_per_case.csv"),
            "md": write_markdown(results, out / f"{stem}.md", title=title, notes=notes),
            "tex": write_latex(results, out / f"{stem}.tex"),
            "json": results.save_json(out / f"{stem}.json")}


# --------------------------------------------------------------------------------- comparison

#: the regions the published missing-modality rows report
PUBLISHED_REGIONS = ("WT", "TC", "ET")


def check_comparable(have: Sequence[str], regions: Sequence[str] = PUBLISHED_REGIONS) -> None:
    """EvaluationError unless the evaluated regions ``have`` include the published ``regions``
    (checked before a model is loaded, and again when the comparison is printed)."""
    missing = [r for r in regions if r not in have]
    if missing:
        raise EvaluationError(f"--compare: published numbers are for {', '.join(regions)}; this dataset is "
                              f"evaluated on {', '.join(have)} (no {', '.join(missing)})")


def comparison_text(results: SubsetResults, dataset: Optional[str] = None, label: str = "this run",
                    regions: Sequence[str] = ("WT", "TC", "ET"), convention: Optional[str] = None,
                    et_min_voxels: int = 0) -> str:
    """The user's Average Dice row beside the published averages over the 15 BraTS subsets
    (``published.load_published(dataset)``), as a Markdown table with the sources below.

    With ``et_min_voxels`` the results hold the region "ET (pp N)" too; the table then shows the
    user's post-processed ET in the ET column and the raw one in "ET raw". Each published row
    says its protocol and whether its ET was post-processed; the footnote names the evaluation
    convention of the user's numbers (``convention``) and of the published rows. Published
    numbers come from other training code and preprocessing: a rough guide."""
    from nnunet_prism.evaluation.postprocessing import pp_region_name
    from nnunet_prism.evaluation.published import load_published, rows_convention

    check_comparable(results.regions, regions)
    avg = results.average("Dice")
    ours = {r: avg[results.regions.index(r)] for r in regions}
    pp_name = pp_region_name("ET", et_min_voxels) if et_min_voxels else None
    has_pp = pp_name is not None and pp_name in results.regions and "ET" in regions
    raw_et = ours.get("ET")
    if has_pp:
        ours["ET"] = avg[results.regions.index(pp_name)]
    published = load_published(dataset)
    extra = " ET raw |" if has_pp else ""
    cells = " | ".join(format_value(ours[r], 'Dice') for r in regions)
    ours_pp = f"yes (< {int(et_min_voxels)} voxels)" if has_pp else "no"
    rows = [f"| {label} | | {cells} | {ours_pp} | |" + (f" {format_value(raw_et, 'Dice')} |" if has_pp else "")]
    sources = []
    for p in published:
        rows.append(f"| {p.method} | {p.dataset} | " + " | ".join(f"{getattr(p, r):.2f}" for r in regions)
                    + f" | {p.et_postprocessed} | {p.protocol} |" + (" |" if has_pp else ""))
        if p.source not in sources:
            sources.append(p.source)
    header = ("| method | dataset | " + " | ".join(regions) + " | ET post-processed | protocol |" + extra +
              "\n|---|---|" + "---:|" * len(regions) + "---|---|" + ("---:|" if has_pp else ""))
    text = "Average Dice (%) over modality subsets\n\n" + header + "\n" + "\n".join(rows)
    ours_convention = convention or "nnunet"
    theirs = rows_convention(published) if published else None
    note = f"\n\nEvaluation convention of {label}: {ours_convention}"
    if theirs is not None:
        note += f"; of the published rows: {theirs} (where known, see the convention column of results_templates/)"
        if theirs != ours_convention:
            note += " - not the same convention, ET in particular is not comparable"
    note += (". ET post-processing: " + (f"{label} relabels predicted ET below {int(et_min_voxels)} voxels as "
                                          f"necrosis (ET column; ET raw without)" if has_pp else
                                          f"{label} none (--et-min-voxels 500 as RFNet and mmFormer)") + ".")
    text += note
    if sources:
        text += "\n\nSources:\n" + "\n".join(f"- {s}" for s in sources)
    return text + "\n"

