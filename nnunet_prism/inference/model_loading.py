"""Trained models in nnU-Net's results folder: where one lies and nnU-Net's predictor for it.

Shared by the ``predict``, ``evaluate`` and ``cch`` commands. nnU-Net and torch are imported
only when called, so that building the command line stays fast.
"""
from __future__ import annotations

from pathlib import Path


def model_folder(dataset, trainer, plans, configuration) -> Path:
    """``$nnUNet_results/<dataset name>/<trainer>__<plans>__<configuration>``; FileNotFoundError
    if it holds no trained model (no dataset.json). ``dataset``: name or id."""
    from nnunetv2.paths import nnUNet_results
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    folder = Path(str(nnUNet_results)) / maybe_convert_to_dataset_name(dataset) / f"{trainer}__{plans}__{configuration}"
    if not (folder / "dataset.json").is_file():
        raise FileNotFoundError(f"no trained model in {folder} (dataset.json missing)")
    return folder


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
