"""Networks built from nnU-Net plans that take a modality mask: ``forward(x, modality_mask=None)``
(``MissingModalityNetwork``, ``SubsetEvaluable`` and ``FusedAndUnimodal`` in ``networks.protocol``)."""
from nnunet_prism.networks.multi_encoder_unet import (MultiEncoderUNet, MultiModalOutput, build_multi_encoder_unet,
                                                      default_encoder_width)
from nnunet_prism.networks.interfaces import FusedAndUnimodal, MissingModalityNetwork, SubsetEvaluable

__all__ = ["MultiEncoderUNet", "MultiModalOutput", "build_multi_encoder_unet", "default_encoder_width",
           "MissingModalityNetwork", "SubsetEvaluable", "FusedAndUnimodal"]
