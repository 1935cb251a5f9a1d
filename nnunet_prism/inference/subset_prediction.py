"""Predict one case under every modality subset with nnU-Net's own sliding window.

The trick: wrap the network so that one forward pass returns the logits of all S subsets
stacked along the channel axis, (B, S*C, *patch). nnU-Net's predictor then does the sliding
window, Gaussian weighting and test-time mirroring for all subsets at once, and a network that
can (``forward_subsets``: the multi-encoder U-Net) computes its encoder features once per patch
and reuses them for every subset. Other networks (nnU-Net's own) get the S inputs with the absent
channels zeroed stacked along the batch axis, in as few forward passes as ``MAX_VOXELS_PER_FORWARD``
allows (nnU-Net's networks normalise per sample, so a sample's output does not depend on the
others in its batch; batching is what makes it fast: a CPU convolution of one sample is slow).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import List, Sequence

import numpy as np
import torch
from torch import nn

from nnunet_prism.modalities import zero_absent_channels
from nnunet_prism.networks.interfaces import SubsetEvaluable

# at most this many input voxels (batch x spatial) in one forward of a plain network: one 128^3
# patch, the size nnU-Net's 3d_fullres configurations are planned for at batch size 2
MAX_VOXELS_PER_FORWARD = 2 * 128 ** 3


class AllSubsetsNetwork(nn.Module):
    """network(x) -> (B, S*C, *spatial): logits for each of the S subset masks (S, M)."""

    def __init__(self, network: nn.Module, subset_masks: torch.Tensor):
        super().__init__()
        self.network = network
        self.register_buffer("subset_masks", torch.as_tensor(subset_masks, dtype=torch.bool), persistent=False)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """The predictor loads each fold's weights into whatever it holds: pass them through."""
        return self.network.load_state_dict(state_dict, strict=strict, assign=assign)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        masks = self.subset_masks.to(x.device)
        if isinstance(self.network, SubsetEvaluable):
            logits = self.network.forward_subsets(x, masks)  # (B, S, C, *spatial)
        else:
            logits = self._batched_subset_forwards(x, masks)
        return logits.flatten(1, 2)

    def _batched_subset_forwards(self, x: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """x (B, M, *spatial), masks (S, M) -> (B, S, C, *spatial), S*B samples in chunks."""
        batch = x.shape[0]
        per_forward = max(1, MAX_VOXELS_PER_FORWARD // (batch * x[0, 0].numel()))  # subsets per forward
        outputs = []
        for chunk in masks.split(per_forward):
            inputs = torch.cat([zero_absent_channels(x, m.expand(batch, -1)) for m in chunk])  # (s*B, M, ...)
            outputs.append(self.network(inputs).unflatten(0, (len(chunk), batch)))  # (s, B, C, ...)
        return torch.cat(outputs).transpose(0, 1)


class _WideLabelManager:
    """The predictor's label manager, but with S times as many output channels."""

    def __init__(self, label_manager, factor: int):
        self._label_manager = label_manager
        self.num_segmentation_heads = label_manager.num_segmentation_heads * factor

    def __getattr__(self, name):
        return getattr(self._label_manager, name)


@contextmanager
def _predict_all_subsets(predictor, subset_masks: torch.Tensor):
    """Temporarily swap the predictor's network and label manager for the wide versions."""
    network, label_manager = predictor.network, predictor.label_manager
    predictor.network = AllSubsetsNetwork(network, subset_masks)
    predictor.label_manager = _WideLabelManager(label_manager, len(subset_masks))
    try:
        yield
    finally:
        predictor.network, predictor.label_manager = network, label_manager


def subset_logits(predictor, data: torch.Tensor, subset_masks: torch.Tensor) -> List[torch.Tensor]:
    """Logits of a preprocessed case (M, *spatial) for every subset: list of S (C, *spatial).

    Uses every fold the predictor holds (averaged), like ``nnUNetv2_predict``.
    """
    with _predict_all_subsets(predictor, subset_masks):
        wide = predictor.predict_logits_from_preprocessed_data(data)
    num_classes = predictor.label_manager.num_segmentation_heads
    return list(wide.reshape(len(subset_masks), num_classes, *wide.shape[1:]))


def subset_segmentations(predictor, data: torch.Tensor, properties: dict,
                         subset_masks: Sequence[Sequence[bool]]) -> List[np.ndarray]:
    """Segmentations in the original image geometry for every subset (list of S label maps)."""
    from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape

    masks = torch.as_tensor(np.asarray(subset_masks), dtype=torch.bool)
    return [convert_predicted_logits_to_segmentation_with_correct_shape(
                logits, predictor.plans_manager, predictor.configuration_manager, predictor.label_manager,
                properties, return_probabilities=False)
            for logits in subset_logits(predictor, data, masks)]
