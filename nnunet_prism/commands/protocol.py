"""``nnunet_prism protocol NAME -d DATASET``: apply a published split (and, for PASSION, its
per-case modality masks) to an nnU-Net BraTS dataset, so that numbers are made on the cases the
papers used. NAME is a shipped protocol (``--list``) or a protocol JSON file."""


def add_arguments(parser):
    parser.add_argument("name", nargs="?", help="protocol name (e.g. rfnet-brats2020, passion-brats2020-mr2468) "
                                                "or a protocol .json file")
    parser.add_argument("-d", "--dataset", help="dataset id or name (nnUNet_raw/DatasetXXX_*)")
    parser.add_argument("--test-dir", help="folder for imagesTs/labelsTs (default: the raw dataset folder)")
    parser.add_argument("--link", action="store_true",
                        help="symlink the test cases into the test folder instead of moving them out of imagesTr")
    parser.add_argument("--list", action="store_true", help="list the shipped protocols and exit")


def run(args):
    from pathlib import Path

    from nnunet_prism.datasets import dataset_name
    from nnunet_prism.protocols import ProtocolError, apply_protocol, available_protocols, load_protocol

    if args.list:
        for name in available_protocols():
            print(f"{name}: {load_protocol(name).description}")
        return 0
    if not args.name or not args.dataset:
        raise ProtocolError("give a protocol NAME and -d DATASET (or --list)")
    from nnunetv2.paths import nnUNet_preprocessed, nnUNet_raw

    if not nnUNet_raw or not nnUNet_preprocessed:
        raise ProtocolError("set nnUNet_raw and nnUNet_preprocessed first")
    name = dataset_name(args.dataset)
    protocol = load_protocol(args.name)
    summary = apply_protocol(protocol, Path(nnUNet_raw) / name, Path(nnUNet_preprocessed) / name,
                             args.test_dir, args.link)
    verb = "linked" if args.link else "moved"
    print(f"protocol {protocol.name} on {name}: {summary['folds']} fold(s) in {summary['splits']}; "
          f"{len(summary['moved'])} test case(s) {verb} to {summary['test_images']} and {summary['test_labels']}; "
          f"{summary['num_training']} training cases left"
          + ("; per-case modality masks written to dataset.json (modality_availability)" if summary["availability"] else ""))
    if summary["moved"] and not args.link:
        print("run nnUNetv2_plan_and_preprocess (again) so that the preprocessed data match imagesTr")
    return 0
