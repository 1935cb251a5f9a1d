"""The output folder of ``nnunet_prism predict``: what an earlier run left there, and how a new
run's outputs get in.

A run's outputs are nnU-Net's (``<case><ending>``, with ``--save_probabilities`` also
``<case>.npz`` and ``<case>.pkl``; ``dataset.json``, ``plans.json``,
``predict_from_raw_data_args.json``) and our record ``modalities_used.json``: per case the
modalities it had and ``predicted_by``, the run that made it (model folder, folds, checkpoint and
the nnU-Net options that change the result).

Rules, as nnU-Net's own ``nnUNetv2_predict`` behaves for one model: predicting into a folder that
holds the same run's outputs replaces the cases predicted again (their stale ``.npz``/``.pkl``
too) and keeps the others, with their records. Outputs of another run, or of unknown origin (no
record), are refused before anything is loaded, since ``nnUNetv2_ensemble`` would average them
with this run's; ``--overwrite`` replaces all of them. nnU-Net writes into a hidden folder beside
the output folder, and its files move in only when it succeeded: a failed run leaves the output
folder as it was.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Sequence

from nnunet_prism.errors import SetupError

RECORD_FILE = "modalities_used.json"
NNUNET_FILES = ("dataset.json", "plans.json", "predict_from_raw_data_args.json")
PROBABILITY_SUFFIXES = (".npz", ".pkl")
#: nnUNetv2_predict options that change how a run goes, not what it predicts
_RUN_ONLY_OPTIONS = {"-npp": 1, "-nps": 1, "-num_parts": 1, "-part_id": 1, "--verbose": 0,
                     "--disable_progress_bar": 0}


@dataclass(frozen=True)
class PredictionRun:
    """What makes two predictions of a case comparable: the model folder
    (``<dataset>/<trainer>__<plans>__<configuration>``), its folds and checkpoint, and the
    nnU-Net options that change the result (``--disable_tta``, ``-step_size``, ...)."""
    model: str
    folds: List
    checkpoint: str
    options: List[str]

    @classmethod
    def of(cls, model_folder: Path, folds: Sequence, checkpoint: str, nnunet_options: Sequence[str]):
        options, words = [], list(nnunet_options)
        while words:
            word = words.pop(0)
            if word in _RUN_ONLY_OPTIONS:
                del words[:_RUN_ONLY_OPTIONS[word]]
            else:
                options.append(word)
        return cls(f"{model_folder.parent.name}/{model_folder.name}", list(folds), checkpoint, options)

    def as_json(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    def describe(self) -> str:
        folds = ",".join(map(str, self.folds))
        return f"{self.model} fold(s) {folds} {self.checkpoint}" + (f" {' '.join(self.options)}" if self.options else "")


def read_record(folder: Path) -> Dict[str, dict]:
    """``modalities_used.json`` of ``folder`` ({} when there is none); a malformed one is an error."""
    path = Path(folder) / RECORD_FILE
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise SetupError(f"{path} is not valid JSON ({e}); move it away or pass --overwrite") from None
    if not isinstance(record, dict) or not all(isinstance(v, dict) for v in record.values()):
        raise SetupError(f"{path} is not a record of nnunet_prism predict; move it away or pass --overwrite")
    return record


def case_files(folder: Path, ending: str) -> Dict[str, List[Path]]:
    """{case: [its segmentation, .npz, .pkl]} of the prediction files in ``folder``."""
    found: Dict[str, List[Path]] = {}
    if not Path(folder).is_dir():
        return found
    for path in sorted(Path(folder).iterdir()):
        for suffix in (ending, *PROBABILITY_SUFFIXES):
            if path.is_file() and path.name.endswith(suffix) and path.name not in NNUNET_FILES:
                found.setdefault(path.name[:-len(suffix)], []).append(path)
                break
    return found


def _shown(cases: Sequence[str]) -> str:
    return ", ".join(cases[:3]) + (f" and {len(cases) - 3} more" if len(cases) > 3 else "")


def check_earlier_outputs(folder: Path, ending: str, run: PredictionRun, overwrite: bool) -> Dict[str, List[Path]]:
    """The earlier outputs in ``folder`` ({case: files}); a one-line SetupError when some were
    made by another run, or by a run that left no record, unless ``overwrite``."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise SetupError(f"output {folder} exists and is not a folder")
    files, record = case_files(folder, ending), read_record(folder)
    if overwrite:
        return files
    mine = run.as_json()
    unknown = sorted(c for c in files if c not in record)
    if unknown:
        raise SetupError(f"output folder {folder} holds predictions of {len(unknown)} case(s) that "
                         f"{RECORD_FILE} does not record ({_shown(unknown)}): their model is unknown and they "
                         f"would mix with this run's; choose another -o, or pass --overwrite to replace all of them")
    other = sorted(c for c, entry in record.items() if entry.get("predicted_by") != mine)
    if other:
        raise SetupError(f"output folder {folder} holds predictions of another run "
                         f"({_describe(record[other[0]].get('predicted_by'))}) for {len(other)} case(s) "
                         f"({_shown(other)}): nnUNetv2_ensemble would mix them with this run's ({run.describe()}); "
                         f"choose another -o, or pass --overwrite to replace all of them")
    return files


