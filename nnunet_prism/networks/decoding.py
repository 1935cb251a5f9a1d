"""Run dynamic_network_architectures' UNetDecoder: keeping its last feature map, or on weighted
mixtures of projected skip sets (the fused, unimodal and subset inputs of a multi-encoder network)."""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple

import torch
from dynamic_network_architectures.building_blocks.simple_conv_blocks import ConvDropoutNormReLU
from dynamic_network_architectures.building_blocks.unet_decoder import UNetDecoder
from torch import nn

from nnunet_prism.deep_supervision import Logits, cat_levels
from nnunet_prism.networks.regions import checkpointed, dynamic_rows

__all__ = ["checkpointed", "decode_fused", "decode_mixtures", "decode_rows", "decode_rows_in_chunks",
           "decode_with_features", "mix_rows"]


def _run_decoder(decoder: UNetDecoder, bottleneck: torch.Tensor,
                 stage_output: Callable[[int, torch.Tensor], torch.Tensor]):
    """The decoder's stage loop: upsample, ``stage_output(s, upsampled)`` -> features of stage s,
    segmentation layer where deep supervision (or the last stage) needs it. Returns logits
    (a list, highest resolution first, with deep supervision, else one tensor) and the
    highest-resolution features."""
    features = bottleneck
    last = len(decoder.stages) - 1
    logits = []
    for s, (upsample, seg_layer) in enumerate(zip(decoder.transpconvs, decoder.seg_layers)):
        features = stage_output(s, upsample(features))
        if decoder.deep_supervision or s == last:
            logits.append(seg_layer(features))
    logits.reverse()
    return (logits if decoder.deep_supervision else logits[0]), features


def decode_with_features(decoder: UNetDecoder, skips: Sequence[torch.Tensor]
                         ) -> Tuple[Logits, torch.Tensor]:
    """The decoder's own output (logits: a list, highest resolution first, when
    ``decoder.deep_supervision`` is on, else one tensor) and its highest-resolution feature map
    (B, features_per_stage[0], *spatial), the input of the final segmentation layer.

    skips: encoder outputs, highest resolution first, bottleneck last, as for ``decoder(skips)``.
    Uses the decoder's submodules (transpconvs, stages, seg_layers) unchanged.
    """
    return _run_decoder(decoder, skips[-1],
                        lambda s, upsampled: decoder.stages[s](torch.cat((upsampled, skips[-(s + 2)]), dim=1)))


