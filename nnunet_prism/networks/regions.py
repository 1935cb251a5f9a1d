"""torch.compile for a network whose forward has data-dependent shapes: compile its regions of
fixed structure, keep the orchestration between them eager.

nnU-Net compiles the whole network on CUDA (``torch.compile(network)``). A multi-encoder
network that encodes only the present (sample, modality) pairs cannot be one graph: how many
rows each encoder and the decoder get is only known from the modality mask. Such a network
mixes in ``CompiledRegions``: its forward calls ``self.region(function)(...)`` for the parts of
fixed structure (an encoder pass, a decoder call), and the trainer calls ``compile_regions()``
instead of compiling the whole network (``training.base``). The row dimensions of a region's
inputs are marked dynamic (``dynamic_rows``), so a region compiles once for any number of rows
(plus once for one row, which dynamo specialises), not once per modality mask.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

import torch
import torch.utils.checkpoint
from torch import nn


def checkpointed(function: Callable, *args):
    """``function(*args)`` whose activations are not kept but recomputed in the backward pass
    (``torch.utils.checkpoint``, non-reentrant: RNG state restored, any output structure).
    Inside a compiled region dynamo traces it, and the compiled backward recomputes it."""
    return torch.utils.checkpoint.checkpoint(function, *args, use_reentrant=False)


def run_module(module: nn.Module, inputs: torch.Tensor, checkpoint: bool = False):
    """``module(inputs)``, recomputed in the backward pass when ``checkpoint``: the region of one
    encoder pass."""
    return checkpointed(module, inputs) if checkpoint else module(inputs)


def dynamic_rows(tensor: torch.Tensor, *dims: int) -> torch.Tensor:
    """Mark ``dims`` (default: the first) of ``tensor`` as dynamic for the next compiled region
    it enters (``torch._dynamo.maybe_mark_dynamic``; no effect without compilation)."""
    for dim in dims or (0,):
        torch._dynamo.maybe_mark_dynamic(tensor, dim)
    return tensor


class CompiledRegions:
    """Mixin for an ``nn.Module`` whose forward runs its regions through ``self.region``.

    ``region(function)`` is ``function`` itself until ``compile_regions(**options)`` is called,
    then ``torch.compile(function, **options)`` (one compiled callable per function, kept on the
    instance outside the module's state: state_dict, parameters and the forward's results are
    those of the uncompiled network). ``REGIONS`` says in one line what is compiled."""

    REGIONS = "regions"

    def compile_regions(self, **options) -> str:
        """Compile the regions from now on (options: those of ``torch.compile``, e.g. backend);
        returns the one-line description for the training log."""
        self.__dict__["_compiled_regions"] = {}
        self.__dict__["_region_options"] = options
        return self.REGIONS

    @property
    def regions_compiled(self) -> bool:
        return self.__dict__.get("_compiled_regions") is not None

    def region(self, function: Callable) -> Callable:
        compiled: Optional[Dict[Callable, Callable]] = self.__dict__.get("_compiled_regions")
        if compiled is None:
            return function
        if function not in compiled:
            compiled[function] = torch.compile(function, **self.__dict__["_region_options"])
        return compiled[function]
