"""The backward pass of GMD on a dynamic sharing network: per-subset gradients of the shared
parameters from one forward pass, reduced over DDP ranks, decoupled (Eq. 8), combined (Eq. 9)
and written to ``.grad``; modality-specific parameters get the summed gradient.

Cost: one autograd pass through the shared decoder per subset (the forward and the encoders'
backward happen once): ``torch.autograd.grad(L_j, theta + skips, retain_graph=True)`` gives
G_j and dL_j/dskips; the summed skip gradients then go through the encoders in one pass.

GradScaler: every L_j is multiplied by the same scale s; gradients are divided by s before
the reduction and the projection and multiplied by s again when written, so the caller's
``scaler.unscale_`` / ``scaler.step`` see ordinary scaled gradients (s is a power of two: exact).
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

import torch
from torch import distributed as dist

from nnunet_prism.training.distributed import is_distributed
from nnunet_prism.training.gmd.decoupling import (ConflictStatistics, combine, conflict_statistics,
                                                       project_conflicting)


def average_over_ranks(flat: torch.Tensor) -> torch.Tensor:
    """In-place mean of ``flat`` over all DDP ranks (what DDP does to gradients); no-op alone."""
    if is_distributed():
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= dist.get_world_size()
    return flat


def loss_scale(grad_scaler, device) -> float:
    """The GradScaler's current scale s (1.0 without a scaler). Goes through ``scaler.scale``,
    which creates the scale tensor on first use; ``get_scale()`` alone would leave it unset and
    ``unscale_`` would then refuse to run."""
    if grad_scaler is None:
        return 1.0
    return float(grad_scaler.scale(torch.ones((), device=device)))


def _flat(tensors: Sequence[Optional[torch.Tensor]], like: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([(t if t is not None else torch.zeros_like(p)).reshape(-1).float()
                      for t, p in zip(tensors, like)])


def _write_grads(params: Sequence[torch.nn.Parameter], flat: torch.Tensor) -> None:
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).to(p.dtype).clone()
        offset += n


def pack_gradients(params: Sequence[torch.nn.Parameter], losses: Sequence[torch.Tensor], retain_graph: bool = True):
    """Per-objective flattened gradients (K, P) and where each objective has one (K, P) 0/1,
    as the official GMD code packs them: a parameter that an objective does not reach (autograd:
    None) gets zeros and has_grads 0."""
    grads, has = [], []
    for loss in losses:
        out = torch.autograd.grad(loss, list(params), retain_graph=retain_graph, allow_unused=True)
        grads.append(_flat(out, params))
        has.append(torch.cat([torch.full((p.numel(),), float(g is not None), device=p.device)
                              for g, p in zip(out, params)]))
    return torch.stack(grads), torch.stack(has)


def gmd_backward(shared: Sequence[torch.nn.Parameter], specific: Sequence[torch.nn.Parameter],
                 skips: Sequence[torch.Tensor], losses: Sequence[Optional[torch.Tensor]], scale: float = 1.0,
                 reduction: str = "sum", generator: Optional[torch.Generator] = None,
                 reduce: Callable[[torch.Tensor], torch.Tensor] = average_over_ranks,
                 include_self: bool = False, specific_used: Optional[torch.Tensor] = None,
                 ) -> Optional[ConflictStatistics]:
    """Set ``.grad`` of ``shared`` (theta: the GMD update) and ``specific`` (encoders: summed).

    shared: parameters every subset uses; specific: the rest, reached through ``skips`` (the
    encoder outputs the shared decoder consumed); losses: one scalar per sampled subset, None
    where this rank has no sample for it. Rows of subsets without a gradient on any rank are
    left out of the projection. Returns the conflict statistics; None with fewer than two
    subsets, or with non-finite gradients (whose step the GradScaler then skips).
    include_self: the official projection order (``project_conflicting``).
    reduction="official" (the official GMD code): theta is every parameter; each subset's gradient
    of the encoders is computed too (one encoder backward per subset), the full vectors are
    projected and merged by ``combine(..., "official")``. ``specific_used`` (K, len(specific))
    says which specific parameters each subset reaches (its modalities' encoders); those it does
    not reach count as without gradient, as the official code's ``p.grad is None``.
    """
    if reduction == "official":
        return _official_backward(shared, specific, skips, losses, scale, generator, reduce, include_self,
                                  specific_used)
    num_shared = sum(p.numel() for p in shared)
    grads = torch.zeros(len(losses), num_shared, device=skips[0].device)
    skip_grads: List[Optional[torch.Tensor]] = [None] * len(skips)
    owned = [False] * len(skips)  # skip_grads[i] is a sum of ours (autograd's own may be a view)
    present = [j for j, loss in enumerate(losses) if loss is not None]
    for n, j in enumerate(present):
        out = torch.autograd.grad(losses[j] * scale, [*shared, *skips], retain_graph=n < len(present) - 1,
                                  allow_unused=True)
        grads[j] = _flat(out[:len(shared)], shared) / scale
        for i, g in enumerate(out[len(shared):]):  # summed in place where we may: two skip-sized tensors, not three
            if g is None:
                continue
            if skip_grads[i] is None:
                skip_grads[i] = g
            elif owned[i]:
                skip_grads[i].add_(g)
            else:
                skip_grads[i], owned[i] = skip_grads[i] + g, True
    pairs = [(s, g) for s, g in zip(skips, skip_grads) if g is not None]
    specific_grads: List[Optional[torch.Tensor]] = [None] * len(specific)
    if pairs:
        specific_grads = list(torch.autograd.grad([s for s, _ in pairs], list(specific),
                                                  grad_outputs=[g for _, g in pairs], allow_unused=True))
    flat = torch.cat([grads.reshape(-1), _flat(specific_grads, specific) / scale])
    flat = reduce(flat)
    grads, specific_flat = flat[:grads.numel()].view_as(grads), flat[grads.numel():]

    rows = grads[grads.abs().sum(dim=1) > 0]  # subsets with a gradient on some rank
    corrected, stats = _decouple(rows, bool(torch.isfinite(flat).all()), generator, include_self)
    update = combine(corrected, reduction) if rows.shape[0] else grads.new_zeros(num_shared)
    _write_grads(shared, update * scale)
    _write_grads(specific, specific_flat * scale)
    return stats


def held_gradient_bytes(skips: Sequence[torch.Tensor], shared: Sequence[torch.nn.Parameter], num_losses: int,
                        reduction: str = "sum", specific: Sequence[torch.nn.Parameter] = ()) -> Tuple[int, int]:
    """Bytes ``gmd_backward`` holds beside the autograd graph during its subset passes, as
    (grows with the patch, fixed): the accumulated gradients at the skips (skip-sized, float32)
    and the (K, |theta|) per-subset gradients (float32; ``reduction="official"``: theta is every
    parameter, and the per-subset encoder gradients replace the skip accumulators)."""
    theta = [*shared, *specific] if reduction == "official" else list(shared)
    fixed = num_losses * sum(p.numel() for p in theta) * 4
    return (0 if reduction == "official" else sum(s.numel() for s in skips) * 4), fixed


def _decouple(rows: torch.Tensor, finite: bool, generator, include_self: bool):
    """(corrected rows, conflict statistics): Eq. 8 on two or more finite rows, else the rows
    unchanged and no statistics (a non-finite step is skipped by the GradScaler)."""
    if rows.shape[0] < 2 or not finite:
        return rows, None
    corrected = project_conflicting(rows, generator=generator, include_self=include_self)
    return corrected, conflict_statistics(rows, corrected)


def _official_backward(shared, specific, skips, losses, scale, generator, reduce, include_self, specific_used):
    """``gmd_backward`` with reduction="official": every parameter is theta (see there)."""
    params = [*shared, *specific]
    sizes = torch.tensor([p.numel() for p in params], device=skips[0].device)
    grads = torch.zeros(len(losses), int(sizes.sum()), device=skips[0].device)
    has = torch.zeros(len(losses), len(params), device=skips[0].device)  # per parameter, reduced over ranks
    for j, loss in enumerate(losses):
        if loss is None:
            continue
        out = torch.autograd.grad(loss * scale, [*shared, *skips], retain_graph=True, allow_unused=True)
        pairs = [(s, g) for s, g in zip(skips, out[len(shared):]) if g is not None]
        spec = (torch.autograd.grad([s for s, _ in pairs], list(specific), grad_outputs=[g for _, g in pairs],
                                    retain_graph=True, allow_unused=True) if pairs else [None] * len(specific))
        grads[j] = _flat([*out[:len(shared)], *spec], params) / scale
        used = specific_used[j].float() if specific_used is not None else \
            torch.tensor([float(g is not None) for g in spec], device=has.device)
        has[j] = torch.cat([torch.tensor([float(g is not None) for g in out[:len(shared)]], device=has.device),
                            used.to(has.device)])
    flat = reduce(torch.cat([grads.reshape(-1), has.reshape(-1)]))
    grads, has = flat[:grads.numel()].view_as(grads), flat[grads.numel():].view_as(has) > 0
    keep = has.any(dim=1)  # subsets with a gradient on some rank
    rows, has_rows = grads[keep], torch.repeat_interleave(has[keep], sizes, dim=1)
    corrected, stats = _decouple(rows, bool(torch.isfinite(grads).all()), generator, include_self)
    update = combine(corrected, "official", has_rows) if rows.shape[0] else grads.new_zeros(grads.shape[1])
    _write_grads(params, update * scale)
    return stats


def summed_backward(params: Sequence[torch.nn.Parameter], losses: Sequence[Optional[torch.Tensor]],
                    scale: float = 1.0,
                    reduce: Callable[[torch.Tensor], torch.Tensor] = average_over_ranks) -> None:
    """DS without GMD: one backward of sum_j L_j, gradients averaged over ranks, into ``.grad``."""
    present = [loss for loss in losses if loss is not None]
    if present:
        grads = torch.autograd.grad(torch.stack(present).sum() * scale, list(params), allow_unused=True)
    else:
        grads = [None] * len(params)
    _write_grads(params, reduce(_flat(grads, params)))
