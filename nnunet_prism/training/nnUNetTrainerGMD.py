"""GMD (AAAI 2024): dynamic sharing network + gradient-guided modality decoupling.

Per step: k modality subsets C_j are sampled (default 5, "all" = the 2^M - 1); the encoders and
the shared decoder run once; for each subset the present modalities' logits are averaged
(F, Eq. 2) and nnU-Net's deep-supervised Dice+CE/BCE gives L_j; the gradients G_j of the shared
decoder (Eq. 3) are decoupled where they conflict (Eq. 8) and summed (Eq. 9); the encoders get
the summed gradient. A subset is intersected with each sample's modality mask (recorded and
simulated availability); samples left with nothing are not in that subset's loss.

``nnUNetTrainerDS`` is the same network and subsets with one summed loss (DS without GMD).

Choices against the official code (PCGrad over per-subset soft-Dice objectives): the subset loss
is nnU-Net's own (deep-supervised Dice+CE/BCE) so GMD is comparable with the other trainers;
theta is the shared decoder by construction (official: parameters every objective touched);
the corrected gradients are summed as in Eq. 9 (official: mean; ``gmd_reduction="mean"``).
"""
from typing import List, Optional

import numpy as np
import torch

from nnunet_prism.networks.dynamic_sharing_unet import build_dynamic_sharing_unet, fuse_modalities
from nnunet_prism.training.base import nnUNetTrainerPrismBase
from nnunet_prism.training.gmd_backward import gmd_backward, loss_scale, summed_backward
from nnunet_prism.training.gradient_decoupling import SubsetSampler, summarise_statistics
from nnunet_prism.training.modality_masking import zero_absent_channels

CURVES = ("conflict_fraction", "cosine_before", "cosine_after")


