"""nnU-Net's default CUDA path compiles the network (``torch.compile``) and its Dice term; measured
here on the CPU with dynamo's ``eager`` backend (dynamo traces, no kernels are built). Every
trainer's network, compiled the way its trainer compiles it (``compilation.compile_network``:
the whole network, or its regions), in training mode with activation checkpointing where it has
it, runs all 15 modality masks in training steps (forward, the trainer's loss, backward), then
validation batches and sliding-window patches (batch 1, no mask, absent channels all zero):
no graph break, and no more graphs than a small fixed number for all of that. ModalityDropout
trains nnU-Net's network with nnU-Net's loss (as ``nnUNetTrainer`` here), DS the GMD network
with GMD's subset losses. With AOTAutograd (``aot_eager``: the joint forward-backward graph
inductor compiles, without inductor's kernels) the compiled regions give the eager results."""
import copy
import json
from functools import partial

import pytest
import torch
import torch._dynamo
from torch._dynamo import OptimizedModule

from helpers.benchmarks import benchmark_module
from helpers.paths import BENCHMARKS
from nnunet_prism.modalities import subset_masks
from nnunet_prism.training.compilation import REGIONS, WHOLE, DynamoCounts, compile_mode, compile_network

pytestmark = pytest.mark.usefixtures("single_torch_thread")

#: trainer -> (how its trainer compiles the network, most graphs for all the steps below; measured
#: on torch 2.14: 5, 12, 12, 5, 9). nnU-Net's network (also ModalityDropout's) and ShaSpec's have
#: static shapes: one graph per grad mode and batch size (training 2, validation 2, sliding window
#: 1). The multi-encoder regions (MissingModality, PRISM): an encoder pass and a decoder call, each
#: for one row and for any number of rows (dynamo specialises size 1), with and without gradients,
#: and the plain forward of the sliding window. GMD/DS: encoders and decoder per grad mode and batch
#: size. nnU-Net's compiled Dice term adds its own graphs (deep-supervision levels, row counts).
#: Before the regions: 17 graph breaks and 27 graphs for the multi-encoder network, 6 and 9 for
#: ShaSpec, and GMD's training step was not compiled at all.
EXPECTED = {"nnUNetTrainer": (WHOLE, 6), "nnUNetTrainerMissingModality": (REGIONS, 13),
            "nnUNetTrainerPRISM": (REGIONS, 13), "nnUNetTrainerShaSpec": (WHOLE, 6),
            "nnUNetTrainerGMD": (REGIONS, 10)}
#: 2d as well for the network whose shapes depend on the mask (the others are the same code in 2d)
CASES = [(trainer, 3) for trainer in sorted(EXPECTED)] + [("nnUNetTrainerMissingModality", 2)]
MASKS = [torch.tensor(m) for m in subset_masks(4)]  # the 15 non-empty subsets of 4 modalities


@pytest.fixture
def eager_backend(monkeypatch):
    """Every torch.compile (nnU-Net's, the regions', the Dice term's) with dynamo's eager backend."""
    monkeypatch.setattr(torch, "compile", partial(torch.compile, backend="eager"))
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    yield
    torch._dynamo.reset()


@pytest.fixture(scope="module")
def memory():
    with benchmark_module("memory") as module:
        yield module


def small_plans(tmp_path, dims: int):
    """The BraTS2021-like plans cut to 3 stages (8/16/32 features), patch 16^3 (3d) or 32^2 (2d),
    batch 2, the four BraTS modalities and regions."""
    plans = json.loads((BENCHMARKS / "brats2021_like_plans.json").read_text())
    config = plans["configurations"]["3d_fullres"]
    arch = config["architecture"]["arch_kwargs"]
    arch.update(n_stages=3, features_per_stage=[8, 16, 32], kernel_sizes=[[3] * dims] * 3,
                strides=[[1] * dims, [2] * dims, [2] * dims], n_conv_per_stage=[2] * 3,
                n_conv_per_stage_decoder=[2] * 2)
    config["patch_size"] = [16] * 3 if dims == 3 else [32] * 2
    if dims == 2:
        arch.update(conv_op="torch.nn.modules.conv.Conv2d", norm_op="torch.nn.modules.instancenorm.InstanceNorm2d")
    (tmp_path / "plans.json").write_text(json.dumps(plans))
    (tmp_path / "dataset.json").write_text((BENCHMARKS / "brats2021_like_dataset.json").read_text())
    return tmp_path / "plans.json", tmp_path / "dataset.json"


def trainer_output(trainer, network, data, mask):
    """The logits a trainer's validation step takes its loss from."""
    if trainer in ("nnUNetTrainerMissingModality", "nnUNetTrainerPRISM"):
        return network(data, mask, return_all=True).fused
    return network(data) if trainer == "nnUNetTrainer" else network(data, mask)


def run_every_step(memory, trainer, network, loss, cm, label_manager):
    """Training steps over the 15 masks (two samples each), validation batches, sliding-window
    patches (deep supervision off, batch 1, no mask: all-zero channels are absent)."""
    data, _, target = memory.make_batch(cm, label_manager, cm.patch_size, 4, 4, "cpu")
    shape = (-1, 4) + (1,) * len(cm.patch_size)
    batches = [torch.stack([m, MASKS[(i + 5) % 15]]) for i, m in enumerate(MASKS)]
    network.train()
    for mask in batches:
        x = data * mask.reshape(shape)
        memory.training_loss(trainer, network, loss, x, mask, target, label_manager).backward()
    network.eval()
    with torch.no_grad():
        for mask in batches:
            loss(trainer_output(trainer, network, data * mask.reshape(shape), mask), target)
        getattr(network, "_orig_mod", network).decoder.deep_supervision = False
        for mask in MASKS + [torch.zeros(4, dtype=torch.bool)]:
            network(data[:1] * mask.reshape(shape))


