"""The base of every nnunet_prism trainer: nnU-Net's trainer + hyperparameters + modality masks.

Trained on its own it is plain nnU-Net that honours the recorded (and simulated) availability:
absent modalities are zero in training and validation. Subclasses with their own train_step
reuse ``batch_to_device``, ``autocast`` and ``backward_and_step``, which keep nnU-Net's guards
(autocast only on CUDA, GradScaler only where nnU-Net creates one, gradient clipping at 12).
"""
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.helpers import dummy_context
from torch import autocast

from nnunet_prism.training.hyperparameters import HyperparameterMixin
from nnunet_prism.training.modality_masking import ModalityMaskingMixin, zero_absent_channels
from nnunet_prism.training.progress import MethodCurvesLogger


class nnUNetTrainerPrismBase(HyperparameterMixin, ModalityMaskingMixin, nnUNetTrainer):
    HYPERPARAMETERS = {
        # False: skip nnU-Net's prediction of the validation cases right after training (quick
        # experiments); ``nnUNetv2_train ... --val`` runs it later
        "final_validation": True,
    }

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.apply_hyperparameters()
        self._trained_in_this_run = False
        self.logger.local_logger = MethodCurvesLogger({}, get_state=self.checkpoint_state,
                                                      set_state=self.restore_checkpoint_state)

    def on_train_start(self):
        super().on_train_start()
        self._trained_in_this_run = True
        self.save_hyperparameters()
        self.log_availability()

    def perform_actual_validation(self, save_probabilities: bool = False):
        if self._trained_in_this_run and not self.final_validation:
            self.print_to_log_file("final validation skipped (final_validation=False); "
                                   "run it with nnUNetv2_train ... --val")
            return
        super().perform_actual_validation(save_probabilities)

    def train_step(self, batch: dict) -> dict:
        mask = self.training_modality_mask(batch['keys'])
        return super().train_step({**batch, 'data': zero_absent_channels(batch['data'], mask)})

    def validation_step(self, batch: dict) -> dict:
        mask = self.case_availability(batch['keys'])
        return super().validation_step({**batch, 'data': zero_absent_channels(batch['data'], mask)})

    def register_curves(self, panels) -> None:
        """Add per-epoch curves ({panel title: [keys]}) to nnU-Net's logger: checkpointed with it,
        plotted as extra panels of progress.png. Log them with ``self.logger.log(key, v, epoch)``."""
        self.logger.local_logger.add_panels(panels)

    def checkpoint_state(self) -> dict:
        """Training-time state a method keeps beyond nnU-Net's (saved in nnU-Net's checkpoints)."""
        return {}

    def restore_checkpoint_state(self, state: dict) -> None:
        """Restore what ``checkpoint_state`` returned (called by nnU-Net's load_checkpoint)."""

    # -- shared pieces for subclasses that write their own train_step -------------------------
    def batch_to_device(self, batch: dict):
        """(data, target) on ``self.device``; target stays a list with deep supervision."""
        data = batch['data'].to(self.device, non_blocking=True)
        target = batch['target']
        if isinstance(target, list):
            target = [t.to(self.device, non_blocking=True) for t in target]
        else:
            target = target.to(self.device, non_blocking=True)
        return data, target

    def autocast(self):
        """Mixed precision on CUDA only (CPU autocast is slow, MPS unsupported), as nnU-Net does."""
        return autocast(self.device.type, enabled=True) if self.device.type == 'cuda' else dummy_context()

    def backward_and_step(self, loss: torch.Tensor) -> None:
        """Backward, clip to norm 12 and step, through the GradScaler when nnU-Net made one."""
        if self.grad_scaler is not None:
            self.grad_scaler.scale(loss).backward()
            self.grad_scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12)
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12)
            self.optimizer.step()
