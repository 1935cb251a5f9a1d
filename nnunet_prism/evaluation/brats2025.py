"""The official BraTS 2025 numbers (``--metrics brats2025``), computed by panoptica itself.

The BraTS 2025 challenges score with the official ``brats-evaluation`` package, which runs
panoptica (Kofler et al., github.com/BrainLesion/panoptica, Apache-2.0) with one config per task:
semantic input, connected components as instances, maximal bipartite matching on Dice (threshold
1e-6), global and per-lesion Dice, NSD and HD95 for the task's label groups (glioma: ET = 3,
NETC = 1, SNFH = 2, RC = 4, TC = 1+3, WT = 1+2+3; the groups of every set are data, in
``nnunet_prism.brats_label_sets``), and for lesions of a label group without a match: Dice and NSD
0, HD95 inf, NaN when neither side has a lesion. We build the same evaluator from those rows
(panoptica does every computation) and differ from the official package in three places, on
purpose (docs/brats_years.md shows each on hand-made volumes):

- spacing: we hand panoptica the arrays with the spacing in the same axis order (nnU-Net's
  reader). Given file paths (the official runner), panoptica 2.1.7 pairs an array in (z, y, x)
  order with a spacing in (x, y, z) order, so on anisotropic images the per-lesion HD95 and NSD
  use the wrong axis for each spacing; and its global HD95 and NSD ignore the spacing altogether
  (computed in voxels, the NSD with a tolerance of 0.5 voxel, where the per-lesion NSD uses the
  smallest spacing, 1 mm on BraTS data). We compute the global HD95 and NSD with panoptica's own
  metric functions, given the spacing, the NSD with a tolerance of half the smallest spacing: on
  1 mm isotropic BraTS data this is exactly the official number, elsewhere it is in mm;
- inf: HD95 is inf when a group is empty on one side only (global) or no lesion matched
  (per lesion). The official parser replaces the global inf by 373 but keeps the per-lesion inf,
  so a mean over cases becomes inf; we write 373 (the BraTS penalty) for both and say so under
  the table;
- case ids: the official runner pairs files by a BraTS id in their names (``12345-000``) and
  skips the others with a printed warning; we pair by nnU-Net's case id and refuse a case
  without its partner (``evaluation/prediction_folders.py``).

Columns (per group, as regions WT, TC, ET, NETC, SNFH, RC, ...): B25Dice, B25NSD, B25HD95 (global,
the whole group as one mask) and B25LesionDice, B25LesionNSD, B25LesionHD95 (panoptica's
segmentation quality: the mean over matched lesions). Install: ``pip install
"nnunet_prism[brats2025]"`` (panoptica pins numpy < 2.3, pandas < 3, so it is not a default
dependency).
"""
from __future__ import annotations

import warnings
from typing import Dict, List, Mapping, Tuple

import numpy as np

from nnunet_prism.errors import EvaluationError
from nnunet_prism.evaluation.metrics import Target

KEYWORD = "brats2025"
EXTRA_HINT = 'pip install "nnunet_prism[brats2025]"'
#: column -> panoptica result attribute
COLUMNS: Dict[str, str] = {"B25Dice": "global_bin_dsc", "B25NSD": "global_bin_nsd", "B25HD95": "global_bin_hd95",
                           "B25LesionDice": "sq_dsc", "B25LesionNSD": "sq_nsd", "B25LesionHD95": "sq_hd95"}
METRIC_NAMES: Tuple[str, ...] = tuple(COLUMNS)
#: what an inf HD95 becomes (the official parser's value for the global HD95)
INF_HD95 = 373.0
#: global NSD tolerance in units of the smallest spacing (the official 0.5 voxel)
GLOBAL_NSD_TOLERANCE = 0.5


def require_panoptica():
    """The panoptica module, or a one-line EvaluationError naming the extra that installs it."""
    try:
        import panoptica
    except ImportError:
        raise EvaluationError(f"--metrics {KEYWORD} needs panoptica, an optional extra: {EXTRA_HINT}") from None
    return panoptica


def layout_of(dataset_json: Mapping):
    """The BraTS label set a dataset was converted from (``brats_layout`` in its dataset.json)."""
    from nnunet_prism.brats_label_sets import LabelSetError, get_layout

    name = dataset_json.get("brats_layout")
    if name is None:
        raise EvaluationError(f"--metrics {KEYWORD} scores the label groups of a BraTS task, but dataset.json has no "
                              f"'brats_layout' (datasets converted with 'nnunet_prism convert-brats' have it)")
    try:
        return get_layout(name)
    except LabelSetError as e:
        raise EvaluationError(f"dataset.json's 'brats_layout': {e}") from None


