"""Trained models in nnU-Net's results folder: where one lies and nnU-Net's predictor for it.

Shared by the ``predict``, ``evaluate`` and ``cch`` commands. nnU-Net and torch are imported
only when called, so that building the command line stays fast.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import List, Optional, Sequence, Union

from nnunet_prism.datasets import dataset_name
from nnunet_prism.errors import MissingFileError, SetupError


def model_folder(dataset, trainer, plans, configuration) -> Path:
    """``$nnUNet_results/<dataset name>/<trainer>__<plans>__<configuration>``; FileNotFoundError
    (one line) for an unknown dataset id or a folder that holds no trained model (no
    dataset.json). ``dataset``: name or id."""
    if not os.environ.get("nnUNet_results"):
        raise SetupError("nnUNet_results is not set: export nnUNet_results=<the folder nnU-Net trained into>")
    folder = Path(os.environ["nnUNet_results"]) / dataset_name(dataset) / f"{trainer}__{plans}__{configuration}"
    if not (folder / "dataset.json").is_file():
        raise MissingFileError(f"no trained model in {folder} (dataset.json missing)")
    return folder


def image_dimension(folder: Path) -> Optional[int]:
    """2 or 3: the dimension of the images the model in ``folder`` was trained on, from its
    plans.json (nnU-Net reads a 2D image as 3D with a first spacing 999 times the largest other);
    None when the plans do not say."""
    plans_file = Path(folder) / "plans.json"
    spacing = json.loads(plans_file.read_text()).get("original_median_spacing_after_transp") \
        if plans_file.is_file() else None
    if not spacing or len(spacing) != 3:
        return None
    return 2 if spacing[0] >= 999 * max(spacing[1:]) * (1 - 1e-6) else 3


def trained_folds(folder: Path, checkpoint: str = "checkpoint_final.pth") -> List[Union[int, str]]:
    """The folds of the model in ``folder`` that have ``checkpoint`` (``fold_*/<checkpoint>``), as
    nnU-Net's own prediction finds them: numbers in order, then "all"."""
    found = [p.name[len("fold_"):] for p in Path(folder).glob("fold_*") if (p / checkpoint).is_file()]
    numbers = sorted(int(f) for f in found if f.isdigit())
    return [*numbers, *(["all"] if "all" in found else [])]


def resolve_folds(folder: Path, folds: Optional[Sequence] = None,
                  checkpoint: str = "checkpoint_final.pth") -> List[Union[int, str]]:
    """``folds`` (numbers or "all") checked against the trained folds of ``folder``; None or empty:
    every trained fold. FileNotFoundError (one line) for a fold that was never trained or when
    none was."""
    trained = trained_folds(folder, checkpoint)
    if not folds:
        if not trained:
            raise MissingFileError(f"no trained fold in {folder}: no fold_*/{checkpoint}")
        return trained
    wanted = []
    for fold in folds:
        text = str(fold).strip()
        if text != "all" and not text.isdigit():
            raise SetupError(f"fold '{fold}' is neither a number nor 'all'")
        wanted.append("all" if text == "all" else int(text))
    missing = [f for f in wanted if f not in trained]
    if missing:
        shown = ", ".join(f"fold_{f}/{checkpoint}" for f in missing)
        have = ", ".join(map(str, trained)) or "none"
        raise MissingFileError(f"{folder}: fold {', '.join(map(str, missing))} was never trained (no {shown}); "
                               f"trained folds: {have}")
    return list(dict.fromkeys(wanted))


def image_reader_writer(folder: Path):
    """An instance of the image reader/writer that the plans of the model in ``folder`` name (the
    one nnU-Net's predictor reads cases with), without loading the network."""
    import json

    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    return PlansManager(json.loads((Path(folder) / "plans.json").read_text())).image_reader_writer_class()


def load_predictor(folder: Path, fold: int, checkpoint: str, device: str, use_mirroring: bool):
    """nnU-Net's ``nnUNetPredictor`` (tile step 0.5, Gaussian weighting) with one fold's
    ``checkpoint`` of the model in ``folder`` loaded, on ``device`` ("cuda", "cpu", "mps")."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=use_mirroring,
                                perform_everything_on_device=device == "cuda", device=torch.device(device),
                                verbose=False, verbose_preprocessing=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(folder), (fold,), checkpoint_name=checkpoint)
    return predictor
