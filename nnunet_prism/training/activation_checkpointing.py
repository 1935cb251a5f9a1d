"""The ``activation_checkpointing`` hyperparameter of the trainers whose networks can recompute
activations in the backward pass (``networks.regions.ActivationCheckpointing``).

nnU-Net plans patch and batch so that *its* network fits the GPU; a network that encodes every
modality on its own or decodes several rows per sample saves more activations than that. Which
part each network recomputes: docs/design.md, "Memory".
"""
import torch

from nnunet_prism.training.hyperparameters import Hyperparameter


def checkpointing_in_force(setting: str, device: torch.device) -> bool:
    """``on``, or ``auto`` on CUDA, where the step must fit the VRAM nnU-Net planned for."""
    return setting == "on" or (setting == "auto" and device.type == "cuda")


class ActivationCheckpointingMixin:
    """Mixin for an ``nnUNetTrainerPrismBase`` subclass (listed before it) whose network has
    ``activation_checkpointing``: the hyperparameter sets it when the trainer is initialised."""

    HYPERPARAMETERS = {
        "activation_checkpointing": Hyperparameter(
            "choice", "auto", "recompute activations in the backward pass (same losses and gradients, less memory, "
                              "part of a forward pass more compute): MissingModality and PRISM their encoder passes "
                              "and decoder rows (PRISM its distillation terms too), ShaSpec its encoders, GMD and DS "
                              "their decoder rows; `auto`: on when training on CUDA, where the step must fit the "
                              "VRAM nnU-Net planned for its own network", choices=("auto", "on", "off")),
    }

    @property
    def checkpointing_in_force(self) -> bool:
        """Whether ``activation_checkpointing`` is in force on this device."""
        return checkpointing_in_force(self.activation_checkpointing, self.device)

    def initialize(self):
        super().initialize()
        self.unwrapped_network().activation_checkpointing = self.checkpointing_in_force
