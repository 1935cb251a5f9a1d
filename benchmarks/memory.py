"""Training memory of every trainer's network at an nnU-Net plan, on any device.

For plain nnU-Net (``nnUNetTrainer``'s network), the multi-encoder network (MissingModality,
PRISM), ShaSpec and the dynamic-sharing network (GMD/DS) it counts the bytes autograd saves in
one training forward + the trainer's loss (``saved_tensors_hooks``: storage bytes of every
saved tensor, deduplicated by storage, parameters left out, the input batch counted once), and
the bytes of parameters + SGD momentum (+ gradients). Every trainer but nnUNetTrainer is
measured with 1, 2 and 4 modalities present (``--present``; 2 is the phantom's mix on average),
and every trainer whose network has ``activation_checkpointing`` with and without it (PRISM also
with its distillation terms recomputed, as its trainer does). The counts are exact for the patch
measured; ``--patch`` measures a smaller patch and scales linearly in voxels to the plan's patch
(the output says so). On CUDA each row also gets
``torch.cuda.max_memory_allocated`` of a real AMP step (autocast + GradScaler, SGD momentum).
``--step-time N`` times N forward+backward passes of every such trainer's step with and without it.

    python benchmarks/memory.py                                   # BraTS2021-like plan, 64^3 scaled
    python benchmarks/memory.py --patch 32 32 64 --present 2 4    # docs/benchmarks.md's table
    python benchmarks/memory.py --plans nnUNetPlans.json --configuration 3d_fullres --patch 64 64 64
    python benchmarks/memory.py --patch 32 64 64 --step-time 3 --only nnUNetTrainerPRISM

Output: a Markdown table on stdout, and JSON (``--json PATH``, else printed after the table).
"""
import argparse
import json
import platform
import random
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from nnunet_prism.memory_count import count_step

HERE = Path(__file__).resolve().parent
DEFAULT_PLANS = HERE / "brats2021_like_plans.json"
DEFAULT_DATASET = HERE / "brats2021_like_dataset.json"
GIB = 2 ** 30
TRAINERS = ("nnUNetTrainer", "nnUNetTrainerModalityDropout", "nnUNetTrainerMissingModality", "nnUNetTrainerPRISM",
            "nnUNetTrainerShaSpec", "nnUNetTrainerGMD", "nnUNetTrainerDS")
NNUNET_NETWORK = ("nnUNetTrainer", "nnUNetTrainerModalityDropout")  # nnU-Net's network and loss
MULTI_ENCODER = ("nnUNetTrainerMissingModality", "nnUNetTrainerPRISM")
DYNAMIC_SHARING = ("nnUNetTrainerGMD", "nnUNetTrainerDS")
GMD_SUBSETS = 5


# -- plans, networks and losses -------------------------------------------------------------
def load_plans(plans_path: Path, dataset_path: Path, configuration: str):
    """(PlansManager, ConfigurationManager, LabelManager, dataset_json)."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    plans_manager = PlansManager(str(plans_path))
    dataset_json = json.loads(Path(dataset_path).read_text())
    return (plans_manager, plans_manager.get_configuration(configuration),
            plans_manager.get_label_manager(dataset_json), dataset_json)


def build_network(trainer: str, plans_manager, cm, num_inputs: int, num_outputs: int) -> torch.nn.Module:
    """The network the trainer builds from the plans (deep supervision on)."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from nnunet_prism.networks.dynamic_sharing_unet import build_dynamic_sharing_unet
    from nnunet_prism.networks.multi_encoder_unet import build_multi_encoder_unet
    from nnunet_prism.networks.shaspec_unet import build_shaspec_unet
    if trainer in NNUNET_NETWORK:
        return nnUNetTrainer.build_network_architecture(plans_manager, cm, num_inputs, num_outputs, True)
    builder = (build_shaspec_unet if trainer == "nnUNetTrainerShaSpec" else
               build_dynamic_sharing_unet if trainer in DYNAMIC_SHARING else build_multi_encoder_unet)
    return builder(cm.network_arch_class_name, cm.network_arch_init_kwargs, cm.network_arch_init_kwargs_req_import,
                   num_inputs, num_outputs, True)


