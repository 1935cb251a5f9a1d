"""GMD (AAAI 2024): projection (Eq. 8) and combination (Eq. 9) on hand-made vectors, subset
sampling, the DS network, the one-forward gradient path against separate backward passes,
k = 1 against a plain step, and the rank-averaged path in a real 2-process gloo group."""
import math
from types import SimpleNamespace

import pytest
import torch

from helpers.distributed import on_two_gloo_ranks
from helpers.networks import DS_PLAN, IMPORTS, PLAIN_UNET, make_batch, nnunet_loss
from nnunet_prism.networks.dynamic_sharing_unet import build_dynamic_sharing_unet, fuse_modalities
from nnunet_prism.training.gmd.backward import gmd_backward, held_gradient_bytes, loss_scale, summed_backward
from nnunet_prism.training.gmd.decoupling import (combine, conflict_statistics, eq9_pair, pairwise_cosine,
                                                  project_conflicting, summarise_statistics)
from nnunet_prism.training.base import nnUNetTrainerPrismBase
from nnunet_prism.training.gmd.subset_sampling import SubsetSampler
from nnunet_prism.training.trainers.nnUNetTrainerGMD import DynamicSharingOutput, nnUNetTrainerGMD

M, C = 4, 3


pytestmark = pytest.mark.usefixtures("single_torch_thread")


def make_network(seed=0):
    torch.manual_seed(seed)
    return build_dynamic_sharing_unet(PLAIN_UNET, DS_PLAN, IMPORTS, M, C, enable_deep_supervision=True)


def subset_loss(network_out, target, mask, subset, loss):
    combined = mask & subset[None]
    rows = combined.any(1)
    fused = fuse_modalities(network_out, combined)
    return loss([f[rows] for f in fused], [t[rows] for t in target])


def grads_of(params):
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])


# -- Eq. 5, 8, 9 on hand-made vectors -----------------------------------------------------------
def test_conflicting_pair_becomes_non_conflicting_and_matches_eq8():
    g = torch.tensor([[4.0, 0.0, 1.0], [-3.0, 1.0, 0.0]])
    assert pairwise_cosine(g)[0, 1] < 0
    corrected = project_conflicting(g)
    assert corrected[0] @ corrected[1] >= -1e-6
    # Eq. 8 by hand: remove from each its projection on the other original
    expected_0 = g[0] - (g[0] @ g[1]) / (g[1] @ g[1]) * g[1]
    expected_1 = g[1] - (g[1] @ g[0]) / (g[0] @ g[0]) * g[0]
    assert torch.allclose(corrected[0], expected_0) and torch.allclose(corrected[1], expected_1)
    assert abs(float(corrected[0] @ g[1])) < 1e-5, "G~_j is orthogonal to G_k"
    assert torch.allclose(combine(corrected), eq9_pair(g[0], g[1])), "Eq. 9 = Eq. 8 summed"
    assert torch.allclose(combine(corrected, "mean"), eq9_pair(g[0], g[1]) / 2)


def test_non_conflicting_pair_is_untouched():
    g = torch.tensor([[1.0, 2.0, 0.0], [0.5, 0.0, 3.0], [0.0, 0.0, 1.0]])
    assert torch.equal(project_conflicting(g), g)
    stats = conflict_statistics(g, g)
    assert stats.pairs == 3 and stats.conflicting == 0 and stats.cosine_sum_before == stats.cosine_sum_after


def test_projection_of_many_subsets_follows_the_given_order():
    g = torch.tensor([[1.0, 0.0], [-1.0, 1.0], [-1.0, -0.2], [0.0, 0.0]])
    order = [[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]]
    corrected = project_conflicting(g, order=order)
    expected_0 = g[0] - (g[0] @ g[1]) / (g[1] @ g[1]) * g[1]  # conflicts with g1 ...
    if expected_0 @ g[2] < 0:  # ... then, with the corrected vector, possibly with g2
        expected_0 = expected_0 - (expected_0 @ g[2]) / (g[2] @ g[2]) * g[2]
    assert torch.allclose(corrected[0], expected_0)
    assert torch.equal(corrected[3], g[3]), "a zero gradient stays zero and is never projected on"
    stats = conflict_statistics(g[:3], corrected[:3])
    assert stats.conflicting == 2 and stats.pairs == 3
    assert stats.cosine_sum_after > stats.cosine_sum_before


def test_statistics_summary_adds_steps():
    rows = [[3, 1, -0.3, 0.6], [1, 1, -0.5, 0.0], [0, 0, 0, 0]]
    s = summarise_statistics(rows)
    assert s["conflict_fraction"] == pytest.approx(0.5)
    assert s["cosine_before"] == pytest.approx(-0.2) and s["cosine_after"] == pytest.approx(0.15)
    assert math.isnan(summarise_statistics([[0, 0, 0, 0]])["conflict_fraction"])