class nnUNetTrainerGMD(nnUNetTrainerPrismBase):
    HYPERPARAMETERS = {
        "gmd_subsets": None,        # k subsets per step: an int, or "all"; None = 5 (the paper's k)
        "gmd_reduction": "sum",     # Eq. 9 sums the corrected gradients; "mean" as the official code
        "gmd_seed": 0,              # subset sampling (identical on every DDP rank)
        "gradient_mode": "gmd",     # "sum": one summed loss, no decoupling (DS alone)
    }
    DEFAULT_SUBSETS = 5

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self._normalise_hyperparameters()
        self.sampler = SubsetSampler(len(self.modality_names), self.gmd_subsets, self.gmd_seed)
        self.register_curves({"GMD gradient conflicts (paper fig. 3)": [self.curve_key(c) for c in CURVES]})

    @staticmethod
    def curve_key(name: str) -> str:
        return f"gmd_{name}"

    def _normalise_hyperparameters(self) -> None:
        """gmd_subsets -> an int or None (all); the value in force is what hyperparameters.json shows."""
        k = self.DEFAULT_SUBSETS if self.gmd_subsets is None else self.gmd_subsets
        if k != "all" and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise ValueError(f"hyperparameter 'gmd_subsets' must be a positive integer or \"all\", got {k!r}")
        self.hyperparameters["gmd_subsets"] = k
        self.gmd_subsets = None if k == "all" else k
        if self.gmd_reduction not in ("sum", "mean"):
            raise ValueError(f"hyperparameter 'gmd_reduction' must be \"sum\" or \"mean\", got {self.gmd_reduction!r}")
        if self.gradient_mode not in ("gmd", "sum"):
            raise ValueError(f"hyperparameter 'gradient_mode' must be \"gmd\" or \"sum\", got {self.gradient_mode!r}")

    @staticmethod
    def build_network_architecture(plans_manager, configuration_manager, num_input_channels: int,
                                   num_output_channels: int, enable_deep_supervision: bool = True):
        return build_dynamic_sharing_unet(configuration_manager.network_arch_class_name,
                                          configuration_manager.network_arch_init_kwargs,
                                          configuration_manager.network_arch_init_kwargs_req_import,
                                          num_input_channels, num_output_channels, enable_deep_supervision)

    def initialize(self):
        super().initialize()
        # Subset losses run on the samples that have the subset, which differ between ranks: no
        # cross-rank Dice inside the loss (it could deadlock); gradients are averaged instead.
        is_ddp, self.is_ddp = self.is_ddp, False
        try:
            self.subset_loss = self._build_loss()
        finally:
            self.is_ddp = is_ddp

    # -- state ----------------------------------------------------------------------------------
    def checkpoint_state(self) -> dict:
        return {"gmd_sampler": self.sampler.state_dict()}

    def restore_checkpoint_state(self, state: dict) -> None:
        if "gmd_sampler" in state:
            self.sampler.load_state_dict(state["gmd_sampler"])

    def plain_network(self):
        """The DS network itself (GMD computes its own gradients, so DDP's hooks are bypassed and
        the reduction happens explicitly in ``gmd_backward``)."""
        network = self.network.module if self.is_ddp else self.network
        return getattr(network, "_orig_mod", network)

    # -- training -------------------------------------------------------------------------------
    def subset_losses(self, per_modality, target, mask: torch.Tensor, subsets: torch.Tensor) -> List[Optional[torch.Tensor]]:
        """L_j for each subset (K, M): the loss of the fused logits of (subset AND sample mask) on
        the samples where that is non-empty; None where no sample has any of the subset."""
        targets = target if isinstance(target, list) else [target]
        losses = []
        for subset in subsets:
            combined = mask & subset[None]
            rows = combined.any(dim=1)
            if not bool(rows.any()):
                losses.append(None)
                continue
            fused = fuse_modalities(per_modality, combined)
            if isinstance(fused, list):
                losses.append(self.subset_loss([f[rows] for f in fused], [t[rows] for t in targets]))
            else:
                losses.append(self.subset_loss(fused[rows], targets[0][rows]))
        return losses

    def train_step(self, batch: dict) -> dict:
        data, target = self.batch_to_device(batch)
        mask = self.training_modality_mask(batch['keys'])
        data = zero_absent_channels(data, mask)
        subsets = self.sampler.sample_masks().to(self.device)
        network = self.plain_network()
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            skips = network.encode(data)
            losses = self.subset_losses(network.decode(skips), target, mask, subsets)
        scale = loss_scale(self.grad_scaler, self.device)
        stats = None
        if self.gradient_mode == "gmd":
            stats = gmd_backward(network.shared_parameters(), network.modality_parameters(), skips, losses,
                                 scale=scale, reduction=self.gmd_reduction, generator=self.sampler.generator)
        else:
            summed_backward(list(network.parameters()), losses, scale=scale)
        self.clip_and_step()
        present = [l.detach().float() for l in losses if l is not None]
        loss = torch.stack(present).mean() if present else torch.zeros((), device=self.device)
        return {'loss': loss.cpu().numpy(),
                'gmd_statistics': np.array(stats.as_array() if stats is not None else [0.0] * 4)}

    def clip_and_step(self) -> None:
        """nnU-Net's update from gradients already in ``.grad`` (scaled when a GradScaler exists):
        unscale, clip to norm 12, step (skipped by the scaler on inf/NaN), update the scale."""
        if self.grad_scaler is not None:
            self.grad_scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12)
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12)
            self.optimizer.step()

    def on_train_epoch_end(self, train_outputs: List[dict]):
        super().on_train_epoch_end(train_outputs)
        if self.gradient_mode != "gmd":
            return
        # identical on every rank: the statistics come from the rank-averaged gradients
        summary = summarise_statistics(np.stack([o['gmd_statistics'] for o in train_outputs]))
        for name in CURVES:
            self.logger.log(self.curve_key(name), summary[name], self.current_epoch)
        self.print_to_log_file(f"GMD (k={self.sampler.k}): conflicting subset-gradient pairs "
                               f"{summary['conflict_fraction']:.3f}, mean cosine before "
                               f"{summary['cosine_before']:+.4f}, after {summary['cosine_after']:+.4f}")


class nnUNetTrainerDS(nnUNetTrainerGMD):
    """Dynamic sharing without GMD: the same network and sampled subsets, one summed loss."""
    HYPERPARAMETERS = {"gradient_mode": "sum"}
