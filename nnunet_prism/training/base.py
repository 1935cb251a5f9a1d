"""The base of every nnunet_prism trainer: nnU-Net's trainer + hyperparameters + modality masks.

Trained on its own it is plain nnU-Net that honours the recorded (and simulated) availability:
absent modalities are zero in training and validation.
"""
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_prism.training.hyperparameters import HyperparameterMixin
from nnunet_prism.training.modality_masking import ModalityMaskingMixin, zero_absent_channels


class nnUNetTrainerPrismBase(HyperparameterMixin, ModalityMaskingMixin, nnUNetTrainer):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.apply_hyperparameters()

    def on_train_start(self):
        super().on_train_start()
        self.save_hyperparameters()
        self.log_availability()

    def train_step(self, batch: dict) -> dict:
        mask = self.training_modality_mask(batch['keys'])
        return super().train_step({**batch, 'data': zero_absent_channels(batch['data'], mask)})

    def validation_step(self, batch: dict) -> dict:
        mask = self.case_availability(batch['keys'])
        return super().validation_step({**batch, 'data': zero_absent_channels(batch['data'], mask)})
