"""A trainer set up the way ``nnUNetv2_train`` sets it up, for a few steps whose files go to a
scratch folder (``nnunet_prism doctor --cuda``, ``benchmarks/gpu.py``)."""
from __future__ import annotations

import contextlib
import io
import os
import tempfile
from typing import Iterator, Optional

import torch


@contextlib.contextmanager
def trial_trainer(dataset: str, configuration: str, name: str, device: torch.device,
                  force_compile: Optional[bool] = None) -> Iterator:
    """Trainer ``name`` (nnU-Net's name resolution) on fold 0 of ``dataset`` after nnU-Net's
    ``on_train_start`` (network, optimiser, data loaders); ``on_train_end`` on exit. Its log,
    debug files and final checkpoint go to a temporary folder, never into nnUNet_results.
    ``force_compile``: overrides nnU-Net's choice (``_do_i_compile``: CUDA, unless
    ``nnUNet_compile`` says otherwise), e.g. True to take the compile path on a CPU."""
    from nnunetv2.run.run_training import get_trainer_from_args

    with tempfile.TemporaryDirectory(prefix="nnunet_prism_trial_") as scratch:
        with contextlib.redirect_stdout(io.StringIO()):  # nnU-Net prints its set-up
            trainer = get_trainer_from_args(dataset, configuration, 0, name, device=device)
        if force_compile is not None:
            trainer._do_i_compile = lambda: force_compile
        trainer.output_folder_base = os.path.join(scratch, name)
        trainer.output_folder = os.path.join(scratch, name, "fold_0")
        trainer.log_file = os.path.join(trainer.output_folder, "trial_log.txt")
        os.makedirs(trainer.output_folder)
        with contextlib.redirect_stdout(io.StringIO()):
            trainer.on_train_start()
        try:
            yield trainer
        finally:
            with contextlib.redirect_stdout(io.StringIO()):
                trainer.on_train_end()


def log_lines(trainer, containing: str) -> list:
    """The lines of the trainer's log file that contain ``containing``."""
    if not os.path.isfile(trainer.log_file):
        return []
    with open(trainer.log_file, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if containing in line]
