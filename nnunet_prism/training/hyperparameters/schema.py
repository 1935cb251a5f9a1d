"""The hyperparameter schema: ``Hyperparameter`` (type, allowed values or range, default and a
one-line meaning with its source) and its checks, and the schema of a trainer class, merged along
its class hierarchy.

Each trainer declares what it adds in ``HYPERPARAMETERS = {name: Hyperparameter(...)}``; a
subclass that only changes a default says so in ``DEFAULT_OVERRIDES = {name: value}``. The schema
in force is the merge along the class hierarchy (base first). A bad value is a
``HyperparameterError`` whose message is one line naming the value.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

from nnunet_prism.errors import NnunetPrismError

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


def collect_defaults(cls) -> Dict[str, Any]:
    """{name: default} of trainer class ``cls``."""
    return {name: spec.default for name, spec in collect_schema(cls).items()}