# -- subset sampling ------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 2, 5, 7, 14])
def test_sampler_never_empty_no_duplicates_and_covers_all(k):
    sampler = SubsetSampler(M, k, seed=3)
    window = 2 * math.ceil(15 / k)
    hands = [sampler.sample() for _ in range(80)]
    for hand in hands:
        assert len(hand) == k and len(set(hand)) == k
    assert all(sampler.masks[h].any(dim=1).all() for h in hands), "never the empty subset"
    for start in range(len(hands) - window + 1):
        seen = {i for hand in hands[start:start + window] for i in hand}
        assert seen == set(range(15)), f"window {start} misses {set(range(15)) - seen}"


def test_sampler_all_is_every_subset_and_state_round_trips():
    assert SubsetSampler(M, None).sample() == list(range(15))
    assert SubsetSampler(M, 99).sample() == list(range(15))
    a = SubsetSampler(M, 5, seed=1)
    a.sample()
    state = a.state_dict()
    b = SubsetSampler(M, 5, seed=7)
    b.load_state_dict(state)
    assert [a.sample() for _ in range(6)] == [b.sample() for _ in range(6)]
    with pytest.raises(ValueError):
        SubsetSampler(M, 0)


# -- DS network ------------------------------------------------------------------------------------
def test_ds_network_drops_absent_modalities_and_decodes_subsets_from_one_pass():
    network = make_network()
    x, _ = make_batch(0)
    mask = torch.tensor([[True, False, True, True], [False, True, False, False]])
    disturbed = x.clone()
    disturbed[0, 1] = 1e3
    disturbed[1, 0] = -5.0
    for a, b in zip(network(x, mask), network(disturbed, mask)):
        assert torch.allclose(a, b, atol=1e-5), "an absent modality cannot change the output"
    per_modality = network.forward_modalities(x)
    expected = (per_modality[0][0, 0] + per_modality[0][0, 2] + per_modality[0][0, 3]) / 3
    assert torch.allclose(network(x, mask)[0][0], expected, atol=1e-5), "mean over present, not zero-filled"
    network.decoder.deep_supervision = False
    subsets = SubsetSampler(M, None).masks
    all_subsets = network.forward_subsets(x, subsets, mask)
    assert all_subsets.shape == (2, 15, C, 12, 12, 12)
    for s in (0, 4, 14):
        assert torch.allclose(all_subsets[:, s], network(x, subsets[s][None] & mask), atol=1e-5)
    shared = {id(p) for p in network.shared_parameters()}
    assert shared.isdisjoint(id(p) for p in network.modality_parameters())
    assert len(shared) + len(network.modality_parameters()) == len(list(network.parameters()))


def test_ds_network_builds_from_2d_residual_encoder_plans():
    kwargs = {**{k: v for k, v in DS_PLAN.items() if k != "n_conv_per_stage"},
              "conv_op": "torch.nn.modules.conv.Conv2d", "kernel_sizes": [[3, 3]] * 3,
              "strides": [[1, 1], [2, 2], [2, 2]], "n_blocks_per_stage": [1, 2, 2],
              "norm_op": "torch.nn.modules.instancenorm.InstanceNorm2d"}
    network = build_dynamic_sharing_unet("dynamic_network_architectures.architectures.unet.ResidualEncoderUNet",
                                         kwargs, IMPORTS, M, C)
    x = torch.randn(2, M, 16, 16)
    mask = torch.tensor([[True, False, False, True], [False, False, True, False]])
    disturbed = x.clone()
    disturbed[:, 1] = 9.0
    out = network(x, mask)
    assert [tuple(o.shape) for o in out] == [(2, C, 16, 16), (2, C, 8, 8)]
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(out, network(disturbed, mask)))


# -- the gradient path ------------------------------------------------------------------------------
def _separate_gradients(subsets, x, target, mask, loss):
    """Reference: one full forward + backward per subset."""
    network = make_network()
    grads = []
    for s in subsets:
        network.zero_grad(set_to_none=True)
        subset_loss(network.forward_modalities(x), target, mask, s, loss).backward()
        grads.append((grads_of(network.shared_parameters()), grads_of(network.modality_parameters())))
    return grads


def _gmd_gradients(subsets, x, target, mask, loss, **kwargs):
    network = make_network()
    skips = network.encode(x)
    out = network.decode(skips)
    losses = [subset_loss(out, target, mask, s, loss) for s in subsets]
    stats = gmd_backward(network.shared_parameters(), network.modality_parameters(), skips, losses, **kwargs)
    return grads_of(network.shared_parameters()), grads_of(network.modality_parameters()), stats


