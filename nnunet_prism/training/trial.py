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
        # nnU-Net's trainer creates its fold folder and log file while it is built: build it
        # with nnUNet_results (read from the environment when used) pointing at the scratch folder
        with results_folder(scratch), contextlib.redirect_stdout(io.StringIO()):  # nnU-Net prints its set-up
            trainer = get_trainer_from_args(dataset, configuration, 0, name, device=device)
        if force_compile is not None:
            trainer._do_i_compile = lambda: force_compile
        with contextlib.redirect_stdout(io.StringIO()):
            trainer.on_train_start()
        try:
            yield trainer
        finally:
            with contextlib.redirect_stdout(io.StringIO()):
                trainer.on_train_end()


@contextlib.contextmanager
def results_folder(folder: str) -> Iterator[None]:
    """``nnUNet_results`` set to ``folder`` inside the block, restored (or unset) after it."""
    before = os.environ.get("nnUNet_results")
    os.environ["nnUNet_results"] = folder
    try:
        yield
    finally:
        if before is None:
            del os.environ["nnUNet_results"]
        else:
            os.environ["nnUNet_results"] = before


def log_lines(trainer, containing: str) -> list:
    """The lines of the trainer's log file that contain ``containing``."""
    if not os.path.isfile(trainer.log_file):
        return []
    with open(trainer.log_file, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if containing in line]
