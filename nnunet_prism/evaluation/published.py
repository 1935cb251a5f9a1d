"""Published average Dice over the 15 BraTS modality subsets, for a rough comparison.

The numbers live in ``results_templates/published_brats_missing_modality.csv`` (columns: method,
dataset, WT, TC, ET, protocol, et_postprocessed, convention, source; Dice in percent, mean over the
15 subsets). ``protocol``: the split (a name of ``nnunet_prism protocol``, e.g. rfnet-brats2020);
``et_postprocessed``: yes / no / unknown, whether ET below 500 voxels was relabelled before scoring
(``evaluation/postprocessing.py``); ``convention``: how empty masks scored
(``evaluation/conventions.py``; brats = Dice 1 when reference and prediction are empty). Every
row names where it was read. Rows are only added from a source actually read; methods whose averages could not be
checked (ShaSpec, M3AE, PASSION, GMD, ...) are left out rather than guessed. Published numbers come
from other splits, preprocessing, post-processing and evaluation code than an nnU-Net run, so a
difference of a point or two says little.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from nnunet_prism.errors import MissingFileError

CSV_NAME = "published_brats_missing_modality.csv"


@dataclass(frozen=True)
class PublishedResult:
    method: str
    dataset: str
    WT: float
    TC: float
    ET: float
    source: str
    protocol: str = ""
    et_postprocessed: str = "unknown"
    convention: str = "unknown"


def published_csv_path() -> Path:
    here = Path(__file__).resolve()
    for folder in (here.parents[1] / "results_templates", here.parents[2] / "results_templates"):
        if (folder / CSV_NAME).is_file():
            return folder / CSV_NAME
    raise MissingFileError(f"{CSV_NAME} not found in results_templates/ next to the package or the repository")


def _dataset_key(name: str) -> str:
    """'BraTS2018', 'brats 2018', 'BraTS_2018' and '2018' all become '2018'."""
    digits = re.findall(r"\d{2,4}", str(name))
    if not digits:
        return str(name).strip().lower()
    year = digits[-1]
    return year if len(year) == 4 else "20" + year


def load_published(dataset: Optional[str] = None, path: Optional[Path] = None) -> List[PublishedResult]:
    """Published rows, in file order; ``dataset`` ("BraTS2018", "BraTS2020", "2020", ...) filters."""
    path = Path(path) if path is not None else published_csv_path()
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for i, row in enumerate(csv.DictReader(f), start=2):
            try:
                rows.append(PublishedResult(row["method"].strip(), row["dataset"].strip(), float(row["WT"]),
                                            float(row["TC"]), float(row["ET"]), row["source"].strip(),
                                            (row.get("protocol") or "").strip(),
                                            (row.get("et_postprocessed") or "unknown").strip().lower(),
                                            (row.get("convention") or "unknown").strip().lower()))
            except (KeyError, TypeError, ValueError) as e:
                raise ValueError(f"{path}, line {i}: malformed row ({e})") from None
    if dataset is not None:
        key = _dataset_key(dataset)
        rows = [r for r in rows if _dataset_key(r.dataset) == key]
    return rows


def rows_convention(rows) -> str:
    """The evaluation convention of published rows: the one most of the rows with a known
    convention used ("brats" for every row read so far); "nnunet" when none is known."""
    known = [r.convention for r in rows if r.convention not in ("", "unknown")]
    return max(sorted(set(known)), key=known.count) if known else "nnunet"
