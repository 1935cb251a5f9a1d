"""Networks built from nnU-Net plans that take a modality mask: ``forward(x, modality_mask=None)``."""
from nnunet_prism.networks.multi_encoder_unet import (MultiEncoderUNet, MultiModalOutput, build_multi_encoder_unet,
                                                      default_encoder_width)

__all__ = ["MultiEncoderUNet", "MultiModalOutput", "build_multi_encoder_unet", "default_encoder_width"]
