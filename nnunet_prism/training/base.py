"""The base of every nnunet_prism trainer: nnU-Net's trainer + hyperparameters + modality masks,
and the one training and validation step every method shares.

Trained on its own it is plain nnU-Net that honours the recorded (and simulated) availability:
absent modalities are zero in training and validation. A method changes hooks, as nnU-Net's own
variants do (see the recipe in docs/contributing.md):

* ``network_builder``     the plan-to-network function (None: nnU-Net's own network)
* ``method_curves``       per-epoch curves for progress.png and the checkpoint ({panel: [keys]})
* ``modality_mask``       which modalities each sample has in this step (B, M)
* ``select_samples``      which samples of the batch take part (default: all)
* ``forward``             the network's output for (data, mask)
* ``compute_loss``        the training objective and per-term numbers for the epoch log
* ``validation_output``   validation loss and full-resolution logits (+ extra per-step numbers)
* ``backward_and_step``   backward, clip, optimiser step (GMD computes its own gradients)

The step keeps nnU-Net's guards: autocast only on CUDA, the GradScaler only where nnU-Net makes
one, gradient clipping at norm 12.
"""
from dataclasses import dataclass, replace
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.helpers import dummy_context
from torch import autocast

from nnunet_prism.deep_supervision import full_resolution
from nnunet_prism.errors import install_excepthook
from nnunet_prism.modalities import modality_names, zero_absent_channels
from nnunet_prism.training.compilation import compile_network
from nnunet_prism.training.hyperparameters import (Hyperparameter, HyperparameterMixin, load_overrides, resolve,
                                                   user_values)
from nnunet_prism.training.modality_masking import ModalityMaskingMixin, check_missing_rates
from nnunet_prism.training.progress import MethodCurvesLogger
from nnunet_prism.training.pseudo_dice import hard_counts
from nnunet_prism.training.seeding import derived_seed, seed_everything, seeded_augmenter_workers

Target = Union[torch.Tensor, List[torch.Tensor]]

# nnUNetv2_train: a user error raised while nnU-Net builds one of our trainers, or a user's trainer
# derived from them wherever nnU-Net found it, is one line (exit code 2), not a traceback
install_excepthook()


@dataclass
class StepInputs:
    """One batch on the device: data (B, M, *spatial) with absent channels zeroed, target (per
    deep-supervision level), modality mask (B, M) bool, case keys, and the weight of the step's
    loss (0 makes a step that changes nothing but keeps DDP ranks in step)."""
    data: torch.Tensor
    target: Target
    mask: torch.Tensor
    keys: Sequence[str]
    weight: float = 1.0

    def rows(self, keep: torch.Tensor) -> "StepInputs":
        """Only the samples where ``keep`` (B,) is True."""
        target = [t[keep] for t in self.target] if isinstance(self.target, list) else self.target[keep]
        keys = [k for k, kept in zip(self.keys, keep.tolist()) if kept]
        return replace(self, data=self.data[keep], target=target, mask=self.mask[keep], keys=keys)


def unwrap(network: torch.nn.Module) -> torch.nn.Module:
    """The network itself, without DDP's ``module`` and torch.compile's ``_orig_mod`` wrappers."""
    network = getattr(network, "module", network)
    return getattr(network, "_orig_mod", network)


