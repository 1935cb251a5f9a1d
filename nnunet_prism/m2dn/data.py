"""2D slices of nnU-Net's preprocessed data for M2DN.

Cases are read with nnU-Net's own dataset classes (``infer_dataset_class`` -> blosc2 or numpy),
so the images are exactly what nnU-Net trains on: transposed, cropped to the nonzero region,
resampled and normalised. Slices are taken along the first (transposed) axis, as nnU-Net's 2d
configuration does. A modality that is recorded absent (``dataset.json`` availability) or is
all zero in a case is unavailable: never a target, never given as present.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np

from nnunet_prism.availability import channel_signal
from nnunet_prism.datasets import dataset_name
from nnunet_prism.errors import MissingFileError, SetupError
from nnunet_prism.modalities import ModalityError, modality_names, read_availability


@dataclass
class PreprocessedSet:
    """Where a dataset's preprocessed data of one configuration lives, and its metadata."""
    dataset_name: str
    folder: Path                 # nnUNet_preprocessed/<dataset>
    data_folder: Path            # .../<data_identifier>
    plans: dict
    dataset_json: dict
    configuration: str
    plans_identifier: str

    @property
    def modalities(self) -> List[str]:
        return modality_names(self.dataset_json)


def nnunet_folder(name: str) -> Path:
    """One of nnU-Net's folders (nnUNet_raw/_preprocessed/_results) from the environment."""
    import os

    value = os.environ.get(name)
    if not value:
        raise SetupError(f"{name} is not set; export nnU-Net's folders first (documentation/setting_up_paths.md)")
    return Path(value)


def open_preprocessed(dataset, configuration: str = "3d_fullres", plans_identifier: str = "nnUNetPlans",
                      preprocessed_root=None) -> PreprocessedSet:
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    root = Path(preprocessed_root) if preprocessed_root else nnunet_folder("nnUNet_preprocessed")
    name = dataset_name(dataset)
    folder = root / name
    plans_file = folder / f"{plans_identifier}.json"
    if not plans_file.is_file():
        raise MissingFileError(f"{plans_file} not found; run nnUNetv2_plan_and_preprocess -d {dataset} first")
    plans = json.loads(plans_file.read_text())
    if configuration not in plans["configurations"]:
        raise ModalityError(f"configuration '{configuration}' is not in {plans_file} "
                            f"(has {', '.join(plans['configurations'])})")
    data_folder = folder / PlansManager(plans).get_configuration(configuration).data_identifier
    if not data_folder.is_dir() or not any(data_folder.glob("*.pkl")):
        raise MissingFileError(f"{data_folder} holds no preprocessed cases; run nnUNetv2_plan_and_preprocess "
                               f"-d {dataset} -c {configuration}")
    dataset_json = json.loads((folder / "dataset.json").read_text())
    return PreprocessedSet(name, folder, data_folder, plans, dataset_json, configuration, plans_identifier)


def fold_split(pre: PreprocessedSet, fold) -> Tuple[List[str], List[str]]:
    """(train, held-out) identifiers of ``fold`` from nnU-Net's ``splits_final.json``; written with
    nnU-Net's own 5-fold split (seed 12345) when absent, as nnU-Net's trainer does. 'all' -> (all, [])."""
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
    from nnunetv2.utilities.crossval_split import generate_crossval_split

    identifiers = sorted(infer_dataset_class(str(pre.data_folder)).get_identifiers(str(pre.data_folder)))
    if str(fold) == "all":
        return identifiers, []
    splits_file = pre.folder / "splits_final.json"
    if splits_file.is_file():
        splits = json.loads(splits_file.read_text())
    else:
        splits = generate_crossval_split(identifiers, seed=12345, n_splits=5)
        splits_file.write_text(json.dumps(splits, indent=2))
    fold = int(fold)
    if not 0 <= fold < len(splits):
        raise ModalityError(f"fold {fold} does not exist in {splits_file} ({len(splits)} folds)")
    return sorted(splits[fold]["train"]), sorted(splits[fold]["val"])


