"""Activation checkpointing (``activation_checkpointing``) of every network that has it: the same
losses and gradients as without it (GMD's decoupled gradients and conflict statistics included),
and less memory by benchmarks/memory.py's count.

Tolerances: the saving changes how the work is batched, not what is computed: the multi-encoder
decoder runs one row at a time, the DS decoder ``checkpoint_rows`` rows at a time, ShaSpec's
shared encoder once per modality instead of once on all images, and the weight gradients are
summed chunk by chunk instead of inside one batched kernel. The CPU convolution picks its
blocking by batch size, so float32 sums come out in another order. Measured over these tests
(every trainer, both label kinds, the three masks): up to 2.7e-5 of a parameter's largest
gradient entry (parameters whose gradient is at least 1e-3 of the network's largest), 2.4e-6 of
the network's largest entry, losses 2.7e-7 relative. The tests allow 1e-4 of a parameter's
largest entry plus 1e-5 of the network's (the conv biases before InstanceNorm have true gradient
0, their computed one is rounding noise of that size), losses 1e-5 relative.
"""
import json

import pytest
import torch

from helpers.benchmarks import benchmark_module
from helpers.paths import BENCHMARKS
from nnunet_prism.networks.dynamic_sharing_unet import fuse_modalities

REGIONS = {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": [3]}
LABELS = {"background": 0, "a": 1, "b": 2, "c": 3}
#: every trainer whose network has a saving (ModalityDropout trains nnU-Net's own network)
SAVING_TRAINERS = ["nnUNetTrainerMissingModality", "nnUNetTrainerPRISM", "nnUNetTrainerShaSpec", "nnUNetTrainerGMD",
                   "nnUNetTrainerDS"]
#: (B, M) masks: every modality / a mixed batch / a sample without any modality
PATTERNS = {"all": [[1, 1, 1], [1, 1, 1]], "mixed": [[1, 1, 1], [1, 0, 1]], "sample-empty": [[0, 1, 0], [0, 0, 0]]}


@pytest.fixture(scope="module")
def memory():
    with benchmark_module("memory") as module:
        yield module


pytestmark = pytest.mark.usefixtures("single_torch_thread")


def small_plans(tmp_path, labels) -> tuple:
    """The BraTS2021-like plans cut to 3 stages (8/16/32 features), patch 16x16x32, batch 2, 3
    modalities, and a dataset.json with ``labels``; returns (plans path, dataset.json path)."""
    plans = json.loads((BENCHMARKS / "brats2021_like_plans.json").read_text())
    config = plans["configurations"]["3d_fullres"]
    config["patch_size"] = [16, 16, 32]
    arch = config["architecture"]["arch_kwargs"]
    arch.update(n_stages=3, features_per_stage=[8, 16, 32], kernel_sizes=[[3, 3, 3]] * 3,
                strides=[[1, 1, 1], [2, 2, 2], [2, 2, 2]], n_conv_per_stage=[2] * 3, n_conv_per_stage_decoder=[2] * 2)
    dataset = {"channel_names": {"0": "FLAIR", "1": "T1c", "2": "T2"}, "labels": labels, "file_ending": ".nii.gz"}
    if labels is REGIONS:
        dataset["regions_class_order"] = [1, 2, 3]
    (tmp_path / "plans.json").write_text(json.dumps(plans))
    (tmp_path / "dataset.json").write_text(json.dumps(dataset))
    return tmp_path / "plans.json", tmp_path / "dataset.json"


def setup(memory, tmp_path, labels, trainer="nnUNetTrainerPRISM"):
    plans_manager, cm, label_manager, _ = memory.load_plans(*small_plans(tmp_path, labels), "3d_fullres")
    torch.manual_seed(0)
    network = memory.build_network(trainer, plans_manager, cm, 3, label_manager.num_segmentation_heads)
    return cm, label_manager, network.train(), memory.nnunet_loss(cm, label_manager)


def masked_batch(memory, cm, label_manager, pattern):
    data, _, target = memory.make_batch(cm, label_manager, cm.patch_size, 3, 3, "cpu")
    mask = torch.tensor(pattern, dtype=torch.bool)
    return data * mask[:, :, None, None, None], mask, target


def step(memory, trainer, network, loss, batch, label_manager, checkpointing: bool):
    """(the step's loss, parameter gradients) of the trainer's step (benchmarks/memory.py's
    ``backward``: GMD through gmd_backward) with or without the saving (PRISM: the distillation
    terms recomputed too, as its trainer does)."""
    network.activation_checkpointing = checkpointing
    network.zero_grad(set_to_none=True)
    total = memory.backward(trainer, network, loss, *batch, label_manager, checkpoint_loss=checkpointing)
    return total, [p.grad for p in network.parameters()]


def assert_same_gradients(saved, plain):
    """Every parameter's gradient within 1e-4 of its largest entry, plus 1e-5 of the network's
    largest gradient entry (the conv biases before InstanceNorm: true gradient 0)."""
    assert [g is None for g in saved] == [g is None for g in plain]
    assert sum(g is not None and bool(g.abs().sum() > 0) for g in plain) > 0
    largest = max(float(g.abs().max()) for g in plain if g is not None)
    for a, b in zip(saved, plain):
        if b is not None:
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5 * largest + 1e-4 * float(b.abs().max()))


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
@pytest.mark.parametrize("trainer", SAVING_TRAINERS)
def test_every_saving_gives_the_same_loss_and_gradients(memory, tmp_path, trainer, pattern):
    cm, label_manager, network, loss = setup(memory, tmp_path, REGIONS, trainer)
    batch = masked_batch(memory, cm, label_manager, PATTERNS[pattern])
    total, gradients = step(memory, trainer, network, loss, batch, label_manager, checkpointing=False)
    saved_total, saved_gradients = step(memory, trainer, network, loss, batch, label_manager, checkpointing=True)
    torch.testing.assert_close(saved_total, total, rtol=1e-5, atol=0)
    assert_same_gradients(saved_gradients, gradients)


