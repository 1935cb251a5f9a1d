"""Losses of a few seeded training steps per trainer: a fingerprint to compare two versions of
the code (a refactoring must leave it unchanged). Needs a planned and preprocessed dataset and
``nnUNet_n_proc_DA=0`` (batches drawn in this process).

    python benchmarks/loss_fingerprint.py DATASET_ID [--trainers ...] [--steps 3] -o fingerprint.json

For every trainer: torch/numpy/random seeded before the network is built and before every batch
and step, so every trainer sees the same cases; writes one JSON object {trainer: {"losses": [...],
"weight_sum": float}} (nnU-Net prints its own log to stdout).
"""
import argparse
import json
import random

import numpy
import torch

TRAINERS = ["nnUNetTrainerPrismBase", "nnUNetTrainerModalityDropout", "nnUNetTrainerMissingModality",
            "nnUNetTrainerPRISM", "nnUNetTrainerShaSpec", "nnUNetTrainerGMD", "nnUNetTrainerDS"]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    numpy.random.seed(seed)
    torch.manual_seed(seed)


def fingerprint(dataset: str, trainer_name: str, configuration: str, steps: int) -> dict:
    from nnunetv2.run.run_training import get_trainer_from_args

    seed_everything(0)
    trainer = get_trainer_from_args(dataset, configuration, 0, trainer_name, device=torch.device("cpu"))
    trainer.on_train_start()
    trainer.network.train()
    losses = []
    for step in range(steps):
        seed_everything(100 + step)
        batch = next(trainer.dataloader_train)
        seed_everything(200 + step)
        losses.append(float(trainer.train_step(batch)["loss"]))
    weight_sum = float(sum(p.detach().double().abs().sum() for p in trainer.network.parameters()))
    trainer.on_train_end()
    return {"losses": losses, "weight_sum": weight_sum}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--trainers", nargs="+", default=TRAINERS)
    parser.add_argument("--configuration", default="3d_fullres")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("-o", "--output", required=True, help="JSON file to write")
    args = parser.parse_args()
    result = {name: fingerprint(args.dataset, name, args.configuration, args.steps) for name in args.trainers}
    with open(args.output, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
