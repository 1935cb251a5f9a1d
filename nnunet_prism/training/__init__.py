"""Trainers. nnU-Net finds them by class name through ``nnunet_prism.ext_trainer_shim``."""
from nnunet_prism.training.base import nnUNetTrainerPrismBase
from nnunet_prism.training.nnUNetTrainerGMD import nnUNetTrainerDS, nnUNetTrainerGMD
from nnunet_prism.training.nnUNetTrainerMissingModality import nnUNetTrainerMissingModality
from nnunet_prism.training.nnUNetTrainerModalityDropout import nnUNetTrainerModalityDropout
from nnunet_prism.training.nnUNetTrainerPRISM import nnUNetTrainerPRISM
from nnunet_prism.training.nnUNetTrainerShaSpec import nnUNetTrainerShaSpec

__all__ = ["nnUNetTrainerPrismBase", "nnUNetTrainerModalityDropout", "nnUNetTrainerMissingModality",
           "nnUNetTrainerPRISM", "nnUNetTrainerGMD", "nnUNetTrainerDS", "nnUNetTrainerShaSpec"]
