"""Trainer variants made the nnU-Net way (nnU-Net imports this module through nnUNet_extTrainer):
the ``__init__`` sets the schedule after ``super().__init__``, as nnU-Net's own
``nnUNetTrainer_5epochs`` does."""
import torch

from nnunet_prism.training.trainers.nnUNetTrainerModalityDropout import nnUNetTrainerModalityDropout


class nnUNetTrainerInitSchedule(nnUNetTrainerModalityDropout):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 1
        self.num_iterations_per_epoch = 1
        self.num_val_iterations_per_epoch = 1
        self.final_validation = False
        self.modality_dropout = 0.25


class nnUNetTrainerInitBadSchedule(nnUNetTrainerModalityDropout):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.modality_dropout = 1.5
