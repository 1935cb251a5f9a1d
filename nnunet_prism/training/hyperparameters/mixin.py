"""``HyperparameterMixin``: the hyperparameters of an nnUNetTrainer subclass. The values in force
are set as attributes on the trainer (``apply_hyperparameters``, at the end of ``__init__``) and
written to ``<fold folder>/hyperparameters.json`` when training starts (``save_hyperparameters``,
after the resume check). Declares nnU-Net's own schedule (epochs, iterations, learning rate,
checkpoint interval) as hyperparameters of every trainer.
"""
from __future__ import annotations

import json
from typing import Any, Dict, Optional

from nnunet_prism.training.hyperparameters.record import check_resume, write_record
from nnunet_prism.training.hyperparameters.resolution import resolve
from nnunet_prism.training.hyperparameters.schema import Hyperparameter
from nnunet_prism.training.hyperparameters.sources import load_overrides


class HyperparameterMixin:
    """Mixin for nnUNetTrainer subclasses: ``apply_hyperparameters()`` at the end of ``__init__``,
    ``save_hyperparameters()`` when training starts."""

    HYPERPARAMETERS: Dict[str, Hyperparameter] = {
        "num_epochs": Hyperparameter("int", 1000, "nnU-Net's schedule: epochs (nnU-Net)", minimum=1),
        "num_iterations_per_epoch": Hyperparameter("int", 250, "training iterations per epoch (nnU-Net)", minimum=1),
        "num_val_iterations_per_epoch": Hyperparameter("int", 50, "validation iterations per epoch (nnU-Net)",
                                                       minimum=1),
        "initial_lr": Hyperparameter("float", 1e-2, "initial learning rate of the poly schedule (nnU-Net)", above=0),
        "save_every": Hyperparameter("int", 50, "epochs between checkpoints (nnU-Net)", minimum=1),
    }

    def apply_hyperparameters(self, values: Optional[Dict[str, Any]] = None) -> None:
        """Set the values in force (``values``, or resolved now) as attributes."""
        self.hyperparameters = resolve(type(self), load_overrides()) if values is None else dict(values)
        for name, value in self.hyperparameters.items():
            setattr(self, name, value)

    def save_hyperparameters(self, resumed_at_epoch: Optional[int] = None) -> None:
        """Refuse a resumed run whose values differ from the previous run's (unless allowed),
        then record this run. Rank 0 writes; every rank checks."""
        if self.output_folder is None:
            return
        if resumed_at_epoch is not None:
            check_resume(self.output_folder, self.hyperparameters)
        if getattr(self, "local_rank", 0) != 0:
            return
        write_record(self.output_folder, type(self).__name__, self.hyperparameters, resumed_at_epoch)
        self.print_to_log_file("nnunet_prism hyperparameters: " + json.dumps(self.hyperparameters),
                               also_print_to_console=False)
