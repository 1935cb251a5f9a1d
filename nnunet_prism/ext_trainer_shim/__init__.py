"""Folder that nnU-Net searches through ``nnUNet_extTrainer`` (see ``nnunet_prism_site_hook``).

nnU-Net imports the modules here without a package prefix; the one module re-exports our
trainers, whose classes keep their real module names (``nnunet_prism.training...``) so they
pickle for data-augmentation workers started with spawn.
"""
