"""Run dynamic_network_architectures' UNetDecoder and keep its last feature map."""
from __future__ import annotations

from typing import List, Sequence, Tuple, Union

import torch
from dynamic_network_architectures.building_blocks.unet_decoder import UNetDecoder


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
