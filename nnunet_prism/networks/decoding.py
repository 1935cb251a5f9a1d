"""Run dynamic_network_architectures' UNetDecoder: keeping its last feature map, or on weighted
mixtures of projected skip sets (the fused, unimodal and subset inputs of a multi-encoder network)."""
from __future__ import annotations

from typing import Callable, Sequence, Tuple

import torch
import torch.utils.checkpoint
from dynamic_network_architectures.building_blocks.simple_conv_blocks import ConvDropoutNormReLU
from dynamic_network_architectures.building_blocks.unet_decoder import UNetDecoder
from torch import nn

from nnunet_prism.deep_supervision import Logits, as_level_list, like_levels


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


def checkpointed(function: Callable, *args):
    """``function(*args)`` whose activations are not kept but recomputed in the backward pass
    (``torch.utils.checkpoint``, non-reentrant: RNG state restored, any output structure)."""
    return torch.utils.checkpoint.checkpoint(function, *args, use_reentrant=False)


def decode_mixtures_in_chunks(decoder: UNetDecoder, skips: Sequence[torch.Tensor], weights: torch.Tensor,
                              projections: Sequence[nn.Module], rows_per_chunk: int = 1,
                              checkpoint: bool = True) -> Tuple[Logits, torch.Tensor]:
    """``decode_mixtures`` run on ``rows_per_chunk`` rows of ``weights`` (N, P) at a time, each
    chunk with only the skip sets its weights use, under ``checkpointed`` when ``checkpoint``:
    the backward pass then holds one chunk's decoder activations at a time instead of N rows'.
    Same results as ``decode_mixtures`` (per-row computations; float summation order aside).

    skips: per scale (P, C_r_s, *spatial_s); returns logits per level (N, C, *spatial_l) and
    features (N, features_per_stage[0], *spatial), rows in the order of ``weights``.
    """
    def decode(chunk: torch.Tensor, used: torch.Tensor, *all_skips: torch.Tensor):
        return decode_mixtures(decoder, [s[used] for s in all_skips], chunk[:, used], projections)

    outputs = []
    for start in range(0, weights.shape[0], rows_per_chunk):
        chunk = weights[start:start + rows_per_chunk]
        used = chunk.ne(0).any(0).nonzero(as_tuple=True)[0]
        used = used if used.numel() else used.new_zeros(1)  # rows of zeros still need one skip set's shapes
        outputs.append(checkpointed(decode, chunk, used, *skips) if checkpoint else decode(chunk, used, *skips))
    logits = like_levels(outputs[0][0], [torch.cat(level) for level in zip(*(as_level_list(o[0]) for o in outputs))])
    return logits, torch.cat([o[1] for o in outputs])
