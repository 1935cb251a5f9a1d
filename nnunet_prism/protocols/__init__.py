"""Published evaluation protocols: which BraTS cases a paper trained, validated and tested on,
and (PASSION) which modalities each training case kept.

A protocol is a JSON file (``data/<name>.json``, or any path), see ``data/README.md`` for the
sources and the format::

    {"name": ..., "dataset": "BraTS2020", "description": ..., "source": {...},
     "folds": [{"train": [case ids], "val": [case ids]}, ...], "test": [case ids],
     "availability_order": ["FLAIR", "T1", "T1c", "T2"],        # optional
     "availability": {case id: [1, 0, 1, 1], ...}}               # optional

``apply_protocol`` writes nnU-Net's ``splits_final.json`` (one entry per fold) into the dataset's
preprocessed folder, moves (or links) the test cases' images and labels out of
``imagesTr``/``labelsTr`` into ``imagesTs``/``labelsTs``, and, when the protocol has masks, writes
them as the dataset's availability record (``dataset.json`` key ``modality_availability``, ANDed
with what is recorded already) in the raw and preprocessed folders.

Case ids: our converter names cases after the BraTS folders (``BraTS20_Training_001``,
``Brats18_CBICA_AAB_1``). RFNet's preprocessing prefixes them with the grade (``HG_``/``LG_``);
``normalise_case_id`` removes that prefix, so protocol files may use either form.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np

from nnunet_prism.errors import MissingFileError
from nnunet_prism.evaluation.metrics import EvaluationError
from nnunet_prism.modalities import AVAILABILITY_KEY, availability_to_json, modality_names, read_availability

DATA_DIR = Path(__file__).resolve().parent / "data"


class ProtocolError(EvaluationError):
    """A protocol that cannot be loaded or applied (printed as one line by the CLI)."""


def normalise_case_id(case_id: str) -> str:
    """RFNet's ``HG_BraTS20_Training_001`` -> ``BraTS20_Training_001`` (our converter's id)."""
    return re.sub(r"^(HG|LG)_", "", str(case_id).strip())


@dataclass
class Protocol:
    name: str
    dataset: str
    description: str
    source: dict
    folds: List[Dict[str, List[str]]]
    test: List[str]
    availability_order: Optional[List[str]] = None
    availability: Dict[str, List[int]] = field(default_factory=dict)

    @property
    def all_cases(self) -> List[str]:
        seen = {c: None for fold in self.folds for k in ("train", "val") for c in fold[k]}
        seen.update({c: None for c in self.test})
        return list(seen)


def available_protocols() -> List[str]:
    return sorted(p.stem for p in DATA_DIR.glob("*.json"))


def load_protocol(name_or_path: Union[str, os.PathLike]) -> Protocol:
    """A shipped protocol by name (``available_protocols()``) or a protocol JSON file."""
    path = Path(name_or_path)
    if not (path.suffix == ".json" and path.is_file()):
        path = DATA_DIR / f"{name_or_path}.json"
        if not path.is_file():
            raise ProtocolError(f"unknown protocol '{name_or_path}' (neither a file nor one of: "
                                f"{', '.join(available_protocols())})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        folds = [{k: [normalise_case_id(c) for c in fold[k]] for k in ("train", "val")} for fold in data["folds"]]
        test = [normalise_case_id(c) for c in data.get("test", [])]
        availability = {normalise_case_id(c): [int(v) for v in m] for c, m in data.get("availability", {}).items()}
        protocol = Protocol(str(data.get("name", path.stem)), str(data.get("dataset", "")),
                            str(data.get("description", "")), dict(data.get("source", {})), folds, test,
                            data.get("availability_order"), availability)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ProtocolError(f"protocol file {path} is malformed ({type(e).__name__}: {e})") from None
    if not protocol.folds:
        raise ProtocolError(f"protocol {path} has no folds")
    overlap = set(protocol.test) & {c for f in protocol.folds for k in ("train", "val") for c in f[k]}
    if overlap:
        raise ProtocolError(f"protocol {path}: test cases also in a training fold: {', '.join(sorted(overlap))}")
    return protocol


def _case_ids(folder: Path, ending: str) -> List[str]:
    if not folder.is_dir():
        return []
    return sorted(p.name[:-len(ending)] for p in folder.iterdir() if p.name.endswith(ending))


def _write_json(path: Path, content: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(content, indent=2) + "\n")
    os.replace(tmp, path)


def apply_protocol(protocol: Protocol, raw_folder: Union[str, os.PathLike], preprocessed_folder: Union[str, os.PathLike],
                   test_dir: Optional[Union[str, os.PathLike]] = None, link: bool = False) -> Dict[str, object]:
    """Apply ``protocol`` to the nnU-Net raw dataset ``raw_folder`` (see the module docstring).

    ``test_dir``: where ``imagesTs``/``labelsTs`` go (default: ``raw_folder``). ``link``: leave the
    test cases in ``imagesTr``/``labelsTr`` (the splits keep them out of training) and symlink them
    into the test folders instead of moving them. Running it again is harmless. Every protocol
    case must be in the dataset (in ``imagesTr``, or a test case already moved); otherwise nothing
    is changed and the error lists the missing ids. Returns a summary dict."""
    raw, pre = Path(raw_folder), Path(preprocessed_folder)
    dataset_json_path = raw / "dataset.json"
    if not dataset_json_path.is_file():
        raise MissingFileError(f"{dataset_json_path} not found")
    dataset_json = json.loads(dataset_json_path.read_text())
    ending = dataset_json["file_ending"]
    channels = len(modality_names(dataset_json))
    test_root = Path(test_dir) if test_dir is not None else raw
    images_ts, labels_ts = test_root / "imagesTs", test_root / "labelsTs"

    training = set(_case_ids(raw / "labelsTr", ending))
    already_moved = set(_case_ids(labels_ts, ending))
    missing = [c for c in protocol.all_cases
               if c not in training and not (c in protocol.test and c in already_moved)]
    if missing:
        shown = ", ".join(missing[:20]) + (f" and {len(missing) - 20} more" if len(missing) > 20 else "")
        raise ProtocolError(f"protocol '{protocol.name}': {len(missing)} case(s) not in {raw / 'labelsTr'}: {shown}")
    if protocol.availability:
        order = protocol.availability_order or modality_names(dataset_json)
        if list(order) != list(modality_names(dataset_json)):
            raise ProtocolError(f"protocol '{protocol.name}' gives masks in the order {', '.join(order)}, the dataset "
                                f"has {', '.join(modality_names(dataset_json))}")
        bad = [c for c, m in protocol.availability.items() if len(m) != channels or not any(m)]
        if bad:
            raise ProtocolError(f"protocol '{protocol.name}': masks of {', '.join(bad[:5])} need {channels} entries, "
                                f"at least one present")

    # test cases out of the training folders
    moved = []
    for case in protocol.test:
        if case not in training:
            continue  # moved by an earlier run
        images_ts.mkdir(parents=True, exist_ok=True)
        labels_ts.mkdir(parents=True, exist_ok=True)
        files = [(raw / "imagesTr" / f"{case}_{c:04d}{ending}", images_ts / f"{case}_{c:04d}{ending}")
                 for c in range(channels)]
        files.append((raw / "labelsTr" / f"{case}{ending}", labels_ts / f"{case}{ending}"))
        for src, dst in files:
            if not src.is_file():
                raise MissingFileError(f"case '{case}': {src} does not exist")
            if dst.exists() or dst.is_symlink():
                dst.unlink()
            if link:
                dst.symlink_to(src.resolve())
            else:
                shutil.move(str(src), str(dst))
        moved.append(case)

    # dataset.json: number of training cases, availability record
    remaining = _case_ids(raw / "labelsTr", ending)
    dataset_json["numTraining"] = len(remaining)
    if protocol.availability:
        cases = sorted(set(remaining) | set(protocol.availability))
        recorded = read_availability(dataset_json, cases)
        masks = np.array([protocol.availability.get(c, [1] * channels) for c in cases], dtype=bool)
        dataset_json[AVAILABILITY_KEY] = {**dataset_json.get(AVAILABILITY_KEY, {}),
                                          **availability_to_json(cases, recorded & masks)}
        dataset_json["availability_protocol"] = protocol.name
    _write_json(dataset_json_path, dataset_json)

    pre.mkdir(parents=True, exist_ok=True)
    if protocol.availability and (pre / "dataset.json").is_file():
        pre_json = json.loads((pre / "dataset.json").read_text())
        pre_json[AVAILABILITY_KEY] = dataset_json[AVAILABILITY_KEY]
        pre_json["availability_protocol"] = protocol.name
        _write_json(pre / "dataset.json", pre_json)
    splits = [{"train": sorted(f["train"]), "val": sorted(f["val"])} for f in protocol.folds]
    _write_json(pre / "splits_final.json", splits)  # nnU-Net writes a list; _write_json adds no keys
    return {"moved": moved, "linked": link, "splits": pre / "splits_final.json", "folds": len(splits),
            "test_images": images_ts, "test_labels": labels_ts, "num_training": len(remaining),
            "availability": bool(protocol.availability)}


__all__ = ["DATA_DIR", "Protocol", "ProtocolError", "normalise_case_id", "available_protocols", "load_protocol",
           "apply_protocol"]
