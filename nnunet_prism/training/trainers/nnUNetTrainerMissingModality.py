"""PASSION/PRISM baseline: one encoder per modality, masked-mean fusion, one shared decoder.

L_task = sum_l w_l * l_dice+ce(Up(z^l), y)  +  sum_{m present} l_dice+ce(z^{m,0}, y)
(PASSION, ACM MM 2024, baseline objective L_task; region-based sets use Dice+BCE).
The unimodal term uses the full-resolution output only, as in that formula
(``unimodal_deep_supervision=True`` applies the deep-supervised loss to it as well).
"""
from typing import List

import numpy as np
from torch import distributed as dist

from nnunet_prism.deep_supervision import full_resolution
from nnunet_prism.losses.unimodal import unimodal_losses
from nnunet_prism.networks import build_multi_encoder_unet
from nnunet_prism.training.activation_checkpointing import ActivationCheckpointingMixin
from nnunet_prism.training.base import nnUNetTrainerPrismBase
from nnunet_prism.training.hyperparameters import Hyperparameter
from nnunet_prism.training.pseudo_dice import counted_classes, dice_from_counts, hard_counts


class nnUNetTrainerMissingModality(ActivationCheckpointingMixin, nnUNetTrainerPrismBase):
    HYPERPARAMETERS = {
        "unimodal_loss_weight": Hyperparameter("float", 1.0, "weight of the unimodal segmentation losses "
                                                             "(PASSION L_task)", minimum=0),
        "unimodal_deep_supervision": Hyperparameter("bool", False, "deep supervision on the unimodal outputs too "
                                                                   "(PASSION applies it to the fused output)"),
    }
    network_builder = staticmethod(build_multi_encoder_unet)

    def method_curves(self):
        return {**super().method_curves(), "student pseudo Dice (mean over regions/labels)":
                [self.student_dice_key(n) for n in self.modality_names]}

    @staticmethod
    def student_dice_key(modality: str) -> str:
        return f"student_dice_{modality}"

    def initialize(self):
        super().initialize()
        self.unimodal_loss = self.build_rank_local_loss()

    def forward(self, inputs, training: bool):
        """``MultiModalOutput``: the fused output and one student row per present pair."""
        return self.network(inputs.data, inputs.mask, return_all=True)

    def segmentation_loss(self, out, target, modality_weights=None, fused_weight: float = 1.0):
        """Fused deep-supervised loss + weighted sum of the unimodal losses; also per-term stats.
        ``modality_weights`` (M,) scale each modality's unimodal loss and ``fused_weight`` the fused
        one (PRISM's official weighting and warm-up); the defaults are PASSION's L_task."""
        fused = self.loss(out.fused, target)
        unimodal = unimodal_losses(self.unimodal_loss, out.students, out.samples, out.modalities,
                                   out.modality_mask.shape[1], target, self.unimodal_deep_supervision)
        weighted = unimodal if modality_weights is None else modality_weights * unimodal
        total = (fused if fused_weight == 1.0 else fused * fused_weight) + self.unimodal_loss_weight * weighted.sum()
        return total, {'fused_loss': fused.detach().cpu().numpy(),
                       'unimodal_losses': unimodal.detach().cpu().numpy()}

    def compute_loss(self, output, inputs):
        return self.segmentation_loss(output, inputs.target)

    def on_train_epoch_end(self, train_outputs: List[dict]):
        super().on_train_epoch_end(train_outputs)
        unimodal = np.mean([o['unimodal_losses'] for o in train_outputs], axis=0)
        text = ", ".join(f"{n}: {v:.4f}" for n, v in zip(self.modality_names, unimodal))
        self.print_to_log_file(f"train unimodal losses: {text}")

    def validation_output(self, output, inputs):
        """The fused output's loss and logits, plus the pseudo-Dice counts of every student
        (modality alone), from the same forward pass."""
        target, students = full_resolution(inputs.target), full_resolution(output.students)
        counts = np.zeros((inputs.mask.shape[1], 3, counted_classes(self.label_manager)))
        for m in range(inputs.mask.shape[1]):
            rows = output.student_rows(m)
            if rows.numel():
                counts[m] = np.stack(hard_counts(students[rows], target[output.samples[rows]], self.label_manager))
        return self.loss(output.fused, inputs.target), full_resolution(output.fused), {'student_counts': counts}

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
