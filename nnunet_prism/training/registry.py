"""Trainer discovery: every ``nnUNetTrainer*`` subclass of the base trainer defined in a module of
``nnunet_prism/training/trainers/`` is a trainer, found without a list to edit (nnU-Net imports
them through the shim in ``nnunet_prism/ext_trainer_shim``; ``nnunet_prism doctor`` checks each)."""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import List, Optional

import nnunet_prism.training.trainers as trainers_package
from nnunet_prism.training.base import nnUNetTrainerPrismBase


def trainer_classes() -> List[type]:
    """Our trainer classes: the base first, each trainer followed by its subclasses."""
    found = []
    for info in sorted(pkgutil.iter_modules(trainers_package.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{trainers_package.__name__}.{info.name}")
        for name, obj in vars(module).items():
            if (inspect.isclass(obj) and name.startswith("nnUNetTrainer") and obj.__module__ == module.__name__
                    and issubclass(obj, nnUNetTrainerPrismBase)):
                found.append(obj)
    return _tree_order(nnUNetTrainerPrismBase, found)


def trainer_names() -> List[str]:
    """Names of every nnunet_prism trainer, the base included (``trainer_classes``' order)."""
    return [c.__name__ for c in trainer_classes()]


def _tree_order(root: type, classes: List[type], top: Optional[type] = None) -> List[type]:
    """``root``, then each direct subclass (by name) followed by its own subclasses. A class's
    parent is its first base that is a ``top`` (default ``root``) subclass: a mixin such as
    ``ActivationCheckpointingMixin`` may come before it."""
    top = top or root

    def parent(c: type) -> Optional[type]:
        return next((b for b in c.__bases__ if issubclass(b, top)), None)

    children = sorted((c for c in classes if parent(c) is root), key=lambda c: c.__name__)
    return [root] + [c for child in children for c in _tree_order(child, classes, top)]
