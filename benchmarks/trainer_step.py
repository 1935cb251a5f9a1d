"""Measure one trainer in this process: training step time, peak memory, parameters, and the
network's per-patch inference time (one forward; for multi-encoder networks also all 15 subsets
from one encoder pass). Prints one JSON line. Called by ``run.py`` once per trainer, each in its
own process so that peak memory is that trainer's alone.

    python benchmarks/trainer_step.py DATASET_ID TRAINER [--steps N] [--device cpu|cuda]
"""
import argparse
import json
import resource
import statistics
import time

import torch


def peak_memory_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


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
    trainer = get_trainer_from_args(args.dataset, args.configuration, 0, args.trainer, device=device)
    trainer.on_train_start()  # nnU-Net's own set-up: network, optimiser, data loaders
    batch = next(trainer.dataloader_train)
    trainer.network.train()
    trainer.train_step(batch)  # warm-up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    base_memory = peak_memory_mb(device)
    step = timed(lambda: trainer.train_step(batch), device, args.steps)
    train_peak = peak_memory_mb(device)

    network = trainer.network
    network.eval()
    trainer.set_deep_supervision_enabled(False)
    patch = torch.randn(1, trainer.num_input_channels, *trainer.configuration_manager.patch_size, device=device)
    with torch.no_grad():
        forward = timed(lambda: network(patch), device, args.steps)
        result = {"trainer": args.trainer, "step_s": step, "patch_forward_s": forward,
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
