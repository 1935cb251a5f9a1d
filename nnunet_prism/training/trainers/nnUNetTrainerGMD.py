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

``preset="official"`` reproduces the official GMD code's projection and merge (each has its own
switch, see ``PRESETS``): every subset gradient projected against all sampled subsets, itself
included, in a fresh random order per subset and step (``gmd_order="official"``), over all
parameters, merged as the mean on the entries every subset reaches and the sum on the others
(``gmd_reduction="official"``).
"""
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np
import torch

from nnunet_prism.deep_supervision import Logits, as_level_list, like_levels
from nnunet_prism.networks.dynamic_sharing_unet import build_dynamic_sharing_unet, fuse_modalities
from nnunet_prism.training.activation_checkpointing import ActivationCheckpointingMixin
from nnunet_prism.training.base import StepInputs, nnUNetTrainerPrismBase
from nnunet_prism.training.gmd.backward import gmd_backward, held_gradient_bytes, loss_scale, summed_backward
from nnunet_prism.training.gmd.decoupling import REDUCTIONS, summarise_statistics
from nnunet_prism.training.gmd.subset_sampling import SubsetSampler
from nnunet_prism.training.hyperparameters import PRESET, Hyperparameter

CURVES = ("conflict_fraction", "cosine_before", "cosine_after")


def subset_losses(loss, per_modality: Logits, target: Logits, mask: torch.Tensor,
                  subsets: torch.Tensor) -> List[Optional[torch.Tensor]]:
    """L_j for each subset C_j (GMD, AAAI 2024, Eq. 2-3): the loss of the mean of the logits of
    (C_j AND the sample's modalities) on the samples where that is not empty; None where no sample
    has any modality of C_j. per_modality: per level (B, M, C, *spatial); target: per level
    (B, 1|R, *spatial); mask (B, M) and subsets (K, M) bool."""
    targets = as_level_list(target)
    combined = mask[None] & subsets[:, None]                       # (K, B, M)
    on_host = combined.cpu().numpy()  # one device-to-host copy for the subsets' shapes
    losses = []
    for subset_mask, host in zip(combined, on_host):
        if not host.any():
            losses.append(None)
            continue
        rows = subset_mask.any(dim=1)
        # only the modalities the subset uses: the backward pass then skips the others' decoder rows
        fused = as_level_list(fuse_modalities(per_modality, subset_mask, np.flatnonzero(host.any(axis=0)).tolist()))
        losses.append(loss(like_levels(per_modality, [f[rows] for f in fused]),
                           like_levels(per_modality, [t[rows] for t in targets])))
    return losses


@dataclass
class DynamicSharingOutput:
    """Encoder skips (per scale, (B, M, C_s, *spatial_s)) and every modality's logits through the
    shared decoder (per level (B, M, C, *spatial)); the subset losses once computed."""
    skips: List[torch.Tensor]
    per_modality: Logits
    losses: List[Optional[torch.Tensor]] = field(default_factory=list)
    used: Optional[torch.Tensor] = None  # (K, M) bool: the modalities each subset's loss uses


class nnUNetTrainerGMD(ActivationCheckpointingMixin, nnUNetTrainerPrismBase):
    HYPERPARAMETERS = {
        "gmd_subsets": Hyperparameter("int", 5, "subsets k per step, or `all` (GMD paper)", minimum=1,
                                      special=("all",)),
        "gmd_reduction": Hyperparameter("choice", "sum", "Eq. 9 sums; `mean` averages; `official`: all parameters "
                                                         "projected, mean where every subset has a gradient, sum "
                                                         "elsewhere (official code)", choices=REDUCTIONS),
        "gmd_order": Hyperparameter("choice", "others", "each subset gradient projected on the others in random "
                                                        "order; `official`: on all, itself included, order "
                                                        "shuffled per subset and step (official code)",
                                    choices=("others", "official")),
        "preset": PRESET,
        "gmd_seed": Hyperparameter("int", 0, "subset sampling, identical on every DDP rank", minimum=0),
        "gradient_mode": Hyperparameter("choice", "gmd", "`sum`: one summed loss, no decoupling (DS alone)",
                                        choices=("gmd", "sum")),
    }
    #: ``preset=official``: the official GMD code's projection and merge (an explicit value still wins)
    PRESETS = {"official": {"gmd_reduction": "official", "gmd_order": "official"}}
    network_builder = staticmethod(build_dynamic_sharing_unet)

    def build_from_hyperparameters(self) -> None:
        super().build_from_hyperparameters()
        k = None if self.gmd_subsets == "all" else self.gmd_subsets
        self.sampler = SubsetSampler(len(self.modality_names), k, self.gmd_seed)

    def method_curves(self):
        return {**super().method_curves(),
                "GMD gradient conflicts (paper fig. 3)": [self.curve_key(c) for c in CURVES]}

    @staticmethod
    def curve_key(name: str) -> str:
        return f"gmd_{name}"

    def initialize(self):
        super().initialize()
        # subset losses run on the samples that have the subset (differs between ranks)
        self.subset_loss = self.build_rank_local_loss()

    # -- state ----------------------------------------------------------------------------------
    def checkpoint_state(self) -> dict:
        return {"gmd_sampler": self.sampler.state_dict()}

    def restore_checkpoint_state(self, state: dict) -> None:
        if "gmd_sampler" in state:
            self.sampler.load_state_dict(state["gmd_sampler"])

    # -- the step: GMD computes its own gradients ------------------------------------------------
    def forward(self, inputs: StepInputs, training: bool):
        """Training: skips and per-modality logits of the DS network itself (GMD bypasses DDP's
        hooks and reduces explicitly in ``gmd_backward``); validation: the fused logits."""
        if not training:
            return self.network(inputs.data, inputs.mask)
        network = self.unwrapped_network()
        skips = network.encode(inputs.data)
        return DynamicSharingOutput(skips, network.decode(skips))

    def compute_loss(self, output: DynamicSharingOutput, inputs: StepInputs):
        """The k sampled subsets' losses (kept on ``output`` for the backward); their mean is the
        number logged."""
        subsets = self.sampler.sample_masks().to(self.device)
        output.losses = subset_losses(self.subset_loss, output.per_modality, inputs.target, inputs.mask, subsets)
        output.used = (inputs.mask[None] & subsets[:, None]).any(dim=1)
        present = [loss.detach().float() for loss in output.losses if loss is not None]
        return (torch.stack(present).mean() if present else torch.zeros((), device=self.device)), {}

    def backward_and_step(self, loss, inputs: StepInputs, output: DynamicSharingOutput) -> dict:
        network = self.unwrapped_network()
        scale = loss_scale(self.grad_scaler, self.device)
        stats = None
        if self.gradient_mode == "gmd":
            stats = gmd_backward(network.shared_parameters(), network.modality_parameters(), output.skips,
                                 output.losses, scale=scale, reduction=self.gmd_reduction,
                                 generator=self.sampler.generator, include_self=self.gmd_order == "official",
                                 specific_used=self.specific_used(network, output))
        else:
            summed_backward(list(network.parameters()), output.losses, scale=scale)
        self.clip_and_step()
        return {'gmd_statistics': np.array(stats.as_array() if stats is not None else [0.0] * 4)}

    def backward_held_bytes(self, output: DynamicSharingOutput):
        """``gmd_backward``'s skip-gradient accumulators and (K, |theta|) subset gradients; none
        for DS (one summed backward)."""
        if self.gradient_mode != "gmd":
            return 0, 0
        network = self.unwrapped_network()
        return held_gradient_bytes(output.skips, network.shared_parameters(), len(output.losses), self.gmd_reduction,
                                   network.modality_parameters())

    @staticmethod
    def specific_used(network, output: DynamicSharingOutput) -> torch.Tensor:
        """(K, number of encoder parameters) bool: parameter of encoder m is reached by subset j
        when m is in the subset and some sample has it (``modality_parameters``' order)."""
        modality = torch.tensor([m for m, encoder in enumerate(network.encoders) for _ in encoder.parameters()],
                                device=output.used.device)
        return output.used[:, modality]

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
    DEFAULT_OVERRIDES = {"gradient_mode": "sum"}
