"""The record ``<fold folder>/hyperparameters.json``: the values in force of the fold's latest run
(top level) and the ``history`` of its runs (``--c`` appends), and the resume check: resuming
with other values than the checkpoint's run is refused unless
``nnUNet_prism_allow_changed_hparams=1`` (``nnunet_prism train --allow-changed-hp``).
"""
from __future__ import annotations

import json
import os
import time
from typing import Any, Dict, Mapping, Optional, Tuple

from nnunet_prism.training.hyperparameters.schema import HyperparameterError

ALLOW_CHANGES_ENV_VAR = "nnUNet_prism_allow_changed_hparams"
FILENAME = "hyperparameters.json"


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


def check_resume(folder: str, values: Mapping[str, Any], environ: Mapping[str, str] = os.environ) -> None:
    """Refuse to resume the run recorded in ``folder`` with ``values`` that differ from its
    (a one-line HyperparameterError naming each change), unless ``ALLOW_CHANGES_ENV_VAR`` is set."""
    previous = read_record(folder)
    if previous is None:
        return
    changed = changed_values({k: v for k, v in previous.items() if k not in ("trainer", "history")}, values)
    if changed and environ.get(ALLOW_CHANGES_ENV_VAR, "") not in ("1", "true", "yes"):
        text = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in sorted(changed.items()))
        raise HyperparameterError(
            f"--c resumes {folder} with other hyperparameters than its run ({text}); "
            f"use the same values, or allow it with {ALLOW_CHANGES_ENV_VAR}=1 "
            f"(nnunet_prism train --allow-changed-hp).")
