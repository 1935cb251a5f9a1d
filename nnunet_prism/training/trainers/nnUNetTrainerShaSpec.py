"""ShaSpec (CVPR 2023): shared-specific feature modelling for missing modalities.

L = L_seg + alpha * L_dao + beta * L_dco  (paper Eq. 9), L_seg nnU-Net's deep-supervised
Dice+CE (Dice+BCE for regions) on the fused output; DAO and DCO on present modalities only
(losses.shaspec). Network: networks.shaspec_unet.

The paper's two regimes:
* one model for all subsets (default): recorded availability AND simulated missing rates AND
  random dropping of present modalities (``modality_dropout``, 0.5: all 15 subsets about equally
  likely for a complete case);
* a dedicated model for one subset: ``fixed_subset="FLAIR+T1c"`` trains (and, through the
  network's ``allowed_modalities`` buffer, predicts) with exactly those modalities, no dropout.
  A sample with none of them is left out of its batch; a batch with no such sample at all makes
  a zero-weighted step (so that DDP ranks stay in step) and is left out of the epoch's numbers.

``preset="official"`` reproduces the official ShaSpec code's behaviours (each has its own switch,
see ``PRESETS``): DAO as the sum over the cyclic pairs (0,1),(1,2),(2,3),(3,0) of all modalities
(``dao_pairs``), a missing modality's feature taken from the first present one (``missing_fill``).
"""
from typing import List, Optional

import torch

from nnunet_prism.losses.shaspec import (DAO_PAIRS, DEFAULT_ALPHA, DEFAULT_BETA, distribution_alignment_loss,
                                         domain_classification_loss)
from nnunet_prism.modalities import ModalityError, parse_subset_name
from nnunet_prism.networks.shaspec_unet import build_shaspec_unet
from nnunet_prism.training.activation_checkpointing import ActivationCheckpointingMixin
from nnunet_prism.training.base import StepInputs, nnUNetTrainerPrismBase
from nnunet_prism.training.distributed import all_reduce_sum
from nnunet_prism.training.hyperparameters import PRESET, Hyperparameter, HyperparameterError


def shaspec_objective(out, segmentation: torch.Tensor, mask: torch.Tensor, alpha: float, beta: float,
                      dao_pairs: str = "present_mean"):
    """L_seg + alpha * DAO + beta * DCO (ShaSpec, CVPR 2023, Eq. 9) from a ``ShaSpecOutput`` and the
    segmentation loss already computed on its logits; mask (B, M) bool; dao_pairs as
    ``distribution_alignment_loss``'s ``pairs``. Returns the total and the per-term numbers (DAO,
    DCO, correct and counted DCO predictions) for the epoch log."""
    dao = distribution_alignment_loss(out.shared, mask, dao_pairs)
    dco, correct, count = domain_classification_loss(out.domain_logits, mask)
    total = segmentation + alpha * dao + beta * dco
    return total, {"dao": dao.detach().cpu().numpy(), "dco": dco.detach().cpu().numpy(),
                   "dco_correct": int(correct), "dco_count": int(count)}


def fixed_subset_mask(fixed_subset: Optional[str], names) -> Optional[torch.Tensor]:
    """(M,) bool mask of ``fixed_subset`` ("FLAIR+T1c"), None for the all-subsets regime."""
    if fixed_subset is None:
        return None
    try:
        return torch.from_numpy(parse_subset_name(fixed_subset, names))
    except ModalityError as e:
        raise HyperparameterError(f"hyperparameter fixed_subset={fixed_subset!r}: {e}") from None