def nnunet_loss(cm, label_manager, compiled: bool = False):
    """nnU-Net's own training loss (Dice+BCE for regions, Dice+CE for labels, deep-supervision
    wrapper), made by nnUNetTrainer._build_loss on a stand-in for the trainer; ``compiled``: as
    on CUDA, where nnU-Net compiles its Dice term (``loss.dc = torch.compile(loss.dc)``)."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    stand_in = SimpleNamespace(label_manager=label_manager, configuration_manager=cm, is_ddp=False,
                               enable_deep_supervision=True, _do_i_compile=lambda: compiled)
    stand_in._get_deep_supervision_scales = lambda: nnUNetTrainer._get_deep_supervision_scales(stand_in)
    return nnUNetTrainer._build_loss(stand_in)


def make_batch(cm, label_manager, patch, num_inputs: int, present: int, device, seed: int = 0):
    """Data (B, M, *patch) with modalities >= ``present`` zeroed, mask (B, M), and a target per
    deep-supervision level ((B, R, *s) regions or (B, 1, *s) labels), nearest-downsampled."""
    generator = torch.Generator().manual_seed(seed)
    batch = cm.batch_size
    data = torch.randn(batch, num_inputs, *patch, generator=generator)
    mask = torch.zeros(batch, num_inputs, dtype=torch.bool)
    mask[:, :present] = True
    data[~mask] = 0
    labels = torch.randint(0, len(label_manager.all_labels), (batch, 1, *patch), generator=generator)
    if label_manager.has_regions:
        full = torch.cat([torch.isin(labels, torch.as_tensor(r if isinstance(r, (list, tuple)) else [r]))
                          for r in label_manager.foreground_regions], 1).float()
    else:
        full = labels.float()
    strides = np.cumprod(np.vstack(cm.pool_op_kernel_sizes), axis=0)[:-1]
    target = [full[(slice(None), slice(None), *(slice(None, None, int(s)) for s in stride))].to(device)
              for stride in strides]
    return data.to(device), mask.to(device), target


def gmd_losses(network, loss, data, mask, target):
    """GMD's and DS's forward: (the encoder skips, the k = GMD_SUBSETS subset losses (None where no
    sample has the subset)) for the same seeded subsets every call, from the trainer's own
    ``subset_losses``."""
    from nnunet_prism.modalities import subset_masks
    from nnunet_prism.training.trainers.nnUNetTrainerGMD import subset_losses
    subsets = torch.as_tensor(subset_masks(mask.shape[1]), device=data.device)
    chosen = random.Random(0).sample(range(len(subsets)), min(GMD_SUBSETS, len(subsets)))
    skips = network.encode(data)
    return skips, subset_losses(loss, network.decode(skips), target, mask, subsets[chosen])


def training_loss(trainer: str, network, loss, data, mask, target, label_manager, checkpoint_loss: bool = False):
    """The trainer's objective for one batch (forward included), from the trainers' own loss
    functions (GMD and DS: the sum of the subset losses, DS's objective; GMD's gradients come from
    the same graph, ``backward``). ``checkpoint_loss``: PRISM's distillation terms are recomputed
    in the backward pass, ``checkpoint_rows`` pairs at a time (``recompute_rows``, as the trainer
    does under activation checkpointing)."""
    if trainer in NNUNET_NETWORK:
        return loss(network(data), target)
    if trainer in MULTI_ENCODER:
        from nnunet_prism.losses.unimodal import unimodal_losses
        out = network(data, mask, return_all=True)
        # PASSION L_task: fused (deep-supervised) + each modality's own loss at full resolution
        total = loss(out.fused, target) + unimodal_losses(loss, out.students, out.samples, out.modalities,
                                                          mask.shape[1], target).sum()
        if trainer == "nnUNetTrainerPRISM":
            from nnunet_prism.losses import DEFAULT_LAMBDA_PIXEL, DEFAULT_LAMBDA_PROTO, DEFAULT_TEMPERATURE
            from nnunet_prism.training.trainers.nnUNetTrainerPRISM import prism_objective
            total = total + prism_objective(out, target, torch.ones(mask.shape[1], device=data.device), label_manager,
                                            loss.weight_factors, DEFAULT_TEMPERATURE, DEFAULT_LAMBDA_PIXEL,
                                            DEFAULT_LAMBDA_PROTO, None,
                                            recompute_rows=network.checkpoint_rows if checkpoint_loss else None)[0]
        return total
    if trainer == "nnUNetTrainerShaSpec":
        from nnunet_prism.losses.shaspec import DEFAULT_ALPHA, DEFAULT_BETA
        from nnunet_prism.training.trainers.nnUNetTrainerShaSpec import shaspec_objective
        out = network(data, mask, return_all=True)
        return shaspec_objective(out, loss(out.logits, target), out.modality_mask, DEFAULT_ALPHA, DEFAULT_BETA)[0]
    if trainer in DYNAMIC_SHARING:
        return sum(value for value in gmd_losses(network, loss, data, mask, target)[1] if value is not None)
    raise ValueError(f"unknown trainer {trainer}")


def backward(trainer: str, network, loss, data, mask, target, label_manager, checkpoint_loss: bool = False,
             scaler=None, autocast: bool = False):
    """One training step's forward, loss and backward as the trainer runs them, gradients left in
    ``.grad`` (scaled by ``scaler``, a GradScaler, if given; forward and loss under CUDA autocast
    with ``autocast``): GMD through ``gmd_backward`` (k subset backward passes, decoupled), the
    others through ``training_loss(...).backward()``. Returns the loss (detached; GMD: the sum of
    the subset losses)."""
    with torch.autocast("cuda", enabled=autocast):
        if trainer == "nnUNetTrainerGMD":
            skips, losses = gmd_losses(network, loss, data, mask, target)
        else:
            total = training_loss(trainer, network, loss, data, mask, target, label_manager, checkpoint_loss)
    if trainer == "nnUNetTrainerGMD":
        from nnunet_prism.training.gmd.backward import gmd_backward, loss_scale
        gmd_backward(network.shared_parameters(), network.modality_parameters(), skips, losses,
                     scale=loss_scale(scaler, data.device), generator=torch.Generator().manual_seed(0))
        return sum(value.detach() for value in losses if value is not None)
    (scaler.scale(total) if scaler is not None else total).backward()
    return total.detach()


def backward_held_bytes(trainer: str, network, data) -> tuple:
    """(grows with the patch, fixed) bytes the trainer's backward holds of its own beside the
    graph: GMD's skip-gradient accumulators and (k, |theta|) subset gradients
    (``held_gradient_bytes``), nothing for the others (one ``loss.backward()``)."""
    if trainer != "nnUNetTrainerGMD":
        return 0, 0
    from nnunet_prism.training.gmd.backward import held_gradient_bytes
    with torch.no_grad():
        skips = network.encode(data)
    return held_gradient_bytes(skips, network.shared_parameters(), GMD_SUBSETS)


def state_bytes(network) -> int:
    """Parameters + their gradients + SGD momentum (one buffer each), fp32."""
    return 3 * sum(p.numel() * p.element_size() for p in network.parameters())


# -- measurements ---------------------------------------------------------------------------
def saved_activation_bytes(trainer, network, loss, batch, label_manager, checkpoint_loss=False):
    """(bytes saved for the backward pass, largest recomputed region's extra bytes)."""
    data, mask, target = batch
    counter = count_step(network, lambda: training_loss(trainer, network, loss, data, mask, target, label_manager,
                                                        checkpoint_loss), include=[data])
    return counter.total, counter.largest_region


def cuda_amp_peak(trainer, network, loss, batch, label_manager, device, checkpoint_loss=False) -> float:
    """torch.cuda.max_memory_allocated (bytes) of the second of two AMP steps (the first creates
    SGD's momentum buffers): parameters, gradients, momentum and the step's activations."""
    data, mask, target = batch
    optimizer = torch.optim.SGD(network.parameters(), 1e-2, momentum=0.99, nesterov=True)
    scaler = torch.amp.GradScaler("cuda")
    for step in range(2):
        if step:
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        optimizer.zero_grad(set_to_none=True)
        backward(trainer, network, loss, data, mask, target, label_manager, checkpoint_loss, scaler, autocast=True)
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(network.parameters(), 12)
        scaler.step(optimizer)
        scaler.update()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    optimizer.zero_grad(set_to_none=True)
    return float(peak)


def step_seconds(trainer, network, loss, batch, label_manager, repeats: int, checkpoint_loss=False) -> float:
    """Mean seconds of ``repeats`` forward + loss + backward passes as the trainer runs them
    (``backward``; on CUDA under AMP, as nnU-Net trains), after one warm-up: wall time on CUDA,
    this process's CPU time on the CPU (robust to other processes on a shared machine)."""
    data, mask, target = batch
    clock = time.perf_counter if data.is_cuda else time.process_time
    scaler = torch.amp.GradScaler("cuda") if data.is_cuda else None
    times = []
    for i in range(repeats + 1):
        network.zero_grad(set_to_none=True)
        if data.is_cuda:
            torch.cuda.synchronize(data.device)
        start = clock()
        backward(trainer, network, loss, data, mask, target, label_manager, checkpoint_loss, scaler,
                 autocast=data.is_cuda)
        if data.is_cuda:
            torch.cuda.synchronize(data.device)
        if i:
            times.append(clock() - start)
    return float(np.mean(times))


def savings(trainer: str, network) -> list:
    """The memory savings to measure: "off", "network" (the network's activation_checkpointing),
    "network + loss" (PRISM: its distillation terms recomputed as well)."""
    if not hasattr(network, "activation_checkpointing"):
        return ["off"]
    return ["off", "network"] + (["network + loss"] if trainer == "nnUNetTrainerPRISM" else [])


def apply_saving(network, saving: str) -> bool:
    """Switch the network's checkpointing for ``saving``; returns whether the loss is checkpointed."""
    if hasattr(network, "activation_checkpointing"):
        network.activation_checkpointing = saving != "off"
    return saving == "network + loss"


def measure(args) -> dict:
    device = torch.device(args.device)
    plans_manager, cm, label_manager, dataset_json = load_plans(args.plans, args.dataset_json, args.configuration)
    num_inputs = len(dataset_json["channel_names"])
    num_outputs = label_manager.num_segmentation_heads
    plan_patch = [int(p) for p in cm.patch_size]
    patch = args.patch or plan_patch
    scale = float(np.prod(plan_patch) / np.prod(patch))
    loss = nnunet_loss(cm, label_manager)
    presents = sorted({min(n, num_inputs) for n in args.present})
    rows = []
    for trainer in args.only or TRAINERS:
        torch.manual_seed(0)
        network = build_network(trainer, plans_manager, cm, num_inputs, num_outputs).to(device)
        if args.checkpoint_rows and hasattr(network, "checkpoint_rows"):
            network.checkpoint_rows = args.checkpoint_rows
        counts = [num_inputs] if trainer == "nnUNetTrainer" else presents
        for saving in savings(trainer, network):
            checkpoint_loss = apply_saving(network, saving)
            for present in counts:
                batch = make_batch(cm, label_manager, patch, num_inputs, present, device)
                saved, region = saved_activation_bytes(trainer, network, loss, batch, label_manager, checkpoint_loss)
                row = {"trainer": trainer, "saving": saving, "present": present,
                       "saved_bytes_measured": saved, "recomputed_region_bytes_measured": region,
                       "state_bytes": state_bytes(network),
                       "parameters": sum(p.numel() for p in network.parameters())}
                grows, fixed = backward_held_bytes(trainer, network, batch[0])
                row["backward_held_bytes"] = grows * scale + fixed
                row["saved_bytes"] = saved * scale
                # backward: saved + one recomputed region + the trainer's own gradient buffers
                row["peak_bytes"] = (saved + region) * scale + row["backward_held_bytes"]
                if device.type == "cuda":
                    row["cuda_amp_peak_bytes"] = cuda_amp_peak(trainer, network, loss, batch, label_manager, device,
                                                               checkpoint_loss)
                rows.append(row)
                print(f"  measured {trainer} saving={saving} present={present}: saved {row['saved_bytes'] / GIB:.2f} "
                      f"GiB, with the largest recomputed region {row['peak_bytes'] / GIB:.2f} GiB", flush=True)
        if args.step_time and len(savings(trainer, network)) > 1:
            for present in sorted({min(n, num_inputs) for n in args.step_present} & set(counts)):
                batch = make_batch(cm, label_manager, patch, num_inputs, present, device)
                times = {}
                for _ in range(2):  # alternate: the load of a shared machine drifts
                    for saving in savings(trainer, network):
                        checkpoint_loss = apply_saving(network, saving)
                        times.setdefault(saving, []).append(step_seconds(trainer, network, loss, batch,
                                                                         label_manager, args.step_time,
                                                                         checkpoint_loss))
                for row in rows:
                    if row["trainer"] == trainer and row["present"] == present:
                        row["step_s"] = float(np.mean(times[row["saving"]]))
                        row["step_ratio_to_off"] = row["step_s"] / float(np.mean(times["off"]))
                        print(f"  timed {trainer} saving={row['saving']} present={present}: {row['step_s']:.2f} s, "
                              f"{row['step_ratio_to_off']:.2f}x the step without saving", flush=True)
        del network
        if device.type == "cuda":
            torch.cuda.empty_cache()
    plain = next((r["peak_bytes"] for r in rows if r["trainer"] == "nnUNetTrainer"), None)
    for row in rows:
        row["ratio_to_nnunet"] = row["peak_bytes"] / plain if plain else None
    return {"plans": str(args.plans), "configuration": args.configuration, "plan_patch": plan_patch,
            "modalities": num_inputs, "measured_patch": list(patch), "scale": scale, "batch_size": cm.batch_size,
            "device": str(device), "threads": torch.get_num_threads(),
            "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
            "rows": rows}


def markdown(result: dict) -> str:
    has_cuda = any("cuda_amp_peak_bytes" in r for r in result["rows"])
    has_time = any("step_s" in r for r in result["rows"])
    head = ["trainer", "saving", "modalities present", "saved activations", "+ recomputed region + own gradient buffers",
            "ratio to nnU-Net", "params + grads + momentum"]
    head += ["CUDA AMP step peak"] if has_cuda else []
    head += ["step time", "ratio to no saving"] if has_time else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result["rows"]:
        cells = [r["trainer"], r["saving"], f"{r['present']} of {result['modalities']}",
                 f"{r['saved_bytes'] / GIB:.2f} GiB", f"{r['peak_bytes'] / GIB:.2f} GiB",
                 f"{r['ratio_to_nnunet']:.2f}x" if r["ratio_to_nnunet"] else "–",
                 f"{r['state_bytes'] / GIB:.2f} GiB"]
        if has_cuda:
            cells.append(f"{r['cuda_amp_peak_bytes'] / GIB:.2f} GiB" if "cuda_amp_peak_bytes" in r else "–")
        if has_time:
            cells += ([f"{r['step_s']:.2f} s", f"{r['step_ratio_to_off']:.2f}x"]
                      if "step_s" in r else ["–", "–"])
        lines.append("| " + " | ".join(cells) + " |")
    scaled = result["scale"] != 1.0
    note = ("Saved activations: bytes autograd saves in one training forward + loss (fp32, each storage once, "
            "parameters left out, input batch and checkpoint inputs in); the ratio compares saved + the largest "
            "region that activation checkpointing recomputes in the backward pass + the gradient buffers the "
            "trainer's backward holds of its own (GMD: skip-gradient accumulators and k subset gradients of "
            "the shared decoder). Measured at patch "
            f"{'x'.join(map(str, result['measured_patch']))}"
            + (f" and scaled linearly in voxels (x{result['scale']:g}) to the plan's "
               f"{'x'.join(map(str, result['plan_patch']))} (the few patch-independent tensors, such as "
               "weights composed inside a region, are scaled too)" if scaled else "")
            + f"; batch {result['batch_size']}; device {result['device']}; {result['machine']}.")
    return "\n".join(lines) + "\n\n" + note


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plans", type=Path, default=DEFAULT_PLANS)
    parser.add_argument("--dataset-json", type=Path, default=None,
                        help="default: dataset.json beside --plans, else the BraTS2021-like one")
    parser.add_argument("--configuration", default="3d_fullres")
    parser.add_argument("--patch", type=int, nargs="+", default=None,
                        help="measure at this patch and scale to the plan's (default: 64^3 for the default "
                             "plans, else the plan's patch)")
    parser.add_argument("--present", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--only", nargs="+", choices=TRAINERS, default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--step-time", type=int, default=0, metavar="N",
                        help="also time N forward+loss+backward passes with each saving for every trainer that "
                             "has one (twice, alternating, after a warm-up each; CUDA: under AMP)")
    parser.add_argument("--step-present", type=int, nargs="+", default=[4],
                        help="modalities present in the timed steps (each of --present; default all four)")
    parser.add_argument("--checkpoint-rows", type=int, default=None,
                        help="decoder rows per recomputed chunk (the network's checkpoint_rows)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.dataset_json is None:
        beside = args.plans.parent / "dataset.json"
        args.dataset_json = beside if beside.is_file() else DEFAULT_DATASET
    if args.patch is None and args.plans == DEFAULT_PLANS:
        args.patch = [64, 64, 64]
    if args.only and "nnUNetTrainer" not in args.only:
        args.only = ["nnUNetTrainer"] + args.only
    result = measure(args)
    print(markdown(result))
    text = json.dumps(result, indent=1)
    if args.json:
        args.json.write_text(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
