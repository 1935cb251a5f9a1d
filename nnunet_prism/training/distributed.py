"""Cross-rank reductions of per-epoch method statistics (DDP). No-ops without a process group."""
import torch
from torch import distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def all_reduce_sum(tensor: torch.Tensor, device) -> torch.Tensor:
    """Sum ``tensor`` over all ranks (on ``device``, as the backend needs); returns a CPU copy."""
    if not is_distributed():
        return tensor.clone()
    reduced = tensor.to(device)
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
    return reduced.cpu()


def sum_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """A detached copy of ``tensor`` summed over all ranks, on its own device (the batch-level
    statistics of PRISM's official preset: the batch is that of all ranks); a copy alone."""
    reduced = tensor.detach().clone()
    if is_distributed():
        dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
    return reduced


def reduce_preference_state(state, device) -> None:
    """Make every rank's PRISM epoch sums (rp_sum, rp_count, gap_sum) the global ones before end_epoch."""
    state.set_accumulators(all_reduce_sum(state.accumulators(), device))
    state.gap_sum = all_reduce_sum(state.gap_sum, device).to(torch.float64)
