"""Modality masks, modality subsets, availability and missing-rate sampling.

One idea carries through the package: a *modality mask*, a boolean tensor or array of shape
(batch, M) that is True where a modality is present. This module builds masks, names the
2^M - 1 non-empty subsets in one stable order, reads and writes the per-case availability
matrix C that the dataset converter records in ``dataset.json``, and samples reproducible
per-case missingness from per-modality missing rates (PASSION's "mr2468" setting).

Notation follows PASSION (ACM MM 2024): C in {0,1}^(N x M), FR^m = 1 - mean_n C_nm.
"""
from __future__ import annotations

import itertools
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from nnunet_prism.errors import NnunetPrismError

#: Key under which the converter stores per-case availability in ``dataset.json``:
#: ``{"<case id>": [1, 0, 1, 1], ...}`` in the order of ``channel_names``. nnU-Net copies
#: ``dataset.json`` into the preprocessed folder, so trainers find it there.
AVAILABILITY_KEY = "modality_availability"

#: BraTS modality names in the channel order used throughout the package.
BRATS_MODALITIES: Tuple[str, ...] = ("FLAIR", "T1", "T1c", "T2")


class ModalityError(NnunetPrismError, ValueError):
    """A user-visible problem with modalities (no modality present, bad rates, ...)."""


def modality_names(dataset_json: Mapping) -> List[str]:
    """Channel names of an nnU-Net ``dataset.json`` in channel order (``channel_names`` or the
    older ``modality`` key)."""
    channels = dataset_json.get("channel_names", dataset_json.get("modality"))
    if not channels:
        raise ModalityError("dataset.json has no 'channel_names'; cannot tell the modalities apart.")
    return [channels[k] for k in sorted(channels, key=int)]


def all_subsets(num_modalities: int) -> List[Tuple[int, ...]]:
    """All 2^M - 1 non-empty subsets of range(M) as sorted index tuples, in a stable order:
    by size first (unimodal subsets first, the full set last), then lexicographically.

    >>> all_subsets(2)
    [(0,), (1,), (0, 1)]
    """
    if num_modalities < 1:
        raise ModalityError(f"need at least one modality, got {num_modalities}")
    return [c for r in range(1, num_modalities + 1)
            for c in itertools.combinations(range(num_modalities), r)]


def subset_name(subset: Iterable[int], names: Sequence[str]) -> str:
    """Readable name of a subset, e.g. ``(0, 2) -> "FLAIR+T1c"`` for BraTS names."""
    return "+".join(names[i] for i in sorted(subset))


def parse_subset_name(text: str, names: Sequence[str]) -> np.ndarray:
    """Inverse of ``subset_name``: ``"FLAIR+T1c"`` -> (M,) bool mask in the order of ``names``.

    Parts are stripped and may come in any order; unknown or no names -> one-line ModalityError.
    """
    parts = [p.strip() for p in str(text).split("+") if p.strip()]
    unknown = [p for p in parts if p not in names]
    if not parts or unknown:
        raise ModalityError(f"subset {text!r}: expected modality names joined by '+' from {list(names)}"
                            + (f", unknown {unknown}" if unknown else ""))
    return np.array([n in parts for n in names], dtype=bool)


def subset_to_mask(subset: Iterable[int], num_modalities: int) -> np.ndarray:
    """Boolean mask of shape (M,) that is True for the modalities of ``subset``."""
    mask = np.zeros(num_modalities, dtype=bool)
    mask[list(subset)] = True
    return mask


def subset_masks(num_modalities: int) -> np.ndarray:
    """All non-empty subsets as a boolean array of shape (2^M - 1, M), order of ``all_subsets``."""
    return np.stack([subset_to_mask(s, num_modalities) for s in all_subsets(num_modalities)])


def mask_from_nonzero_channels(x, eps: float = 0.0):
    """Modality mask (B, M) from an input batch (B, M, *spatial): a channel counts as present
    unless it is all zero (``|x| <= eps`` everywhere). Works for torch tensors and numpy arrays."""
    flat = x.reshape(x.shape[0], x.shape[1], -1)
    if hasattr(flat, "abs"):  # torch
        return flat.abs().amax(dim=2) > eps
    return np.abs(flat).max(axis=2) > eps


def zero_absent_channels(data, mask):
    """data (B, M, *spatial) torch tensor with every channel whose mask (B, M) entry is False set
    to zero (the input a network sees for a modality mask, in training and inference)."""
    shape = mask.shape + (1,) * (data.ndim - 2)
    return data * mask.reshape(shape).to(device=data.device, dtype=data.dtype)


def missing_rates(availability: np.ndarray) -> np.ndarray:
    """FR^m = (N - sum_n C_nm) / N for an availability matrix C of shape (N, M) -> shape (M,)."""
    availability = np.asarray(availability, dtype=bool)
    if availability.ndim != 2 or availability.shape[0] == 0:
        raise ModalityError(f"availability must be a non-empty (N, M) matrix, got shape {availability.shape}")
    return 1.0 - availability.mean(axis=0)


def parse_rates(text: str, num_modalities: int) -> np.ndarray:
    """Parse ``"0.2,0.4,0.6,0.8"`` into per-modality missing rates, each in [0, 1)."""
    try:
        rates = np.array([float(v) for v in text.split(",")], dtype=float)
    except ValueError:
        raise ModalityError(f"missing rates must be comma-separated numbers, got '{text}'") from None
    return validate_rates(rates, num_modalities)


