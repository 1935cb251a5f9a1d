"""One hyperparameter schema for every trainer of the package.

* Each trainer declares what it adds in ``HYPERPARAMETERS = {name: Hyperparameter(...)}``: type,
  allowed values or range, default and a one-line meaning with its source, in one place. A
  subclass that only changes a default says so in ``DEFAULT_OVERRIDES = {name: value}``. The
  schema in force is the merge along the class hierarchy (base first).
* Overrides need no code: the environment variable ``nnUNet_prism_hparams`` holds either a path
  to a JSON file or an inline JSON object. Top-level keys apply to every trainer; a key that is a
  trainer's class name holds a section applied only to that trainer (it wins over top-level keys).
  ``nnunet_prism train ... --hp num_epochs=5`` sets the variable for you.
* Every value is checked before nnU-Net starts; a bad one is a ``HyperparameterError`` whose
  message is one line naming the value. Unknown names and sections naming no trainer are errors.
* The values in force are set as attributes on the trainer and written to
  ``<fold folder>/hyperparameters.json`` when training starts; earlier runs of the same fold
  (``--c``) are kept in its ``history``. Resuming with other values than the checkpoint's run is
  refused unless ``nnUNet_prism_allow_changed_hparams=1`` (``nnunet_prism train --allow-changed-hp``).

* Presets: a trainer that declares the ``preset`` hyperparameter (``PRESET``) and a class
  attribute ``PRESETS = {preset: {name: value}}`` gets, for every switch the user did not set
  (neither top-level nor in its section), the value of the chosen preset instead of the default;
  an explicit value always wins. The trainer's attributes and ``hyperparameters.json`` hold the
  values in force, the preset's included, next to ``preset`` itself, so the record says what ran.

The README's hyperparameter table is generated from the schema (``markdown_table``).
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

from nnunet_prism.errors import NnunetPrismError

ENV_VAR = "nnUNet_prism_hparams"
ALLOW_CHANGES_ENV_VAR = "nnUNet_prism_allow_changed_hparams"
FILENAME = "hyperparameters.json"
_MISSING = object()


class HyperparameterError(NnunetPrismError, ValueError):
    """A user-supplied hyperparameter is malformed or out of range (message: one line)."""


@dataclass(frozen=True)
class Hyperparameter:
    """One hyperparameter: ``kind`` is "int", "float", "bool", "str", "rates" (one rate in [0, 1)
    per modality) or "choice" (one of ``choices``); ints and floats may have bounds (``minimum``
    inclusive, ``above`` exclusive, ``maximum`` inclusive, ``below`` exclusive); ``nullable`` admits
    None; ``special`` names string values an int also accepts (GMD's "all")."""

    kind: str
    default: Any
    meaning: str
    minimum: Optional[float] = None
    above: Optional[float] = None
    maximum: Optional[float] = None
    below: Optional[float] = None
    choices: Tuple[str, ...] = ()
    nullable: bool = False
    special: Tuple[str, ...] = ()
    check: Optional[Callable[[Any], Optional[str]]] = None  # extra rule: a reason when bad

    def validate(self, name: str, value: Any) -> Any:
        """The value in canonical type, or a HyperparameterError naming ``name`` and the value."""
        if value is None:
            if self.nullable:
                return None
            self._fail(name, value)
        if value in self.special and isinstance(value, str):
            return value
        converted = self._convert(value)
        if converted is _MISSING:
            self._fail(name, value)
        reason = self._range_problem(converted) or (self.check(converted) if self.check else None)
        if reason:
            raise HyperparameterError(f"hyperparameter {name}={value!r}: {reason}.")
        return converted

    def _convert(self, value):
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if self.kind == "bool":
            return value if isinstance(value, bool) else _MISSING
        if self.kind == "int":
            if is_number and float(value).is_integer():
                return int(value)
            return _MISSING
        if self.kind == "float":
            return float(value) if is_number and math.isfinite(value) else _MISSING
        if self.kind in ("str", "choice"):
            return value if isinstance(value, str) else _MISSING
        if self.kind == "rates":
            if isinstance(value, (list, tuple)) and value and all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
                return [float(v) for v in value]
            return _MISSING
        raise AssertionError(f"unknown hyperparameter kind {self.kind!r}")

    def _range_problem(self, value) -> Optional[str]:
        if self.kind == "choice" and value not in self.choices:
            return f"expected one of {', '.join(map(repr, self.choices))}"
        if self.kind == "rates" and any(not 0 <= v < 1 for v in value):
            return "every missing rate must lie in [0, 1)"
        if self.kind in ("int", "float"):
            if self.minimum is not None and value < self.minimum:
                return f"must be >= {self.minimum:g}"
            if self.above is not None and value <= self.above:
                return f"must be > {self.above:g}"
            if self.maximum is not None and value > self.maximum:
                return f"must be <= {self.maximum:g}"
            if self.below is not None and value >= self.below:
                return f"must be < {self.below:g}"
        return None

    def _fail(self, name, value):
        raise HyperparameterError(f"hyperparameter {name}={value!r}: expected {self.describe_type()}.")

    def describe_type(self) -> str:
        """Type and allowed values in words (error messages and the README table)."""
        words = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
                 "rates": "a list of missing rates in [0, 1), one per modality",
                 "choice": "one of " + ", ".join(map(repr, self.choices))}[self.kind]
        bounds = [f">= {self.minimum:g}" if self.minimum is not None else "",
                  f"> {self.above:g}" if self.above is not None else "",
                  f"<= {self.maximum:g}" if self.maximum is not None else "",
                  f"< {self.below:g}" if self.below is not None else ""]
        text = " ".join([words, " and ".join(b for b in bounds if b)]).strip()
        text += "".join(f" or {s!r}" for s in self.special)
        return text + (" or null" if self.nullable else "")


