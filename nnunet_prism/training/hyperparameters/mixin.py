"""``HyperparameterMixin``: the hyperparameters of an nnUNetTrainer subclass. The values in force
are set as attributes on the trainer (``apply_hyperparameters``, at the end of the base
``__init__``), settled once the whole ``__init__`` chain has run (``settle_hyperparameters``:
a trainer variant made the nnU-Net way, whose ``__init__`` sets ``self.num_epochs = 6`` after
``super().__init__``, trains with 6 and its record says 6; a value the user gave explicitly
wins over such an attribute), and written to ``<fold folder>/hyperparameters.json`` when
training starts (``save_hyperparameters``, after the resume check). Declares nnU-Net's own
schedule (epochs, iterations, learning rate, checkpoint interval) as hyperparameters of every
trainer.
"""
from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Sequence

from nnunet_prism.training.hyperparameters.record import check_resume, write_record
from nnunet_prism.training.hyperparameters.resolution import resolve, user_values
from nnunet_prism.training.hyperparameters.schema import Hyperparameter, HyperparameterError, collect_schema
from nnunet_prism.training.hyperparameters.sources import load_overrides


class SettledAfterInit(type):
    """Metaclass of the trainers: once a trainer's whole ``__init__`` chain has run (a subclass's
    ``__init__`` included, whatever it sets after ``super().__init__``), its
    ``settle_hyperparameters`` runs, before nnU-Net calls anything else on it."""

    def __call__(cls, *args, **kwargs):
        trainer = super().__call__(*args, **kwargs)
        trainer.settle_hyperparameters()
        return trainer


class HyperparameterMixin(metaclass=SettledAfterInit):
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

    def apply_hyperparameters(self, values: Optional[Dict[str, Any]] = None,
                              explicit: Optional[Sequence[str]] = None) -> None:
        """Set the values in force (``values``, or resolved now) as attributes; ``explicit``: the
        names the user gave (default: those of ``nnUNet_prism_hparams``)."""
        overrides = load_overrides() if values is None or explicit is None else {}
        self.hyperparameters = resolve(type(self), overrides) if values is None else dict(values)
        self.explicit_hyperparameters = set(user_values(type(self), overrides) if explicit is None else explicit)
        for name, value in self.hyperparameters.items():
            setattr(self, name, value)

    def settle_hyperparameters(self) -> None:
        """The values in force once ``__init__`` has run (``SettledAfterInit`` calls this): where an
        attribute differs from the value applied (a subclass's ``__init__`` set it), the user's
        explicit value is set again, else the attribute's value is checked and recorded. Then
        ``build_from_hyperparameters``. A note in the training log names every such value."""
        if getattr(self, "hyperparameters", None) is None:  # not built by a trainer's __init__
            return
        schema, owner = collect_schema(type(self)), type(self).__name__
        notes: List[str] = []
        for name, applied in self.hyperparameters.items():
            current = getattr(self, name)
            if type(current) is type(applied) and current == applied:
                continue
            if name in self.explicit_hyperparameters:
                setattr(self, name, applied)
                notes.append(f"{name}={applied!r} as given, not the {current!r} that {owner}'s __init__ set")
                continue
            try:
                checked = schema[name].validate(name, current)
            except HyperparameterError as e:
                raise HyperparameterError(f"{owner}.__init__ sets an invalid value: {e}") from None
            setattr(self, name, checked)
            if checked != applied:
                self.hyperparameters[name] = checked
                notes.append(f"{name}={checked!r} as {owner}'s __init__ sets it")
        if notes and hasattr(self, "print_to_log_file"):
            self.print_to_log_file("nnunet_prism hyperparameters: " + "; ".join(notes))
        self.build_from_hyperparameters()

    def build_from_hyperparameters(self) -> None:
        """Build what depends on the values in force (called once, when they are settled)."""

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
