"""Small networks' plans in nnU-Net's format (what ``ConfigurationManager`` hands a network
builder), a batch for them, and nnU-Net's own loss: fast stand-ins for a planned dataset."""
import torch
from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

PLAIN_UNET = "dynamic_network_architectures.architectures.unet.PlainConvUNet"
RESENC_UNET = "dynamic_network_architectures.architectures.residual_unet.ResidualEncoderUNet"
IMPORTS = ["conv_op", "norm_op", "dropout_op", "nonlin"]  # the plan entries that name a class

#: a 3-stage 3d PlainConvUNet plan (8/16/32 features, two convolutions per stage)
DS_PLAN = {"n_stages": 3, "features_per_stage": [8, 16, 32], "conv_op": "torch.nn.modules.conv.Conv3d",
           "kernel_sizes": [[3, 3, 3]] * 3, "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]],
           "n_conv_per_stage": [2, 2, 2], "n_conv_per_stage_decoder": [2, 2], "conv_bias": True,
           "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d", "norm_op_kwargs": {"eps": 1e-5, "affine": True},
           "dropout_op": None, "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
           "nonlin_kwargs": {"inplace": True}}


def plan_kwargs(dim: int, residual: bool) -> dict:
    """An nnU-Net plans 'arch_kwargs' entry (as the planners write it), three small stages."""
    kwargs = {"n_stages": 3, "features_per_stage": [8, 16, 32], "conv_op": f"torch.nn.modules.conv.Conv{dim}d",
              "kernel_sizes": [[3] * dim] * 3, "strides": [[1] * dim, [2] * dim, [2] * dim],
              "n_conv_per_stage_decoder": [1, 1], "conv_bias": True,
              "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{dim}d",
              "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
              "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}}
    kwargs["n_blocks_per_stage" if residual else "n_conv_per_stage"] = [1, 1, 1] if residual else [2, 2, 2]
    return kwargs


def small_plain_kwargs(decoder_convs: int) -> dict:
    """A 3-stage 3d PlainConvUNet plan (8/16/32 features) in nnU-Net's format."""
    return {
        "n_stages": 3, "features_per_stage": [8, 16, 32], "conv_op": "torch.nn.modules.conv.Conv3d",
        "kernel_sizes": [[3, 3, 3]] * 3, "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]],
        "n_conv_per_stage": [1, 1, 1], "n_conv_per_stage_decoder": [decoder_convs] * 2, "conv_bias": True,
        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d", "norm_op_kwargs": {"eps": 1e-5, "affine": True},
        "dropout_op": None, "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
        "nonlin_kwargs": {"inplace": True}}


def make_batch(seed, batch=2, size=12, modalities=4, classes=3):
    """(x (B, M, size^3), [label map (B, 1, size^3), its 2x-downsampled level]) from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, modalities, size, size, size, generator=g)
    y = torch.randint(0, classes, (batch, 1, size, size, size), generator=g)
    return x, [y, y[:, :, ::2, ::2, ::2]]


def nnunet_loss():
    """nnU-Net's label-based deep-supervised Dice + CE."""
    loss = DC_and_CE_loss({"batch_dice": True, "smooth": 1e-5, "do_bg": False, "ddp": False}, {}, weight_ce=1,
                          weight_dice=1, dice_class=MemoryEfficientSoftDiceLoss)
    return DeepSupervisionWrapper(loss, [1.0, 0.5])
