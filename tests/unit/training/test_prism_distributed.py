"""PRISM's per-epoch statistics are reduced over ranks: a real 2-process gloo group on the CPU."""
import pytest
import torch

from helpers.distributed import on_two_gloo_ranks
from nnunet_prism.losses import PreferenceState
from nnunet_prism.training.distributed import reduce_preference_state

RATES = [0.2, 0.4, 0.6, 0.8]
RP = {0: torch.tensor([[0.5, -0.2, 0.1, -0.4], [0.3, 0.0, -0.3, 0.0]], dtype=torch.float64),
      1: torch.tensor([[-0.1, 0.2, 0.6, -0.7]], dtype=torch.float64)}
VALID = {0: torch.tensor([[True, True, True, True], [True, False, True, False]]),
         1: torch.tensor([[True, True, False, True]])}


def _on_rank(rank):
    state = PreferenceState(RATES)
    state.update_batch(RP[rank], VALID[rank])
    reduce_preference_state(state, torch.device("cpu"))
    mean_rp = state.end_epoch(0.01)
    return mean_rp.tolist(), state.E.tolist()


@pytest.mark.ddp
def test_epoch_statistics_are_reduced_over_two_gloo_ranks(tmp_path):
    results = on_two_gloo_ranks(_on_rank, tmp_path)
    single = PreferenceState(RATES)
    single.update_batch(torch.cat([RP[0], RP[1]]), torch.cat([VALID[0], VALID[1]]))
    expected_rp = single.end_epoch(0.01).tolist()
    assert results[0] == results[1], "all ranks apply the same update"
    assert torch.allclose(torch.tensor(results[0][0], dtype=torch.float64), torch.tensor(expected_rp, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(torch.tensor(results[0][1], dtype=torch.float64), single.E, atol=1e-12)
