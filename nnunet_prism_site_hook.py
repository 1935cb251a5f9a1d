"""Registers nnunet_prism's trainers with nnU-Net at interpreter start-up.

Installed with a one-line ``nnunet_prism_ext_trainer.pth`` in site-packages. It appends our shim
folder to the ``nnUNet_extTrainer`` environment variable (keeping any folders the user already
set), so ``nnUNetv2_train ... -tr nnUNetTrainerPRISM`` finds our classes in any new shell.
It imports nothing heavy and never raises.
"""
import os

_SHIM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nnunet_prism", "ext_trainer_shim")


def register(environ=os.environ) -> None:
    current = environ.get("nnUNet_extTrainer", "")
    folders = [p for p in current.split(os.pathsep) if p]
    if os.path.isdir(_SHIM) and _SHIM not in folders:
        environ["nnUNet_extTrainer"] = os.pathsep.join(folders + [_SHIM])


try:
    register()
except Exception:  # a broken hook must never break an unrelated Python program
    pass