class nnUNetTrainerPrismBase(ModalityMaskingMixin, HyperparameterMixin, nnUNetTrainer):
    HYPERPARAMETERS = {
        "seed": Hyperparameter(
            "int", None, "makes a run repeatable on the CPU with nnUNet_n_proc_DA=0 (python, numpy, torch "
                         "RNGs: weights, patch sampling, augmentation, modality dropout); data-augmentation "
                         "workers get seeds derived from it; none: nnU-Net's unseeded behaviour",
            nullable=True, minimum=0),
        "final_validation": Hyperparameter(
            "bool", True, "false skips nnU-Net's prediction of the validation cases right after training; "
                          "`nnUNetv2_train ... --val` runs it later"),
    }
    #: plan-to-network function ``(arch_class_name, arch_kwargs, kwargs_requiring_import,
    #: num_input_channels, num_output_channels, deep_supervision) -> nn.Module``; None: nnU-Net's
    network_builder: Optional[Callable[..., torch.nn.Module]] = None

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        # checked before nnU-Net's __init__ writes anything (its log file) into the fold folder
        overrides = load_overrides()
        values = resolve(type(self), overrides)
        self.check_against_dataset(values, modality_names(dataset_json))
        super().__init__(plans, configuration, fold, dataset_json, device)
        # after nnU-Net's own defaults (num_epochs, ...); settled after a subclass's __init__ (mixin)
        self.apply_hyperparameters(values, explicit=user_values(type(self), overrides))
        self._trained_in_this_run = False
        self._resumed_at_epoch = None
        self.logger.local_logger = MethodCurvesLogger(self.method_curves(), get_state=self.checkpoint_state,
                                                      set_state=self.restore_checkpoint_state)

    @classmethod
    def build_network_architecture(cls, plans_manager, configuration_manager, num_input_channels: int,
                                   num_output_channels: int, enable_deep_supervision: bool = True):
        """nnU-Net's hook (prediction calls it on the class): ``network_builder`` on the plan's
        architecture, or nnU-Net's own network when there is none."""
        if cls.network_builder is None:
            return nnUNetTrainer.build_network_architecture(plans_manager, configuration_manager, num_input_channels,
                                                            num_output_channels, enable_deep_supervision)
        return cls.network_builder(configuration_manager.network_arch_class_name,
                                   configuration_manager.network_arch_init_kwargs,
                                   configuration_manager.network_arch_init_kwargs_req_import,
                                   num_input_channels, num_output_channels, enable_deep_supervision)

    @classmethod
    def check_against_dataset(cls, values: dict, modality_names: List[str]) -> None:
        """Checks of hyperparameter values against the dataset's modalities (one-line
        HyperparameterError); run by __init__ and by ``nnunet_prism train`` before nnU-Net starts."""
        check_missing_rates(values["missing_rates"], modality_names)

    def build_from_hyperparameters(self) -> None:
        """The settled values checked against the dataset again (a subclass's ``__init__`` may have
        changed them); subclasses build what depends on them here (``super()`` first)."""
        self.check_against_dataset(self.hyperparameters, self.modality_names)

    # -- run bookkeeping -----------------------------------------------------------------------
    def load_checkpoint(self, filename_or_checkpoint) -> None:
        super().load_checkpoint(filename_or_checkpoint)
        self._resumed_at_epoch = self.current_epoch

    def on_train_start(self):
        if self.seed is not None:  # before nnU-Net builds the network and the data loaders
            seed_everything(derived_seed(self.seed, self.local_rank))
        super().on_train_start()
        self._trained_in_this_run = True
        self.save_hyperparameters(self._resumed_at_epoch)
        self.log_availability()

    def get_dataloaders(self):
        """nnU-Net's loaders; with ``seed``, every data-augmentation worker seeded from it."""
        if self.seed is None:
            return super().get_dataloaders()
        with seeded_augmenter_workers(lambda worker: derived_seed(self.seed, self.local_rank, worker)):
            return super().get_dataloaders()

    def perform_actual_validation(self, save_probabilities: bool = False):
        if self._trained_in_this_run and not self.final_validation:
            self.print_to_log_file("final validation skipped (final_validation=False); "
                                   "run it with nnUNetv2_train ... --val")
            return
        super().perform_actual_validation(save_probabilities)

    def method_curves(self) -> Dict[str, List[str]]:
        """The method's per-epoch curves, {panel title: [log keys]}: kept by nnU-Net's logger (so
        saved in its checkpoints), drawn as extra panels of progress.png. Log a value per epoch
        with ``self.logger.log(key, value, epoch)``; a subclass returns
        ``{**super().method_curves(), ...}``. Asked once, when the trainer is built."""
        return {}

    def checkpoint_state(self) -> dict:
        """Training-time state a method keeps beyond nnU-Net's (saved in nnU-Net's checkpoints)."""
        return {}

    def restore_checkpoint_state(self, state: dict) -> None:
        """Restore what ``checkpoint_state`` returned (called by nnU-Net's load_checkpoint)."""

    def configure_optimizers(self):
        """nnU-Net's optimiser and schedule. nnU-Net's ``initialize`` calls this right after its
        ``torch.compile(network)`` and before the DDP wrapper: where a network whose shapes depend
        on the modality mask swaps that for its compiled regions (``compilation.compile_network``)."""
        self.network = compile_network(self.network, self.print_to_log_file)
        return super().configure_optimizers()

    def unwrapped_network(self) -> torch.nn.Module:
        return unwrap(self.network)

    def build_rank_local_loss(self):
        """nnU-Net's loss without cross-rank Dice, for losses computed on a subset of the batch
        (samples that have a modality or a subset), which differs between ranks: a collective
        inside the loss could deadlock. Gradients are still averaged by DDP."""
        is_ddp, self.is_ddp = self.is_ddp, False
        try:
            return self._build_loss()
        finally:
            self.is_ddp = is_ddp

    # -- the step's hooks ----------------------------------------------------------------------
    def modality_mask(self, keys: Sequence[str], training: bool) -> torch.Tensor:
        """(B, M) bool: availability, with random dropout on top when training."""
        return self.training_modality_mask(keys) if training else self.case_availability(keys)

    def select_samples(self, inputs: StepInputs) -> StepInputs:
        """The samples that take part in the step (default: all of them)."""
        return inputs

    def step_inputs(self, batch: dict, training: bool) -> StepInputs:
        """The batch on the device, its modality mask, absent channels zeroed."""
        data = batch['data'].to(self.device, non_blocking=True)
        target = batch['target']
        target = ([t.to(self.device, non_blocking=True) for t in target] if isinstance(target, list)
                  else target.to(self.device, non_blocking=True))
        inputs = StepInputs(data, target, self.modality_mask(batch['keys'], training), list(batch['keys']))
        inputs = self.select_samples(inputs)
        return replace(inputs, data=zero_absent_channels(inputs.data, inputs.mask))

    def forward(self, inputs: StepInputs, training: bool):
        """The network's output (nnU-Net's network: logits; it sees absent channels as zeros)."""
        return self.network(inputs.data)

    def compute_loss(self, output, inputs: StepInputs) -> Tuple[torch.Tensor, Dict[str, np.ndarray]]:
        """The training objective and per-term numbers (numpy) for ``on_train_epoch_end``."""
        return self.loss(output, inputs.target), {}

    def validation_output(self, output, inputs: StepInputs) -> Tuple[torch.Tensor, torch.Tensor, dict]:
        """(validation loss, full-resolution logits for the pseudo Dice, extra numbers)."""
        return self.loss(output, inputs.target), full_resolution(output), {}

    def autocast(self):
        """Mixed precision on CUDA only (CPU autocast is slow, MPS unsupported), as nnU-Net does."""
        return autocast(self.device.type, enabled=True) if self.device.type == 'cuda' else dummy_context()

    def backward_and_step(self, loss: torch.Tensor, inputs: StepInputs, output) -> Dict[str, np.ndarray]:
        """Backward of ``loss * inputs.weight`` (scaled where nnU-Net has a GradScaler), then
        ``clip_and_step``; returns extra numbers for the step's record (none here)."""
        loss = loss * inputs.weight if inputs.weight != 1.0 else loss
        if self.grad_scaler is not None:
            self.grad_scaler.scale(loss).backward()
        else:
            loss.backward()
        self.clip_and_step()
        return {}

    def backward_held_bytes(self, output) -> Tuple[int, int]:
        """Bytes ``backward_and_step`` holds beside the autograd graph (gradient buffers of its
        own), as (grows with the patch, fixed): none for one ``loss.backward()``. Memory counts
        (``doctor --vram``, benchmarks/memory.py) add it to the saved activations."""
        return 0, 0

    def clip_and_step(self) -> None:
        """nnU-Net's update from gradients in ``.grad`` (scaled when a GradScaler exists):
        unscale, clip to norm 12, step (skipped by the scaler on inf/NaN), update the scale."""
        if self.grad_scaler is not None:
            self.grad_scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12)
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12)
            self.optimizer.step()

    # -- the steps -----------------------------------------------------------------------------
    def train_step(self, batch: dict) -> dict:
        inputs = self.step_inputs(batch, training=True)
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            output = self.forward(inputs, training=True)
            loss, stats = self.compute_loss(output, inputs)
        stats.update(self.backward_and_step(loss, inputs, output))
        return {'loss': loss.detach().cpu().numpy(), **stats}

    @torch.no_grad()
    def validation_step(self, batch: dict) -> dict:
        """nnU-Net's validation numbers (loss, hard TP/FP/FN of the full-resolution output) with
        the cases' modality masks, plus what ``validation_output`` adds."""
        inputs = self.step_inputs(batch, training=False)
        with self.autocast():
            output = self.forward(inputs, training=False)
            loss, logits, extra = self.validation_output(output, inputs)
        tp, fp, fn = hard_counts(logits, full_resolution(inputs.target), self.label_manager)
        return {'loss': loss.detach().cpu().numpy(), 'tp_hard': tp, 'fp_hard': fp, 'fn_hard': fn, **extra}