def test_k1_step_equals_a_plain_step_and_scale_is_consistent():
    x, target = make_batch(1)
    mask = torch.ones(2, M, dtype=torch.bool)
    subset = torch.tensor([[True, False, True, False]])
    (shared_ref, specific_ref), = _separate_gradients(subset, x, target, mask, nnunet_loss())
    shared, specific, stats = _gmd_gradients(subset, x, target, mask, nnunet_loss())
    assert stats is None, "nothing to decouple with one subset"
    assert torch.allclose(shared, shared_ref, atol=1e-6) and torch.allclose(specific, specific_ref, atol=1e-6)
    assert specific.abs()[:specific.numel() // 4].sum() > 0, "the present modality's encoder learns"
    scaled_shared, scaled_specific, _ = _gmd_gradients(subset, x, target, mask, nnunet_loss(), scale=1024.0)
    assert torch.allclose(scaled_shared / 1024, shared, atol=1e-6)
    assert torch.allclose(scaled_specific / 1024, specific, atol=1e-6)


def test_one_forward_gmd_equals_decoupled_separate_backward_passes():
    x, target = make_batch(2)
    mask = torch.tensor([[True, True, True, False], [True, False, True, True]])
    subsets = torch.tensor([[True, False, False, False], [False, True, True, True]])
    reference = _separate_gradients(subsets, x, target, mask, nnunet_loss())
    g = torch.stack([r[0] for r in reference])
    expected_shared = combine(project_conflicting(g))
    expected_specific = reference[0][1] + reference[1][1]
    shared, specific, stats = _gmd_gradients(subsets, x, target, mask, nnunet_loss())
    assert torch.allclose(shared, expected_shared, atol=1e-5, rtol=1e-4)
    assert torch.allclose(specific, expected_specific, atol=1e-5, rtol=1e-4), "encoders: summed gradient"
    assert stats.pairs == 1 and stats.conflicting == int(pairwise_cosine(g)[0, 1] < 0)

    # DS without GMD: the plain sum of the same losses
    network = make_network()
    out = network.forward_modalities(x)
    summed_backward(list(network.parameters()), [subset_loss(out, target, mask, s, nnunet_loss()) for s in subsets])
    assert torch.allclose(grads_of(network.shared_parameters()), g.sum(0), atol=1e-5, rtol=1e-4)


def test_encoders_get_the_sum_over_many_subsets():
    """Four subsets (the skip gradients are summed in place from the third on): the encoders'
    gradient is still the sum of the separate passes'."""
    x, target = make_batch(2)
    mask = torch.tensor([[True, True, True, False], [True, False, True, True]])
    subsets = torch.tensor([[True, False, False, False], [False, True, True, True], [True, True, False, False],
                            [True, True, True, True]])
    reference = _separate_gradients(subsets, x, target, mask, nnunet_loss())
    _, specific, stats = _gmd_gradients(subsets, x, target, mask, nnunet_loss())
    assert torch.allclose(specific, sum(r[1] for r in reference), atol=1e-5, rtol=1e-4)
    assert stats.pairs == 6


def test_held_gradient_bytes_are_the_skip_accumulators_and_the_subset_gradients():
    network = make_network()
    x, _ = make_batch(2)
    skips = network.encode(x)
    shared, specific = network.shared_parameters(), network.modality_parameters()
    skip_bytes = sum(4 * math.prod(s.shape) for s in skips)  # (B, M, C_s, *spatial_s) per scale, float32
    assert held_gradient_bytes(skips, shared, 5) == (skip_bytes, 5 * 4 * sum(p.numel() for p in shared))
    # the official reduction: every parameter is theta, no skip accumulators
    assert held_gradient_bytes(skips, shared, 3, "official", specific) == (
        0, 3 * 4 * sum(p.numel() for p in [*shared, *specific]))


def test_the_trainers_report_what_their_backward_holds():
    """``backward_held_bytes`` (doctor --vram adds it to the count): GMD's buffers, none for DS
    (one summed backward) and for the base trainer's plain backward."""
    network = make_network()
    x, _ = make_batch(2)
    skips = network.encode(x)
    output = DynamicSharingOutput(skips, network.decode(skips), losses=[None] * 5)
    trainer = SimpleNamespace(gradient_mode="gmd", gmd_reduction="sum", unwrapped_network=lambda: network)
    assert nnUNetTrainerGMD.backward_held_bytes(trainer, output) == held_gradient_bytes(
        skips, network.shared_parameters(), 5)
    trainer.gradient_mode = "sum"
    assert nnUNetTrainerGMD.backward_held_bytes(trainer, output) == (0, 0)
    assert nnUNetTrainerPrismBase.backward_held_bytes(trainer, output) == (0, 0)


def test_grad_scaler_sees_one_consistent_scale_and_skips_non_finite_steps():
    """The AMP path on the CPU's GradScaler: subset gradients are unscaled before the projection
    and rescaled when written, so unscale_ gives the unscaled GMD gradients; an inf loss makes
    the scaler skip the step and back off, as in nnU-Net's own steps."""
    x, target = make_batch(4)
    mask = torch.ones(2, M, dtype=torch.bool)
    subsets = torch.tensor([[True, False, False, False], [False, True, False, True], [True, True, True, True]])
    generator = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    shared_ref, specific_ref, _ = _gmd_gradients(subsets, x, target, mask, nnunet_loss(), generator=generator())

    network = make_network()
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 12)
    skips = network.encode(x)
    out = network.decode(skips)
    losses = [subset_loss(out, target, mask, s, nnunet_loss()) for s in subsets]
    gmd_backward(network.shared_parameters(), network.modality_parameters(), skips, losses,
                 scale=loss_scale(scaler, x.device), generator=generator())
    scaler.unscale_(optimizer)
    assert torch.allclose(grads_of(network.shared_parameters()), shared_ref, atol=1e-6)
    assert torch.allclose(grads_of(network.modality_parameters()), specific_ref, atol=1e-6)
    scaler.step(optimizer)
    scaler.update()

    before = [p.detach().clone() for p in network.parameters()]
    skips = network.encode(x)
    out = network.decode(skips)
    losses = [subset_loss(out, target, mask, s, nnunet_loss()) for s in subsets]
    losses[1] = losses[1] * float("inf")
    stats = gmd_backward(network.shared_parameters(), network.modality_parameters(), skips, losses,
                         scale=loss_scale(scaler, x.device))
    assert stats is None, "no statistics from non-finite gradients"
    scaler.unscale_(optimizer)
    scaler.step(optimizer)
    scaler.update()
    assert all(torch.equal(a, b) for a, b in zip(before, network.parameters())), "step skipped"
    assert scaler.get_scale() == 2.0 ** 11


