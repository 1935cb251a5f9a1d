"""Gradient-guided modality decoupling (GMD, AAAI 2024): pure functions on flattened gradients.

G: (K, P) — one row per sampled modality subset C_j, the gradient G_j = grad_theta L(F(H_j), Y)
of that subset's loss on the P shared parameters theta (Eq. 3).

* ``pairwise_cosine``: S_jk = G_j . G_k / (|G_j| |G_k|) (Eq. 5).
* ``project_conflicting``: where S_jk < 0, remove from G_j its projection on G_k,
  G~_j = G_j - (G_j . G_k / |G_k|^2) G_k (Eq. 8), for every conflicting pair.
* ``combine``: the sum of the corrected gradients (Eq. 9 for two subsets); ``"mean"``, or
  ``"official"`` (the official GMD code: mean on the entries every subset has a gradient for,
  sum on the others).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

import torch


def pairwise_cosine(grads: torch.Tensor, eps: float = 1e-30) -> torch.Tensor:
    """S (K, K) with S_jk the cosine similarity of rows j and k of ``grads`` (K, P) (Eq. 5).
    Computed in float64 so that huge or tiny gradient norms neither overflow nor vanish."""
    g = grads.double()
    norms = g.norm(dim=1).clamp_min(eps)
    return (g @ g.T) / (norms[:, None] * norms[None, :])


def project_conflicting(grads: torch.Tensor, order: Optional[List[List[int]]] = None,
                        generator: Optional[torch.Generator] = None, include_self: bool = False) -> torch.Tensor:
    """GMD's decoupling (Eq. 8), extended to K subsets the way the paper describes ("the same
    process for any pair with a negative cosine").

    grads (K, P) -> corrected (K, P). For every j, starting from G~_j = G_j, for each other k
    (in ``order[j]``, or a random order from ``generator``): if G~_j . G_k < 0,
    G~_j <- G~_j - (G~_j . G_k / |G_k|^2) G_k. Projections are always on the *original* G_k,
    so for K = 2 this is exactly Eq. 8 applied to both gradients. Zero rows stay zero. The
    order only matters for K > 2 (as in PCGrad, which the official code uses; random there too).
    include_self=True (the official GMD code): every G~_j is projected against all K gradients in a
    random order (a fresh permutation per j and step, as its in-place shuffle gives), itself
    included: once G~_j has turned against its own original G_j, that component is removed too.
    Computed in float64, returned in ``grads.dtype``.
    """
    g = grads.double()
    sq_norms = (g * g).sum(dim=1)
    corrected = g.clone()
    k_total = g.shape[0]
    for j in range(k_total):
        others = order[j] if order is not None else \
            [int(i) for i in torch.randperm(k_total, generator=generator) if include_self or int(i) != j]
        for k in others:
            if (k == j and not include_self) or sq_norms[k] == 0:
                continue
            dot = corrected[j] @ g[k]
            if dot < 0:
                corrected[j] -= (dot / sq_norms[k]) * g[k]
    return corrected.to(grads.dtype)


REDUCTIONS = ("sum", "mean", "official")


def combine(corrected: torch.Tensor, reduction: str = "sum", has_grads: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The update for theta from the corrected gradients (K, P) -> (P,): the sum (Eq. 9), the
    mean, or "official" (the official GMD code's merge): the mean on the entries where every row
    has a gradient (``has_grads`` (K, P), nonzero = has one), the sum on the others (where the
    projection may have written values into rows without a gradient; they are summed too)."""
    if reduction == "sum":
        return corrected.sum(dim=0)
    if reduction == "mean":
        return corrected.mean(dim=0)
    if reduction == "official":
        if has_grads is None:
            raise ValueError("the official GMD merge needs has_grads")
        shared = (has_grads != 0).all(dim=0)
        return torch.where(shared, corrected.mean(dim=0), corrected.sum(dim=0))
    raise ValueError(f"GMD reduction must be one of {REDUCTIONS}, got {reduction!r}")


def eq9_pair(g_j: torch.Tensor, g_k: torch.Tensor) -> torch.Tensor:
    """Eq. 9 for one conflicting pair: (1 - G_k.G_j/|G_j|^2) G_j + (1 - G_k.G_j/|G_k|^2) G_k."""
    dot = g_j @ g_k
    return (1 - dot / (g_j @ g_j)) * g_j + (1 - dot / (g_k @ g_k)) * g_k


@dataclass
class ConflictStatistics:
    """Figure 3 of the paper, for one step: over the K(K-1)/2 pairs of subset gradients, the
    fraction with negative cosine and the mean cosine before and after decoupling."""
    pairs: int
    conflicting: int
    cosine_sum_before: float
    cosine_sum_after: float

    @property
    def conflict_fraction(self) -> float:
        return self.conflicting / self.pairs if self.pairs else float("nan")

    def as_array(self) -> List[float]:
        return [float(self.pairs), float(self.conflicting), self.cosine_sum_before, self.cosine_sum_after]


def conflict_statistics(before: torch.Tensor, after: torch.Tensor) -> ConflictStatistics:
    """Pair counts and cosine sums (not means, so that steps and ranks can be added up) of the
    gradients (K, P) before and after ``project_conflicting``."""
    k_total = before.shape[0]
    upper = torch.triu_indices(k_total, k_total, offset=1)
    cos_before = pairwise_cosine(before)[upper[0], upper[1]]
    cos_after = pairwise_cosine(after)[upper[0], upper[1]]
    return ConflictStatistics(int(upper.shape[1]), int((cos_before < 0).sum()),
                              float(cos_before.sum()), float(cos_after.sum()))


def summarise_statistics(rows) -> Dict[str, float]:
    """Sum of ``ConflictStatistics.as_array()`` rows (N, 4) -> conflict fraction and mean
    cosine before/after over all pairs (NaN when there was no pair)."""
    pairs, conflicting, before, after = (float(v) for v in torch.as_tensor(rows, dtype=torch.float64).reshape(-1, 4).sum(0))
    nan = float("nan")
    return {"conflict_fraction": conflicting / pairs if pairs else nan,
            "cosine_before": before / pairs if pairs else nan,
            "cosine_after": after / pairs if pairs else nan}
