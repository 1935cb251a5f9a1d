"""One hyperparameter mechanism for every trainer of the package.

* Defaults are class attributes: each trainer declares ``HYPERPARAMETERS = {name: default}`` for
  what it adds; the values in force are the merge along the class hierarchy (base first).
* Overrides need no code: the environment variable ``nnUNet_prism_hparams`` holds either a path
  to a JSON file or an inline JSON object. Top-level keys apply to every trainer; a key that is a
  trainer's class name holds a section applied only to that trainer (it wins over top-level keys).
  ``nnunet_prism train ... --hp num_epochs=5`` sets the variable for you.
* The values in force are set as attributes on the trainer and written to
  ``<fold folder>/hyperparameters.json`` when training starts.

An unknown name or a value of the wrong type is an error naming the key, so a typo never trains
silently with the default.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, Mapping

ENV_VAR = "nnUNet_prism_hparams"
FILENAME = "hyperparameters.json"


class HyperparameterError(ValueError):
    """A user-supplied hyperparameter override is malformed."""


def collect_defaults(cls) -> Dict[str, Any]:
    """Merge ``HYPERPARAMETERS`` dicts along the MRO, base classes first."""
    defaults: Dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        defaults.update(klass.__dict__.get("HYPERPARAMETERS", {}))
    return defaults


def load_overrides(environ: Mapping[str, str] = os.environ) -> Dict[str, Any]:
    """Parse ``nnUNet_prism_hparams`` (JSON file path or inline JSON object); {} when unset."""
    raw = environ.get(ENV_VAR, "").strip()
    if not raw:
        return {}
    source = "inline JSON"
    if not raw.startswith("{"):
        if not os.path.isfile(raw):
            raise HyperparameterError(f"{ENV_VAR}={raw!r} is neither a JSON object nor an existing file.")
        source = raw
        with open(raw, encoding="utf-8") as f:
            raw = f.read()
    try:
        overrides = json.loads(raw)
    except json.JSONDecodeError as e:
        raise HyperparameterError(f"{ENV_VAR} ({source}) is not valid JSON: {e}") from None
    if not isinstance(overrides, dict):
        raise HyperparameterError(f"{ENV_VAR} ({source}) must hold a JSON object, got {type(overrides).__name__}.")
    return overrides


def _coerce(name: str, value: Any, default: Any) -> Any:
    """Cast ``value`` to the type of ``default`` where that is lossless and unambiguous."""
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    elif isinstance(default, (list, tuple)):
        if isinstance(value, (list, tuple)):
            return list(value)
    elif isinstance(default, dict):
        if isinstance(value, dict):
            return value
    else:
        return value
    raise HyperparameterError(f"hyperparameter '{name}' expects {type(default).__name__} "
                              f"(default {default!r}), got {value!r}.")


def resolve(cls, overrides: Mapping[str, Any]) -> Dict[str, Any]:
    """Values in force for trainer class ``cls``: defaults, then top-level, then its section."""
    defaults = collect_defaults(cls)
    trainer_names = {k for k in overrides if k.startswith("nnUNetTrainer") and isinstance(overrides[k], dict)}
    merged = {k: v for k, v in overrides.items() if k not in trainer_names}
    merged.update(overrides.get(cls.__name__, {}))
    unknown = sorted(set(merged) - set(defaults))
    if unknown:
        raise HyperparameterError(f"unknown hyperparameter(s) {unknown} for {cls.__name__}; "
                                  f"known: {sorted(defaults)}.")
    values = dict(defaults)
    for name, value in merged.items():
        values[name] = _coerce(name, value, defaults[name])
    return values


def parse_assignments(assignments) -> Dict[str, Any]:
    """``["num_epochs=5", "missing_rates=[0.2,0.4]"]`` -> dict; values parsed as JSON when they
    can be, else kept as strings."""
    parsed: Dict[str, Any] = {}
    for item in assignments or []:
        if "=" not in item:
            raise HyperparameterError(f"--hp expects NAME=VALUE, got {item!r}.")
        name, text = item.split("=", 1)
        try:
            parsed[name.strip()] = json.loads(text)
        except json.JSONDecodeError:
            parsed[name.strip()] = text
    return parsed


class HyperparameterMixin:
    """Mixin for nnUNetTrainer subclasses: call ``apply_hyperparameters()`` at the end of
    ``__init__`` and ``save_hyperparameters()`` when training starts."""

    HYPERPARAMETERS: Dict[str, Any] = {
        "num_epochs": 1000,
        "num_iterations_per_epoch": 250,
        "num_val_iterations_per_epoch": 50,
        "initial_lr": 1e-2,
        "save_every": 50,
    }

    def apply_hyperparameters(self) -> None:
        self.hyperparameters = resolve(type(self), load_overrides())
        for name, value in self.hyperparameters.items():
            setattr(self, name, value)

    def save_hyperparameters(self) -> None:
        if getattr(self, "local_rank", 0) != 0 or self.output_folder is None:
            return
        os.makedirs(self.output_folder, exist_ok=True)
        with open(os.path.join(self.output_folder, FILENAME), "w", encoding="utf-8") as f:
            json.dump({"trainer": type(self).__name__, **self.hyperparameters}, f, indent=2)
        self.print_to_log_file("nnunet_prism hyperparameters: " + json.dumps(self.hyperparameters),
                               also_print_to_console=False)
