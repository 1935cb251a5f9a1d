"""The values in force for a trainer class: defaults, then the user's top-level values, then its
own section, every value checked; and presets.

Presets: a trainer that declares the ``preset`` hyperparameter (``PRESET``) and a class
attribute ``PRESETS = {preset: {name: value}}`` gets, for every switch the user did not set
(neither top-level nor in its section), the value of the chosen preset instead of the default;
an explicit value always wins. The trainer's attributes and ``hyperparameters.json`` hold the
values in force, the preset's included, next to ``preset`` itself, so the record says what ran.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

from nnunet_prism.training.hyperparameters.schema import Hyperparameter, HyperparameterError, collect_schema
from nnunet_prism.training.hyperparameters.sources import ENV_VAR

#: The ``preset`` hyperparameter of the trainers that reproduce an official code base on request.
PRESET = Hyperparameter("choice", "paper", "`official`: every official-code behaviour at once (the switches marked "
                                           "'preset official' take that value unless set explicitly; docs/methods.md, "
                                           "'Paper vs official code')", choices=("paper", "official"))


def collect_presets(cls) -> Dict[str, Dict[str, Any]]:
    """{preset: {name: value}} merged along the MRO (base classes first), each value checked
    against the schema."""
    schema = collect_schema(cls)
    presets: Dict[str, Dict[str, Any]] = {}
    for klass in reversed(cls.__mro__):
        for preset, values in klass.__dict__.get("PRESETS", {}).items():
            for name, value in values.items():
                if name not in schema:
                    raise AssertionError(f"{klass.__name__}.PRESETS[{preset!r}]: unknown hyperparameter {name!r}")
                presets.setdefault(preset, {})[name] = schema[name].validate(name, value)
    return presets


def preset_values(cls, values: Mapping[str, Any], explicit) -> Dict[str, Any]:
    """{name: value} that ``values['preset']`` sets on ``cls`` for the switches not in ``explicit``."""
    chosen = collect_presets(cls).get(values.get("preset"), {})
    return {name: value for name, value in chosen.items() if name not in explicit}


def trainer_sections(overrides: Mapping[str, Any]) -> Dict[str, dict]:
    """The per-trainer sections of an override object (keys that name a trainer class)."""
    return {k: v for k, v in overrides.items() if k.startswith("nnUNetTrainer")}


def user_values(cls, overrides: Mapping[str, Any], known_trainers: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """The values the user set for trainer class ``cls`` (top level, then its section), unchecked;
    a section that names no known trainer (``known_trainers``, default:
    ``loaded_trainer_names(cls)``) or is no object is a HyperparameterError."""
    sections = trainer_sections(overrides)
    known = set(known_trainers if known_trainers is not None else loaded_trainer_names(cls)) | {cls.__name__}
    for section, content in sections.items():
        if section not in known:
            raise HyperparameterError(f"{ENV_VAR}: section '{section}' names no nnunet_prism trainer; "
                                      f"known: {', '.join(sorted(known))}.")
        if not isinstance(content, dict):
            raise HyperparameterError(f"{ENV_VAR}: section '{section}' must be a JSON object.")
    merged = {k: v for k, v in overrides.items() if k not in sections}
    merged.update(sections.get(cls.__name__, {}))
    return merged


def resolve(cls, overrides: Mapping[str, Any], known_trainers: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Values in force for trainer class ``cls``: defaults, then top-level, then its section;
    every value checked. ``known_trainers``: names a section may have (default:
    ``loaded_trainer_names(cls)``)."""
    schema = collect_schema(cls)
    merged = user_values(cls, overrides, known_trainers)
    unknown = sorted(set(merged) - set(schema))
    if unknown:
        raise HyperparameterError(f"unknown hyperparameter(s) {', '.join(unknown)} for {cls.__name__}; "
                                  f"known: {', '.join(sorted(schema))}.")
    values = {name: spec.default for name, spec in schema.items()}
    for name, value in merged.items():
        values[name] = schema[name].validate(name, value)
    values.update(preset_values(cls, values, merged))  # a preset fills only what the user left unset
    return values


def loaded_trainer_names(cls) -> List[str]:
    """Names of the trainer classes (``nnUNetTrainer*``) defined so far that share ``cls``'s
    schema, ``cls`` included: every nnunet_prism trainer wherever nnU-Net builds one (its trainer
    lookup imports our shim, which imports them all, first), and the user's own."""
    root = [klass for klass in cls.__mro__ if "HYPERPARAMETERS" in klass.__dict__][-1]
    found, todo = set(), [root]
    while todo:  # cls is not marked found up front: its own subclasses are walked too
        for sub in todo.pop().__subclasses__():
            if sub not in found:
                found.add(sub)
                todo.append(sub)
    return sorted(c.__name__ for c in found | {cls} if c.__name__.startswith("nnUNetTrainer"))
