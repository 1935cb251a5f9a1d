"""``make-phantom``: write synthetic BraTS-like phantom cases (BraTS 2020 layout, or 2024 with a resection cavity).

``synthetic`` is a deprecated alias of this command (not to be confused with ``m2dn``, which
synthesises absent modality files with a diffusion model)."""
from dataset_conversion.errors import ConversionError
from dataset_conversion.synthetic import generate_synthetic_brats


def _parse_drop(items):
    """["3:t1ce,t2", ...] -> {3: ["t1ce", "t2"], ...}"""
    result = {}
    for item in items or []:
        index, sep, names = item.partition(":")
        if not sep or not index.strip().isdigit() or not names:
            raise ConversionError(f"--drop expects CASE_INDEX:MODALITY[,MODALITY...], e.g. 3:t1ce,t2, got '{item}'.")
        result.setdefault(int(index), []).extend(n.strip() for n in names.split(","))
    return result


def add_arguments(parser):
    parser.add_argument("-o", "--output", required=True, help="folder to write the cases into")
    parser.add_argument("-n", "--num-cases", type=int, required=True, help="number of cases")
    parser.add_argument("--shape", type=int, nargs=3, default=(48, 48, 48), metavar=("Z", "Y", "X"))
    parser.add_argument("--spacing", type=float, nargs=3, default=(1.0, 1.0, 1.0), metavar=("Z", "Y", "X"),
                        help="voxel spacing in mm")
    parser.add_argument("--seed", type=int, default=0, help="same seed, identical files")
    parser.add_argument("--prefix", default="SynBraTS", help="case ids are PREFIX_000, PREFIX_001, ...")
    parser.add_argument("--unlabelled", action="store_true", help="write no seg files (a test set)")
    parser.add_argument("--layout", default="2020", choices=["2020", "2024"],
                        help="2020: BraTS 2018-2021 files and labels; 2024: the 2024-2025 post-treatment glioma "
                             "layout with a resection cavity (label 4) in every case")
    parser.add_argument("--drop", action="append", metavar="CASE:MODS",
                        help="leave out modality files, e.g. --drop 3:t1ce,t2 (repeatable)")


def run(args):
    ids = generate_synthetic_brats(args.output, num_cases=args.num_cases, shape=tuple(args.shape),
                                   seed=args.seed, prefix=args.prefix, labelled=not args.unlabelled,
                                   spacing=tuple(args.spacing), drop_files=_parse_drop(args.drop),
                                   layout=args.layout)
    print(f"wrote {len(ids)} phantom cases to {args.output}")
    return 0
