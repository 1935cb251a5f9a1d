"""The CCH table: for every student modality S and teacher T (the fused model or another
modality), I(H_T; H_S), I(H_S; Y), I(H_T; Y) and whether distillation T -> S is predicted to help,
I(H_T; H_S) > I(H_S; Y) (Xie, Xu, Sanguinetti, arXiv 2510.13182, the Cross-modal
Complementarity Hypothesis).

Recommended teacher per student: among teachers satisfying the CCH, the largest margin
I(H_T;H_S) - I(H_S;Y) (the paper reports the gain growing with this difference); none if no
teacher satisfies it. Samples of a pair: voxels of cases where S (and a modality teacher T) is
present, drawn class-balanced (equal counts per label as far as the data allow) up to
``max_samples`` with the seed, because uniform voxels are almost all background and would put
I(H_S; Y) near 0 whatever the model.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from nnunet_prism.cch.estimators import MIOptions, mutual_information
from nnunet_prism.cch.representations import VoxelRepresentations
from nnunet_prism.errors import MissingFileError, NnunetPrismError

FUSED = "fused"
COLUMNS = ["student", "teacher", "n_samples", "I_teacher_student", "I_student_label", "I_teacher_label",
           "margin", "cch", "recommended"]


class CCHTableError(NnunetPrismError, ValueError):
    """A saved CCH table that cannot be used (missing columns or modalities)."""


def balanced_rows(labels: np.ndarray, eligible: np.ndarray, max_samples: Optional[int],
                  rng: np.random.Generator) -> np.ndarray:
    """Row indices among ``eligible`` (bool (N,)) with classes as equal as possible, <= max_samples."""
    rows = np.flatnonzero(eligible)
    if max_samples is None or rows.size <= max_samples:
        return rows
    classes = [rows[labels[rows] == c] for c in np.unique(labels[rows])]
    quota, remaining, chosen = max_samples, len(classes), []
    for members in sorted(classes, key=len):  # small classes first, leftovers go to the larger ones
        take = min(len(members), quota // remaining)
        chosen.append(rng.choice(members, take, replace=False))
        quota, remaining = quota - take, remaining - 1
    return np.sort(np.concatenate(chosen))


def cch_table(reps: VoxelRepresentations, estimator: str = "ksg", options: Optional[MIOptions] = None,
              min_samples: int = 50) -> List[dict]:
    """Rows (see COLUMNS) for every student modality and teacher (fused first, then modalities)."""
    options = options or MIOptions()
    rng = np.random.default_rng(options.seed)
    names = reps.modality_names
    rows = []
    # the pair's own rows are already subsampled here; the estimator must not draw again
    inner = MIOptions(**{**options.__dict__, "max_samples": None})

    def mi(a, b, discrete):
        return mutual_information(a, b, discrete_y=discrete, estimator=estimator, options=inner)

    for s, student in enumerate(names):
        label_cache = {}
        for t, teacher in [(-1, FUSED)] + [(t, n) for t, n in enumerate(names) if t != s]:
            eligible = reps.availability[:, s] & (reps.availability[:, t] if t >= 0 else True)
            picked = balanced_rows(reps.labels, eligible, options.max_samples, rng)
            row = {"student": student, "teacher": teacher, "n_samples": int(picked.size)}
            if picked.size < min_samples or np.unique(reps.labels[picked]).size < 2:
                rows.append({**row, "I_teacher_student": np.nan, "I_student_label": np.nan,
                             "I_teacher_label": np.nan, "margin": np.nan, "cch": None, "recommended": False})
                continue
            h_s = reps.unimodal[picked, s]
            h_t = reps.fused[picked] if t < 0 else reps.unimodal[picked, t]
            y = reps.labels[picked]
            key = picked.tobytes()
            if key not in label_cache:
                label_cache[key] = mi(h_s, y, True)
            i_ts, i_sy, i_ty = mi(h_t, h_s, False), label_cache[key], mi(h_t, y, True)
            rows.append({**row, "I_teacher_student": i_ts, "I_student_label": i_sy, "I_teacher_label": i_ty,
                         "margin": i_ts - i_sy, "cch": bool(i_ts > i_sy), "recommended": False})
        mine = [r for r in rows if r["student"] == student and r["cch"]]
        if mine:
            max(mine, key=lambda r: r["margin"])["recommended"] = True
    return rows


def write_table(rows: List[dict], path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: ("" if r[k] is None else f"{r[k]:.6f}" if isinstance(r[k], float) else r[k])
                             for k in COLUMNS})
    return path


def format_table(rows: List[dict]) -> str:
    """Plain-text table for the terminal, plus the recommended teacher per student."""
    lines = [f"{'student':<10}{'teacher':<10}{'n':>6}{'I(T;S)':>9}{'I(S;Y)':>9}{'I(T;Y)':>9}{'margin':>9}  CCH",
             "-" * 68]
    for r in rows:
        values = "".join(f"{r[k]:>9.3f}" for k in ("I_teacher_student", "I_student_label", "I_teacher_label", "margin"))
        mark = {True: "yes", False: "no", None: "n/a"}[r["cch"]] + (" *recommended" if r["recommended"] else "")
        lines.append(f"{r['student']:<10}{r['teacher']:<10}{r['n_samples']:>6}{values}  {mark}")
    lines.append("")
    for student in dict.fromkeys(r["student"] for r in rows):
        mine = [r for r in rows if r["student"] == student]
        best = [r["teacher"] for r in mine if r["recommended"]]
        reason = ("none (CCH fails for every teacher)" if any(r["cch"] is not None for r in mine)
                  else "not estimable (too few sampled voxels with this modality present)")
        lines.append(f"recommended teacher for {student}: {best[0] if best else reason}")
    return "\n".join(lines)


def plot_table(rows: List[dict], path: Path, title: str = "") -> Path:
    """Heatmap students x teachers of the margin I(T;S) - I(S;Y); cells with CCH marked, the
    recommended teacher boxed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    students = list(dict.fromkeys(r["student"] for r in rows))
    teachers = [FUSED] + students
    grid = np.full((len(students), len(teachers)), np.nan)
    for r in rows:
        grid[students.index(r["student"]), teachers.index(r["teacher"])] = r["margin"]
    fig = Figure(figsize=(1.4 * len(teachers) + 2, 0.7 * len(students) + 1.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    bound = np.nanmax(np.abs(grid)) if np.isfinite(grid).any() else 1.0
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="RdBu", vmin=-bound, vmax=bound)
    fig.colorbar(image, ax=ax, label="I(T;S) - I(S;Y) [nats]  (>0: CCH holds)")
    for r in rows:
        i, j = students.index(r["student"]), teachers.index(r["teacher"])
        text = "n/a" if not np.isfinite(r["margin"]) else f"{r['margin']:+.2f}" + ("\nCCH" if r["cch"] else "")
        ax.text(j, i, text, ha="center", va="center", fontsize=8)
        if r["recommended"]:
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=2.5, ec="black"))
    ax.set_xticks(range(len(teachers)), teachers)
    ax.set_yticks(range(len(students)), students)
    ax.set_xlabel("teacher T")
    ax.set_ylabel("student S")
    ax.set_title(title or "CCH margin (boxed: recommended teacher)", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def read_student_mask(path, modality_names: Sequence[str], teacher: str = FUSED) -> np.ndarray:
    """(M,) bool from a saved CCH CSV: True where the CCH holds for ``teacher`` -> student m.
    An empty ``cch`` cell (pair not estimable, e.g. the modality was absent from every sampled
    case) gives True: without evidence the student keeps PRISM's default distillation.

    Raises FileNotFoundError / CCHTableError naming the file when it is absent, lacks the columns,
    or has no row for a modality.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"CCH table {path} does not exist (write it with `nnunet_prism cch`)")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"student", "teacher", "cch"} - set(reader.fieldnames or [])
        if missing:
            raise CCHTableError(f"CCH table {path} lacks the column(s) {sorted(missing)}")
        found: Dict[str, bool] = {}
        for row in reader:
            if row["teacher"] == teacher:
                value = row["cch"].strip().lower()
                if value not in ("true", "false", "1", "0", ""):
                    raise CCHTableError(f"CCH table {path}: cch value {row['cch']!r} for student "
                                        f"{row['student']} is not True/False")
                found[row["student"]] = value in ("true", "1", "")
    absent = [m for m in modality_names if m not in found]
    if absent:
        raise CCHTableError(f"CCH table {path} has no row with teacher '{teacher}' for modality(ies) {absent}")
    return np.array([found[m] for m in modality_names], dtype=bool)
