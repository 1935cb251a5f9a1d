"""nnU-Net's own network trained with whole input channels zeroed at random (common baseline)."""
from nnunet_prism.training.base import nnUNetTrainerPrismBase


class nnUNetTrainerModalityDropout(nnUNetTrainerPrismBase):
    """Every present modality of a sample is dropped with probability ``modality_dropout`` at each
    iteration (at least one kept), on top of the case's recorded availability."""

    DEFAULT_OVERRIDES = {"modality_dropout": 0.5}
