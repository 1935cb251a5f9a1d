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
"""
from typing import List, Optional

import torch

from nnunet_prism.losses.shaspec import (DEFAULT_ALPHA, DEFAULT_BETA, distribution_alignment_loss,
                                         domain_classification_loss)
from nnunet_prism.networks.shaspec_unet import build_shaspec_unet
from nnunet_prism.training.base import nnUNetTrainerPrismBase
from nnunet_prism.training.distributed import all_reduce_sum
from nnunet_prism.training.hyperparameters import HyperparameterError
from nnunet_prism.training.modality_masking import zero_absent_channels
from nnunet_prism.training.pseudo_dice import hard_counts


def parse_subset(text: str, names: List[str]) -> torch.Tensor:
    """"FLAIR+T1c" -> (M,) bool mask in the order of ``names``; unknown or empty -> one-line error."""
    parts = [p.strip() for p in str(text).split("+") if p.strip()]
    unknown = [p for p in parts if p not in names]
    if not parts or unknown:
        raise HyperparameterError(f"fixed_subset={text!r}: expected modality names joined by '+' from "
                                  f"{names}" + (f", unknown {unknown}" if unknown else ""))
    return torch.tensor([n in parts for n in names], dtype=torch.bool)


def _select(target, keep: torch.Tensor):
    return [t[keep] for t in target] if isinstance(target, list) else target[keep]


class nnUNetTrainerShaSpec(nnUNetTrainerPrismBase):
    HYPERPARAMETERS = {
        "alpha": DEFAULT_ALPHA,        # DAO weight
        "beta": DEFAULT_BETA,          # DCO weight
        "modality_dropout": 0.5,       # random dropping (non-dedicated regime)
        "fixed_subset": None,          # e.g. "FLAIR+T1c": dedicated model for that subset
    }
    CURVES = {"ShaSpec DCO accuracy (train, present modalities)": ["shaspec_dco_accuracy"],
              "ShaSpec auxiliary losses (train)": ["shaspec_dao", "shaspec_dco"]}

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.subset_mask: Optional[torch.Tensor] = (None if self.fixed_subset is None
                                                    else parse_subset(self.fixed_subset, self.modality_names))
        self.register_curves(self.CURVES)

    @staticmethod
    def build_network_architecture(plans_manager, configuration_manager, num_input_channels: int,
                                   num_output_channels: int, enable_deep_supervision: bool = True):
        return build_shaspec_unet(configuration_manager.network_arch_class_name,
                                  configuration_manager.network_arch_init_kwargs,
                                  configuration_manager.network_arch_init_kwargs_req_import,
                                  num_input_channels, num_output_channels, enable_deep_supervision)

    def initialize(self):
        super().initialize()
        if self.subset_mask is not None:  # saved with the weights: prediction uses the subset too
            self.unwrapped_network().allowed_modalities.copy_(self.subset_mask)

    def unwrapped_network(self):
        network = self.network.module if self.is_ddp else self.network
        return getattr(network, "_orig_mod", network)

    def on_train_start(self):
        super().on_train_start()
        if self.subset_mask is not None:
            self.print_to_log_file(f"ShaSpec dedicated model for {self.fixed_subset}: random modality dropout off")
        else:
            self.print_to_log_file(f"ShaSpec model for all subsets: random modality dropout p = {self.modality_dropout}")

    # -- masks ----------------------------------------------------------------------------------
    def step_mask(self, keys, training: bool) -> torch.Tensor:
        """(B, M) bool: availability, with random dropping (training, all-subsets regime) or
        restricted to ``fixed_subset`` (dedicated regime; rows may then be empty)."""
        if self.subset_mask is not None:
            return self.case_availability(keys) & self.subset_mask.to(self.device)
        return self.training_modality_mask(keys) if training else self.case_availability(keys)

    def usable_batch(self, data, target, mask, keys):
        """Drop samples without any modality; if none is left, keep the batch with its recorded
        availability and return weight 0. Returns (data, target, mask, weight)."""
        keep = mask.any(dim=1)
        if bool(keep.all()):
            return data, target, mask, 1.0
        if bool(keep.any()):
            return data[keep], _select(target, keep), mask[keep], 1.0
        return data, target, self.case_availability(keys), 0.0

    # -- training -------------------------------------------------------------------------------
    def compute_loss(self, out, target, mask):
        """L_seg + alpha * DAO + beta * DCO, with the per-term numbers for the epoch log."""
        segmentation = self.loss(out.logits, target)
        dao = distribution_alignment_loss(out.shared, mask)
        dco, correct, count = domain_classification_loss(out.domain_logits, mask)
        total = segmentation + self.alpha * dao + self.beta * dco
        return total, {"dao": dao.detach().cpu().numpy(), "dco": dco.detach().cpu().numpy(),
                       "dco_correct": int(correct), "dco_count": int(count)}

    def train_step(self, batch: dict) -> dict:
        data, target = self.batch_to_device(batch)
        mask = self.step_mask(batch['keys'], training=True)
        data, target, mask, weight = self.usable_batch(data, target, mask, batch['keys'])
        data = zero_absent_channels(data, mask)
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            out = self.network(data, mask, return_all=True)
            loss, stats = self.compute_loss(out, target, mask)
        self.backward_and_step(loss * weight)
        return {'loss': loss.detach().cpu().numpy(), **stats, 'skipped': weight == 0.0}

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

    # -- validation -----------------------------------------------------------------------------
    @torch.no_grad()
    def validation_step(self, batch: dict) -> dict:
        """nnU-Net's validation numbers (loss, pseudo-Dice counts) with the case's modality mask."""
        data, target = self.batch_to_device(batch)
        mask = self.step_mask(batch['keys'], training=False)
        data, target, mask, _ = self.usable_batch(data, target, mask, batch['keys'])
        data = zero_absent_channels(data, mask)
        with self.autocast():
            logits = self.network(data, mask)
            loss = self.loss(logits, target)
        full = logits[0] if isinstance(logits, (list, tuple)) else logits
        full_target = target[0] if isinstance(target, (list, tuple)) else target
        tp, fp, fn = hard_counts(full, full_target, self.label_manager)
        return {'loss': loss.detach().cpu().numpy(), 'tp_hard': tp, 'fp_hard': fp, 'fn_hard': fn}
