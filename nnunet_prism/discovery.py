"""How nnU-Net finds our trainers, and how to tell the user when it cannot.

nnU-Net 2.8 searches the folders listed in ``nnUNet_extTrainer`` for trainers it does not ship.
The installed site hook (``nnunet_prism_site_hook``) appends our shim folder there in every new
interpreter; our own CLI does the same before it calls nnU-Net, so it also works where site hooks
do not run (``python -S``, unusual installers).
"""
from __future__ import annotations

import contextlib
import difflib
import io
import os
import shlex
import warnings
from typing import List, MutableMapping, Sequence

import nnunet_prism_site_hook
from nnunet_prism.errors import NnunetPrismError

ENV_VAR = "nnUNet_extTrainer"
SHIM_FOLDER = nnunet_prism_site_hook._SHIM
PREFIX = "nnUNetTrainer"


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


class TrainerNotFoundError(NnunetPrismError, RuntimeError):
    """nnU-Net finds no trainer of the name; the message says what to do or suggests close names."""


def find_trainer_class(name: str):
    """Resolve a trainer exactly as ``nnUNetv2_train -tr NAME`` does (nnU-Net's search chatter on
    stdout and the FutureWarnings of its modules are dropped); on failure raise a TrainerNotFoundError that says what to do, with the
    closest trainer names."""
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    try:
        # the search imports every nnU-Net trainer variant: its output and warnings are not the user's
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return recursive_find_trainer_class_by_name(name)
    except RuntimeError:
        if not is_registered():
            raise TrainerNotFoundError(how_to_fix()) from None
        close = closest_trainer_names(name, known_trainer_names())
        hint = (f"did you mean {', '.join(close[:-1])}{' or ' if len(close) > 1 else ''}{close[-1]}?" if close else
                f"nnunet_prism's trainers: {', '.join(list_trainers())}")
        raise TrainerNotFoundError(f"no nnU-Net trainer named '{name}'; {hint}") from None


def known_trainer_names() -> List[str]:
    """The names of every trainer class defined so far (after a failed search: nnU-Net's own and
    those of the ``nnUNet_extTrainer`` folders) and of ours."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    found, todo = {nnUNetTrainer.__name__}, [nnUNetTrainer]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub.__name__ not in found:
                found.add(sub.__name__)
                todo.append(sub)
    return sorted(found | set(list_trainers()))


def closest_trainer_names(name: str, candidates: Sequence[str], count: int = 3) -> List[str]:
    """Up to ``count`` of ``candidates`` closest to ``name`` (difflib), compared without the
    ``nnUNetTrainer`` prefix that they all share."""
    def key(text: str) -> str:
        return text[len(PREFIX):] if text.startswith(PREFIX) and text != PREFIX else text

    by_key = {key(c): c for c in candidates}
    return [by_key[k] for k in difflib.get_close_matches(key(name), list(by_key), n=count, cutoff=0.6)]


def list_trainers():
    from nnunet_prism.training.registry import trainer_names

    return trainer_names()
