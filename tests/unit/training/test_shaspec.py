"""ShaSpec: generated features, absent-modality invariance, DCO/DAO on present modalities only,
rebuild from plans, dedicated-subset restriction. Small plan-shaped architectures (fast)."""
from types import SimpleNamespace

import pytest
import torch

from helpers.networks import IMPORTS, PLAIN_UNET, RESENC_UNET, plan_kwargs
from nnunet_prism.losses.shaspec import distribution_alignment_loss, domain_classification_loss
from nnunet_prism.modalities import parse_subset_name
from nnunet_prism.networks.shaspec_unet import ShaSpecOutput, build_shaspec_unet, generate_missing
from nnunet_prism.training.base import StepInputs
from nnunet_prism.training.hyperparameters import HyperparameterError
from nnunet_prism.training.trainers.nnUNetTrainerShaSpec import fixed_subset_mask, nnUNetTrainerShaSpec

M, CLASSES = 4, 3


def build(dim=3, residual=False, deep_supervision=True):
    torch.manual_seed(0)
    return build_shaspec_unet(RESENC_UNET if residual else PLAIN_UNET, plan_kwargs(dim, residual), IMPORTS, M, CLASSES,
                              deep_supervision, width=0.5).eval()


pytestmark = pytest.mark.usefixtures("single_torch_thread")


MASK = torch.tensor([[True, False, True, False], [False, False, False, True], [True, True, True, True]])


def test_generate_missing_is_mean_of_present_for_one_or_several_missing():
    features = torch.randn(M, 3, 5, 2, 2)
    filled = generate_missing(features, MASK)
    for b, row in enumerate(MASK):
        mean = features[row, b].mean(dim=0)
        for m in range(M):
            expected = features[m, b] if row[m] else mean
            torch.testing.assert_close(filled[m, b], expected)


def test_network_bottleneck_of_missing_modality_is_mean_of_present_shared_features():
    network = build()
    captured = {}
    network.decoder.transpconvs[0].register_forward_hook(lambda mod, inp, out: captured.update(x=inp[0]))
    with torch.no_grad():
        out = network(torch.randn(3, M, 16, 16, 16), MASK, return_all=True)
    assert isinstance(out, ShaSpecOutput) and out.shared.shape[:2] == (3, M) and out.domain_logits.shape == (3, M, M)
    bottleneck = captured["x"].unflatten(1, (M, -1))  # (B, M, C, *sp), modality-major channels
    for b, row in enumerate(MASK):
        for m in torch.nonzero(~row).flatten().tolist():
            torch.testing.assert_close(bottleneck[b, m], out.shared[b, row].mean(dim=0))
        for m in torch.nonzero(row).flatten().tolist():  # present: s_m + g([s_m, p_m]) differs from s_m
            assert not torch.allclose(bottleneck[b, m], out.shared[b, m])


