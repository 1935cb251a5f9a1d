"""Where user values come from: the environment variable ``nnUNet_prism_hparams`` (a path to a
JSON file or an inline JSON object) and ``nnunet_prism train --hp NAME=VALUE``.

Top-level keys apply to every trainer; a key that is a trainer's class name holds a section
applied only to that trainer (``resolution.resolve``). ``nnunet_prism train --hp`` sets the
variable for the nnU-Net process it starts.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, Mapping

from nnunet_prism.training.hyperparameters.schema import HyperparameterError

ENV_VAR = "nnUNet_prism_hparams"


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
        overrides = json.loads(raw, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise HyperparameterError(f"{ENV_VAR} ({source}) is not valid JSON: {e}.") from None
    if not isinstance(overrides, dict):
        raise HyperparameterError(f"{ENV_VAR} ({source}) must hold a JSON object, got {type(overrides).__name__}.")
    return overrides


def _reject_constant(name: str):
    raise HyperparameterError(f"{ENV_VAR}: {name} is not a valid hyperparameter value.")


def parse_assignments(assignments) -> Dict[str, Any]:
    """``["num_epochs=5", "missing_rates=[0.2,0.4]"]`` -> dict; values parsed as JSON when they
    can be, else kept as strings."""
    parsed: Dict[str, Any] = {}
    for item in assignments or []:
        if "=" not in item:
            raise HyperparameterError(f"--hp expects NAME=VALUE, got {item!r}.")
        name, text = item.split("=", 1)
        try:
            parsed[name.strip()] = json.loads(text, parse_constant=_reject_constant)
        except json.JSONDecodeError:
            parsed[name.strip()] = text
    return parsed
