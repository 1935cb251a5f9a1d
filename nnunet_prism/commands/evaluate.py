"""``nnunet_prism evaluate``: Dice and HD95 of a trained model on all 2^M - 1 modality subsets.

On a fold's validation cases (default) or a labelled folder (``-i IMAGES -l LABELS``). Writes
CSV, Markdown and LaTeX tables (a row per subset, present/absent marks, an average row), a
per-case CSV, JSON and a heatmap PNG to ``-o``; ``--compare`` prints published averages beside
the result. ``--convention`` (nnunet / brats) says how empty masks score, ``--et-min-voxels N``
adds a column "ET (pp N)" scored after RFNet's ET post-processing, ``--metrics`` adds the BraTS
2023 lesion-wise metrics (``evaluation/conventions.py``, ``postprocessing.py``, ``lesionwise.py``).
"""
import json
from pathlib import Path

from nnunet_prism.errors import SetupError
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
    parser.add_argument("--convention", choices=["nnunet", "brats"], default=None,
                        help="scores of empty masks: nnunet (Dice/HD95 NaN when reference and prediction are "
                             "empty) or brats (Dice 1, HD95 0; one empty: HD95 373.13); default nnunet, or the "
                             "convention of the published rows with --compare")
    parser.add_argument("--et-min-voxels", type=int, default=0, metavar="N",
                        help="also score ET after relabelling a predicted ET of fewer than N voxels as necrosis "
                             "(RFNet/mmFormer use 500); column 'ET (pp N)'; 0 = off")
    parser.add_argument("--metrics", nargs="+", default=None, metavar="METRIC",
                        help="Dice HD95 (default) and/or the BraTS 2023 lesion-wise LesionDice LesionHD95")


def run(args):
    from nnunet_prism.evaluation import comparison_text, plot_subset_heatmap, targets_from_dataset_json, write_all
    from nnunet_prism.evaluation.scoring import CaseScorer
    from nnunet_prism.inference.absent_modalities import check_output_outside
    from nnunet_prism.inference.evaluation_cases import check_case_files, folder_cases, validation_cases
    from nnunet_prism.inference.subset_evaluation import evaluate_subsets

    if bool(args.images) != bool(args.labels):
        raise SetupError("give both --images and --labels, or neither (fold validation cases)")
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
    convention = args.convention
    if convention is None and args.compare is not None:
        from nnunet_prism.evaluation.published import load_published, rows_convention
        convention = rows_convention(load_published(args.compare or None))
    scorer = CaseScorer(targets_from_dataset_json(predictor.dataset_json, predictor.plans_manager.plans),
                        convention or "nnunet", args.et_min_voxels, args.metrics, predictor.dataset_json["labels"])
    results = evaluate_subsets(predictor, cases, output / "predictions" if args.save_predictions else None,
                               scorer=scorer)
    title = f"{args.trainer} {dataset_name} {args.configuration} fold {args.fold}"
    notes = [f"Evaluation convention: {scorer.convention.name} ({scorer.convention.description})."]
    if scorer.et_target is not None:
        notes.append(f"{scorer.regions[-1]}: {scorer.et_target.short} after relabelling a predicted "
                     f"{scorer.et_target.short} of fewer than {scorer.et_min_voxels} voxels as necrosis.")
    files = write_all(results, output, title=title, notes=notes)
    files["heatmap"] = plot_subset_heatmap(results, output / "subsets_dice.png", title=title)
    print(files["md"].read_text())
    if args.compare is not None:
        print(comparison_text(results, dataset=args.compare or None, label=args.trainer,
                              convention=scorer.convention.name, et_min_voxels=args.et_min_voxels))
    for kind, path in files.items():
        print(f"{kind}: {path}")