def validate_rates(rates: Sequence[float], num_modalities: int) -> np.ndarray:
    rates = np.asarray(rates, dtype=float)
    if rates.shape != (num_modalities,):
        raise ModalityError(f"need one missing rate per modality ({num_modalities}), got {len(rates)}")
    if not np.all((rates >= 0) & (rates < 1)):  # also refuses NaN, which compares False
        raise ModalityError(f"every missing rate must lie in [0, 1) so each modality is seen at least "
                            f"once, got {', '.join(f'{r:g}' for r in rates)}")
    return rates


def sample_availability(num_cases: int, rates: Sequence[float], seed: int) -> np.ndarray:
    """Reproducible per-case missingness: (N, M) boolean availability matrix.

    Exactly round(FR^m * N) cases miss modality m (so the realised rates match the requested
    ones as closely as N allows), chosen by a seeded permutation; then every case left with no
    modality gets one back, taken from the modality with the lowest requested rate among those
    whose quota allows it. Every column keeps at least one present case (FR^m < 1).
    """
    rates = validate_rates(rates, len(rates))
    if num_cases < 1:
        raise ModalityError("need at least one case to sample missingness for")
    rng = np.random.default_rng(seed)
    n_missing = np.minimum(np.round(rates * num_cases).astype(int), num_cases - 1)
    available = np.ones((num_cases, len(rates)), dtype=bool)
    for m, k in enumerate(n_missing):
        available[rng.permutation(num_cases)[:k], m] = False
    # Repair empty cases: restore the modality that is least often missing for this case, and to
    # keep the column's realised rate, remove it from a case that has at least two others.
    for n in np.flatnonzero(~available.any(axis=1)):
        m = int(np.argmin(rates))
        available[n, m] = True
        donors = [d for d in rng.permutation(num_cases) if available[d, m] and available[d].sum() >= 2 and d != n]
        if donors:
            available[donors[0], m] = False
    return available


def simulate_availability(genuine: np.ndarray, rates: Optional[Sequence[float]], seed: int) -> np.ndarray:
    """The one rule for simulated missingness (used by the converter's ``--missing-rates`` and the
    trainers' ``missing_rates``): availability (N, M) bool = ``genuine`` AND
    ``sample_availability(N, rates, seed)``.

    ``genuine`` (N, M): what each case really has, rows in the order the cases are sampled in
    (sorted case ids). A case the AND leaves empty gets back its genuinely present modality with
    the lowest requested rate, so every case keeps >= 1 (a case with nothing genuine is an error).
    """
    genuine = np.asarray(genuine, dtype=bool)
    empty = np.flatnonzero(~genuine.any(axis=1)) if genuine.size else []
    if len(empty):
        raise ModalityError(f"case {int(empty[0])} (in sorted order) has no modality before simulation")
    if rates is None or genuine.shape[0] == 0:
        return genuine.copy()
    rates = validate_rates(rates, genuine.shape[1])
    available = genuine & sample_availability(genuine.shape[0], rates, seed)
    for n in np.flatnonzero(~available.any(axis=1)):
        candidates = np.flatnonzero(genuine[n])
        available[n, candidates[np.argmin(rates[candidates])]] = True
    return available


def availability_to_json(case_ids: Sequence[str], availability: np.ndarray) -> Dict[str, List[int]]:
    """{case id: [0/1, ...]} for ``dataset.json``."""
    return {c: [int(v) for v in row] for c, row in zip(case_ids, np.asarray(availability, dtype=bool))}


def read_availability(dataset_json: Mapping, case_ids: Sequence[str]) -> np.ndarray:
    """Availability matrix (N, M) for ``case_ids`` from a ``dataset.json``. Cases without a
    record (or datasets converted without this package) count as complete."""
    num_modalities = len(modality_names(dataset_json))
    record = dataset_json.get(AVAILABILITY_KEY, {})
    rows = []
    for case in case_ids:
        row = record.get(case, [1] * num_modalities)
        if len(row) != num_modalities:
            raise ModalityError(f"case '{case}': availability record has {len(row)} entries, "
                                f"dataset has {num_modalities} modalities")
        rows.append(row)
    return np.asarray(rows, dtype=bool).reshape(len(case_ids), num_modalities)


def random_dropout_mask(available, drop_probability: float, generator=None):
    """Drop whole modalities at random on top of a (B, M) availability mask, keeping at least one
    present modality per sample. torch.bool in, torch.bool out.

    Each present modality is dropped independently with ``drop_probability``; a sample whose
    draw drops everything keeps one of its present modalities, chosen uniformly.
    """
    import torch

    available = available.bool()
    if drop_probability <= 0:
        return available.clone()
    if not bool(available.any(dim=1).all()):
        raise ModalityError("a sample has no modality present before dropout")
    keep = torch.rand(available.shape, generator=generator, device="cpu").to(available.device) >= drop_probability
    mask = available & keep
    empty = ~mask.any(dim=1)
    if empty.any():
        # one uniformly chosen present modality per empty sample
        scores = torch.rand(available.shape, generator=generator, device="cpu").to(available.device)
        scores = scores.masked_fill(~available, -1.0)
        chosen = torch.nn.functional.one_hot(scores.argmax(dim=1), available.shape[1]).bool()
        mask = torch.where(empty[:, None], chosen, mask)
    return mask
