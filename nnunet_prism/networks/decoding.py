"""Run dynamic_network_architectures' UNetDecoder: keeping its last feature map, or on weighted
mixtures of skip sets (the modality subsets of a multi-encoder network)."""
from __future__ import annotations

from typing import List, Sequence, Tuple, Union

import torch
from dynamic_network_architectures.building_blocks.simple_conv_blocks import ConvDropoutNormReLU
from dynamic_network_architectures.building_blocks.unet_decoder import UNetDecoder
from torch import nn


def decode_with_features(decoder: UNetDecoder, skips: Sequence[torch.Tensor]
                         ) -> Tuple[Union[torch.Tensor, List[torch.Tensor]], torch.Tensor]:
    """The decoder's own output (logits: a list, highest resolution first, when
    ``decoder.deep_supervision`` is on, else one tensor) and its highest-resolution feature map
    (B, features_per_stage[0], *spatial), the input of the final segmentation layer.

    skips: encoder outputs, highest resolution first, bottleneck last, as for ``decoder(skips)``.
    Uses the decoder's submodules (transpconvs, stages, seg_layers) unchanged.
    """
    features = skips[-1]
    last = len(decoder.stages) - 1
    logits = []
    for s, (upsample, stage, seg_layer) in enumerate(zip(decoder.transpconvs, decoder.stages, decoder.seg_layers)):
        skip = skips[-(s + 2)]
        features = stage(torch.cat((upsample(features), skip), dim=1))
        if decoder.deep_supervision or s == last:
            logits.append(seg_layer(features))
    logits.reverse()
    return (logits if decoder.deep_supervision else logits[0]), features


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


def decode_mixtures(decoder: UNetDecoder, skips: Sequence[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """Full-resolution logits (N, C, *spatial) of ``decoder`` on N inputs whose skips are weighted
    means of P skip sets: equals ``decoder([mix_rows(weights, s) for s in skips])`` without deep
    supervision.

    skips: per scale (P, C_s, *spatial_s), highest resolution first; weights: (N, P).
    Uses linearity to do less work when N > P: the first convolution of every decoder stage
    sees cat(upsampled, skip), and its skip half (a bias-free convolution) is applied to the P
    skip sets and then mixed, so only the rest runs on N rows. For the 15 subsets of 4
    modalities this removes about a quarter of the decoder's multiply-adds.
    """
    stages = [_split_first_conv(stage) for stage in decoder.stages]
    if any(s is None for s in stages):
        logits = decoder([mix_rows(weights, s) for s in skips])
        return logits[0] if isinstance(logits, (list, tuple)) else logits
    features = mix_rows(weights, skips[-1])
    for s, (upsample, (first, rest)) in enumerate(zip(decoder.transpconvs, stages)):
        conv = first.conv
        upsampled = upsample(features)
        width = upsampled.shape[1]
        skip_term = mix_rows(weights, conv._conv_forward(skips[-(s + 2)], conv.weight[:, width:], None))
        features = conv._conv_forward(upsampled, conv.weight[:, :width], conv.bias) + skip_term
        features = rest(first.all_modules[1:](features))
    return decoder.seg_layers[-1](features)
