"""Score a trained model on every modality subset of a set of labelled cases.

Each case is read and preprocessed once; all subsets it really has are predicted in one
sliding-window pass (``subset_prediction``); each subset's segmentation is scored with
nnU-Net-compatible Dice and HD95 (``evaluation.metrics``). A subset that contains a modality a
case does not have is skipped for that case, never scored on a zero image.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

from nnunet_prism.evaluation.metrics import evaluate_case, targets_from_dataset_json
from nnunet_prism.evaluation.reference_labels import read_reference_label
from nnunet_prism.evaluation.results import SubsetResults
from nnunet_prism.inference.evaluation_cases import EvaluationCase
from nnunet_prism.inference.subset_prediction import subset_segmentations
from nnunet_prism.modalities import all_subsets, modality_names, subset_name, subset_masks


def evaluate_subsets(predictor, cases: Sequence[EvaluationCase], save_predictions: Optional[os.PathLike] = None,
                     progress: bool = True, scorer=None) -> SubsetResults:
    dataset_json = predictor.dataset_json
    names = modality_names(dataset_json)
    targets = targets_from_dataset_json(dataset_json, predictor.plans_manager.plans)
    results = SubsetResults(names, scorer.regions, scorer.metrics) if scorer else SubsetResults(names, [t.short for t in targets])  # scorer: evaluation.scoring.CaseScorer
    subsets = all_subsets(len(names))
    masks = subset_masks(len(names))
    preprocessor = predictor.configuration_manager.preprocessor_class(verbose=False)
    reader = predictor.plans_manager.image_reader_writer_class()

    bar = tqdm(cases, desc="cases", unit="case", disable=not progress)
    for case in bar:
        usable = [i for i, m in enumerate(masks) if not (m & ~case.availability).any()]
        bar.set_postfix_str(f"{case.name}: {len(usable)} subsets")
        reference, spacing = read_reference_label(case.label_file, dataset_json, reader, grid_of=case.image_files[0])
        data, _, properties = preprocessor.run_case(case.image_files, None, predictor.plans_manager,
                                                    predictor.configuration_manager, dataset_json)
        segmentations = subset_segmentations(predictor, torch.from_numpy(np.ascontiguousarray(data)),
                                             properties, masks[usable])
        for index, segmentation in zip(usable, segmentations):
            metrics = scorer(reference, segmentation, spacing) if scorer else evaluate_case(reference, segmentation, targets, spacing=spacing)
            results.add_case(subsets[index], case.name, metrics)
            if save_predictions is not None:
                folder = Path(save_predictions) / subset_name(subsets[index], names)
                folder.mkdir(parents=True, exist_ok=True)
                reader.write_seg(segmentation, str(folder / f"{case.name}{dataset_json['file_ending']}"),
                                 properties)
    return results
