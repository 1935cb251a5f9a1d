"""M2DN: modality-masked diffusion that synthesises any missing subset of modalities from the
present ones (IEEE TMI 2024). network (denoiser), diffusion (masked forward process, loss, DDIM
sampler, training masks), data (2D slices of nnU-Net's preprocessed cases), training (loop and
checkpoints), inference (whole volumes, baselines), evaluation (PSNR/SSIM tables), imputation
(absent files in original geometry)."""
from nnunet_prism.m2dn.diffusion import MaskedDiffusion, sample_training_masks
from nnunet_prism.m2dn.network import M2DNet

__all__ = ["M2DNet", "MaskedDiffusion", "sample_training_masks"]
