"""Dynamic sharing (DS) U-Net: modality-specific encoders, one decoder shared by all modalities and
applied to each modality separately, fusion by the mean over present modalities at the output.

GMD paper (AAAI 2024, "Dynamic Sharing"): h_m = T(f_m(x_m); theta) (Eq. 1), H_f = F(H) (Eq. 2)
with F the mean over the present modalities, independent of how many there are; an absent
modality's h_m is dropped from the mean, never zero-filled. Built from nnU-Net plans (2d,
3d_fullres; PlainConvUNet and ResidualEncoderUNet) with dynamic_network_architectures' blocks.

Choices (see the class docstring): f_m = the plan's whole encoder per modality, T = the plan's
UNetDecoder (including its segmentation layers), F = mean of the per-modality logits.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np
import torch
from torch import nn

from nnunet_prism.deep_supervision import Logits, as_level_list, cat_levels, full_resolution, like_levels
from nnunet_prism.networks.fusion import masked_mean, resolve_modality_mask
from nnunet_prism.networks.multi_encoder_unet import default_encoder_width
from nnunet_prism.networks.plan_architecture import (PlanArchitecture, build_decoder, build_encoder,
                                                     decoder_interface, initialize_like_nnunet, read_plan_architecture,
                                                     resolve_width)
from nnunet_prism.networks.regions import ActivationCheckpointing, CompiledRegions, run_on_rows
from nnunet_prism.recomputation import chunk_indices

def fuse_modalities(per_modality: Logits, modality_mask: torch.Tensor,
                    modalities: Optional[Sequence[int]] = None) -> Logits:
    """F(H) of the DS framework (GMD, Eq. 2): mean over present modalities.

    per_modality: (B, M, C, *spatial) or a list of those (deep supervision); modality_mask: (B, M)
    bool -> (B, C, *spatial) (or a list). Absent modalities are selected away, not zero-filled;
    a sample with no present modality gets zeros. ``modalities``: only these take part (the same
    result when the others are absent from every sample, but their logits are then not in the
    graph, so a backward pass skips their decoder rows).
    """
    if modalities is not None:
        modality_mask = modality_mask[:, list(modalities)]
    select = (lambda t: t.unbind(1)) if modalities is None else (lambda t: [t[:, m] for m in modalities])
    return like_levels(per_modality, [masked_mean(select(t), modality_mask) for t in as_level_list(per_modality)])


def encode_each_modality(encoders: Sequence[nn.Module], x: torch.Tensor) -> List[torch.Tensor]:
    """The encoder region of the DS network: encoder m on channel m of x (B, M, *spatial) ->
    per scale (M * B, C_s, *spatial_s), modality-major, highest resolution first."""
    per_modality = [encoder(x[:, m:m + 1]) for m, encoder in enumerate(encoders)]
    return [torch.cat(scale) for scale in zip(*per_modality)]


def decode_each_modality(decoder: nn.Module, skips: List[torch.Tensor], rows: Optional[torch.Tensor] = None,
                         checkpoint: bool = False) -> Logits:
    """The decoder region of the DS network: the shared decoder on the stacked skips of all
    modalities (per scale (M * B, C_s, *spatial_s)) -> its logits for the M * B rows, or for
    the rows ``rows`` ((R,) long) only; recomputed in the backward pass when ``checkpoint``."""
    return run_on_rows(lambda *skips: decoder(list(skips)), skips, rows, checkpoint)


class DynamicSharingUNet(ActivationCheckpointing, CompiledRegions, nn.Module):
    """DS network: M one-channel encoders f_m, one shared UNetDecoder T run on every modality's
    skips, and the mean of the present modalities' logits.

    * f_m: the plan's encoder (PlainConvEncoder or ResidualEncoder) with one input channel; all
      encoders output the same widths, so their skips live in one common feature space.
    * T: the plan's UNetDecoder with deep supervision; it runs once on a batch of M * B (the
      modalities stacked modality-major), i.e. separately per modality but in one call.
    * F: mean of the per-modality logits over present modalities. The segmentation layers are
      1x1 convolutions, so this equals fusing the last features and applying the head once
      (the official code fuses logits too).

    Choice: T is the decoder and f_m the whole encoder (the official code shares the whole U-Net
    and keeps only normalisation modality-specific). With T = decoder, GMD needs k gradients
    through the decoder only, which keeps k = 5 subsets under 3x the cost of one summed loss.
    ``width`` scales every channel count (default 1/sqrt(M)): the M encoder passes and M decoder
    passes then cost about one nnU-Net network.

    Normalisation must be per sample (nnU-Net's InstanceNorm); BatchNorm would mix modalities.

    torch.compile: GMD takes its gradients at the skips between encoders and decoder, so its step
    calls ``encode`` and ``decode`` itself; ``compile_regions`` compiles those two (the forward
    is them plus the mean), and the trainers call it instead of compiling the whole network.

    ``activation_checkpointing`` (``ActivationCheckpointing``; training with gradients only):
    the decoder, which holds most of the activations (M * B rows), runs ``checkpoint_rows`` rows
    at a time, each chunk recomputed in the backward pass; its inputs (the skips) and the logits
    are kept. The encoders keep their activations: recomputing them too would cost another half
    forward pass for memory the step does not need (docs/design.md, "Memory"). GMD's k subset
    backward passes each recompute only the decoder rows of the modalities their subset uses
    (``subset_losses`` fuses only those).
    """

    REGIONS = "regions: the encoders' pass and the shared decoder's pass (GMD's gradients are taken between them)"

    def __init__(self, arch: PlanArchitecture, num_modalities: int, num_classes: int,
                 deep_supervision: bool = True, width: Optional[float] = None):
        super().__init__()
        self.width = resolve_width(num_modalities, width, default_encoder_width)
        self.num_modalities = num_modalities
        self.encoders = nn.ModuleList(build_encoder(arch, 1, self.width) for _ in range(num_modalities))
        self.decoder = build_decoder(arch, decoder_interface(self.encoders[0], self.encoders[0].output_channels),
                                     num_classes, deep_supervision)

    def shared_parameters(self) -> List[nn.Parameter]:
        """theta of the shared backbone T (GMD, Eq. 3): the parameters every modality uses."""
        return list(self.decoder.parameters())

    def modality_parameters(self) -> List[nn.Parameter]:
        """Parameters of the modality-specific encoders f_m."""
        return list(self.encoders.parameters())

    def encode(self, x: torch.Tensor) -> List[torch.Tensor]:
        """f_m(x_m) for every modality: x (B, M, *spatial) -> per scale (M * B, C_s, *spatial_s),
        modality-major (rows m*B .. m*B+B-1 belong to modality m), highest resolution first."""
        if x.shape[1] != self.num_modalities:
            raise ValueError(f"the network was built for {self.num_modalities} modalities but the input has "
                             f"{x.shape[1]} channels")
        return self.region(encode_each_modality)(self.encoders, x)

    def decode(self, skips: Sequence[torch.Tensor]) -> Logits:
        """T applied to every modality: skips from ``encode`` -> per-modality logits
        (B, M, C, *spatial) (a list over deep-supervision levels, highest resolution first)."""
        region = self.region(decode_each_modality)
        if self.recomputing():
            logits = cat_levels([region(self.decoder, list(skips), rows, True)
                                 for rows in chunk_indices(skips[0].shape[0], self.checkpoint_rows, skips[0].device)])
        else:
            logits = region(self.decoder, list(skips))
        batch = skips[0].shape[0] // self.num_modalities

        def per_modality(t: torch.Tensor) -> torch.Tensor:
            return t.unflatten(0, (self.num_modalities, batch)).transpose(0, 1)

        return like_levels(logits, [per_modality(t) for t in as_level_list(logits)])

    def forward_modalities(self, x: torch.Tensor) -> Logits:
        """Per-modality logits h_m (GMD, Eq. 1) of every modality, present or not."""
        return self.decode(self.encode(x))

    def forward(self, x: torch.Tensor, modality_mask: Optional[torch.Tensor] = None) -> Logits:
        """x (B, M, *spatial), modality_mask (B, M) bool or None (all-zero channel = absent) ->
        fused logits like nnU-Net's networks: list (deep supervision) or (B, C, *spatial)."""
        mask = resolve_modality_mask(x, modality_mask, self.num_modalities)
        return fuse_modalities(self.forward_modalities(x), mask)

    def forward_subsets(self, x: torch.Tensor, subset_masks: torch.Tensor,
                        modality_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Full-resolution logits (B, S, C, *spatial) for each of S subsets (S, M) bool: one
        encoder and decoder pass, then only the mean differs per subset. Equals
        ``forward(x, subset mask & modality mask)`` (without deep supervision) for every s."""
        mask = resolve_modality_mask(x, modality_mask, self.num_modalities)
        logits = self.forward_modalities(x)
        full = full_resolution(logits)
        subsets = torch.as_tensor(subset_masks, device=x.device).bool()
        return torch.stack([fuse_modalities(full, s[None] & mask) for s in subsets], dim=1)

    def compute_conv_feature_map_size(self, input_size: Sequence[int]) -> np.int64:
        """Feature-map elements stored by the convolutions for one sample of ``input_size``: the
        M encoders plus M passes of the decoder."""
        encoders = sum(encoder.compute_conv_feature_map_size(input_size) for encoder in self.encoders)
        return np.int64(encoders + self.num_modalities * self.decoder.compute_conv_feature_map_size(input_size))


def build_dynamic_sharing_unet(arch_class_name: str, arch_kwargs: dict, arch_kwargs_req_import: Sequence[str],
                               num_input_channels: int, num_output_channels: int,
                               enable_deep_supervision: bool = True,
                               width: Optional[float] = None) -> DynamicSharingUNet:
    """DynamicSharingUNet from a configuration's plans (arguments as nnU-Net's
    ``ConfigurationManager`` gives them), one modality per input channel, initialised like
    nnU-Net's networks. Raises ValueError for an unsupported architecture."""
    arch = read_plan_architecture(arch_class_name, arch_kwargs, arch_kwargs_req_import)
    network = DynamicSharingUNet(arch, num_input_channels, num_output_channels, enable_deep_supervision, width)
    network.apply(initialize_like_nnunet)
    return network
