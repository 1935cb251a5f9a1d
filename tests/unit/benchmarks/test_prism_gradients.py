"""benchmarks/prism_gradients.py's arithmetic on hand-made gradients and logits (the script
itself loads a trained run)."""
import math

import numpy as np
import pytest
import torch

from helpers.benchmarks import benchmark_module
from nnunet_prism.losses.distillation import kl_divergence_map
from nnunet_prism.networks.multi_encoder_unet import MultiModalOutput



@pytest.fixture(scope="module")
def grads():
    with benchmark_module("prism_gradients") as module:
        yield module


def test_grouped_norms_and_cosine(grads):
    named = [("encoders.0.w", torch.tensor([3.0, 0.0])), ("decoder.w", torch.tensor([4.0])),
             ("projections.1.w", None), ("decoder.b", torch.tensor([0.0, 12.0]))]
    norms = grads.grouped_norms(named)
    assert norms["encoders"] == pytest.approx(3) and norms["decoder"] == pytest.approx(math.sqrt(16 + 144))
    assert norms["projections"] == 0 and norms["all"] == pytest.approx(13) and "other" not in norms
    a = [torch.tensor([1.0, 0.0]), None, torch.tensor([1.0])]
    b = [torch.tensor([1.0, 1.0]), torch.tensor([5.0]), torch.tensor([-1.0])]
    assert grads.cosine(a, b) == pytest.approx(0.0)  # 1 + 0 - 1
    assert grads.cosine(a, a) == pytest.approx(1.0) and math.isnan(grads.cosine([None], b[:1]))


def test_pixel_kl_by_channel_averages_each_modalitys_rows(grads):
    torch.manual_seed(0)
    fused = torch.randn(2, 3, 4, 4, 4)
    students = torch.randn(3, 3, 4, 4, 4)
    samples, modalities = torch.tensor([0, 1, 1]), torch.tensor([0, 0, 2])  # modality 1 and 3 absent
    mask = torch.tensor([[True, False, False, False], [True, False, True, False]])
    target = torch.rand(2, 3, 4, 4, 4) > 0.5
    out = MultiModalOutput(fused, torch.zeros(2, 1, 4, 4, 4), students, torch.zeros(3, 1, 4, 4, 4), samples,
                           modalities, mask)
    table = grads.pixel_kl_by_channel(out, 4.0, target.float())
    kl = kl_divergence_map(fused[samples], students, 4.0, region_based=True)
    assert table["kl"].shape == (4, 3) and np.isnan(table["kl"][1]).all() and np.isnan(table["kl"][3]).all()
    assert table["kl"][0] == pytest.approx(kl[:2].mean((0, 2, 3, 4)).numpy(), rel=1e-5)
    assert table["kl"][2] == pytest.approx(kl[2].mean((1, 2, 3)).numpy(), rel=1e-5)
    agree = (fused[samples][2] > 0) == (students[2] > 0)                   # modality 2: one row (sample 1)
    share = (kl[2] * agree).sum((1, 2, 3)) / kl[2].sum((1, 2, 3))
    assert table["agreeing_share"][2] == pytest.approx(share.numpy(), rel=1e-5)
    inside = target[1]                                                     # its sample's region maps
    assert table["teacher_logit_inside"][2] == pytest.approx(
        ((fused[1] * inside).sum((1, 2, 3)) / inside.sum((1, 2, 3))).numpy(), rel=1e-5)
    assert table["student_logit_outside"][2] == pytest.approx(
        ((students[2] * ~inside).sum((1, 2, 3)) / (~inside).sum((1, 2, 3))).numpy(), rel=1e-5)
