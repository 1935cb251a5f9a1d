"""Training-time modality masks: the one place where a trainer decides which modalities a sample has.

mask = availability (the dataset.json record written by the converter, or, without a record, the
         preprocessed data: an all-zero channel is absent; ``nnunet_prism.availability``)
       AND simulated missingness (hyperparameter ``missing_rates``, seeded, fixed per case)
       AND per-iteration random dropout (hyperparameter ``modality_dropout``, training only),
with at least one modality kept per sample. Absent channels are zeroed in the input, so a
network never sees a modality the mask calls absent.
"""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np
import torch

from nnunet_prism.availability import channel_signal, resolve_availability
from nnunet_prism.modalities import (
    ModalityError,
    missing_rates,
    modality_names,
    random_dropout_mask,
    simulate_availability,
    validate_rates,
)
from nnunet_prism.training.hyperparameters import Hyperparameter, HyperparameterError


def check_missing_rates(rates, names) -> None:
    """``missing_rates``: None or one rate in [0, 1) per modality of ``names`` (one-line error)."""
    if rates is not None:
        try:
            validate_rates(rates, len(names))
        except ModalityError as e:
            raise HyperparameterError(f"hyperparameter missing_rates={rates}: {e} ({', '.join(names)}).") from None


class ModalityMaskingMixin:
    """Mixin for nnUNetTrainer subclasses (needs ``self.dataset_json``, ``self.do_split``,
    ``self.device`` and the hyperparameter mechanism)."""

    HYPERPARAMETERS = {
        "missing_rates": Hyperparameter(
            "rates", None, "simulated per-modality missing rates FR^m on the training cases, fixed per case "
                           "(PASSION's mr2468 protocol)", nullable=True),
        "missing_seed": Hyperparameter("int", 0, "seed of that simulation", minimum=0),
        "modality_dropout": Hyperparameter(
            "float", 0.0, "probability to drop each present modality anew at every iteration, at least one "
                          "kept (ShaSpec: random dropping)", minimum=0, maximum=1),
    }

    @property
    def modality_names(self):
        return modality_names(self.dataset_json)

    def _fold_availability(self) -> Dict[str, np.ndarray]:
        """{case id: (M,) bool} for this fold's training and validation cases as they really are:
        the dataset's record, or the preprocessed data where there is none (checked against it)."""
        if getattr(self, "_genuine_cache", None) is None:
            train_keys, val_keys = self.do_split()
            keys = sorted(train_keys) + sorted(val_keys)
            genuine, self.availability_source = resolve_availability(self.dataset_json, keys,
                                                                     self.preprocessed_availability)
            self._genuine_cache = dict(zip(keys, genuine))
        return self._genuine_cache

    def preprocessed_availability(self, keys: Sequence[str]) -> np.ndarray:
        """(N, M) bool: which channels of nnU-Net's preprocessed cases are not all zero."""
        from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

        dataset = infer_dataset_class(self.preprocessed_dataset_folder)(self.preprocessed_dataset_folder, list(keys))
        return np.stack([channel_signal(dataset.load_case(k)[0]) for k in keys]) if len(keys) else \
            np.zeros((0, len(self.modality_names)), dtype=bool)

    def _availability_table(self) -> Dict[str, np.ndarray]:
        """{case id: (M,) bool} for the training cases of this fold: what they have AND the
        simulated missingness (``modalities.simulate_availability``, the converter's rule)."""
        if getattr(self, "_availability_cache", None) is None:
            train_keys = sorted(self.do_split()[0])
            genuine = self._fold_availability()
            available = simulate_availability(np.stack([genuine[k] for k in train_keys]), self.missing_rates,
                                              self.missing_seed)
            never = [n for n, seen in zip(self.modality_names, available.any(axis=0)) if not seen]
            if never:
                raise ModalityError(
                    f"fold {self.fold}: {', '.join(never)} is absent from all {len(train_keys)} training cases "
                    f"(availability {self.availability_source}"
                    f"{', AND missing_rates' if self.missing_rates is not None else ''}); its encoder would never "
                    f"be trained. Use more cases, lower missing rates, or a split that keeps it in every fold's "
                    f"training set")
            self._availability_cache = dict(zip(train_keys, available))
        return self._availability_cache

    def case_availability(self, keys: Sequence[str]) -> torch.Tensor:
        """(B, M) bool on ``self.device``: training cases from the table, validation cases as they are."""
        table, genuine = self._availability_table(), self._fold_availability()
        rows = np.stack([table[k] if k in table else genuine[k] for k in keys])
        return torch.from_numpy(rows).to(self.device)

    def training_modality_mask(self, keys: Sequence[str]) -> torch.Tensor:
        """(B, M) bool: availability with random dropout on top (at least one kept)."""
        return random_dropout_mask(self.case_availability(keys), self.modality_dropout)

    def log_availability(self) -> None:
        """Print where availability came from and the fold's realised missing rates FR^m."""
        table = self._availability_table()
        rates = missing_rates(np.stack(list(table.values())))
        text = ", ".join(f"{n}: {r:.2f}" for n, r in zip(self.modality_names, rates))
        simulated = f", AND missing_rates {self.missing_rates} (seed {self.missing_seed})" if self.missing_rates else ""
        self.print_to_log_file(f"modality availability: {self.availability_source}{simulated}")
        self.print_to_log_file(f"training-set missing rates FR^m ({len(table)} cases): {text}; "
                               f"random modality dropout p = {self.modality_dropout}")
