"""PASSION/PRISM baseline: one encoder per modality, masked-mean fusion, one shared decoder.

L_task = sum_l w_l * l_dice+ce(Up(z^l), y)  +  sum_{m present} l_dice+ce(z^{m,0}, y)
(PASSION, ACM MM 2024, "PRISM – Methodik" Eq. L_task; region-based sets use Dice+BCE).
The unimodal term uses the full-resolution output only, as in that formula
(``unimodal_deep_supervision=True`` applies the deep-supervised loss to it as well).
"""
from typing import Dict, List, Tuple

import numpy as np
import torch
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from torch import distributed as dist

from nnunet_prism.networks import build_multi_encoder_unet
from nnunet_prism.networks.decoding import as_level_list
from nnunet_prism.training.base import nnUNetTrainerPrismBase
from nnunet_prism.training.modality_masking import zero_absent_channels
from nnunet_prism.training.pseudo_dice import dice_from_counts, hard_counts


class nnUNetTrainerMissingModality(nnUNetTrainerPrismBase):
    HYPERPARAMETERS = {
        "unimodal_loss_weight": 1.0,
        "unimodal_deep_supervision": False,
    }

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.register_curves({"student pseudo Dice (mean over regions/labels)":
                              [self.student_dice_key(n) for n in self.modality_names]})

    @staticmethod
    def student_dice_key(modality: str) -> str:
        return f"student_dice_{modality}"

    @staticmethod
    def build_network_architecture(plans_manager, configuration_manager, num_input_channels: int,
                                   num_output_channels: int, enable_deep_supervision: bool = True):
        return build_multi_encoder_unet(configuration_manager.network_arch_class_name,
                                        configuration_manager.network_arch_init_kwargs,
                                        configuration_manager.network_arch_init_kwargs_req_import,
                                        num_input_channels, num_output_channels, enable_deep_supervision)

    def initialize(self):
        super().initialize()
        self.unimodal_loss = self._build_rank_local_loss()

    def _build_rank_local_loss(self):
        """nnU-Net's loss without cross-rank Dice: each modality's loss runs only on the samples
        that have it, which differ between ranks, so a collective inside it could deadlock."""
        is_ddp, self.is_ddp = self.is_ddp, False
        try:
            return self._build_loss()
        finally:
            self.is_ddp = is_ddp

    def unimodal_losses(self, out, target: List[torch.Tensor]) -> torch.Tensor:
        """Segmentation loss of every modality's own output on the samples that have it.

        out: the network's ``MultiModalOutput`` (students: per deep-supervision level
        (P, C, *spatial), one row per present pair); target: per level (B, 1|R, *spatial).
        Returns (M,) with 0 for a modality absent from the whole batch.
        """
        loss, students = self.unimodal_loss, as_level_list(out.students)
        if isinstance(loss, DeepSupervisionWrapper) and not self.unimodal_deep_supervision:
            loss, students, target = loss.loss, students[:1], target[:1]
        losses = []
        for m in range(out.modality_mask.shape[1]):
            rows = out.student_rows(m)
            if not rows.numel():
                losses.append(students[0].new_zeros(()))
                continue
            outputs = [u[rows] for u in students]
            targets = [t[out.samples[rows]] for t in target]
            losses.append(loss(outputs, targets) if isinstance(loss, DeepSupervisionWrapper)
                          else loss(outputs[0], targets[0]))
        return torch.stack(losses)

    def segmentation_loss(self, out, target, mask) -> Tuple[torch.Tensor, Dict[str, np.ndarray]]:
        """Fused deep-supervised loss + weighted sum of the unimodal losses; also per-term stats."""
        fused = self.loss(out.fused, target)
        unimodal = self.unimodal_losses(out, as_level_list(target))
        total = fused + self.unimodal_loss_weight * unimodal.sum()
        return total, {'fused_loss': fused.detach().cpu().numpy(),
                       'unimodal_losses': unimodal.detach().cpu().numpy()}

    def compute_loss(self, out, target, mask):
        """Hook for method trainers: the whole training objective from one network output."""
        return self.segmentation_loss(out, target, mask)

    def train_step(self, batch: dict) -> dict:
        data, target = self.batch_to_device(batch)
        mask = self.training_modality_mask(batch['keys'])
        data = zero_absent_channels(data, mask)
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            out = self.network(data, mask, return_all=True)
            loss, stats = self.compute_loss(out, target, mask)
        self.backward_and_step(loss)
        return {'loss': loss.detach().cpu().numpy(), **stats}

    def on_train_epoch_end(self, train_outputs: List[dict]):
        super().on_train_epoch_end(train_outputs)
        unimodal = np.mean([o['unimodal_losses'] for o in train_outputs], axis=0)
        text = ", ".join(f"{n}: {v:.4f}" for n, v in zip(self.modality_names, unimodal))
        self.print_to_log_file(f"train unimodal losses: {text}")

    @torch.no_grad()
    def validation_step(self, batch: dict) -> dict:
        """nnU-Net's validation (loss and pseudo-Dice counts of the fused output) plus the same
        counts for every student (modality alone), from one forward pass."""
        data, target = self.batch_to_device(batch)
        mask = self.case_availability(batch['keys'])
        data = zero_absent_channels(data, mask)
        with self.autocast():
            out = self.network(data, mask, return_all=True)
            loss = self.loss(out.fused, target)
        fused, students, target = as_level_list(out.fused)[0], as_level_list(out.students)[0], as_level_list(target)[0]
        tp, fp, fn = hard_counts(fused, target, self.label_manager)
        student = np.zeros((mask.shape[1], 3, len(tp)))
        for m in range(mask.shape[1]):
            rows = out.student_rows(m)
            if rows.numel():
                student[m] = np.stack(hard_counts(students[rows], target[out.samples[rows]], self.label_manager))
        return {'loss': loss.detach().cpu().numpy(), 'tp_hard': tp, 'fp_hard': fp, 'fn_hard': fn,
                'student_counts': student}

    def on_validation_epoch_end(self, val_outputs: List[dict]):
        super().on_validation_epoch_end(val_outputs)
        counts = np.sum([o['student_counts'] for o in val_outputs], axis=0)  # (M, 3, C')
        if self.is_ddp:
            gathered = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, counts)
            counts = np.sum(gathered, axis=0)
        dice = [float(np.nanmean(dice_from_counts(*c))) if c.sum() > 0 else float('nan') for c in counts]
        for name, value in zip(self.modality_names, dice):
            self.logger.log(self.student_dice_key(name), value, self.current_epoch)
        self.print_to_log_file("student pseudo Dice: " +
                               ", ".join(f"{n}: {v:.4f}" for n, v in zip(self.modality_names, dice)))