@pytest.mark.parametrize("labels", [REGIONS, LABELS], ids=["regions", "labels"])
@pytest.mark.parametrize("pattern", ["mixed", "sample-empty"])
def test_multi_encoder_checkpointing_gives_the_same_outputs(memory, tmp_path, labels, pattern):
    cm, label_manager, network, loss = setup(memory, tmp_path, labels)
    data, mask, target = masked_batch(memory, cm, label_manager, PATTERNS[pattern])
    results = []
    for checkpointing in (False, True):
        network.activation_checkpointing = checkpointing
        out = network(data, mask, return_all=True)
        results.append([o.detach() for o in (*out.fused, *out.students, out.fused_features, out.student_features)])
    for a, b in zip(*results):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    if labels is LABELS:  # label-based PRISM: softmax KL, prototypes per label
        total, gradients = step(memory, "nnUNetTrainerPRISM", network, loss, (data, mask, target), label_manager,
                                False)
        saved_total, saved_gradients = step(memory, "nnUNetTrainerPRISM", network, loss, (data, mask, target),
                                            label_manager, True)
        torch.testing.assert_close(saved_total, total, rtol=1e-5, atol=0)
        assert_same_gradients(saved_gradients, gradients)


def test_gmd_decoupled_gradients_and_statistics_are_the_same_with_the_saving(memory, tmp_path):
    """GMD's k subset backward passes each recompute the decoder rows of their subset's
    modalities: the same subset gradients, hence the same projection, statistics and update."""
    from nnunet_prism.training.gmd.backward import gmd_backward
    cm, label_manager, network, loss = setup(memory, tmp_path, REGIONS, "nnUNetTrainerGMD")
    data, mask, target = masked_batch(memory, cm, label_manager, PATTERNS["mixed"])
    results = []
    for checkpointing in (False, True):
        network.activation_checkpointing = checkpointing
        network.zero_grad(set_to_none=True)
        skips, losses = memory.gmd_losses(network, loss, data, mask, target)
        stats = gmd_backward(network.shared_parameters(), network.modality_parameters(), skips, losses,
                             generator=torch.Generator().manual_seed(3))
        results.append((stats, [p.grad for p in network.parameters()]))
    (plain_stats, plain), (saved_stats, saved) = results
    assert saved_stats.pairs == plain_stats.pairs == 10 and saved_stats.conflicting == plain_stats.conflicting
    assert saved_stats.cosine_sum_before == pytest.approx(plain_stats.cosine_sum_before, rel=1e-5)
    assert saved_stats.cosine_sum_after == pytest.approx(plain_stats.cosine_sum_after, rel=1e-5)
    assert_same_gradients(saved, plain)