def _describe(predicted_by) -> str:
    try:
        return PredictionRun(**predicted_by).describe()
    except TypeError:
        return "a run that recorded no model"


@contextmanager
def staging_folder(output: Path) -> Iterator[Path]:
    """An empty hidden folder beside ``output`` (created with its parents), removed afterwards,
    on success and on any error alike."""
    output = Path(output).absolute()
    output.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{output.name}.predicting_", dir=output.parent))
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def publish(stage: Path, output: Path, ending: str, record: Mapping[str, dict], overwrite: bool) -> List[str]:
    """Move a successful run's outputs from ``stage`` into ``output`` and merge ``record`` (this
    run's cases) into its ``modalities_used.json``; returns the cases predicted. ``overwrite``:
    every earlier output goes; otherwise only the earlier files of the cases predicted again."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    with _locked(output):
        return _publish_locked(stage, output, ending, record, overwrite)


def _publish_locked(stage: Path, output: Path, ending: str, record: Mapping[str, dict], overwrite: bool) -> List[str]:
    new = case_files(stage, ending)
    earlier, merged = case_files(output, ending), ({} if overwrite else read_record(output))
    gone = earlier if overwrite else {c: f for c, f in earlier.items() if c in new}
    for files in gone.values():
        for path in files:
            path.unlink()
    if overwrite:
        for name in (*NNUNET_FILES, RECORD_FILE):
            (output / name).unlink(missing_ok=True)
    for files in new.values():
        for path in files:
            os.replace(path, output / path.name)
    _move_nnunet_files(stage, output)
    if new or overwrite:
        merged.update({case: record[case] for case in new})
        tmp = output / f".{RECORD_FILE}.tmp"
        tmp.write_text(json.dumps(merged, indent=2), encoding="utf-8")
        os.replace(tmp, output / RECORD_FILE)
    return sorted(new)


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (the directory itself, so nothing is left in it):
    parts of one ``-num_parts`` run publishing at the same time merge the record one by one.
    Where the platform has no ``fcntl`` (Windows) runs are not serialised."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _move_nnunet_files(stage: Path, output: Path) -> None:
    """nnU-Net's json files into ``output``; the argument record names ``output``, not the stage."""
    for name in NNUNET_FILES:
        path = stage / name
        if not path.is_file():
            continue
        if name == "predict_from_raw_data_args.json":
            text = path.read_text(encoding="utf-8")
            path.write_text(text.replace(json.dumps(str(stage))[1:-1], json.dumps(str(output.absolute()))[1:-1]),
                            encoding="utf-8")
        os.replace(path, output / name)
