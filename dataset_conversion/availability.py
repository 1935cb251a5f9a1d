"""Per-case modality availability of a converted set: what the files hold, optionally AND a
reproducible simulated missingness (PASSION's imbalanced "mr2468" setting)."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from dataset_conversion.errors import ConversionError
from nnunet_prism.modalities import ModalityError, validate_rates
from nnunet_prism.modalities import simulate_availability as simulate


def check_rates(rates: Optional[Sequence[float]], num_modalities: int) -> Optional[np.ndarray]:
    """Validated per-modality missing rates (None stays None); bad rates are a ConversionError."""
    if rates is None:
        return None
    try:
        return validate_rates(rates, num_modalities)
    except ModalityError as e:
        raise ConversionError(str(e)) from None


def simulate_availability(genuine: np.ndarray, rates: Optional[Sequence[float]], seed: int) -> np.ndarray:
    """``nnunet_prism.modalities.simulate_availability`` (the rule the trainers' ``missing_rates``
    follow too) with its errors as ConversionError. ``genuine`` (N, M): modality file present and
    not all zero, rows in the order of the sorted case ids."""
    try:
        return simulate(genuine, check_rates(rates, np.shape(genuine)[1]) if rates is not None else None, seed)
    except ModalityError as e:
        raise ConversionError(str(e)) from None
