"""``nnunet_prism record-availability -d ID``: write which modalities each case really has, the
training cases (imagesTr) and the test cases (imagesTs) alike, into the dataset's dataset.json
(``modality_availability``), from the images: an all-zero channel is absent
(``nnunet_prism.availability``). For datasets prepared by other tools, which fill a missing
modality with an all-zero image and record nothing.

An existing record is checked against the images (a channel recorded present but all zero is a
one-line error naming the case) and kept; cases it lacks are added from the images.
``--overwrite`` replaces the entries of every case with images by what the images show (this
drops simulated missingness recorded by ``convert-brats --missing-rates``); entries of cases
without images are kept. The copy in nnUNet_preprocessed, if the dataset was preprocessed, is
updated too.
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


def case_ids(raw: Path, dataset_json: dict, images: str):
    """The case ids of ``raw/<images>`` (files ``<case>_0000<ending>``)."""
    suffix = "_0000" + dataset_json["file_ending"]
    return sorted(p.name[:-len(suffix)] for p in (raw / images).glob(f"*{suffix}"))


def run(args):
    raw, preprocessed = dataset_folders(args.dataset)
    dataset_json = load_dataset_json(raw / "dataset.json")
    training, test = (case_ids(raw, dataset_json, images) for images in ("imagesTr", "imagesTs"))
    if not training:
        raise MissingFileError(f"{raw / 'imagesTr'} holds no training images.")
    cases = training + test
    data = np.concatenate([raw_availability(raw, dataset_json, training),
                           raw_availability(raw, dataset_json, test, images="imagesTs")])
    record = dataset_json.get(AVAILABILITY_KEY) or {}
    if args.overwrite or not record:
        available = data
        if not data.any(axis=1).all():
            empty = cases[int(np.flatnonzero(~data.any(axis=1))[0])]
            raise ModalityError(f"case '{empty}' has no modality with signal; remove it or fix its images.")
    else:  # check the existing record against the images, keep it
        available, _ = resolve_availability(dataset_json, cases, lambda keys: data)
    names = modality_names(dataset_json)
    rates = ", ".join(f"{n} {r:.2f}" for n, r in zip(names, missing_rates(available[:len(training)])))
    counted = f"{len(training)} training and {len(test)} test cases"
    added = [c for c in cases if c not in record]
    if record and not args.overwrite and not added:
        print(f"{raw / 'dataset.json'}: the record of {counted} agrees with the images (training-set missing "
              f"rates: {rates}); kept (--overwrite replaces it with what the images show)")
        return 0
    written = cases if args.overwrite or not record else added
    for folder in (raw, preprocessed):
        if folder is not None:
            write_record(folder / "dataset.json", written, available[[cases.index(c) for c in written]])
            print(f"wrote modality_availability of {len(written)} of {counted} to {folder / 'dataset.json'}"
                  + ("" if len(written) == len(cases) else " (the record of the others agrees and was kept)"))
    others = sorted(set(record) - set(cases))
    if others:
        print(f"kept the entries of {len(others)} cases without images in imagesTr or imagesTs "
              f"({', '.join(others[:3])}{', ...' if len(others) > 3 else ''})")
    print(f"training-set missing rates from the images: {rates}")
    return 0
