"""Measure one trainer in this process: training step time, peak memory, parameters, and the
network's per-patch inference time (one forward; for multi-encoder networks also all 15 subsets
from one encoder pass). Prints one JSON line. The step time is the median over ``--steps``
different batches (the same cases for every trainer), after one warm-up step. Called by
``run.py`` once per trainer, each in its own process so that peak memory is that trainer's alone.

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


def timed(fn, device, repeats):
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset")
    parser.add_argument("trainer")
    parser.add_argument("--configuration", default="3d_fullres")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    from nnunetv2.run.run_training import get_trainer_from_args

    from nnunet_prism.modalities import subset_masks

    device = torch.device(args.device)
    torch.manual_seed(0)
    numpy.random.seed(0)  # nnU-Net's loader samples cases with numpy: every trainer gets the same batches
    trainer = get_trainer_from_args(args.dataset, args.configuration, 0, args.trainer, device=device)
    trainer.on_train_start()  # nnU-Net's own set-up: network, optimiser, data loaders
    batches = [next(trainer.dataloader_train) for _ in range(args.steps + 1)]
    trainer.network.train()
    trainer.train_step(batches[0])  # warm-up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    base_memory = peak_memory_mb(device)
    remaining = iter(batches[1:])
    step = timed(lambda: trainer.train_step(next(remaining)), device, args.steps)
    train_peak = peak_memory_mb(device)

    network = trainer.network
    network.eval()
    trainer.set_deep_supervision_enabled(False)
    patch = torch.randn(1, trainer.num_input_channels, *trainer.configuration_manager.patch_size, device=device)
    with torch.no_grad():
        forward = timed(lambda: network(patch), device, args.steps)
        result = {"trainer": args.trainer, "step_s": step, "steps": args.steps,
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