def test_subset_without_samples_is_left_out():
    x, target = make_batch(3)
    mask = torch.tensor([[True, False, False, False], [True, True, False, False]])
    subsets = torch.tensor([[True, True, False, False], [False, False, True, True]])
    network = make_network()
    skips = network.encode(x)
    out = network.decode(skips)
    losses = [subset_loss(out, target, mask, subsets[0], nnunet_loss()), None]
    gmd_backward(network.shared_parameters(), network.modality_parameters(), skips, losses)
    (shared_ref, specific_ref), = _separate_gradients(subsets[:1], x, target, mask, nnunet_loss())
    assert torch.allclose(grads_of(network.shared_parameters()), shared_ref, atol=1e-6)
    assert torch.allclose(grads_of(network.modality_parameters()), specific_ref, atol=1e-6)


# -- DDP: gradients are averaged over ranks before the projection -----------------------------------
SUBSETS = torch.tensor([[True, False, False, False], [False, True, True, False], [True, True, True, True]])
MASKS = {0: torch.tensor([[True, True, True, True], [True, False, True, True]]),
         1: torch.tensor([[False, True, True, True], [True, True, False, False]])}


def _rank_gradients(rank, reduce=None):
    x, target = make_batch(10 + rank)
    kwargs = {"generator": torch.Generator().manual_seed(5)}
    if reduce is not None:
        kwargs["reduce"] = reduce
    shared, specific, stats = _gmd_gradients(SUBSETS, x, target, MASKS[rank], nnunet_loss(), **kwargs)
    return shared, specific, stats


def _on_rank(rank):
    shared, specific, stats = _rank_gradients(rank)
    return shared, specific, stats.as_array()


@pytest.mark.ddp
def test_two_gloo_ranks_average_subset_gradients_before_projection(tmp_path):
    results = on_two_gloo_ranks(_on_rank, tmp_path)
    captured = {}
    _rank_gradients(0, reduce=lambda flat: captured.setdefault("rank0", flat.clone()))
    shared, specific, stats = _rank_gradients(1, reduce=lambda flat: (flat + captured["rank0"]) / 2)
    for rank in (0, 1):
        assert torch.allclose(results[rank][0], shared, atol=1e-6), "every rank applies the averaged update"
        assert torch.allclose(results[rank][1], specific, atol=1e-6)
        assert results[rank][2] == pytest.approx(stats.as_array(), abs=1e-9)
    # and that differs from what a rank would do on its own data
    alone, _, _ = _rank_gradients(0, reduce=lambda flat: flat)
    assert not torch.allclose(alone, shared, atol=1e-4)
