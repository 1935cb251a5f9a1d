"""nnunet_prism: nnU-Net v2 trainers for multimodal segmentation with missing modalities.

Kept import-light on purpose: the site hook that registers our trainers with nnU-Net runs at
every interpreter start and must not pull in torch.
"""
__version__ = "0.1.0"