class nnUNetTrainerShaSpec(ActivationCheckpointingMixin, nnUNetTrainerPrismBase):
    HYPERPARAMETERS = {
        "alpha": Hyperparameter("float", DEFAULT_ALPHA, "DAO weight (ShaSpec paper)", minimum=0),
        "beta": Hyperparameter("float", DEFAULT_BETA, "DCO weight (ShaSpec paper)", minimum=0),
        "fixed_subset": Hyperparameter("str", None, "e.g. `FLAIR+T1c`: a dedicated model for one subset "
                                                    "(ShaSpec's second regime)", nullable=True),
        "preset": PRESET,
        "dao_pairs": Hyperparameter("choice", "present_mean", "DAO over all pairs of present modalities, averaged "
                                                              "(paper); `cyclic_sum`: sum over the pairs (0,1), "
                                                              "(1,2), (2,3), (3,0) of all modalities (official code)",
                                    choices=DAO_PAIRS),
        "missing_fill": Hyperparameter("choice", "mean", "a missing modality's shared feature: mean of the present "
                                                         "ones (paper, Eq. 4); `first`: the first present one "
                                                         "(official code)", choices=("mean", "first")),
    }
    #: ``preset=official``: the official ShaSpec code's behaviours (an explicit value still wins)
    PRESETS = {"official": {"dao_pairs": "cyclic_sum", "missing_fill": "first"}}
    DEFAULT_OVERRIDES = {"modality_dropout": 0.5}  # random dropping (all-subsets regime)
    CURVES = {"ShaSpec DCO accuracy (train, present modalities)": ["shaspec_dco_accuracy"],
              "ShaSpec auxiliary losses (train)": ["shaspec_dao", "shaspec_dco"]}
    network_builder = staticmethod(build_shaspec_unet)

    def build_from_hyperparameters(self) -> None:
        super().build_from_hyperparameters()
        self.subset_mask = fixed_subset_mask(self.fixed_subset, self.modality_names)

    def method_curves(self):
        return {**super().method_curves(), **self.CURVES}

    @classmethod
    def check_against_dataset(cls, values: dict, modality_names) -> None:
        super().check_against_dataset(values, modality_names)
        fixed_subset_mask(values["fixed_subset"], modality_names)

    def initialize(self):
        super().initialize()
        # saved with the weights: prediction fills missing features by the same rule
        self.unwrapped_network().fill_from_first.fill_(self.missing_fill == "first")
        if self.subset_mask is not None:  # saved with the weights: prediction uses the subset too
            self.unwrapped_network().allowed_modalities.copy_(self.subset_mask)

    def on_train_start(self):
        super().on_train_start()
        if self.subset_mask is not None:
            self.print_to_log_file(f"ShaSpec dedicated model for {self.fixed_subset}: random modality dropout off")
        else:
            self.print_to_log_file(f"ShaSpec model for all subsets: random modality dropout p = {self.modality_dropout}")

    # -- hooks ----------------------------------------------------------------------------------
    def modality_mask(self, keys, training: bool) -> torch.Tensor:
        """(B, M) bool: availability, with random dropping (training, all-subsets regime) or
        restricted to ``fixed_subset`` (dedicated regime; rows may then be empty)."""
        if self.subset_mask is not None:
            return self.case_availability(keys) & self.subset_mask.to(self.device)
        return super().modality_mask(keys, training)

    def select_samples(self, inputs: StepInputs) -> StepInputs:
        """Drop samples without any modality; if none is left, keep the batch with its recorded
        availability and weight 0 (a step that changes nothing keeps DDP ranks in step)."""
        keep = inputs.mask.any(dim=1)
        if bool(keep.all()):
            return inputs
        if bool(keep.any()):
            return inputs.rows(keep)
        return StepInputs(inputs.data, inputs.target, self.case_availability(inputs.keys), inputs.keys, weight=0.0)

    def forward(self, inputs: StepInputs, training: bool):
        return self.network(inputs.data, inputs.mask, return_all=training)

    def compute_loss(self, output, inputs: StepInputs):
        total, stats = shaspec_objective(output, self.loss(output.logits, inputs.target), inputs.mask,
                                         self.alpha, self.beta, self.dao_pairs)
        return total, {**stats, 'skipped': inputs.weight == 0.0}

    def on_train_epoch_end(self, train_outputs: List[dict]):
        used = [o for o in train_outputs if not o['skipped']] or train_outputs
        super().on_train_epoch_end([{'loss': o['loss']} for o in used])
        sums = torch.tensor([sum(float(o['dao']) for o in used), sum(float(o['dco']) for o in used), len(used),
                             sum(o['dco_correct'] for o in used), sum(o['dco_count'] for o in used)],
                            dtype=torch.float64)
        dao_sum, dco_sum, steps, correct, count = all_reduce_sum(sums, self.device).tolist()
        dao, dco = dao_sum / max(steps, 1), dco_sum / max(steps, 1)
        accuracy = correct / count if count > 0 else float('nan')
        self.logger.log("shaspec_dao", dao, self.current_epoch)
        self.logger.log("shaspec_dco", dco, self.current_epoch)
        self.logger.log("shaspec_dco_accuracy", accuracy, self.current_epoch)
        self.print_to_log_file(f"ShaSpec train: DCO accuracy {accuracy:.4f} ({int(correct)}/{int(count)}), "
                               f"DCO {dco:.4f}, DAO {dao:.4f}")
