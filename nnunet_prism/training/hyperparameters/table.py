"""The hyperparameter table of ``docs/hyperparameters.md``, generated from the trainers' schemas
(between its ``<!-- hyperparameters:start -->`` and ``<!-- hyperparameters:end -->`` markers).
After changing a schema, regenerate it with

    python -m nnunet_prism.training.hyperparameters docs/hyperparameters.md

(without a file: print the table). A test fails while the file and the schemas differ.
"""
from __future__ import annotations

import json
from typing import Sequence

from nnunet_prism.training.hyperparameters.resolution import collect_presets
from nnunet_prism.training.hyperparameters.schema import collect_schema
from nnunet_prism.training.registry import trainer_classes

START, END = "<!-- hyperparameters:start -->\n", "<!-- hyperparameters:end -->"


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


def write_table(path: str) -> bool:
    """Replace the table between the hyperparameter markers of ``path`` by the one of the
    registered trainers; True if it changed."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if START not in text or END not in text:
        raise SystemExit(f"{path} has no {START.strip()} ... {END} markers")
    head, rest = text.split(START, 1)
    new = head + START + markdown_table(trainer_classes()) + END + rest.split(END, 1)[1]
    if new != text:
        with open(path, "w", encoding="utf-8") as f:
            f.write(new)
    return new != text


def main(argv: Sequence[str]) -> None:
    """``[FILE]``: rewrite the table in FILE (prints updated/unchanged), or print it."""
    if argv:
        print("updated" if write_table(argv[0]) else "unchanged")
    else:
        print(markdown_table(trainer_classes()), end="")
