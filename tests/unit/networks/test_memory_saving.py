"""Activation checkpointing of the multi-encoder network (``activation_checkpointing``): the same
outputs, losses and gradients as without it, and less memory by benchmarks/memory.py's count."""
import json

import pytest
import torch

from helpers.benchmarks import benchmark_module
from helpers.paths import BENCHMARKS

REGIONS = {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": [3]}
LABELS = {"background": 0, "a": 1, "b": 2, "c": 3}


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


def setup(memory, tmp_path, labels):
    plans_manager, cm, label_manager, _ = memory.load_plans(*small_plans(tmp_path, labels), "3d_fullres")
    torch.manual_seed(0)
    network = memory.build_network("nnUNetTrainerPRISM", plans_manager, cm, 3, label_manager.num_segmentation_heads)
    return cm, label_manager, network.train(), memory.nnunet_loss(cm, label_manager)


def step(memory, network, loss, batch, label_manager, checkpointing: bool):
    """(outputs of forward_all, PRISM's loss, parameter gradients) with or without the saving
    (network checkpointing and, with it, the distillation terms recomputed too)."""
    data, mask, target = batch
    network.activation_checkpointing = checkpointing
    network.zero_grad(set_to_none=True)
    out = network(data, mask, return_all=True)
    outputs = [*out.fused, *out.students, out.fused_features, out.student_features]
    total = memory.training_loss("nnUNetTrainerPRISM", network, loss, data, mask, target, label_manager,
                                 checkpoint_loss=checkpointing)
    total.backward()
    return [o.detach() for o in outputs], total.detach(), [p.grad for p in network.parameters()]


@pytest.mark.parametrize("labels", [REGIONS, LABELS], ids=["regions", "labels"])
@pytest.mark.parametrize("pattern", [[[1, 1, 1], [1, 0, 1]], [[0, 1, 0], [0, 0, 0]]], ids=["mixed", "sample-empty"])
def test_checkpointing_gives_the_same_outputs_losses_and_gradients(memory, tmp_path, labels, pattern):
    cm, label_manager, network, loss = setup(memory, tmp_path, labels)
    data, _, target = memory.make_batch(cm, label_manager, cm.patch_size, 3, 3, "cpu")
    mask = torch.tensor(pattern, dtype=torch.bool)
    batch = (data * mask[:, :, None, None, None], mask, target)
    outputs, total, gradients = step(memory, network, loss, batch, label_manager, checkpointing=False)
    saved_outputs, saved_total, saved_gradients = step(memory, network, loss, batch, label_manager, checkpointing=True)
    for a, b in zip(saved_outputs, outputs):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(saved_total, total, atol=1e-5, rtol=1e-5)
    assert sum(g is not None for g in gradients) == sum(g is not None for g in saved_gradients) > 0
    for a, b in zip(saved_gradients, gradients):
        if b is not None:
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-3)


def test_checkpointing_is_off_by_default_and_not_used_without_gradients(memory, tmp_path):
    cm, label_manager, network, _ = setup(memory, tmp_path, REGIONS)
    assert network.activation_checkpointing is False
    network.activation_checkpointing = True
    data, mask, _ = memory.make_batch(cm, label_manager, cm.patch_size, 3, 3, "cpu")
    with torch.no_grad():
        fused = network(data, mask, return_all=True).fused
    network.activation_checkpointing = False
    with torch.no_grad():
        torch.testing.assert_close(fused, network(data, mask, return_all=True).fused)


@pytest.mark.parametrize("present", [1, 3])
def test_memory_count_shows_the_saving(memory, tmp_path, present):
    """The benchmark's count (saved bytes + the largest recomputed region) drops with the saving,
    more the more modalities are present; nnU-Net's own network is the reference."""
    cm, label_manager, network, loss = setup(memory, tmp_path, REGIONS)
    batch = memory.make_batch(cm, label_manager, cm.patch_size, 3, present, "cpu")
    peaks = {}
    for checkpointing in (False, True):
        network.activation_checkpointing = checkpointing
        saved, region = memory.saved_activation_bytes("nnUNetTrainerPRISM", network, loss, batch, label_manager,
                                                      checkpoint_loss=checkpointing)
        assert (region > 0) == checkpointing
        peaks[checkpointing] = saved + region
    plans_manager = memory.load_plans(*small_plans(tmp_path, REGIONS), "3d_fullres")[0]
    plain = memory.build_network("nnUNetTrainer", plans_manager, cm, 3, label_manager.num_segmentation_heads)
    reference = sum(memory.saved_activation_bytes("nnUNetTrainer", plain, loss,
                                                  memory.make_batch(cm, label_manager, cm.patch_size, 3, 3, "cpu"),
                                                  label_manager))
    assert peaks[True] < (0.7 if present == 3 else 0.9) * peaks[False]
    assert peaks[True] / reference < peaks[False] / reference
