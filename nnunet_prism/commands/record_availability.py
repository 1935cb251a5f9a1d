"""``nnunet_prism record-availability -d ID``: write which modalities each training case really
has into the dataset's dataset.json (``modality_availability``), from the images: an all-zero
channel is absent (``nnunet_prism.availability``). For datasets prepared by other tools, which
fill a missing modality with an all-zero image and record nothing.

An existing record is checked against the images (a channel recorded present but all zero is a
one-line error naming the case) and kept; ``--overwrite`` replaces it with what the images show
(this drops simulated missingness recorded by ``convert-brats --missing-rates``). The copy in
nnUNet_preprocessed, if the dataset was preprocessed, is updated too.
"""
import os
from pathlib import Path

import numpy as np

from nnunet_prism.availability import load_dataset_json, raw_availability, resolve_availability, write_record
from nnunet_prism.datasets import dataset_name
from nnunet_prism.errors import MissingFileError, SetupError
from nnunet_prism.modalities import AVAILABILITY_KEY, ModalityError, missing_rates, modality_names


def add_arguments(parser):
    parser.add_argument("-d", "--dataset", required=True, help="dataset id or name in nnUNet_raw")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing record with what the images show")


def dataset_folders(dataset: str):
    """(raw folder, preprocessed folder or None) of an nnU-Net dataset; one-line errors."""
    if not os.environ.get("nnUNet_raw"):
        raise SetupError("nnUNet_raw is not set; export it as for nnU-Net's own commands.")
    name = dataset_name(dataset)
    raw = Path(os.environ["nnUNet_raw"]) / name
    if not (raw / "dataset.json").is_file():
        raise MissingFileError(f"{raw / 'dataset.json'} does not exist.")
    preprocessed = Path(os.environ.get("nnUNet_preprocessed") or "/nonexistent") / name
    return raw, (preprocessed if (preprocessed / "dataset.json").is_file() else None)


def training_case_ids(raw: Path, dataset_json: dict):
    ending, suffix = dataset_json["file_ending"], "_0000" + dataset_json["file_ending"]
    return sorted(p.name[:-len(suffix)] for p in (raw / "imagesTr").glob(f"*{suffix}") if p.name.endswith(ending))


def run(args):
    raw, preprocessed = dataset_folders(args.dataset)
    dataset_json = load_dataset_json(raw / "dataset.json")
    cases = training_case_ids(raw, dataset_json)
    if not cases:
        raise MissingFileError(f"{raw / 'imagesTr'} holds no training images.")
    data = raw_availability(raw, dataset_json, cases)
    had_record = bool(dataset_json.get(AVAILABILITY_KEY))
    if args.overwrite or not had_record:
        available = data
        if not data.any(axis=1).all():
            empty = cases[int(np.flatnonzero(~data.any(axis=1))[0])]
            raise ModalityError(f"case '{empty}' has no modality with signal; remove it or fix its images.")
    else:  # check the existing record against the images, keep it
        available, _ = resolve_availability(dataset_json, cases, lambda keys: data)
    names = modality_names(dataset_json)
    rates = ", ".join(f"{n} {r:.2f}" for n, r in zip(names, missing_rates(available)))
    if had_record and not args.overwrite:
        print(f"{raw / 'dataset.json'}: the record of {len(cases)} cases agrees with the images (missing rates: "
              f"{rates}); kept (--overwrite replaces it with what the images show)")
        return 0
    for folder in (raw, preprocessed):
        if folder is not None:
            write_record(folder / "dataset.json", cases, available)
            print(f"wrote modality_availability of {len(cases)} cases to {folder / 'dataset.json'}")
    print(f"missing rates from the images: {rates}")
    return 0
