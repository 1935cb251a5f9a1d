"""Training-time modality masks: the one place where a trainer decides which modalities a sample has.

mask = recorded availability (dataset.json, written by the converter)
       AND simulated missingness (hyperparameter ``missing_rates``, seeded, fixed per case)
       AND per-iteration random dropout (hyperparameter ``modality_dropout``, training only),
with at least one modality kept per sample. Absent channels are zeroed in the input, so a
network never sees a modality the mask calls absent.
"""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np
import torch

from nnunet_prism.modalities import (
    ModalityError,
    missing_rates,
    modality_names,
    random_dropout_mask,
    read_availability,
    sample_availability,
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

    def _availability_table(self) -> Dict[str, np.ndarray]:
        """{case id: (M,) bool} for the training cases of this fold (recorded AND simulated)."""
        if getattr(self, "_availability_cache", None) is None:
            train_keys, _ = self.do_split()
            train_keys = sorted(train_keys)
            available = read_availability(self.dataset_json, train_keys)
            if self.missing_rates is not None:
                rates = validate_rates(self.missing_rates, len(self.modality_names))
                available &= sample_availability(len(train_keys), rates, self.missing_seed)
            empty = [k for k, row in zip(train_keys, available) if not row.any()]
            if empty:
                raise ModalityError(f"case '{empty[0]}' has no modality left after applying missing_rates; "
                                    f"lower the rates or check its recorded availability")
            self._availability_cache = dict(zip(train_keys, available))
        return self._availability_cache

    def case_availability(self, keys: Sequence[str]) -> torch.Tensor:
        """(B, M) bool on ``self.device``: training cases from the table, others as recorded."""
        table = self._availability_table()
        unknown = [k for k in keys if k not in table]
        recorded = dict(zip(unknown, read_availability(self.dataset_json, unknown))) if unknown else {}
        rows = np.stack([table[k] if k in table else recorded[k] for k in keys])
        return torch.from_numpy(rows).to(self.device)

    def training_modality_mask(self, keys: Sequence[str]) -> torch.Tensor:
        """(B, M) bool: availability with random dropout on top (at least one kept)."""
        return random_dropout_mask(self.case_availability(keys), self.modality_dropout)

    def log_availability(self) -> None:
        """Print the fold's realised missing rates FR^m (recorded AND simulated) to the log."""
        table = self._availability_table()
        rates = missing_rates(np.stack(list(table.values())))
        text = ", ".join(f"{n}: {r:.2f}" for n, r in zip(self.modality_names, rates))
        self.print_to_log_file(f"training-set missing rates FR^m ({len(table)} cases): {text}; "
                               f"random modality dropout p = {self.modality_dropout}")
