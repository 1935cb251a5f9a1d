"""Multi-encoder U-Net: one encoder per modality, masked-mean fusion at every skip scale, one
fusion decoder with nnU-Net's deep supervision. Built from nnU-Net plans (2d, 3d_fullres;
PlainConvUNet and ResidualEncoderUNet) with dynamic_network_architectures' blocks.

Used by the PASSION/PRISM baseline and the PRISM trainer (see docs/design.md, "Methods and trainers").
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from nnunet_prism.deep_supervision import Logits, as_level_list, full_resolution, like_levels
from nnunet_prism.networks.decoding import decode_fused, decode_rows, decode_rows_in_chunks
from nnunet_prism.networks.fusion import resolve_modality_mask
from nnunet_prism.networks.pair_layout import PairLayout
from nnunet_prism.networks.plan_architecture import (PlanArchitecture, build_decoder, build_encoder,
                                                     decoder_interface, initialize_like_nnunet, read_plan_architecture,
                                                     resolve_width, stage_sizes)
from nnunet_prism.networks.regions import ActivationCheckpointing, CompiledRegions, dynamic_rows, run_module

def default_encoder_width(num_modalities: int) -> float:
    """1 / sqrt(M). A conv costs C_in * C_out, so M encoders at width w cost M * w^2 times one
    plan-width encoder: w = 1/sqrt(M) keeps encoder parameters and FLOPs equal to nnU-Net's single
    encoder (1/2 for the four BraTS modalities). The decoder stays at plan width, so the whole
    network costs about what nnU-Net's own does; encoder activation memory grows by sqrt(M)."""
    return 1.0 / math.sqrt(num_modalities)


@dataclass
class MultiModalOutput:
    """Everything ``MultiEncoderUNet.forward_all`` computes in one pass.

    fused: logits as ``forward`` returns them: a list of (B, C, *spatial_k), highest resolution
        first, with deep supervision; one (B, C, *spatial) tensor without.
    fused_features: (B, F, *spatial), the highest-resolution decoder features (input of the final
        segmentation layer), F = features_per_stage[0] of the plan.
    students: the same structure as ``fused`` with tensors (P, C, *spatial_k): one row per
        present (sample, modality) pair, that modality alone through the same decoder.
    student_features: (P, F, *spatial), the same for the decoder features.
    samples, modalities: (P,) long, the pair of every student row (modality-major, samples
        ascending within a modality). Absent pairs have no row: they are never computed.
    modality_mask: (B, M) bool, True where a modality is present.

    ``unimodal`` / ``unimodal_features`` give the dense (B, M, ...) view with zeros (and no
    gradient) for absent pairs; the training losses use the compact rows.
    """
    fused: Logits
    fused_features: torch.Tensor
    students: Logits
    student_features: torch.Tensor
    samples: torch.Tensor
    modalities: torch.Tensor
    modality_mask: torch.Tensor

    @property
    def pairs(self) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.samples, self.modalities

    def student_rows(self, modality: int) -> torch.Tensor:
        """(R,) indices of the student rows of one modality (its samples: ``samples[rows]``)."""
        return (self.modalities == modality).nonzero(as_tuple=True)[0]

    def _dense(self, rows: torch.Tensor) -> torch.Tensor:
        batch, num_modalities = self.modality_mask.shape
        return rows.new_zeros((batch, num_modalities, *rows.shape[1:])).index_put(self.pairs, rows)

    @property
    def unimodal(self) -> Logits:
        """``students`` as (B, M, C, *spatial_k) per level, zeros where the modality is absent."""
        return like_levels(self.students, [self._dense(t) for t in as_level_list(self.students)])

    @property
    def unimodal_features(self) -> torch.Tensor:
        """``student_features`` as (B, M, F, *spatial), zeros where the modality is absent."""
        return self._dense(self.student_features)

    def unimodal_logits(self, modality: int) -> Logits:
        """Logits of one modality alone for the whole batch, structured like ``fused``."""
        return like_levels(self.students, [u[:, modality] for u in as_level_list(self.unimodal)])


