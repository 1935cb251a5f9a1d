"""Measure one trainer in this process: training step time, peak memory, parameters, and the
network's per-patch inference time (one forward; for multi-encoder networks also all 15 subsets
from one encoder pass). Prints one JSON line. The step time is the mean over ``--steps``
different batches (the same cases for every trainer, recorded as ``batch_keys``), after one
warm-up step: what an epoch costs per iteration. (A multi-encoder step costs more the more
modalities its samples have, so per-batch times cluster by that count and their median jumps
between clusters; the median and every step's time are recorded too.) Called by ``run.py`` once
per trainer, each in its own process so that peak memory is that trainer's alone.

    python benchmarks/trainer_step.py DATASET_ID TRAINER [--steps N] [--device cpu|cuda]
"""
import argparse
import json
import resource
import statistics
import time

import numpy
import torch


def peak_memory_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def present_modalities(trainer, batches) -> float:
    """Mean number of modalities a training sample has in these batches (what the multi-encoder
    trainers encode and decode); all of them for trainers without a modality mask."""
    if not hasattr(trainer, "training_modality_mask"):
        return float(trainer.num_input_channels)
    return float(numpy.mean([trainer.case_availability(b["keys"]).sum(1).float().mean().item() for b in batches]))


def step_times(fn, device, repeats):
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def timed(fn, device, repeats):
    return statistics.median(step_times(fn, device, repeats))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset")
    parser.add_argument("trainer")
    parser.add_argument("--configuration", default="3d_fullres")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    from nnunetv2.run.run_training import get_trainer_from_args

    from nnunet_prism.modalities import subset_masks

    device = torch.device(args.device)
    torch.manual_seed(0)
    trainer = get_trainer_from_args(args.dataset, args.configuration, 0, args.trainer, device=device)
    trainer.on_train_start()  # nnU-Net's own set-up: network, optimiser, data loaders
    batches = []
    for i in range(args.steps + 1):
        # nnU-Net's loader picks cases with the global numpy RNG (in this process when
        # nnUNet_n_proc_DA=0): seeding before every batch gives every trainer the same cases,
        # whatever its augmentation draws
        numpy.random.seed(i)
        batches.append(next(trainer.dataloader_train))
    trainer.network.train()
    trainer.train_step(batches[0])  # warm-up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    base_memory = peak_memory_mb(device)
    remaining = iter(batches[1:])
    steps = step_times(lambda: trainer.train_step(next(remaining)), device, args.steps)
    train_peak = peak_memory_mb(device)

    network = trainer.network
    network.eval()
    trainer.set_deep_supervision_enabled(False)
    patch = torch.randn(1, trainer.num_input_channels, *trainer.configuration_manager.patch_size, device=device)
    with torch.no_grad():
        forward = timed(lambda: network(patch), device, args.steps)
        result = {"trainer": args.trainer, "step_s": statistics.mean(steps), "steps": args.steps,
                  "step_median_s": statistics.median(steps), "step_times_s": steps,
                  "batch_keys": [[str(k) for k in b["keys"]] for b in batches[1:]],
                  "present_modalities_per_sample": present_modalities(trainer, batches[1:]), "patch_forward_s": forward,
                  "peak_memory_mb": train_peak, "memory_before_steps_mb": base_memory,
                  "parameters": sum(p.numel() for p in network.parameters()),
                  "patch_size": list(trainer.configuration_manager.patch_size),
                  "batch_size": trainer.configuration_manager.batch_size, "device": str(device)}
        if hasattr(network, "forward_subsets"):
            masks = torch.as_tensor(subset_masks(trainer.num_input_channels), device=device)
            result["patch_all_subsets_s"] = timed(lambda: network.forward_subsets(patch, masks), device, args.steps)
    trainer.on_train_end()
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
