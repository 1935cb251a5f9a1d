"""Repeatable runs: the ``seed`` hyperparameter's RNG set-up.

``seed_everything`` seeds python, numpy and torch (every device); ``derived_seed`` gives
independent seeds for DDP ranks and data-augmentation workers; ``seeded_augmenter_workers``
gives the workers nnU-Net starts (``NonDetMultiThreadedAugmenter``, which otherwise seeds none)
their derived seeds. With workers the order in which their batches arrive still depends on
timing, so bit-for-bit repeatability needs ``nnUNet_n_proc_DA=0``.
"""
import contextlib
import itertools
import random
from typing import Callable

import numpy as np
import torch


def derived_seed(seed: int, *streams: int) -> int:
    """A 32-bit seed for the stream ``streams`` (rank, worker, ...) of ``seed``; independent streams."""
    return int(np.random.SeedSequence([seed, *streams]).generate_state(1)[0])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # all devices


@contextlib.contextmanager
def seeded_augmenter_workers(seed_of_worker: Callable[[int], int]):
    """While active, nnU-Net's trainer module builds its multi-process augmenters with one seed
    per worker (``seed_of_worker(k)``, k counting across the augmenters it builds)."""
    from nnunetv2.training.nnUNetTrainer import nnUNetTrainer as trainer_module

    original = trainer_module.NonDetMultiThreadedAugmenter
    counter = itertools.count()

    def seeded(*args, num_processes, seeds=None, **kwargs):
        seeds = [seed_of_worker(next(counter)) for _ in range(num_processes)]
        return original(*args, num_processes=num_processes, seeds=seeds, **kwargs)

    trainer_module.NonDetMultiThreadedAugmenter = seeded
    try:
        yield
    finally:
        trainer_module.NonDetMultiThreadedAugmenter = original
