"""``nnunet_prism evaluate``: Dice and HD95 of a trained model on all 2^M - 1 modality subsets.

On a fold's validation cases (default) or a labelled folder (``-i IMAGES -l LABELS``). Writes
CSV, Markdown and LaTeX tables (a row per subset, present/absent marks, an average row), a
per-case CSV, JSON and a heatmap PNG to ``-o``; ``--compare`` prints published averages beside
the result.
"""
import json
from pathlib import Path

from nnunet_prism.inference.model_loading import image_reader_writer, load_predictor, model_folder, resolve_folds


def add_arguments(parser):
    parser.add_argument("-d", "--dataset", required=True)
    parser.add_argument("-c", "--configuration", required=True)
    parser.add_argument("-tr", "--trainer", default="nnUNetTrainerPRISM")
    parser.add_argument("-p", "--plans", default="nnUNetPlans")
    parser.add_argument("-f", "--fold", type=int, default=0, help="model fold (and validation split) to evaluate")
    parser.add_argument("-chk", "--checkpoint", default="checkpoint_final.pth")
    parser.add_argument("-i", "--images", help="labelled test images (default: the fold's validation cases)")
    parser.add_argument("-l", "--labels", help="reference labels for --images")
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("-device", "--device", default="cuda", choices=["cuda", "cpu", "mps"])
    parser.add_argument("--disable_tta", action="store_true", help="no mirroring (as nnUNetv2_predict --disable_tta)")
    parser.add_argument("--save-predictions", action="store_true", help="also write each subset's segmentations")
    parser.add_argument("--compare", nargs="?", const="", default=None, metavar="DATASET",
                        help="print published 15-subset averages (e.g. BraTS2018) beside the result")


def run(args):
    from nnunet_prism.evaluation import plot_subset_heatmap, print_comparison, write_all
    from nnunet_prism.inference.absent_modalities import check_output_outside
    from nnunet_prism.inference.evaluation_cases import check_case_files, folder_cases, validation_cases
    from nnunet_prism.inference.subset_evaluation import evaluate_subsets

    if bool(args.images) != bool(args.labels):
        raise FileNotFoundError("give both --images and --labels, or neither (fold validation cases)")
    output = Path(args.output)
    check_output_outside(output, {"-i": args.images, "-l": args.labels}, "evaluate")
    folder = model_folder(args.dataset, args.trainer, args.plans, args.configuration)
    fold = resolve_folds(folder, [args.fold], args.checkpoint)[0]
    dataset_json = json.loads((folder / "dataset.json").read_text())
    if args.images:
        cases = folder_cases(args.images, args.labels, dataset_json)
    else:
        cases = validation_cases(folder.parent.name, fold, dataset_json)
    # every case's image grid and label (values, grid) checked before the model is loaded
    check_case_files(cases, dataset_json, image_reader_writer(folder))
    predictor = load_predictor(folder, fold, args.checkpoint, args.device, not args.disable_tta)
    dataset_name = predictor.plans_manager.dataset_name
    results = evaluate_subsets(predictor, cases, output / "predictions" if args.save_predictions else None)
    title = f"{args.trainer} {dataset_name} {args.configuration} fold {args.fold}"
    files = write_all(results, output, title=title)
    files["heatmap"] = plot_subset_heatmap(results, output / "subsets_dice.png", title=title)
    print(files["md"].read_text())
    if args.compare is not None:
        print_comparison(results, dataset=args.compare or None, label=args.trainer)
    for kind, path in files.items():
        print(f"{kind}: {path}")
