"""Which (sample, modality) pairs a multi-encoder forward computes, known on the host.

The multi-encoder network encodes and decodes only the present pairs, so the number of rows of
every encoder pass and decoder call depends on the modality mask. ``PairLayout`` reads the mask
once (the forward's one device-to-host copy) and derives everything shape-related from it in
Python; the index tensors the forward needs go to the device in one copy. Nothing after that
waits for the device, and the compiled regions see only tensors (``networks.regions``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np
import torch


@dataclass(frozen=True)
class PairLayout:
    """mask: (B, M) bool, the modalities present. The encoded pairs are the present ones,
    modality-major, samples ascending within a modality; when no sample has any modality,
    every pair is encoded (only for its shapes) and none counts."""
    mask: np.ndarray

    @classmethod
    def of(cls, mask: torch.Tensor) -> "PairLayout":
        return cls(mask.detach().cpu().numpy().astype(bool))

    @property
    def any_present(self) -> bool:
        return bool(self.mask.any())

    @property
    def encoded(self) -> np.ndarray:
        """(B, M) bool: the pairs the encoders run on."""
        return self.mask if self.any_present else np.ones_like(self.mask)

    def pairs(self) -> Tuple[List[int], List[int]]:
        """(samples, modalities) of the encoded pairs, modality-major."""
        modalities, samples = np.nonzero(self.encoded.T)
        return samples.tolist(), modalities.tolist()

    def modality_rows(self) -> List[Tuple[int, int, int]]:
        """(modality, first pair, number of pairs) of every modality with encoded pairs."""
        counts = self.encoded.sum(axis=0)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        return [(m, int(s), int(c)) for m, (s, c) in enumerate(zip(starts, counts)) if c]

    def decoder_row_pairs(self) -> List[List[int]]:
        """For every row of ``PresentEncoding.fused_and_own_weights`` (B fused rows, then one per
        counted pair): the pairs whose skips it mixes (a fused row: its sample's present pairs)."""
        samples, modalities = self.pairs()
        fused = [[p for p, (b, m) in enumerate(zip(samples, modalities)) if b == row and self.mask[b, m]]
                 for row in range(self.mask.shape[0])]
        return fused + ([[p] for p in range(len(samples))] if self.any_present else [])

    def chunk_pairs(self, rows_per_chunk: int) -> List[List[int]]:
        """The pairs each chunk of ``rows_per_chunk`` decoder rows uses (ascending); a chunk that
        uses none (samples without any modality) gets pair 0, whose skips give the shapes."""
        rows = self.decoder_row_pairs()
        chunks = [sorted(set().union(*rows[start:start + rows_per_chunk]))
                  for start in range(0, len(rows), rows_per_chunk)]
        return [chunk or [0] for chunk in chunks]

    def index_tensors(self, device: torch.device, rows_per_chunk: Optional[int] = None
                      ) -> Tuple[torch.Tensor, torch.Tensor, List[torch.Tensor]]:
        """(samples (P,), modalities (P,), the pairs of every decoder chunk (``chunk_pairs``; none
        without ``rows_per_chunk``)), long, on ``device``, in one host-to-device copy."""
        samples, modalities = self.pairs()
        chunks = self.chunk_pairs(rows_per_chunk) if rows_per_chunk else []
        flat = torch.tensor(samples + modalities + [p for chunk in chunks for p in chunk], dtype=torch.long)
        parts = flat.to(device).split([len(samples), len(modalities)] + [len(chunk) for chunk in chunks])
        return parts[0], parts[1], list(parts[2:])