def official_evaluator(groups: Mapping[str, Tuple[int, ...]]):
    """panoptica's evaluator configured as the official BraTS 2025 configs, for ``groups``
    ({name: label values of the arrays it will get})."""
    require_panoptica()
    from panoptica import (ConnectedComponentsInstanceApproximator, InputType, MaxBipartiteMatching, Metric,
                           Panoptica_Evaluator)
    from panoptica.utils.edge_case_handling import EdgeCaseHandler, EdgeCaseResult, MetricZeroTPEdgeCaseHandling
    from panoptica.utils.label_group import LabelGroup, LabelMergeGroup
    from panoptica.utils.segmentation_class import SegmentationClassGroups

    def zero_tp(value):
        return MetricZeroTPEdgeCaseHandling(empty_prediction_result=value, empty_reference_result=value,
                                            no_instances_result=EdgeCaseResult.NAN, normal=value)

    handler = EdgeCaseHandler({Metric.DSC: zero_tp(EdgeCaseResult.ZERO), Metric.NSD: zero_tp(EdgeCaseResult.ZERO),
                               Metric.HD95: zero_tp(EdgeCaseResult.INF)}, empty_list_std=EdgeCaseResult.NAN)
    classes = SegmentationClassGroups({
        name: (LabelMergeGroup if len(values) > 1 else LabelGroup)(list(values), single_instance=False)
        for name, values in groups.items()})
    metrics = [Metric.DSC, Metric.NSD, Metric.HD95]
    return Panoptica_Evaluator(expected_input=InputType.SEMANTIC,
                               instance_approximator=ConnectedComponentsInstanceApproximator(),
                               instance_matcher=MaxBipartiteMatching(matching_metric=Metric.DSC,
                                                                     matching_threshold=0.000001),
                               edge_case_handler=handler, segmentation_class_groups=classes,
                               instance_metrics=metrics, global_metrics=metrics, verbose=False)


class Brats2025Scorer:
    """``scorer(reference, prediction, spacing)`` -> ``{region: {column: value}}`` for the groups of
    the dataset's BraTS task; reference and prediction in nnU-Net labels, spacing in their axis
    order. ``regions(targets)``: the groups as evaluation targets (a group whose labels equal a
    target's takes its name: WT, TC, ET, RC, ...)."""

    def __init__(self, dataset_json: Mapping):
        self.layout = layout_of(dataset_json)
        self.groups = self.layout.nnunet_groups()
        self.evaluator = official_evaluator(self.groups)

    def targets(self, targets: List[Target]) -> Tuple[List[Target], Dict[str, str]]:
        """(``targets`` plus a target per group no target covers, {group: region short name})."""
        out, names = list(targets), {}
        for group, values in self.groups.items():
            same = next((t for t in out if set(np.atleast_1d(t.value).tolist()) == set(values)), None)
            if same is None:
                same = Target(group, group.upper(), values if len(values) > 1 else values[0])
                out.append(same)
            names[group] = same.short
        return out, names

    def __call__(self, reference: np.ndarray, prediction: np.ndarray, spacing) -> Dict[str, Dict[str, float]]:
        reference, prediction = np.asarray(reference).astype(np.uint8), np.asarray(prediction).astype(np.uint8)
        spacing = tuple(float(s) for s in spacing)
        out = {}
        with warnings.catch_warnings():
            # panoptica warns whenever an NSD tolerance is 0.5 (its default); the official global NSD's
            # 0.5 voxel is chosen on purpose, and 1 mm data give 0.5 mm here too
            warnings.filterwarnings("ignore", message="The threshold is set to 0.5", category=UserWarning)
            results = self.evaluator.evaluate(prediction, reference, voxelspacing=spacing, verbose=False)
            for group, result in results.items():
                values = {column: getattr(result, key) for column, key in COLUMNS.items()}
                values.update(self._global_surface(reference, prediction, self.groups[group], spacing))
                out[group] = {k: INF_HD95 if v is not None and np.isinf(v) else (np.nan if v is None else float(v))
                              for k, v in values.items()}
        return out

    @staticmethod
    def _global_surface(reference, prediction, values, spacing) -> Dict[str, float]:
        """Global HD95 and NSD of one group by panoptica's metric functions, with the spacing
        (its evaluator computes them without); the empty cases as its edge-case handling."""
        from panoptica import Metric

        ref, pred = np.isin(reference, values), np.isin(prediction, values)
        if not ref.any() and not pred.any():
            return {"B25HD95": np.nan, "B25NSD": np.nan}
        if not ref.any() or not pred.any():
            return {"B25HD95": np.inf, "B25NSD": 0.0}
        return {"B25HD95": float(Metric.HD95(reference_arr=ref, prediction_arr=pred, voxelspacing=spacing)),
                "B25NSD": float(Metric.NSD(reference_arr=ref, prediction_arr=pred, voxelspacing=spacing,
                                           threshold=GLOBAL_NSD_TOLERANCE * min(spacing)))}


NOTE = (f"B25 columns: the official BraTS 2025 numbers computed by panoptica (global Dice/NSD/HD95 per group; "
        f"Lesion: mean over matched lesions); an infinite HD95 (group or lesion missed on one side) is written as "
        f"{INF_HD95:g} mm, NaN (no lesion on either side) is skipped in means.")

__all__ = ["KEYWORD", "EXTRA_HINT", "COLUMNS", "METRIC_NAMES", "INF_HD95", "require_panoptica", "layout_of",
           "official_evaluator", "Brats2025Scorer", "NOTE"]