def test_fusing_only_the_modalities_a_subset_uses_changes_nothing():
    """GMD's subset losses fuse only the modalities their subset uses: bit for bit the mean over
    all modalities with the others absent, and the unused modalities' logits leave the graph."""
    logits = [torch.randn(2, 4, 3, 4, 4, requires_grad=True), torch.randn(2, 4, 3, 2, 2, requires_grad=True)]
    mask = torch.tensor([[True, False, True, False], [False, False, True, False]])
    every = fuse_modalities(logits, mask)
    used = fuse_modalities(logits, mask, [0, 2])
    assert all(torch.equal(a, b) for a, b in zip(used, every))
    grads = torch.autograd.grad(sum(u.sum() for u in used), logits)
    assert all(float(g[:, [1, 3]].abs().sum()) == 0 for g in grads) and float(grads[0][:, 0].abs().sum()) > 0


@pytest.mark.parametrize("trainer", SAVING_TRAINERS[1:4])
def test_checkpointing_is_off_by_default_and_not_used_without_gradients(memory, tmp_path, trainer):
    cm, label_manager, network, _ = setup(memory, tmp_path, REGIONS, trainer)
    assert network.activation_checkpointing is False and not network.recomputing()
    network.activation_checkpointing = True
    assert network.recomputing()
    with torch.no_grad():
        assert not network.recomputing()
    assert not network.eval().recomputing()


@pytest.mark.parametrize("trainer, present", [(t, p) for t in SAVING_TRAINERS for p in (1, 3)])
def test_memory_count_shows_the_saving(memory, tmp_path, trainer, present):
    """The benchmark's count (saved bytes + the largest recomputed region) drops with the saving;
    nnU-Net's own network is the reference. The multi-encoder saving grows with the number of
    present modalities (more decoder rows)."""
    cm, label_manager, network, loss = setup(memory, tmp_path, REGIONS, trainer)
    batch = memory.make_batch(cm, label_manager, cm.patch_size, 3, present, "cpu")
    peaks = {}
    for checkpointing in (False, True):
        network.activation_checkpointing = checkpointing
        saved, region = memory.saved_activation_bytes(trainer, network, loss, batch, label_manager,
                                                      checkpoint_loss=checkpointing)
        assert (region > 0) == checkpointing
        peaks[checkpointing] = saved + region
    plans_manager = memory.load_plans(*small_plans(tmp_path, REGIONS), "3d_fullres")[0]
    plain = memory.build_network("nnUNetTrainer", plans_manager, cm, 3, label_manager.num_segmentation_heads)
    reference = sum(memory.saved_activation_bytes("nnUNetTrainer", plain, loss,
                                                  memory.make_batch(cm, label_manager, cm.patch_size, 3, 3, "cpu"),
                                                  label_manager))
    assert peaks[True] < (0.7 if present == 3 or trainer not in memory.MULTI_ENCODER else 0.9) * peaks[False]
    assert peaks[True] / reference < peaks[False] / reference
