"""How nnU-Net finds our trainers, and how to tell the user when it cannot.

nnU-Net 2.8 searches the folders listed in ``nnUNet_extTrainer`` for trainers it does not ship.
The installed site hook (``nnunet_prism_site_hook``) appends our shim folder there in every new
interpreter; our own CLI does the same before it calls nnU-Net, so it also works where site hooks
do not run (``python -S``, unusual installers).
"""
from __future__ import annotations

import os
import shlex
from typing import MutableMapping

import nnunet_prism_site_hook

ENV_VAR = "nnUNet_extTrainer"
SHIM_FOLDER = nnunet_prism_site_hook._SHIM


def register(environ: MutableMapping[str, str] = os.environ) -> MutableMapping[str, str]:
    """Append the shim folder to ``nnUNet_extTrainer`` in ``environ`` (kept if already there)."""
    nnunet_prism_site_hook.register(environ)
    return environ


def is_registered(environ=os.environ) -> bool:
    return SHIM_FOLDER in environ.get(ENV_VAR, "").split(os.pathsep)


def export_line() -> str:
    """The shell line that makes nnU-Net find our trainers when the site hook is not active."""
    return f'export {ENV_VAR}="${{{ENV_VAR}:+${ENV_VAR}{os.pathsep}}}"{shlex.quote(SHIM_FOLDER)}'


def how_to_fix() -> str:
    return (f"nnU-Net cannot see nnunet_prism's trainers because {ENV_VAR} does not list "
            f"{SHIM_FOLDER}. Run this in your shell (or add it to ~/.bashrc): {export_line()}")


def find_trainer_class(name: str):
    """Resolve a trainer exactly as ``nnUNetv2_train -tr NAME`` does; on failure raise a
    RuntimeError that says what to do."""
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    try:
        return recursive_find_trainer_class_by_name(name)
    except RuntimeError:
        if not is_registered():
            raise RuntimeError(how_to_fix()) from None
        raise RuntimeError(f"no nnU-Net trainer named '{name}' (nnunet_prism's trainers: "
                           f"{', '.join(list_trainers())})") from None


def list_trainers():
    from nnunet_prism.training.registry import trainer_names

    return trainer_names()
