"""Deep-supervision outputs: one tensor, or a list of levels, highest resolution first.

nnU-Net's networks return a list of logits, one per decoder level (level 0 at full resolution,
(B, C, *spatial); level l downsampled by the decoder's strides) when deep supervision is on, and
the full-resolution tensor alone when it is off. Targets come in the same two forms. These
helpers are the one place that tells the two apart; every layer (networks, losses, trainers,
inference, evaluation, CCH) may import them.
"""
from __future__ import annotations

from typing import List, Union

import torch

#: Logits (or targets) as nnU-Net passes them: one tensor (B, C, *spatial), or a list of
#: deep-supervision levels, highest resolution first.
Logits = Union[torch.Tensor, List[torch.Tensor]]


def as_level_list(logits) -> List[torch.Tensor]:
    """Deep-supervision levels as a list: a list/tuple stays as is, one tensor is one level."""
    return list(logits) if isinstance(logits, (list, tuple)) else [logits]


def like_levels(template, levels: List[torch.Tensor]):
    """``levels`` structured like ``template``: a list if it is a list/tuple, else levels[0]."""
    return levels if isinstance(template, (list, tuple)) else levels[0]


def cat_levels(chunks: List) -> "Logits":
    """Logits of consecutive row chunks (each a tensor or a list of levels) concatenated along
    rows, level by level, structured like one chunk's."""
    return like_levels(chunks[0], [torch.cat(level) for level in zip(*(as_level_list(c) for c in chunks))])


def full_resolution(x):
    """Level 0 of a list/tuple of deep-supervision levels, or the tensor itself."""
    return x[0] if isinstance(x, (list, tuple)) else x
