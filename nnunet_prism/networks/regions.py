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

Activation checkpointing (``ActivationCheckpointing``) sits inside the regions: a region that
should be recomputed in the backward pass calls ``checkpointed`` itself (``run_module``,
``run_on_rows``), so a compiled region traces the recomputation instead of being wrapped by it.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence

import torch
from torch import nn

from nnunet_prism.recomputation import checkpointed


def run_module(module: nn.Module, inputs: torch.Tensor, checkpoint: bool = False):
    """``module(inputs)``, recomputed in the backward pass when ``checkpoint``: the region of one
    encoder pass."""
    return checkpointed(module, inputs) if checkpoint else module(inputs)


def run_on_rows(function: Callable, tensors: Sequence[torch.Tensor], rows: Optional[torch.Tensor] = None,
                checkpoint: bool = False):
    """``function(*tensors)`` on the rows ``rows`` ((R,) long; None: all) of every tensor,
    recomputed in the backward pass when ``checkpoint``. Called inside a region: the region gets
    the whole tensors and an index, so neither chunk sizes nor storage offsets make it
    recompile, and under ``checkpoint`` only the whole tensors are kept (the gathered rows are
    recomputed too)."""
    def on_rows(*tensors):
        return function(*(t if rows is None else t[rows] for t in tensors))

    return checkpointed(on_rows, *tensors) if checkpoint else on_rows(*tensors)


class ActivationCheckpointing:
    """Mixin for a network that can recompute its activations in the backward pass instead of
    keeping them (``torch.utils.checkpoint``): ``activation_checkpointing`` (settable after
    build, default off) switches it on for training passes with gradients; ``checkpoint_rows``
    rows of a batched decoder call are recomputed together, so the backward pass holds one
    chunk's activations at a time. The trainers set it from their ``activation_checkpointing``
    hyperparameter. Same outputs and gradients (up to float summation order), about one more
    forward pass of compute (benchmarks/memory.py)."""

    activation_checkpointing: bool = False
    #: rows per recomputed chunk of a batched decoder call
    checkpoint_rows: int = 1

    def recomputing(self) -> bool:
        """Whether this pass recomputes its activations in backward (training with gradients)."""
        return bool(self.activation_checkpointing) and self.training and torch.is_grad_enabled()


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
