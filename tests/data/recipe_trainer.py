"""The contributor recipe (docs/contributing.md), as a test runs it: a loss function and a trainer of a few
lines on the multi-encoder network (nnU-Net imports this module through nnUNet_extTrainer)."""
import torch

from nnunet_prism.deep_supervision import full_resolution
from nnunet_prism.training.hyperparameters import Hyperparameter
from nnunet_prism.training.trainers.nnUNetTrainerMissingModality import nnUNetTrainerMissingModality


def student_consistency_loss(fused: torch.Tensor, students: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between each student row's sigmoid and its sample's fused sigmoid.
    fused (B, C, *spatial), students (P, C, *spatial), samples (P,) -> scalar."""
    return ((torch.sigmoid(students) - torch.sigmoid(fused.detach())[samples]) ** 2).mean()


class nnUNetTrainerRecipeConsistency(nnUNetTrainerMissingModality):
    HYPERPARAMETERS = {"consistency_weight": Hyperparameter("float", 0.1, "weight of the student consistency "
                                                                          "term (recipe example)", minimum=0)}

    def compute_loss(self, output, inputs):
        loss, stats = super().compute_loss(output, inputs)
        consistency = student_consistency_loss(full_resolution(output.fused), full_resolution(output.students),
                                               output.samples)
        return loss + self.consistency_weight * consistency, {**stats,
                                                              "consistency": consistency.detach().cpu().numpy()}

    def on_train_epoch_end(self, train_outputs):
        super().on_train_epoch_end(train_outputs)
        self.print_to_log_file(f"consistency: {sum(float(o['consistency']) for o in train_outputs) / len(train_outputs):.6f}")