def mix_rows(weights: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """(N, P) weights times (P, *shape) rows -> (N, *shape): one matrix product."""
    return (weights.to(rows.dtype) @ rows.flatten(1)).view(-1, *rows.shape[1:])


def _split_first_conv(stage):
    """(first conv block, the rest) of a StackedConvBlocks decoder stage, or None if the stage
    is built differently."""
    convs = getattr(stage, "convs", None)
    if isinstance(convs, nn.Sequential) and isinstance(convs[0], ConvDropoutNormReLU):
        return convs[0], convs[1:]
    return None


def _skip_weight(conv: nn.Module, upsampled_width: int, projection: nn.Module) -> torch.Tensor:
    """The skip half of ``conv``'s weight composed with a bias-free 1x1 ``projection``:
    (C_out, C_up + C_s, *k) and (C_s, C_r, 1...) -> (C_out, C_r, *k), so that
    conv_skip(projection(x)) = conv(x, composed weight) for x with C_r channels."""
    return torch.einsum('oc...,cr->or...', conv.weight[:, upsampled_width:], projection.weight.flatten(1))


def decode_mixtures(decoder: UNetDecoder, skips: Sequence[torch.Tensor], weights: torch.Tensor,
                    projections: Sequence[nn.Module]
                    ) -> Tuple[Logits, torch.Tensor]:
    """``decode_with_features`` of N inputs whose skips are projected weighted means of P skip
    sets: equals ``decode_with_features(decoder, [project(mix_rows(weights, s)) ...])``.

    skips: per scale (P, C_r_s, *spatial_s), highest resolution first (the narrow encoder
    outputs); weights: (N, P); projections: per scale a bias-free 1x1 conv C_r_s -> C_s.
    Returns the decoder's logits (a list with deep supervision) and its highest-resolution
    features (N, features_per_stage[0], *spatial).

    Uses linearity so that the skips are only touched P times, at their narrow width: every
    decoder stage's first convolution sees cat(upsampled, skip); its skip half (bias-free)
    composed with the 1x1 projection is one convolution C_r_s -> C_out, applied to the P skip
    sets and then mixed into the N rows. The projections never run at full resolution. Falls
    back to the plain computation for decoder stages built differently.
    """
    stages = [_split_first_conv(stage) for stage in decoder.stages]
    if any(s is None for s in stages):
        return decode_with_features(decoder, [project(mix_rows(weights, s)) for project, s in zip(projections, skips)])
    def stage_output(s: int, upsampled: torch.Tensor) -> torch.Tensor:
        first, rest = stages[s]
        conv, width = first.conv, upsampled.shape[1]
        skip_term = conv._conv_forward(skips[-(s + 2)], _skip_weight(conv, width, projections[-(s + 2)]), None)
        features = conv._conv_forward(upsampled, conv.weight[:, :width], conv.bias) + mix_rows(weights, skip_term)
        return rest(first.all_modules[1:](features))

    return _run_decoder(decoder, mix_rows(weights, projections[-1](skips[-1])), stage_output)


def decode_rows(decoder: UNetDecoder, projections: Sequence[nn.Module], skips: Sequence[torch.Tensor],
                weights: torch.Tensor, used: Optional[torch.Tensor] = None, checkpoint: bool = False
                ) -> Tuple[Logits, torch.Tensor]:
    """The decoder region of a multi-encoder network: ``decode_mixtures`` of the rows of
    ``weights`` (N, P) over ``skips`` (per scale (P, C_r_s, *spatial_s)). With ``used`` (U,)
    long, only those skip sets (and weight columns) take part: the ones a chunk's rows use.
    ``checkpoint``: recomputed in the backward pass (``checkpointed``), indexing included."""
    def decode(weights: torch.Tensor, *skips: torch.Tensor):
        if used is not None:
            weights, skips = weights[:, used], [s[used] for s in skips]
        return decode_mixtures(decoder, skips, weights, projections)

    return checkpointed(decode, weights, *skips) if checkpoint else decode(weights, *skips)


def decode_fused(decoder: UNetDecoder, projections: Sequence[nn.Module], skips: Sequence[torch.Tensor],
                 weights: torch.Tensor) -> Logits:
    """The decoder region of a multi-encoder network's plain forward: the decoder's own output
    (logits as ``decoder(...)`` gives them) on the projected weighted means
    ``project(mix_rows(weights, skip))`` of the skip sets (weights (N, P), skips per scale
    (P, C_r_s, *spatial_s))."""
    return decoder([project(mix_rows(weights, s)) for project, s in zip(projections, skips)])


def decode_rows_in_chunks(region: Callable, decoder: UNetDecoder, projections: Sequence[nn.Module],
                          skips: Sequence[torch.Tensor], weights: torch.Tensor, rows_per_chunk: int,
                          used: Sequence[torch.Tensor], checkpoint: bool = True) -> Tuple[Logits, torch.Tensor]:
    """``decode_rows`` (through ``region``: itself or its compiled version) on ``rows_per_chunk``
    rows of ``weights`` (N, P) at a time, chunk c with only the skip sets ``used[c]`` (long
    indices, known before the forward: no synchronisation here), under ``checkpointed`` when
    ``checkpoint``: the backward pass then holds one chunk's decoder activations at a time
    instead of N rows'. Same results as ``decode_mixtures`` (per-row computations; float
    summation order aside); logits per level (N, C, *spatial_l) and features
    (N, features_per_stage[0], *spatial), rows in the order of ``weights``."""
    outputs = []
    for chunk, columns in zip(weights.split(rows_per_chunk), used):
        chunk = dynamic_rows(chunk.clone(), 0, 1)  # a tensor of its own: no storage offset for dynamo to guard on
        outputs.append(region(decoder, projections, skips, chunk, dynamic_rows(columns), checkpoint))
    return cat_levels([o[0] for o in outputs]), torch.cat([o[1] for o in outputs])
