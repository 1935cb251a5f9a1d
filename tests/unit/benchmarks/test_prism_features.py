"""benchmarks/prism_features.py's redundancy R on hand-made skips and on a small multi-encoder
network (the script itself loads a trained run)."""
import math

import pytest
import torch

from helpers.benchmarks import benchmark_module
from helpers.networks import IMPORTS, PLAIN_UNET, small_plain_kwargs
from nnunet_prism.networks import build_multi_encoder_unet


@pytest.fixture(scope="module")
def features():
    with benchmark_module("prism_features") as module:
        yield module


def test_redundancy_is_one_for_identical_and_one_over_n_for_orthogonal_skips(features):
    a = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])[:, :, None]          # (C=2, V=3) as (2, 3, 1)
    b = torch.tensor([[0.0, 2.0, 0.0], [0.0, 0.0, 0.0]])[:, :, None]
    c = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 3.0]])[:, :, None]
    rows = torch.stack([a, a, b * 0.5, c / 3, a, c])  # sample 0: a, a; sample 1: b/2, c/3, a (orthogonal, norm 1); 2: c
    samples = torch.tensor([0, 0, 1, 1, 1, 2])
    r = features.redundancy(rows, samples, 4)
    assert r[0].item() == pytest.approx(1.0) and r[1].item() == pytest.approx(1 / 3)
    assert math.isnan(r[2].item()) and math.isnan(r[3].item())  # one modality; none
    unequal = features.redundancy(torch.stack([a, 2 * a]), torch.tensor([0, 0]), 1)
    assert unequal.item() == pytest.approx((1.5 ** 2) / 2.5)  # ||mean||^2 / mean ||p||^2


def test_batch_redundancy_of_two_identical_encoders_on_the_same_image_is_one(features):
    torch.manual_seed(0)
    network = build_multi_encoder_unet(PLAIN_UNET, small_plain_kwargs(1), IMPORTS, 3, 2).eval()
    network.encoders[1].load_state_dict(network.encoders[0].state_dict())
    x = torch.randn(2, 3, 8, 8, 8)
    x[:, 1] = x[:, 0]
    mask = torch.tensor([[True, True, False], [False, False, True]])  # sample 1: one modality
    found = features.batch_redundancy(network, x, mask)
    assert found["present"].tolist() == [2, 1] and found["R"].shape == (3, 2)
    assert found["R"][:, 0] == pytest.approx(1.0, abs=1e-9)
    assert all(math.isnan(v) for v in found["R"][:, 1])
    mask[0, 1], mask[0, 2] = False, True  # modalities 0 and 2: other encoders, other images
    assert (features.batch_redundancy(network, x, mask)["R"][:, 0] < 1 - 1e-3).all()
