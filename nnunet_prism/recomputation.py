"""Activation checkpointing: computations whose intermediate tensors are not kept for the
backward pass but recomputed in it (``torch.utils.checkpoint``), one at a time. Networks
(``networks.regions``) and losses (PRISM's distillation terms) use it; every layer may import it.
"""
from __future__ import annotations

from typing import Callable, List, Optional

import torch
import torch.utils.checkpoint


def checkpointed(function: Callable, *args):
    """``function(*args)`` whose activations are not kept but recomputed in the backward pass
    (``torch.utils.checkpoint``, non-reentrant: RNG state restored, any output structure).
    Inside a compiled region dynamo traces it, and the compiled backward recomputes it."""
    return torch.utils.checkpoint.checkpoint(function, *args, use_reentrant=False)


def chunk_indices(rows: int, rows_per_chunk: int, device) -> List[torch.Tensor]:
    """(R,) long indices of consecutive chunks of ``rows_per_chunk`` of ``rows`` rows, each a
    tensor of its own (no storage offset for dynamo to guard on)."""
    return [torch.arange(start, min(start + rows_per_chunk, rows), device=device)
            for start in range(0, rows, rows_per_chunk)]


def in_row_chunks(function: Callable, rows: int, rows_per_chunk: Optional[int], *tensors: torch.Tensor):
    """``function(index, *tensors)`` over ``rows`` rows, where ``index`` selects the rows to
    compute and the result has one entry per selected row along dim 0 (a tensor, or a tuple of
    tensors).

    ``rows_per_chunk`` None: one call with ``index = slice(None)`` (all rows, nothing
    recomputed). Otherwise one call per chunk of ``rows_per_chunk`` rows (``index`` a (R,) long
    tensor), each ``checkpointed``, results concatenated: the backward pass then holds one
    chunk's intermediate tensors at a time. ``tensors`` are what the chunks read (kept for the
    recomputation); pass them here rather than through a closure so that memory counts see them.
    """
    if rows_per_chunk is None or rows == 0:
        return function(slice(None), *tensors)
    device = tensors[0].device if tensors else None
    outputs = [checkpointed(function, index, *tensors) for index in chunk_indices(rows, rows_per_chunk, device)]
    if isinstance(outputs[0], torch.Tensor):
        return torch.cat(outputs)
    return type(outputs[0])(torch.cat(parts) for parts in zip(*outputs))