@dataclass
class PresentEncoding:
    """Encoder outputs of the present (sample, modality) pairs, modality-major.

    samples, modalities: (P,) long, the pair of every row; features: per scale (P, C_s, *spatial_s);
    mask: (B, M) bool, the modalities present; layout: the same pairs known on the host;
    chunk_pairs: per chunk of decoder rows (activation checkpointing), the (U,) long indices of
    the pairs it uses (``PairLayout.chunk_pairs``; empty without checkpointing). When no sample
    has any modality, the rows are every pair, encoded only for their shapes, and none counts.
    """
    samples: torch.Tensor
    modalities: torch.Tensor
    features: List[torch.Tensor]
    mask: torch.Tensor
    layout: PairLayout
    chunk_pairs: List[torch.Tensor]

    @property
    def any_present(self) -> bool:
        return self.layout.any_present

    def subset_weights(self, subsets: torch.Tensor) -> torch.Tensor:
        """(S * B, P), subset-major: row (s, b) averages the rows of sample b whose modality is
        in subset s (S, M) and present; a row with no such modality is all zero."""
        combined = subsets[:, None, :] & self.mask[None]                             # (S, B, M)
        counts = combined.sum(-1).clamp(min=1)                                       # (S, B)
        batch = torch.arange(self.mask.shape[0], device=self.mask.device)
        of_sample = self.samples[None, :] == batch[:, None]                          # (B, P)
        selected = combined[:, self.samples, self.modalities]                        # (S, P)
        weights = of_sample[None] & selected[:, None, :]                             # (S, B, P)
        return (weights / counts[..., None]).flatten(0, 1)

    def fused_weights(self) -> torch.Tensor:
        """(B, P): per sample, the mean over its present modalities (an all-zero row for a
        sample without any)."""
        every_modality = torch.ones(1, self.mask.shape[1], dtype=torch.bool, device=self.mask.device)
        return self.subset_weights(every_modality)

    def present_pairs(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """(samples, modalities) of the rows that count (none when no modality is present)."""
        return (self.samples, self.modalities) if self.any_present else (self.samples[:0], self.modalities[:0])

    def fused_and_own_weights(self) -> torch.Tensor:
        """(B + P', P): the B fused rows, then one row per pair that counts (P' = P, or 0 when
        no modality is present) selecting its own features."""
        rows = self.samples.shape[0]
        own = torch.eye(rows, dtype=torch.float32, device=self.mask.device)[:rows if self.any_present else 0]
        return torch.cat([self.fused_weights(), own])


class MultiEncoderUNet(ActivationCheckpointing, CompiledRegions, nn.Module):
    """One encoder per modality, masked-mean fusion at every skip scale, one UNetDecoder.

    Each modality has a one-channel encoder of the plan's family (PlainConvEncoder or
    ResidualEncoder) whose channel counts are the plan's times ``encoder_width`` (default
    ``default_encoder_width(M)``). At every scale the present modalities' features are averaged
    (independent of how many are present), then a bias-free 1x1 conv projects the reduced width
    to the plan width, so the decoder is exactly the plan's UNetDecoder. Choice: project after
    fusing rather than building a narrow decoder, to keep the decoder's capacity and compute
    equal to nnU-Net's.

    An absent modality cannot influence any fused output, whatever its input values. A sample
    with no present modality (an all-zero sliding-window patch with ``modality_mask=None``) is
    decoded from zero skips and still gives finite logits.

    Normalisation must be per sample (nnU-Net's plans use InstanceNorm): BatchNorm in training
    would let absent modalities and other samples leak through the batch statistics.

    ``activation_checkpointing`` (``ActivationCheckpointing``; training with gradients only):
    every encoder pass and every ``checkpoint_rows`` decoder rows of ``forward_all`` keep only
    their inputs and outputs and are recomputed in the backward pass, one chunk at a time, so
    the step holds one chunk's decoder activations instead of B + P rows'.

    torch.compile: the number of rows of every encoder pass and decoder call depends on the mask,
    so the network is not one graph; ``compile_regions`` compiles each encoder pass and each
    decoder call (``regions``, rows dynamic), the trainers call it instead of compiling the whole
    network (docs/design.md, "torch.compile").
    """

    REGIONS = ("regions: each encoder pass and each decoder call (rows dynamic); choosing the present "
               "(sample, modality) pairs stays eager")

    def __init__(self, arch: PlanArchitecture, num_modalities: int, num_classes: int,
                 deep_supervision: bool = True, encoder_width: Optional[float] = None,
                 activation_checkpointing: bool = False):
        super().__init__()
        self.activation_checkpointing = activation_checkpointing
        self.encoder_width = resolve_width(num_modalities, encoder_width, default_encoder_width, "encoder_width")
        self.num_modalities = num_modalities
        self.encoders = nn.ModuleList(build_encoder(arch, 1, self.encoder_width) for _ in range(num_modalities))
        conv_op = arch.conv_op
        self.projections = nn.ModuleList(
            conv_op(reduced, full, kernel_size=1, bias=False)
            for reduced, full in zip(self.encoders[0].output_channels, arch.features_per_stage))
        self.decoder = build_decoder(arch, decoder_interface(self.encoders[0], arch.features_per_stage),
                                     num_classes, deep_supervision)

    def _encode(self, x: torch.Tensor, mask: torch.Tensor, rows_per_chunk: Optional[int] = None
                ) -> PresentEncoding:
        """x (B, M, *spatial), mask (B, M) bool -> the encoder outputs of the present pairs
        (and, with ``rows_per_chunk``, the pairs each chunk of decoder rows uses).

        Encoder m runs only on the samples that have modality m (exact: the plans' InstanceNorm
        makes every sample independent of the others). With no modality in the whole batch
        every encoder runs once so that the decoder still gets correctly shaped (zero) skips.
        The mask is read on the host once (``PairLayout``); each encoder pass is a region."""
        layout = PairLayout.of(mask)
        samples, modalities, chunk_pairs = layout.index_tensors(x.device, rows_per_chunk)
        outputs = []
        for m, start, count in layout.modality_rows():
            image = x[samples[start:start + count], m][:, None]  # (count, 1, *spatial), contiguous
            outputs.append(self.region(run_module)(self.encoders[m], dynamic_rows(image), self.recomputing()))
        features = [dynamic_rows(torch.cat(scale) if len(scale) > 1 else scale[0]) for scale in zip(*outputs)]
        return PresentEncoding(samples, modalities, features, mask, layout, chunk_pairs)

    def forward(self, x: torch.Tensor, modality_mask: Optional[torch.Tensor] = None,
                return_all: bool = False) -> Union[Logits, "MultiModalOutput"]:
        """x (B, M, *spatial), modality_mask (B, M) bool or None (all-zero channel = absent) ->
        logits like nnU-Net's networks: list (deep supervision) or tensor (B, C, *spatial).
        ``return_all=True`` returns ``forward_all``'s output instead; trainers call it this way
        so that DDP and torch.compile wrappers see an ordinary forward call."""
        if return_all:
            return self.forward_all(x, modality_mask)
        mask = resolve_modality_mask(x, modality_mask, self.num_modalities)
        encoded = self._encode(x, mask)
        return self.region(decode_fused)(self.decoder, self.projections, encoded.features,
                                         dynamic_rows(encoded.fused_weights(), 1))

    def forward_all(self, x: torch.Tensor, modality_mask: Optional[torch.Tensor] = None) -> MultiModalOutput:
        """Fused and per-modality outputs and decoder features from one encoder pass.

        The decoder runs once on a batch of B + P: the fused skips followed by the own skips of
        the P present (sample, modality) pairs; absent pairs are neither encoded nor decoded.
        The skips enter only through ``decode_mixtures``: projected and convolved P times, at
        the encoders' narrow width, then mixed into the B + P rows.
        Modality m's own skips equal the fusion with only m present, so the student row of
        (b, m) equals ``forward(x, mask with only m)[b]``.
        """
        mask = resolve_modality_mask(x, modality_mask, self.num_modalities)
        checkpointing = self.recomputing()
        encoded = self._encode(x, mask, self.checkpoint_rows if checkpointing else None)
        weights = dynamic_rows(encoded.fused_and_own_weights(), 0, 1)
        if checkpointing:
            logits, features = decode_rows_in_chunks(self.region(decode_rows), self.decoder, self.projections,
                                                     encoded.features, weights, self.checkpoint_rows,
                                                     encoded.chunk_pairs)
        else:
            logits, features = self.region(decode_rows)(self.decoder, self.projections, encoded.features, weights)
        batch = x.shape[0]
        fused, students = zip(*(t.split([batch, t.shape[0] - batch]) for t in as_level_list(logits)))
        fused_features, student_features = features.split([batch, features.shape[0] - batch])
        return MultiModalOutput(like_levels(logits, list(fused)), fused_features, like_levels(logits, list(students)),
                                student_features, *encoded.present_pairs(), mask)

    def forward_subsets(self, x: torch.Tensor, subset_masks: torch.Tensor,
                        modality_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Full-resolution logits (B, S, C, *spatial) for each of S modality subsets (S, M) bool,
        from one encoder pass: subset s fuses the modalities in it that are also present.

        Equals ``forward(x, subset mask & modality mask)`` for every s (without deep supervision):
        each present modality is encoded once, the S * B fused skips are weighted means of
        those, and the decoder runs once on a batch of S * B (with the skip half of each stage's
        first convolution, composed with the projection, on the P pairs only; see
        ``decode_mixtures``).
        Used for the 15-subset evaluation.
        """
        mask = resolve_modality_mask(x, modality_mask, self.num_modalities)
        subsets = torch.as_tensor(subset_masks, device=x.device).bool()
        encoded = self._encode(x, mask)
        logits, _ = self.region(decode_rows)(self.decoder, self.projections, encoded.features,
                                             dynamic_rows(encoded.subset_weights(subsets), 0, 1))
        return full_resolution(logits).unflatten(0, (subsets.shape[0], x.shape[0])).transpose(0, 1)

    def compute_conv_feature_map_size(self, input_size: Sequence[int]) -> np.int64:
        """Number of feature-map elements stored by the convolutions for one sample of spatial
        size ``input_size`` (the quantity nnU-Net's VRAM estimate uses)."""
        total = sum(encoder.compute_conv_feature_map_size(input_size) for encoder in self.encoders)
        for projection, size in zip(self.projections, stage_sizes(input_size, self.encoders[0].strides)):
            total += np.prod([projection.out_channels, *size], dtype=np.int64)
        return total + self.decoder.compute_conv_feature_map_size(input_size)


def build_multi_encoder_unet(arch_class_name: str, arch_kwargs: dict, arch_kwargs_req_import: Sequence[str],
                             num_input_channels: int, num_output_channels: int,
                             enable_deep_supervision: bool = True,
                             encoder_width: Optional[float] = None,
                             activation_checkpointing: bool = False) -> MultiEncoderUNet:
    """MultiEncoderUNet from a configuration's plans, initialised like nnU-Net's networks.

    Arguments as nnU-Net's ``ConfigurationManager`` gives them (``network_arch_class_name``,
    ``network_arch_init_kwargs``, ``network_arch_init_kwargs_req_import``); one modality per
    input channel. ``encoder_width`` None -> ``default_encoder_width(num_input_channels)``.
    ``activation_checkpointing``: see ``MultiEncoderUNet`` (also settable on the built network).
    Raises ValueError for an architecture other than PlainConvUNet / ResidualEncoderUNet.
    """
    arch = read_plan_architecture(arch_class_name, arch_kwargs, arch_kwargs_req_import)
    network = MultiEncoderUNet(arch, num_input_channels, num_output_channels, enable_deep_supervision,
                               encoder_width, activation_checkpointing)
    network.apply(initialize_like_nnunet)
    return network
