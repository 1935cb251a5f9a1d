"""Training loop of M2DN on 2D slices, with nnU-Net-style results folder and checkpoints.

    nnUNet_results/<dataset>/M2DN__<plans>__2d/
        dataset.json, plans.json                  (copied, as nnU-Net does)
        fold_X/checkpoint_latest.pth, checkpoint_final.pth, training_log.txt, progress.png

``resume=True`` (the command's ``--c``) continues from checkpoint_latest.pth (or _final) with
the network, optimiser, iteration, loss history and both random generators restored, so an
interrupted run continues exactly. Optimiser: AdamW with nnU-Net's poly learning-rate decay
(1 - i/N)^0.9 and gradient clipping at 1.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch

from nnunet_prism.errors import MissingFileError
from nnunet_prism.modalities import ModalityError
from nnunet_prism.m2dn.data import (CaseReader, SliceSampler, fold_split, nnunet_folder,
                                         open_preprocessed, slice_patch_size)
from nnunet_prism.m2dn.diffusion import MaskedDiffusion, sample_training_masks
from nnunet_prism.m2dn.network import M2DNet

logger = logging.getLogger(__name__)

MODEL_NAME = "M2DN"


@dataclass
class TrainingOptions:
    iterations: int = 20000
    batch_size: int = 16
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5
    save_every: int = 250
    log_every: int = 50
    seed: int = 0
    num_timesteps: int = 1000
    encoder_channels: int = 8
    widths: List[int] = field(default_factory=lambda: [16, 32, 64])
    time_dim: int = 64
    patch_size: Optional[List[int]] = None  # None: from the plans (slice_patch_size)


def model_root(dataset_name: str, plans_identifier: str = "nnUNetPlans", results_root=None) -> Path:
    root = Path(results_root) if results_root else nnunet_folder("nnUNet_results")
    return root / dataset_name / f"{MODEL_NAME}__{plans_identifier}__2d"


def fold_folder(dataset_name: str, fold, plans_identifier: str = "nnUNetPlans", results_root=None) -> Path:
    return model_root(dataset_name, plans_identifier, results_root) / f"fold_{fold}"


def find_checkpoint(folder: Path, name: Optional[str] = None) -> Path:
    """checkpoint_final.pth (or ``name``), falling back to checkpoint_latest.pth."""
    candidates = [name] if name else ["checkpoint_final.pth", "checkpoint_latest.pth"]
    for candidate in candidates:
        if (folder / candidate).is_file():
            return folder / candidate
    raise MissingFileError(f"no M2DN checkpoint ({' or '.join(candidates)}) in {folder}; "
                           f"run 'nnunet_prism m2dn train' first")


def load_model(checkpoint: Path, device: str = "cpu") -> Tuple[M2DNet, MaskedDiffusion, dict]:
    """(network in eval mode, diffusion, config) from a checkpoint written by M2DNTrainer."""
    state = torch.load(str(checkpoint), map_location="cpu", weights_only=False)
    config = state["config"]
    network = M2DNet(**config["network"])
    network.load_state_dict(state["network_weights"])
    return network.to(device).eval(), MaskedDiffusion(**config["diffusion"]), config


class M2DNTrainer:
    def __init__(self, dataset, fold, configuration: str = "3d_fullres", plans_identifier: str = "nnUNetPlans",
                 device: str = "cpu", options: Optional[TrainingOptions] = None,
                 preprocessed_root=None, results_root=None):
        self.options = options or TrainingOptions()
        self.device = torch.device(device)
        self.pre = open_preprocessed(dataset, configuration, plans_identifier, preprocessed_root)
        self.fold = fold
        train_ids, self.held_out = fold_split(self.pre, fold)
        self.reader = CaseReader(self.pre, train_ids)
        patch = self.options.patch_size or list(slice_patch_size(self.pre.plans, configuration))
        self.options.patch_size = [int(v) for v in patch]
        self.sampler = SliceSampler(self.reader, self.options.patch_size, seed=self.options.seed)
        torch.manual_seed(self.options.seed)
        M = len(self.pre.modalities)
        if M < 2:
            raise ModalityError(f"{self.pre.dataset_name} has one modality; M2DN needs at least two")
        self.network = M2DNet(M, self.options.encoder_channels, self.options.widths, self.options.time_dim).to(self.device)
        self.diffusion = MaskedDiffusion(self.options.num_timesteps)
        self.optimizer = torch.optim.AdamW(self.network.parameters(), lr=self.options.learning_rate,
                                           weight_decay=self.options.weight_decay)
        self.generator = torch.Generator(device="cpu").manual_seed(self.options.seed)
        self.iteration = 0
        self.losses: List[Tuple[int, float]] = []
        self.output_folder = fold_folder(self.pre.dataset_name, fold, plans_identifier, results_root)
        self.log_file: Optional[Path] = None

    # -- bookkeeping ---------------------------------------------------------------------------
    def config(self) -> dict:
        return {"network": self.network.config, "diffusion": self.diffusion.config(),
                "modalities": self.pre.modalities, "dataset_name": self.pre.dataset_name,
                "configuration": self.pre.configuration, "plans_identifier": self.pre.plans_identifier,
                "fold": str(self.fold), "held_out": self.held_out, "options": asdict(self.options)}

    def log(self, message: str) -> None:
        """A timestamped progress line: to this module's logger (the command prints it) and the log file."""
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')}: {message}"
        logger.info(line)
        if self.log_file is not None:
            with open(self.log_file, "a", encoding="utf-8") as f:
                f.write(line + "\n")

    def save_checkpoint(self, name: str) -> Path:
        path = self.output_folder / name
        state = {"network_weights": self.network.state_dict(), "optimizer_state": self.optimizer.state_dict(),
                 "iteration": self.iteration, "losses": self.losses, "config": self.config(),
                 "rng": {"numpy": self.sampler.rng.bit_generator.state, "torch": self.generator.get_state(),
                         "torch_global": torch.get_rng_state()}}
        tmp = path.with_suffix(".tmp")
        torch.save(state, str(tmp))
        tmp.replace(path)
        self.plot_progress()
        return path

    def load_checkpoint(self, path: Path) -> None:
        state = torch.load(str(path), map_location="cpu", weights_only=False)
        if state["config"]["network"] != self.network.config:
            raise ModalityError(f"{path} was trained with network {state['config']['network']}, "
                                f"not {self.network.config}; remove --c to start over")
        self.network.load_state_dict(state["network_weights"])
        self.optimizer.load_state_dict(state["optimizer_state"])
        self.iteration = int(state["iteration"])
        self.losses = [tuple(v) for v in state["losses"]]
        self.sampler.rng.bit_generator.state = state["rng"]["numpy"]
        self.generator.set_state(state["rng"]["torch"])
        torch.set_rng_state(state["rng"]["torch_global"])

    def plot_progress(self) -> None:
        if not self.losses:
            return
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 4))
        it, loss = zip(*self.losses)
        ax.plot(it, loss, color="b")
        ax.set_xlabel("iteration")
        ax.set_ylabel("image MSE (mean over log interval)")
        ax.set_yscale("log")
        fig.tight_layout()
        fig.savefig(self.output_folder / "progress.png")
        plt.close(fig)

    def _prepare_folder(self) -> None:
        self.output_folder.mkdir(parents=True, exist_ok=True)
        root = self.output_folder.parent
        (root / "dataset.json").write_text(json.dumps(self.pre.dataset_json, indent=2))
        (root / "plans.json").write_text(json.dumps(self.pre.plans, indent=2))
        shutil.copyfile(self.pre.folder / "splits_final.json", root / "splits_final.json") \
            if (self.pre.folder / "splits_final.json").is_file() else None
        self.log_file = self.output_folder / "training_log.txt"

    # -- training ------------------------------------------------------------------------------
    def train_step(self) -> float:
        images, available, weight = self.sampler.sample(self.options.batch_size)
        x0 = torch.from_numpy(images).to(self.device)
        available = torch.from_numpy(available).to(self.device)
        present = sample_training_masks(available, self.generator)
        weight = torch.from_numpy(weight).to(self.device)
        self.network.train()
        loss = self.diffusion.training_loss(self.network, x0, available, present, weight, self.generator)
        if not torch.isfinite(loss):
            raise ModalityError(f"M2DN loss became {loss.item()} at iteration {self.iteration}; "
                                f"check the preprocessed data for NaNs or lower the learning rate")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.network.parameters(), 1.0)
        self.optimizer.step()
        return float(loss.detach())

    def set_learning_rate(self) -> None:
        lr = self.options.learning_rate * (1 - self.iteration / max(self.options.iterations, 1)) ** 0.9
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def run(self, resume: bool = False, max_seconds: Optional[float] = None) -> Path:
        """Train up to ``options.iterations`` (or until ``max_seconds`` elapsed; the checkpoint is
        then 'latest' only). Returns the last checkpoint written."""
        self._prepare_folder()
        if resume:
            try:
                path = next(p for p in (self.output_folder / "checkpoint_latest.pth",
                                        self.output_folder / "checkpoint_final.pth") if p.is_file())
            except StopIteration:
                self.log("--c: no checkpoint yet, starting from scratch")
            else:
                self.load_checkpoint(path)
                self.log(f"resumed from {path.name} at iteration {self.iteration}")
        self.log(f"M2DN on {self.pre.dataset_name} fold {self.fold}: {len(self.reader.identifiers)} training cases, "
                 f"modalities {self.pre.modalities}, patch {self.options.patch_size}, device {self.device}, "
                 f"{sum(p.numel() for p in self.network.parameters())} parameters")
        start, window, first = time.perf_counter(), [], self.iteration
        last = None
        while self.iteration < self.options.iterations:
            self.set_learning_rate()
            window.append(self.train_step())
            self.iteration += 1
            if self.iteration % self.options.log_every == 0 or self.iteration == self.options.iterations:
                self.losses.append((self.iteration, float(np.mean(window))))
                self.log(f"iteration {self.iteration}/{self.options.iterations}: loss {np.mean(window):.5f}, "
                         f"{(time.perf_counter() - start) / (self.iteration - first):.3f} s/it")
                window = []
            out_of_time = max_seconds is not None and time.perf_counter() - start >= max_seconds
            if self.iteration % self.options.save_every == 0 or out_of_time:
                last = self.save_checkpoint("checkpoint_latest.pth")
            if out_of_time:
                self.log(f"time budget of {max_seconds:.0f} s used up at iteration {self.iteration}")
                return last
        if window:
            self.losses.append((self.iteration, float(np.mean(window))))
        self.save_checkpoint("checkpoint_latest.pth")
        last = self.save_checkpoint("checkpoint_final.pth")
        self.log(f"done: {last}")
        return last
