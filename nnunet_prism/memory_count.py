"""Count the activation memory of a training step on any device, without a GPU: the bytes
autograd saves for the backward pass (``SavedBytes``), and from them an estimate of what a
trainer's step needs at a plan (``nnunet_prism doctor --vram GB`` without ``--cuda``).

The count is exact for the batch it sees and linear in the patch's voxels, so a small patch
scaled to the plan's gives the plan's count (the few patch-independent tensors are scaled too).
It counts float32 activations and neither gradients in flight nor the temporaries of a forward
pass, so it ranks trainers and savings, and ``estimate_need`` turns it into GiB only relative to
nnU-Net's own network, whose need nnU-Net's planner estimates (``nnunet_vram_estimate``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence

import numpy as np
import torch
import torch.utils.checkpoint

GIB = 2 ** 30


class SavedBytes:
    """Context manager: the storage bytes of the tensors autograd saves inside it, each storage
    counted once; storages in ``exclude`` (parameters) are left out.

    Activation checkpoints (``torch.utils.checkpoint.checkpoint``) inside it are accounted too:
    their tensor arguments count as saved (they are held for the recomputation), and each
    region is run once more under its own counter to find ``largest_region``: the most bytes a
    region re-materialises in the backward pass beyond what is saved anyway (regions are
    recomputed one at a time, so the backward peak is about ``total + largest_region``)."""

    def __init__(self, exclude=(), include=()):
        self.exclude = list(exclude)
        self.excluded = {t.untyped_storage().data_ptr() for t in self.exclude}
        self.storages = {}
        self.largest_region = 0
        self.regions = 0
        for t in include:
            self._add(t)

    def _add(self, t: torch.Tensor):
        storage = t.untyped_storage()
        if storage.data_ptr() not in self.excluded and storage.nbytes():
            self.storages[storage.data_ptr()] = max(self.storages.get(storage.data_ptr(), 0), storage.nbytes())

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        self._add(t)
        return t

    def _checkpoint(self, function, *args, **kwargs):
        for a in args:
            for t in (a if isinstance(a, (list, tuple)) else [a]):
                if isinstance(t, torch.Tensor):
                    self._add(t)
        with SavedBytes(exclude=self.exclude) as region:
            function(*args)  # measurement only: what the recomputation will save
        extra = sum(n for ptr, n in region.storages.items() if ptr not in self.storages)
        self.largest_region = max(self.largest_region, extra)
        self.regions += 1
        return self._real_checkpoint(function, *args, **kwargs)

    def __enter__(self):
        self._real_checkpoint = torch.utils.checkpoint.checkpoint
        torch.utils.checkpoint.checkpoint = self._checkpoint
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self._hooks.__exit__(*exc)
        torch.utils.checkpoint.checkpoint = self._real_checkpoint

    @property
    def total(self) -> int:
        return sum(self.storages.values())


def count_step(network: torch.nn.Module, step, include: Sequence[torch.Tensor] = ()) -> SavedBytes:
    """The ``SavedBytes`` of ``step()`` (a training forward and loss of ``network``): every saved
    tensor but the parameters, plus ``include`` (the input batch)."""
    network.train()
    with SavedBytes(exclude=list(network.parameters()), include=include) as counter:
        result = step()
    del result
    return counter


def reduced_patch(patch: Sequence[int], strides: Sequence[Sequence[int]], max_voxels: int = 2 ** 16) -> List[int]:
    """The plan's ``patch`` halved, one axis at a time, while it has more than ``max_voxels``
    voxels: the axis with the most bottleneck voxels (patch / the network's total stride on
    that axis, ``strides`` the plan's per-stage strides; ties: the first axis) among those whose
    half stays a multiple of the total stride."""
    total = np.prod(np.vstack(strides), axis=0).astype(int)
    patch = [int(p) for p in patch]
    while np.prod(patch) > max_voxels:
        axes = [a for a in range(len(patch)) if patch[a] % (2 * total[a]) == 0]
        if not axes:
            break
        axis = max(axes, key=lambda a: (patch[a] // total[a], -a))
        patch[axis] //= 2
    return patch


def nnunet_vram_estimate(network: torch.nn.Module, patch: Sequence[int], batch_size: int) -> float:
    """GiB nnU-Net's planner estimates for ``network`` (nnU-Net's own) at this patch and batch:
    its feature-map count against the planner's reference (560e6 for a 3D batch of 2, 85e6 for a
    2D batch of 12, both standing for 8 GB; ``ExperimentPlanner``). Measured on an H200 at the
    BraTS2021-like plan (128^3, batch 2): 6.48 estimated, 4.76 GiB peak of an AMP step, so the
    estimate is on the safe side."""
    reference, reference_batch = (560e6, 2) if len(patch) == 3 else (85e6, 12)
    return float(network.compute_conv_feature_map_size(list(patch))) * batch_size / reference_batch / reference * 8


@dataclass(frozen=True)
class Fit:
    """Whether a step needing ``need`` GiB fits a budget of ``budget`` GiB; ``margin`` is what is
    left (negative: how much it misses by)."""
    need: float
    budget: float

    @property
    def fits(self) -> bool:
        return self.need <= self.budget

    @property
    def margin(self) -> float:
        return self.budget - self.need

    def describe(self) -> str:
        if self.fits:
            return f"fits {self.budget:g} GiB ({self.need:.2f} GiB, {self.margin:.2f} GiB to spare)"
        return f"DOES NOT FIT {self.budget:g} GiB: needs {self.need:.2f} GiB, {-self.margin:.2f} GiB over"


def estimate_need(counted: float, nnunet_counted: float, nnunet_need: float) -> float:
    """GiB a trainer's step needs, estimated from the counts: its counted bytes (saved + the
    largest recomputed region) relative to nnU-Net's own network's at the same plan, times what
    that network needs (``nnunet_vram_estimate``, or a measured peak)."""
    return counted / nnunet_counted * nnunet_need
