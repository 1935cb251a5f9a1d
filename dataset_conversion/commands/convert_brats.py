"""``convert-brats``: BraTS folder(s) -> nnU-Net raw dataset."""
import json

import numpy as np

from dataset_conversion.brats import convert_brats
from nnunet_prism.brats_label_sets import LAYOUT_CHOICES as RELEASES, get_layout
from nnunet_prism.modalities import AVAILABILITY_KEY, BRATS_MODALITIES, missing_rates, parse_rates

LAYOUT_CHOICES = ["auto", *RELEASES]


def add_arguments(parser):
    parser.add_argument("-i", "--input", nargs="+", required=True, metavar="SRC",
                        help="BraTS folder(s) holding one folder per case")
    parser.add_argument("-d", "--dataset-id", type=int, required=True, help="nnU-Net dataset id (1-999)")
    parser.add_argument("-n", "--name", default="BraTS", help="dataset name (DatasetXXX_NAME)")
    parser.add_argument("--missing-rates", default=None, metavar="R,R,R,R",
                        help="simulated missing rates of FLAIR,T1,T1c,T2 for the training cases, e.g. 0.2,0.4,0.6,0.8")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated missingness")
    parser.add_argument("--label-based", action="store_true",
                        help="plain labels edema/necrosis/enhancing instead of BraTS regions")
    parser.add_argument("--layout", default="auto", choices=LAYOUT_CHOICES,
                        help="BraTS release or task: 2018-2021 (labels 1/2/4), 2023 glioma (1/2/3), 2024 or 2025 "
                             "post-treatment glioma (4 = resection cavity), met, ped, men (default: detect from "
                             "file names, case ids and label values)")
    parser.add_argument("--require-labels", action="store_true",
                        help="every case must have a seg file (default: folders without any go to imagesTs)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset folder")
    parser.add_argument("--raw", default=None, help="nnU-Net raw folder (default: $nnUNet_raw)")
    parser.add_argument("-np", "--num-workers", type=int, default=1, help="processes for reading and writing")


def run(args):
    rates = parse_rates(args.missing_rates, len(BRATS_MODALITIES)) if args.missing_rates else None
    folder = convert_brats(args.input, args.dataset_id, args.name, raw_root=args.raw, missing_rates=rates,
                           seed=args.seed, label_based=args.label_based, layout=args.layout,
                           overwrite=args.overwrite, num_workers=args.num_workers,
                           require_labels=True if args.require_labels else None)
    content = json.loads((folder / "dataset.json").read_text())
    layout = get_layout(content["brats_layout"])
    print(f"wrote {folder}: {content['numTraining']} training and {content['numTest']} test cases "
          f"(BraTS {layout.name} layout: {layout.title}; regions or labels: "
          f"{', '.join(k for k in content['labels'] if k != 'background')})")
    record = content[AVAILABILITY_KEY]
    train = sorted(p.name[:-len(".nii.gz")] for p in (folder / "labelsTr").glob("*.nii.gz"))
    if train:
        rows = np.array([record[c] for c in train], dtype=bool)
        shown = ", ".join(f"{m} {r:.2f}" for m, r in zip(BRATS_MODALITIES, missing_rates(rows)))
        print(f"training-set missing rates FR^m: {shown}")
    return 0