class CaseReader:
    """Opens preprocessed cases with nnU-Net's dataset class; availability per case (M,) bool is
    the recorded availability AND 'channel not all zero' (checked once per case)."""

    def __init__(self, pre: PreprocessedSet, identifiers: Sequence[str]):
        from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

        if not identifiers:
            raise ModalityError(f"no cases to read in {pre.data_folder}")
        self.identifiers = list(identifiers)
        self.dataset = infer_dataset_class(str(pre.data_folder))(str(pre.data_folder), list(identifiers))
        self.recorded = dict(zip(self.identifiers, read_availability(pre.dataset_json, self.identifiers)))
        self.num_modalities = len(pre.modalities)
        self._open: Dict[str, tuple] = {}
        self._availability: Dict[str, np.ndarray] = {}

    def arrays(self, identifier: str):
        """(data (M, D, H, W), seg (1, D, H, W)) as nnU-Net's lazy blosc2/numpy arrays."""
        if identifier not in self._open:
            data, seg, _, _ = self.dataset.load_case(identifier)
            if data.shape[0] != self.num_modalities:
                raise ModalityError(f"case '{identifier}': {data.shape[0]} channels, dataset has {self.num_modalities}")
            self._open[identifier] = (data, seg)
        return self._open[identifier]

    def availability(self, identifier: str) -> np.ndarray:
        if identifier not in self._availability:
            data, _ = self.arrays(identifier)
            self._availability[identifier] = self.recorded[identifier] & channel_signal(data)
        return self._availability[identifier]

    def volume(self, identifier: str) -> Tuple[np.ndarray, np.ndarray]:
        """(images (M, D, H, W) float32, region (D, H, W) bool: inside nnU-Net's nonzero mask)."""
        data, seg = self.arrays(identifier)
        return np.asarray(data[:], dtype=np.float32), np.asarray(seg[0]) >= 0


def crop_or_pad(slice_: np.ndarray, size: Sequence[int], rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """Random crop / zero pad of (C, h, w) to (C, H, W); returns it and the (H, W) bool mask of
    pixels that came from the slice (False on padding)."""
    C, h, w = slice_.shape
    H, W = size
    out = np.zeros((C, H, W), dtype=np.float32)
    valid = np.zeros((H, W), dtype=bool)
    y0 = int(rng.integers(0, h - H + 1)) if h > H else 0
    x0 = int(rng.integers(0, w - W + 1)) if w > W else 0
    oy = int(rng.integers(0, H - h + 1)) if H > h else 0
    ox = int(rng.integers(0, W - w + 1)) if W > w else 0
    ch, cw = min(h, H), min(w, W)
    out[:, oy:oy + ch, ox:ox + cw] = slice_[:, y0:y0 + ch, x0:x0 + cw]
    valid[oy:oy + ch, ox:ox + cw] = True
    return out, valid


class SliceSampler:
    """Random 2D training slices: ``sample(B)`` -> (images (B, M, H, W) float32, available (B, M)
    bool, pixel weight (B, 1, H, W) float32: inside nnU-Net's nonzero region and not padding).
    Cases without any available modality are skipped; the case is drawn uniformly, then a slice."""

    def __init__(self, reader: CaseReader, patch_size: Sequence[int], seed: int = 0):
        self.reader = reader
        self.patch_size = tuple(int(v) for v in patch_size)
        self.rng = np.random.default_rng(seed)
        usable = [i for i in reader.identifiers if reader.recorded[i].any()]
        if not usable:
            raise ModalityError("no training case has an available modality")
        self.identifiers = usable

    def sample(self, batch_size: int):
        images, available, weights = [], [], []
        while len(images) < batch_size:
            identifier = self.identifiers[int(self.rng.integers(len(self.identifiers)))]
            avail = self.reader.availability(identifier)
            if not avail.any():
                continue
            data, seg = self.reader.arrays(identifier)
            z = int(self.rng.integers(data.shape[1]))
            stacked = np.concatenate([np.asarray(data[:, z], dtype=np.float32),
                                      (np.asarray(seg[:, z]) >= 0).astype(np.float32)])
            patch, valid = crop_or_pad(stacked, self.patch_size, self.rng)
            images.append(patch[:-1] * avail[:, None, None])
            weights.append((patch[-1] * valid)[None])
            available.append(avail)
        return np.stack(images), np.stack(available), np.stack(weights)


def slice_patch_size(plans: Mapping, configuration: str) -> Tuple[int, int]:
    """2D training patch: the plans' 2d patch size when the plans have a 2d configuration, else
    the in-plane part of ``configuration``'s patch size."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    manager = PlansManager(dict(plans))
    name = "2d" if "2d" in plans["configurations"] else configuration
    return tuple(int(v) for v in manager.get_configuration(name).patch_size[-2:])
