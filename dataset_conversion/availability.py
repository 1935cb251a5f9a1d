"""Per-case modality availability of a converted set: what the files hold, optionally AND a
reproducible simulated missingness (PASSION's imbalanced "mr2468" setting)."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from dataset_conversion.errors import ConversionError
from nnunet_prism.modalities import ModalityError, sample_availability, validate_rates


def check_rates(rates: Optional[Sequence[float]], num_modalities: int) -> Optional[np.ndarray]:
    """Validated per-modality missing rates (None stays None); bad rates are a ConversionError."""
    if rates is None:
        return None
    try:
        return validate_rates(rates, num_modalities)
    except ModalityError as e:
        raise ConversionError(str(e)) from None


def simulate_availability(genuine: np.ndarray, rates: Optional[Sequence[float]], seed: int) -> np.ndarray:
    """Availability (N, M) bool = ``genuine`` AND ``sample_availability(N, rates, seed)``.

    ``genuine`` (N, M): modality file present and not all zero, rows in the order the cases are
    sampled in (the converter sorts by case id). A case the AND leaves empty gets back its
    genuinely present modality with the lowest requested rate, so every case keeps >= 1.
    """
    genuine = np.asarray(genuine, dtype=bool)
    if rates is None or genuine.shape[0] == 0:
        return genuine.copy()
    rates = check_rates(rates, genuine.shape[1])
    available = genuine & sample_availability(genuine.shape[0], rates, seed)
    for n in np.flatnonzero(~available.any(axis=1)):
        candidates = np.flatnonzero(genuine[n])
        available[n, candidates[np.argmin(rates[candidates])]] = True
    return available