def collect_schema(cls) -> Dict[str, Hyperparameter]:
    """Merge ``HYPERPARAMETERS`` along the MRO (base classes first), then apply each class's
    ``DEFAULT_OVERRIDES`` (checked against the schema)."""
    schema: Dict[str, Hyperparameter] = {}
    for klass in reversed(cls.__mro__):
        schema.update(klass.__dict__.get("HYPERPARAMETERS", {}))
        for name, default in klass.__dict__.get("DEFAULT_OVERRIDES", {}).items():
            if name not in schema:
                raise AssertionError(f"{klass.__name__}.DEFAULT_OVERRIDES: unknown hyperparameter {name!r}")
            spec = schema[name]
            schema[name] = Hyperparameter(**{**spec.__dict__, "default": spec.validate(name, default)})
    return schema


#: The ``preset`` hyperparameter of the trainers that reproduce an official code base on request.
PRESET = Hyperparameter("choice", "paper", "`official`: every official-code behaviour at once (the switches marked "
                                           "'preset official' take that value unless set explicitly; README, "
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


def collect_defaults(cls) -> Dict[str, Any]:
    """{name: default} of trainer class ``cls``."""
    return {name: spec.default for name, spec in collect_schema(cls).items()}


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


def trainer_sections(overrides: Mapping[str, Any]) -> Dict[str, dict]:
    """The per-trainer sections of an override object (keys that name a trainer class)."""
    return {k: v for k, v in overrides.items() if k.startswith("nnUNetTrainer")}


def resolve(cls, overrides: Mapping[str, Any], known_trainers: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Values in force for trainer class ``cls``: defaults, then top-level, then its section;
    every value checked. ``known_trainers``: names a section may have (default: ours)."""
    schema = collect_schema(cls)
    sections = trainer_sections(overrides)
    known = set(known_trainers if known_trainers is not None else trainer_names()) | {cls.__name__}
    for section, content in sections.items():
        if section not in known:
            raise HyperparameterError(f"{ENV_VAR}: section '{section}' names no nnunet_prism trainer; "
                                      f"known: {', '.join(sorted(known))}.")
        if not isinstance(content, dict):
            raise HyperparameterError(f"{ENV_VAR}: section '{section}' must be a JSON object.")
    merged = {k: v for k, v in overrides.items() if k not in sections}
    merged.update(sections.get(cls.__name__, {}))
    unknown = sorted(set(merged) - set(schema))
    if unknown:
        raise HyperparameterError(f"unknown hyperparameter(s) {', '.join(unknown)} for {cls.__name__}; "
                                  f"known: {', '.join(sorted(schema))}.")
    values = {name: spec.default for name, spec in schema.items()}
    for name, value in merged.items():
        values[name] = schema[name].validate(name, value)
    values.update(preset_values(cls, values, merged))  # a preset fills only what the user left unset
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
            parsed[name.strip()] = json.loads(text, parse_constant=_reject_constant)
        except json.JSONDecodeError:
            parsed[name.strip()] = text
    return parsed


def trainer_names():
    """Names of every nnunet_prism trainer (imported lazily: trainers import this module)."""
    from nnunet_prism.training.registry import trainer_classes

    return [c.__name__ for c in trainer_classes()]


# -- hyperparameters.json: values in force and the history of the fold's runs ---------------------
def read_record(folder: str) -> Optional[dict]:
    path = os.path.join(folder, FILENAME)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def changed_values(previous: Mapping[str, Any], current: Mapping[str, Any]) -> Dict[str, Tuple[Any, Any]]:
    """{name: (previous, current)} for the values that differ (names new to the schema count as
    unchanged when they hold the default, which ``current`` then shows)."""
    return {k: (previous.get(k), v) for k, v in current.items() if k in previous and previous[k] != v}


def write_record(folder: str, trainer: str, values: Mapping[str, Any], resumed_at_epoch: Optional[int]) -> dict:
    """Write the values in force (top level, as before) and append this run to ``history``."""
    previous = read_record(folder) or {}
    history = list(previous.get("history", []))
    history.append({"started": time.strftime("%Y-%m-%d %H:%M:%S"),
                    "resumed_at_epoch": resumed_at_epoch, "values": dict(values)})
    record = {"trainer": trainer, **values, "history": history}
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{FILENAME}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2)
    os.replace(tmp, os.path.join(folder, FILENAME))
    return record


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
        previous = read_record(self.output_folder)
        if resumed_at_epoch is not None and previous is not None:
            changed = changed_values({k: v for k, v in previous.items() if k not in ("trainer", "history")},
                                     self.hyperparameters)
            if changed and os.environ.get(ALLOW_CHANGES_ENV_VAR, "") not in ("1", "true", "yes"):
                text = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in sorted(changed.items()))
                raise HyperparameterError(
                    f"--c resumes {self.output_folder} with other hyperparameters than its run ({text}); "
                    f"use the same values, or allow it with {ALLOW_CHANGES_ENV_VAR}=1 "
                    f"(nnunet_prism train --allow-changed-hp).")
        if getattr(self, "local_rank", 0) != 0:
            return
        write_record(self.output_folder, type(self).__name__, self.hyperparameters, resumed_at_epoch)
        self.print_to_log_file("nnunet_prism hyperparameters: " + json.dumps(self.hyperparameters),
                               also_print_to_console=False)


# -- the README table ----------------------------------------------------------------------------
def _short(name: str) -> str:
    return name.replace("nnUNetTrainer", "") or name


def _format(value) -> str:
    return "none" if value is None else json.dumps(value) if not isinstance(value, str) else f"`{value}`" if value else '""'


def markdown_table(classes: Sequence[type]) -> str:
    """| trainer | name | default | allowed | meaning (source) | for every hyperparameter of
    ``classes`` (in their order), each declared once; the "trainer" column says which of
    ``classes`` have it ("all" when all do) and the default column where a trainer changes it."""
    schemas = {cls: collect_schema(cls) for cls in classes}
    rows, seen = [], set()
    declaring = [k for cls in classes for k in reversed(cls.__mro__) if "HYPERPARAMETERS" in k.__dict__]
    for klass in dict.fromkeys(declaring):
        for name, spec in klass.__dict__["HYPERPARAMETERS"].items():
            if name in seen:
                continue
            seen.add(name)
            having = [c for c in classes if name in schemas[c]]
            who = "all" if len(having) == len(classes) else ", ".join(_short(c.__name__) for c in having)
            others = {}
            for c in having:
                default = schemas[c][name].default
                if default != spec.default:
                    others.setdefault(_format(default), []).append(_short(c.__name__))
            default = _format(spec.default) + "".join(f"; {v} in {', '.join(cs)}" for v, cs in others.items())
            by_preset = {(preset, _format(values[name])) for c in having
                         for preset, values in collect_presets(c).items() if name in values}
            default += "".join(f"; preset {preset}: {v}" for preset, v in sorted(by_preset))
            rows.append(f"| {who} | `{name}` | {default} | {spec.describe_type()} | {spec.meaning} |")
    header = "| trainer | name | default | allowed | meaning (source) |\n|---|---|---|---|---|\n"
    return header + "\n".join(rows) + "\n"


def write_readme_table(readme: str) -> bool:
    """Replace the table between the README's ``hyperparameters`` markers; True if it changed."""
    from nnunet_prism.training.registry import trainer_classes

    with open(readme, encoding="utf-8") as f:
        text = f.read()
    start, end = "<!-- hyperparameters:start -->\n", "<!-- hyperparameters:end -->"
    if start not in text or end not in text:
        raise SystemExit(f"{readme} has no {start.strip()} ... {end} markers")
    head, rest = text.split(start, 1)
    new = head + start + markdown_table(trainer_classes()) + end + rest.split(end, 1)[1]
    if new != text:
        with open(readme, "w", encoding="utf-8") as f:
            f.write(new)
    return new != text


if __name__ == "__main__":  # python -m nnunet_prism.training.hyperparameters [README.md]
    if len(sys.argv) > 1:
        print("updated" if write_readme_table(sys.argv[1]) else "unchanged")
    else:
        from nnunet_prism.training.registry import trainer_classes

        print(markdown_table(trainer_classes()), end="")
