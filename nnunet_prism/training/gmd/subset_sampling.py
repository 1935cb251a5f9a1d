"""The modality subsets GMD trains on in a step (AAAI 2024: "sample k, e.g. 5" of the 2^M - 1
non-empty subsets), dealt so that every subset comes up regularly."""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch

from nnunet_prism.modalities import all_subsets, subset_masks


class SubsetSampler:
    """k distinct non-empty modality subsets per step, covering all 2^M - 1 subsets over time.

    The subsets are dealt from shuffled decks of all 2^M - 1: each step takes the next k cards;
    when the deck runs short a new shuffled deck is appended (cards already in this step's hand
    are moved back so a step never holds one subset twice). Every subset therefore appears at
    least once in any 2 * ceil((2^M - 1) / k) consecutive steps. ``k = None`` or k >= 2^M - 1:
    all subsets every step. Seeded, so every DDP rank draws the same subsets.
    """

    def __init__(self, num_modalities: int, k: Optional[int] = 5, seed: int = 0):
        self.subsets: List[Tuple[int, ...]] = all_subsets(num_modalities)
        self.masks = torch.from_numpy(subset_masks(num_modalities))
        total = len(self.subsets)
        if k is not None and k < 1:
            raise ValueError(f"GMD needs at least one subset per step, got k={k}")
        self.k = total if k is None else min(int(k), total)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.deck: List[int] = []

    def sample(self) -> List[int]:
        """Indices (into ``self.subsets``) of this step's k subsets."""
        if self.k == len(self.subsets):
            return list(range(self.k))
        if len(self.deck) < self.k:
            fresh = [int(i) for i in torch.randperm(len(self.subsets), generator=self.generator)]
            head = set(self.deck)
            # a subset still in the old deck goes to the back of the new one: no duplicates in a hand
            fresh = [i for i in fresh if i not in head] + [i for i in fresh if i in head]
            self.deck = self.deck + fresh
        hand, self.deck = self.deck[:self.k], self.deck[self.k:]
        return hand

    def sample_masks(self) -> torch.Tensor:
        """(k, M) bool masks of this step's subsets."""
        return self.masks[self.sample()]

    def state_dict(self) -> dict:
        return {"k": self.k, "deck": list(self.deck), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.deck = list(state["deck"])
        self.generator.set_state(state["generator"])