@pytest.mark.parametrize("trainer, dims", CASES, ids=[f"{t}-{d}d" for t, d in CASES])
def test_every_network_compiles_without_graph_breaks_and_few_graphs(trainer, dims, memory, eager_backend,
                                                                    tmp_path):
    plans_manager, cm, label_manager, _ = memory.load_plans(*small_plans(tmp_path, dims), "3d_fullres")
    torch.manual_seed(0)
    network = memory.build_network(trainer, plans_manager, cm, 4, label_manager.num_segmentation_heads)
    if hasattr(network, "activation_checkpointing"):
        network.activation_checkpointing = True  # as the trainers do on CUDA
    lines = []
    network = compile_network(torch.compile(network), lines.append)  # what nnU-Net and our trainers do
    mode, most_graphs = EXPECTED[trainer]
    assert compile_mode(network) == mode and len(lines) == 1 and lines[0].startswith("torch.compile: ")
    loss = memory.nnunet_loss(cm, label_manager, compiled=True)
    assert isinstance(loss.loss.dc, OptimizedModule)  # nnU-Net's compiled Dice term

    run_every_step(memory, trainer, network, loss, cm, label_manager)
    counts = DynamoCounts.now()
    assert counts.graph_breaks == 0, DynamoCounts.break_reasons()
    assert 1 <= counts.graphs <= most_graphs


def test_compile_network_keeps_nnunets_wrapper_for_static_networks_and_logs_one_line(eager_backend):
    plain = torch.nn.Conv3d(1, 1, 1)
    lines = []
    assert compile_network(plain, lines.append) is plain and lines == []  # nnU-Net did not compile (CPU)
    wrapped = torch.compile(plain)
    assert compile_network(wrapped, lines.append) is wrapped and isinstance(wrapped, OptimizedModule)
    assert lines == ["torch.compile: whole network (nnU-Net's torch.compile of Conv3d)"]
    assert compile_mode(wrapped) == WHOLE and compile_mode(plain) == "off"


def test_pair_layout_of_a_hand_made_mask():
    from nnunet_prism.networks.pair_layout import PairLayout
    layout = PairLayout.of(torch.tensor([[1, 0, 1], [0, 0, 0]], dtype=torch.bool))  # sample 1 has nothing
    assert layout.pairs() == ([0, 0], [0, 2]) and layout.modality_rows() == [(0, 0, 1), (2, 1, 1)]
    assert layout.decoder_row_pairs() == [[0, 1], [], [0], [1]]  # fused rows 0 and 1, then one per pair
    assert layout.chunk_pairs(1) == [[0, 1], [0], [0], [1]]  # a row that uses nothing gets pair 0's shapes
    assert layout.chunk_pairs(3) == [[0, 1], [1]]
    samples, modalities, chunks = layout.index_tensors(torch.device("cpu"), 3)
    assert samples.tolist() == [0, 0] and modalities.tolist() == [0, 2] and [c.tolist() for c in chunks] == [[0, 1], [1]]
    empty = PairLayout.of(torch.zeros(2, 2, dtype=torch.bool))  # nothing anywhere: every pair, none counts
    assert not empty.any_present and empty.pairs() == ([0, 1, 0, 1], [0, 0, 1, 1])
    assert empty.decoder_row_pairs() == [[], []] and empty.chunk_pairs(1) == [[0], [0]]


@pytest.mark.parametrize("trainer", ["nnUNetTrainerMissingModality", "nnUNetTrainerGMD"])
def test_regions_through_aot_autograd_give_the_eager_outputs_and_gradients(trainer, memory, tmp_path):
    plans_manager, cm, label_manager, _ = memory.load_plans(*small_plans(tmp_path, 3), "3d_fullres")
    torch.manual_seed(0)
    eager = memory.build_network(trainer, plans_manager, cm, 4, label_manager.num_segmentation_heads).train()
    if hasattr(eager, "activation_checkpointing"):
        eager.activation_checkpointing = True  # the recomputation goes through AOTAutograd's partitioner
    compiled = copy.deepcopy(eager)
    torch._dynamo.reset()
    compiled.compile_regions(backend="aot_eager")
    loss = memory.nnunet_loss(cm, label_manager)
    data, _, target = memory.make_batch(cm, label_manager, cm.patch_size, 4, 4, "cpu")
    for mask in ([[1, 0, 0, 1], [0, 1, 1, 1]], [[0, 0, 1, 0], [1, 0, 0, 0]]):
        mask = torch.tensor(mask, dtype=torch.bool)
        results = []
        for network in (eager, compiled):
            network.zero_grad(set_to_none=True)
            total = memory.training_loss(trainer, network, loss, data * mask[:, :, None, None, None], mask, target,
                                         label_manager)
            total.backward()
            # AOTAutograd gives zeros where eager autograd gives None (a parameter the loss does not
            # reach: the lowest deep-supervision head, weight 0), as for nnU-Net's compiled network
            results.append([total.detach()] + [torch.zeros_like(p) if p.grad is None else p.grad
                                               for p in network.parameters()])
        # the same operations in the same order (measured: bit for bit); the tolerance only allows
        # float32 rounding should another torch version reorder a sum
        for a, b in zip(*results):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)
    torch._dynamo.reset()
