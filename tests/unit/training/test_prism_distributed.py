"""PRISM's per-epoch statistics are reduced over ranks: a real 2-process gloo group on the CPU."""
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from nnunet_prism.losses import PreferenceState
from nnunet_prism.training.distributed import reduce_preference_state

RATES = [0.2, 0.4, 0.6, 0.8]
RP = {0: torch.tensor([[0.5, -0.2, 0.1, -0.4], [0.3, 0.0, -0.3, 0.0]], dtype=torch.float64),
      1: torch.tensor([[-0.1, 0.2, 0.6, -0.7]], dtype=torch.float64)}
VALID = {0: torch.tensor([[True, True, True, True], [True, False, True, False]]),
         1: torch.tensor([[True, True, False, True]])}


def _worker(rank, init_file, results):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        state = PreferenceState(RATES)
        state.update_batch(RP[rank], VALID[rank])
        reduce_preference_state(state, torch.device("cpu"))
        mean_rp = state.end_epoch(0.01)
        results[rank] = (mean_rp.tolist(), state.E.tolist())
    finally:
        dist.destroy_process_group()


@pytest.mark.ddp
def test_epoch_statistics_are_reduced_over_two_gloo_ranks(tmp_path):
    results = mp.Manager().dict()
    # fork: the workers inherit the imported modules (spawn would re-import torch and nnU-Net)
    mp.start_processes(_worker, args=(str(tmp_path / "init"), results), nprocs=2, join=True, start_method="fork")
    single = PreferenceState(RATES)
    single.update_batch(torch.cat([RP[0], RP[1]]), torch.cat([VALID[0], VALID[1]]))
    expected_rp = single.end_epoch(0.01).tolist()
    assert results[0] == results[1], "all ranks apply the same update"
    assert torch.allclose(torch.tensor(results[0][0], dtype=torch.float64), torch.tensor(expected_rp, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(torch.tensor(results[0][1], dtype=torch.float64), single.E, atol=1e-12)
