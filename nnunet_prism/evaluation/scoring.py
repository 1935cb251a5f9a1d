"""One case's scores under the chosen protocol options: the evaluation convention (empty masks),
ET post-processing (an extra "ET (pp N)" region), NSD, the BraTS 2023 lesion-wise metrics and the
official BraTS 2025 numbers (``brats2025``: panoptica, with the task's label groups as regions).

``CaseScorer`` is what a subset evaluation calls per (case, subset): its ``regions`` and
``metrics`` are the columns of the ``SubsetResults`` it fills.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence

import numpy as np

from nnunet_prism.evaluation.conventions import get_convention
from nnunet_prism.evaluation.lesionwise import BRATS2023_HD95_PENALTY, lesion_wise
from nnunet_prism.evaluation import brats2025
from nnunet_prism.evaluation.metrics import (AVAILABLE_METRICS, LESION_METRICS, METRICS, EvaluationError, Target,
                                             evaluate_case, region_or_label_to_mask)
from nnunet_prism.evaluation.postprocessing import et_and_ncr_labels, pp_region_name, suppress_small_et


def parse_metrics(names: Optional[Sequence[str]]) -> list:
    """The requested metrics in table order; None = Dice and HD95; ``brats2025`` stands for the
    official BraTS 2025 columns. Unknown names are an error."""
    if not names:
        return list(METRICS)
    wanted = [n.strip() for name in names for n in str(name).split(",") if n.strip()]
    every = AVAILABLE_METRICS + brats2025.METRIC_NAMES
    lower = {m.lower(): m for m in every}
    unknown = [n for n in wanted if n.lower() not in lower and n.lower() != brats2025.KEYWORD]
    if unknown:
        raise EvaluationError(f"unknown metric(s) {', '.join(unknown)} (choose from {', '.join(AVAILABLE_METRICS)}, "
                              f"{brats2025.KEYWORD})")
    chosen = {lower[n.lower()] for n in wanted if n.lower() in lower}
    if any(n.lower() == brats2025.KEYWORD for n in wanted):
        chosen |= set(brats2025.METRIC_NAMES)
    return [m for m in every if m in chosen]


class CaseScorer:
    """``scorer(reference, prediction, spacing, ignore_label=None)`` -> ``{region: {metric: value}}``.

    ``targets``: the regions/labels (``metrics.targets_from_dataset_json``); ``convention``:
    "nnunet" or "brats"; ``et_min_voxels`` > 0 adds the region "ET (pp N)", scored on the
    prediction after ``postprocessing.suppress_small_et`` (needs ``labels``, the dataset.json
    labels, to find the ET and NCR labels); ``metrics``: any of ``AVAILABLE_METRICS`` or
    ``brats2025`` (needs ``dataset_json`` with its ``brats_layout``, and panoptica installed; the
    task's label groups become regions too). The lesion-wise parameters (dilation, minimum
    volume) are those of the dataset's BraTS task when ``dataset_json`` names one."""

    def __init__(self, targets: Sequence[Target], convention="nnunet", et_min_voxels: int = 0,
                 metrics: Optional[Sequence[str]] = None, labels: Optional[Mapping] = None,
                 dataset_json: Optional[Mapping] = None):
        self.targets = list(targets)
        self.convention = get_convention(convention)
        self.et_min_voxels = int(et_min_voxels)
        if self.et_min_voxels < 0:
            raise EvaluationError(f"--et-min-voxels must be >= 0, got {et_min_voxels}")
        self.metrics = parse_metrics(metrics)
        self.lesion_parameters = {}
        if dataset_json is not None and dataset_json.get("brats_layout"):
            layout = brats2025.layout_of(dataset_json)
            self.lesion_parameters = {"dilation": layout.lesion_dilation, "min_volume": layout.lesion_min_volume}
        self.official = None
        if any(m in brats2025.METRIC_NAMES for m in self.metrics):
            self.official = brats2025.Brats2025Scorer(dataset_json or {})
            self.targets, self.group_regions = self.official.targets(self.targets)
        self.regions = [t.short for t in self.targets]
        self.et_target = None
        if self.et_min_voxels > 0:
            try:
                self.et_label, self.ncr_label = et_and_ncr_labels(labels or {})
            except ValueError as e:
                raise EvaluationError(str(e)) from None
            self.et_target = next((t for t in self.targets if t.value in (self.et_label, (self.et_label,))), None)
            if self.et_target is None:
                raise EvaluationError(f"ET post-processing: no evaluated region or label is ET "
                                      f"(label {self.et_label}); regions: {', '.join(self.regions)}")
            self.regions.append(pp_region_name(self.et_target.short, self.et_min_voxels))

    def __call__(self, reference: np.ndarray, prediction: np.ndarray, spacing=None,
                 ignore_label: Optional[int] = None) -> Dict[str, Dict[str, float]]:
        kwargs = {**self.convention.evaluate_case_kwargs(), "with_nsd": "NSD" in self.metrics}
        out = evaluate_case(reference, prediction, self.targets, spacing, ignore_label, **kwargs)
        jobs = [(t.short, t, prediction) for t in self.targets]
        if self.et_target is not None:
            processed = suppress_small_et(prediction, self.et_min_voxels, self.et_label, self.ncr_label)
            pp = evaluate_case(reference, processed, [self.et_target], spacing, ignore_label, **kwargs)
            out[self.regions[-1]] = pp[self.et_target.short]
            jobs.append((self.regions[-1], self.et_target, processed))
        if any(m in LESION_METRICS for m in self.metrics):
            reference = np.asarray(reference)
            ignore = None if ignore_label is None else reference == ignore_label
            for region, target, pred in jobs:
                ref_mask = region_or_label_to_mask(reference, target.value)
                pred_mask = region_or_label_to_mask(np.asarray(pred), target.value)
                if ignore is not None:
                    ref_mask, pred_mask = ref_mask & ~ignore, pred_mask & ~ignore
                scores = lesion_wise(ref_mask, pred_mask, spacing, hd95_penalty=BRATS2023_HD95_PENALTY,
                                     **self.lesion_parameters)
                out[region]["LesionDice"] = scores.dice
                out[region]["LesionHD95"] = scores.hd95
        if self.official is not None:
            if spacing is None:
                spacing = np.ones(np.ndim(reference))
            for group, values in self.official(reference, prediction, spacing).items():
                out[self.group_regions[group]].update(values)
        return out

    def notes(self) -> list:
        """Lines for under the table that these options need."""
        return [brats2025.NOTE] if self.official is not None else []


__all__ = ["CaseScorer", "parse_metrics"]
