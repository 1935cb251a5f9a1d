"""Voxel representations of a trained multi-encoder model for the CCH (arXiv 2510.13182).

H_S for student m is modality m alone through the shared decoder (``MultiModalOutput``'s
unimodal branch); the fused teacher is the masked-mean fusion of the case's present modalities.
``representation="features"`` (default) takes the highest-resolution decoder features (input of
the segmentation layer, F = features_per_stage[0] channels); ``"logits"`` takes the
full-resolution logits (C channels). Y is the integer label of nnU-Net's preprocessed
segmentation at the voxel (the original labels also for region-based sets; negative = outside /
ignore, never sampled).

Sampling: per validation case ``patches_per_case`` patches of the plan's patch size (the first
centred on a random foreground voxel, like nnU-Net's oversampling, the rest uniform), one
``forward_all`` each, and from every patch up to ``voxels_per_class`` voxels per label drawn at
random (seeded). Class balance of the final sample is decided later, per pair (``cch.criterion``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence

import numpy as np
import torch

from nnunet_prism.deep_supervision import full_resolution
from nnunet_prism.errors import MissingFileError, SetupError
from nnunet_prism.modalities import ModalityError
from nnunet_prism.networks.interfaces import FusedAndUnimodal

REPRESENTATIONS = ("features", "logits")


@dataclass
class VoxelRepresentations:
    """Sampled voxels of all cases.

    fused: (N, D) teacher representation; unimodal: (N, M, D) per-modality representations;
    labels: (N,) int; availability: (N, M) bool (the voxel's case); case_index: (N,) int.
    """
    fused: np.ndarray
    unimodal: np.ndarray
    labels: np.ndarray
    availability: np.ndarray
    case_index: np.ndarray
    case_names: List[str]
    modality_names: List[str]
    representation: str


def patch_starts(seg: np.ndarray, patch: Sequence[int], count: int, rng: np.random.Generator) -> List[tuple]:
    """``count`` patch corners inside a (padded) volume of seg's shape (*spatial); the first is
    centred on a random foreground voxel when there is one."""
    shape = seg.shape
    starts = []
    foreground = np.argwhere(seg > 0)
    for i in range(count):
        if i == 0 and len(foreground):
            centre = foreground[rng.integers(len(foreground))]
            start = [int(np.clip(c - p // 2, 0, s - p)) for c, p, s in zip(centre, patch, shape)]
        else:
            start = [int(rng.integers(0, s - p + 1)) for p, s in zip(patch, shape)]
        starts.append(tuple(start))
    return starts


def pad_to(array: np.ndarray, patch: Sequence[int], value: float) -> np.ndarray:
    """Pad the trailing len(patch) axes of ``array`` at the end up to at least ``patch``."""
    lead = array.ndim - len(patch)
    pads = [(0, 0)] * lead + [(0, max(0, p - s)) for p, s in zip(patch, array.shape[lead:])]
    return np.pad(array, pads, constant_values=value) if any(p[1] for p in pads) else array


def sample_voxels(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Flat indices of up to ``per_class`` voxels per label value >= 0 of ``labels``."""
    flat = labels.reshape(-1)
    chosen = []
    for c in np.unique(flat[flat >= 0]):
        where = np.flatnonzero(flat == c)
        chosen.append(rng.choice(where, min(per_class, where.size), replace=False))
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=int)


def _full_resolution(out, representation: str):
    if representation == "features":
        return out.fused_features, out.unimodal_features
    return full_resolution(out.fused), full_resolution(out.unimodal)


@torch.no_grad()
def extract_representations(network, preprocessed_folder: Path, case_names: Sequence[str],
                            availability: np.ndarray, patch_size: Sequence[int], modality_names: Sequence[str],
                            device: torch.device, representation: str = "features", patches_per_case: int = 2,
                            voxels_per_class: int = 400, seed: int = 0) -> VoxelRepresentations:
    """Run ``network.forward_all`` on sampled patches of nnU-Net's preprocessed cases.

    network: a MultiEncoderUNet (anything with ``forward_all``); preprocessed_folder: the
    configuration's preprocessed data folder; availability (cases, M) bool.
    """
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    if representation not in REPRESENTATIONS:
        raise SetupError(f"representation must be one of {REPRESENTATIONS}, got {representation!r}")
    if not isinstance(network, FusedAndUnimodal):
        raise SetupError(f"{type(network).__name__} has no forward_all: the CCH needs a multi-encoder model "
                         f"(nnUNetTrainerMissingModality, nnUNetTrainerPRISM or a subclass)")
    folder = Path(preprocessed_folder)
    if not folder.is_dir():
        raise MissingFileError(f"preprocessed data {folder} not found; run nnUNetv2_plan_and_preprocess")
    dataset = infer_dataset_class(str(folder))(str(folder), list(case_names))
    network.eval()
    rng = np.random.default_rng(seed)
    parts = {"fused": [], "unimodal": [], "labels": [], "availability": [], "case_index": []}
    for ci, name in enumerate(case_names):
        data, seg, _, _ = dataset.load_case(name)
        data = pad_to(np.asarray(data, dtype=np.float32), patch_size, 0.0)
        seg = pad_to(np.asarray(seg)[0], patch_size, -1)
        if not availability[ci].any():
            raise ModalityError(f"case '{name}' has no available modality")
        mask = torch.as_tensor(availability[ci][None], device=device)
        for start in patch_starts(seg, patch_size, patches_per_case, rng):
            window = tuple(slice(s, s + p) for s, p in zip(start, patch_size))
            x = torch.as_tensor(data[(slice(None), *window)][None], device=device)
            x = x * mask.view(1, -1, *([1] * len(patch_size))).to(x.dtype)  # absent = zero, as in training
            fused, unimodal = _full_resolution(network.forward_all(x, mask), representation)
            labels = seg[window]
            picked = sample_voxels(labels, voxels_per_class, rng)
            if picked.size == 0:
                continue
            picked_t = torch.as_tensor(picked, device=device)
            parts["fused"].append(fused[0].flatten(1)[:, picked_t].T.float().cpu().numpy())
            parts["unimodal"].append(unimodal[0].flatten(2)[:, :, picked_t].permute(2, 0, 1).float().cpu().numpy())
            parts["labels"].append(labels.reshape(-1)[picked].astype(np.int64))
            parts["availability"].append(np.repeat(availability[ci][None], picked.size, 0))
            parts["case_index"].append(np.full(picked.size, ci))
    if not parts["labels"]:
        raise SetupError(f"no labelled voxels found in the cases {list(case_names)} of {folder}")
    return VoxelRepresentations(*(np.concatenate(parts[k]) for k in parts), list(case_names),
                                list(modality_names), representation)