@pytest.mark.parametrize("dim,residual", [(3, False), (2, True)])
def test_absent_modality_input_does_not_change_output(dim, residual):
    network = build(dim, residual)
    x = torch.randn(3, M, *([16] * dim))
    changed = x.clone()
    changed[~MASK] = torch.randn_like(changed[~MASK]) * 100
    changed[1, 0] = float("nan")
    with torch.no_grad():
        reference, other = network(x, MASK), network(changed, MASK)
    assert [r.shape[1:] for r in reference] == [(CLASSES, *([16 // 2 ** i] * dim)) for i in range(2)]
    for r, o in zip(reference, other):
        torch.testing.assert_close(r, o, rtol=0, atol=0)


def test_forward_subsets_equals_forward_per_subset():
    network = build(deep_supervision=False)
    x = torch.randn(2, M, 16, 16, 16)
    subsets = torch.tensor([[True, False, False, False], [False, True, True, False], [True, True, True, True]])
    with torch.no_grad():
        wide = network.forward_subsets(x, subsets)
        for s, subset in enumerate(subsets):
            torch.testing.assert_close(wide[:, s], network(x, subset.expand(2, -1)), rtol=1e-4, atol=1e-5)


def test_dco_and_dao_ignore_absent_modalities():
    torch.manual_seed(1)
    shared, logits = torch.randn(3, M, 4, 2, 2), torch.randn(3, M, M)
    dco, correct, count = domain_classification_loss(logits, MASK)
    dao = distribution_alignment_loss(shared, MASK)
    noisy_shared, noisy_logits = shared.clone(), logits.clone()
    noisy_shared[~MASK] = 1e3
    noisy_logits[~MASK] = -1e3
    assert distribution_alignment_loss(noisy_shared, MASK) == dao
    assert domain_classification_loss(noisy_logits, MASK)[0] == dco and int(count) == int(MASK.sum())

    # DAO: mean over present pairs (sample 0: FLAIR-T1c; sample 1: single modality, no pair; sample 2: 6 pairs)
    pairs = [(0, 0, 2)] + [(2, i, j) for i in range(M) for j in range(i + 1, M)]
    expected = torch.stack([(shared[b, i] - shared[b, j]).abs().mean() for b, i, j in pairs]).mean()
    torch.testing.assert_close(dao, expected)
    # DCO: CE towards the modality index; a classifier right on present entries only scores 100 %
    perfect = torch.full((3, M, M), -10.0)
    perfect[:, torch.arange(M), torch.arange(M)] = 10.0
    perfect[~MASK] = torch.roll(perfect[~MASK], 1, dims=-1)  # wrong on absent entries: must not count
    loss, correct, count = domain_classification_loss(perfect, MASK)
    assert int(correct) == int(count) == 7 and float(loss) < 1e-6
    # nothing to align or classify -> 0, still differentiable
    lonely = torch.tensor([[True, False, False, False]])
    shared1 = torch.randn(1, M, 4, requires_grad=True)
    assert float(distribution_alignment_loss(shared1, lonely).detach()) == 0.0
    assert float(domain_classification_loss(torch.randn(1, M, M), torch.zeros(1, M, dtype=torch.bool))[0]) == 0.0


def test_auxiliary_losses_train_the_intended_encoders():
    network = build().train()
    out = network(torch.randn(2, M, 16, 16, 16), MASK[:2], return_all=True)
    distribution_alignment_loss(out.shared, out.modality_mask).backward(retain_graph=True)
    assert all(p.grad is None for p in network.specific_encoders.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in network.shared_encoder.parameters())
    network.zero_grad()
    domain_classification_loss(out.domain_logits, out.modality_mask)[0].backward()
    grads = [sum(p.grad.abs().sum() for p in e.parameters() if p.grad is not None) for e in network.specific_encoders]
    assert grads[0] > 0 and grads[2] > 0 and grads[3] > 0 and grads[1] == 0, "T1 is absent in both samples"


@pytest.mark.parametrize("name,dim,residual", [(PLAIN_UNET, 3, False), (RESENC_UNET, 2, True)])
def test_build_network_architecture_rebuilds_identical_state_dict(name, dim, residual):
    configuration = SimpleNamespace(network_arch_class_name=name, network_arch_init_kwargs=plan_kwargs(dim, residual),
                                    network_arch_init_kwargs_req_import=IMPORTS)
    first = nnUNetTrainerShaSpec.build_network_architecture(None, configuration, M, CLASSES, True)
    first.allowed_modalities.copy_(torch.tensor([True, False, True, False]))  # a dedicated model
    second = nnUNetTrainerShaSpec.build_network_architecture(None, configuration, M, CLASSES, False)
    assert list(first.state_dict()) == list(second.state_dict())
    assert "allowed_modalities" in first.state_dict()
    second.load_state_dict(first.state_dict())
    assert second.allowed_modalities.tolist() == [True, False, True, False]


def test_dedicated_model_ignores_modalities_outside_its_subset():
    network = build(deep_supervision=False)
    network.allowed_modalities.copy_(torch.from_numpy(parse_subset_name("FLAIR+T1c", ["FLAIR", "T1", "T1c", "T2"])))
    x = torch.randn(1, M, 16, 16, 16)
    other = x.clone()
    other[:, [1, 3]] = torch.randn(1, 2, 16, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(network(x), network(other), rtol=0, atol=0)
        out = network(x, return_all=True)
    assert out.modality_mask.tolist() == [[True, False, True, False]]


def test_fixed_subset_errors_name_the_value():
    names = ["FLAIR", "T1", "T1c", "T2"]
    assert fixed_subset_mask("T2+FLAIR", names).tolist() == [True, False, False, True]
    assert fixed_subset_mask(None, names) is None
    for bad, message in (("FLAIR+T1ce", "fixed_subset='FLAIR\\+T1ce'.*T1ce"), ("+", "fixed_subset='\\+'")):
        with pytest.raises(HyperparameterError, match=message):
            nnUNetTrainerShaSpec.check_against_dataset({"missing_rates": None, "fixed_subset": bad}, names)


def regime_trainer(fixed_subset, availability):
    """The trainer's mask logic without nnU-Net's set-up: availability (B, M) as recorded."""
    trainer = object.__new__(nnUNetTrainerShaSpec)
    trainer.device, trainer.modality_dropout = torch.device("cpu"), 0.5
    trainer.subset_mask = (None if fixed_subset is None else
                           torch.from_numpy(parse_subset_name(fixed_subset, ["FLAIR", "T1", "T1c", "T2"])))
    trainer.case_availability = lambda keys: availability[:len(keys)].clone()
    return trainer


AVAILABLE = torch.tensor([[True, True, True, True], [False, True, False, True], [False, False, True, True]])


def test_dedicated_regime_uses_exactly_the_subset_and_leaves_out_samples_without_it():
    trainer = regime_trainer("FLAIR+T1c", AVAILABLE)
    mask = trainer.modality_mask(["a", "b", "c"], training=True)
    assert mask.tolist() == [[True, False, True, False], [False] * 4, [False, False, True, False]]
    data, target = torch.randn(3, M, 2, 2), [torch.randn(3, 1, 2, 2), torch.randn(3, 1, 1, 1)]
    kept = trainer.select_samples(StepInputs(data, target, mask, ["a", "b", "c"]))
    assert kept.weight == 1.0 and kept.data.shape[0] == 2 and [t.shape[0] for t in kept.target] == [2, 2]
    torch.testing.assert_close(kept.data, data[[0, 2]])
    assert kept.mask.tolist() == [[True, False, True, False], [False, False, True, False]] and kept.keys == ["a", "c"]
    # a batch with no sample of the subset: a zero-weighted step on the recorded availability
    fallback = trainer.select_samples(StepInputs(data[1:2], [t[1:2] for t in target], mask[1:2], ["b"]))
    assert fallback.weight == 0.0 and fallback.mask.tolist() == AVAILABLE[:1].tolist(), "the stub's availability"


def test_all_subsets_regime_drops_modalities_at_random_within_availability():
    trainer = regime_trainer(None, AVAILABLE)
    trainer.training_modality_mask = lambda keys: nnUNetTrainerShaSpec.training_modality_mask(trainer, keys)
    torch.manual_seed(0)
    masks = [trainer.modality_mask(["a", "b", "c"], training=True) for _ in range(200)]
    assert all(bool((m & ~AVAILABLE).any()) is False and bool(m.any(dim=1).all()) for m in masks)
    assert len({tuple(m[0].tolist()) for m in masks}) == 15, "a complete case sees every subset"
    assert trainer.modality_mask(["a", "b", "c"], training=False).tolist() == AVAILABLE.tolist(), "no dropout in validation"
