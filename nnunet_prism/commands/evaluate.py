"""``nnunet_prism evaluate``: Dice and HD95 per modality subset, of a trained model or of a folder.

Model (``-d -c -tr -f``): on a fold's validation cases (default) or a labelled folder (``-i IMAGES
-l LABELS``), every one of the 2^M - 1 subsets a case really has. Folder (``--predictions DIR -l
LABELS [-d ID] [-i IMAGES]``): existing segmentations (nnUNetv2_predict, nnUNetv2_ensemble,
post-processed, another tool's), each case under the subset it was predicted from
(``evaluation/prediction_folders.py``); no model is loaded. Both write CSV, Markdown and LaTeX
tables (a row per subset, present/absent marks, an average row), a per-case CSV, JSON and a
heatmap PNG to ``-o``; ``--compare`` prints published averages beside the result.
``--convention`` (nnunet / brats) says how empty masks score, ``--et-min-voxels N`` adds a column
"ET (pp N)" scored after RFNet's ET post-processing, ``--metrics`` adds NSD, the BraTS 2023
lesion-wise metrics and the official BraTS 2025 numbers (``evaluation/conventions.py``,
``postprocessing.py``, ``lesionwise.py``, ``brats2025.py``). Every check runs before a model is
loaded or a file is written.
"""
import json
from pathlib import Path

from nnunet_prism.errors import EvaluationError, MissingFileError, SetupError
from nnunet_prism.inference.model_loading import image_reader_writer, load_predictor, model_folder, resolve_folds


def add_arguments(parser):
    parser.add_argument("-d", "--dataset", help="dataset id or name (a model's; with --predictions: optional, "
                                                "for its labels and availability record)")
    parser.add_argument("-c", "--configuration", help="model configuration (not with --predictions)")
    parser.add_argument("-tr", "--trainer", default="nnUNetTrainerPRISM")
    parser.add_argument("-p", "--plans", default="nnUNetPlans")
    parser.add_argument("-f", "--fold", nargs="+", default=["0"], metavar="FOLD",
                        help="model fold to evaluate: a number (its validation split by default) or 'all' "
                             "(needs -i/-l); one fold per run")
    parser.add_argument("-chk", "--checkpoint", default="checkpoint_final.pth")
    parser.add_argument("--predictions", metavar="DIR",
                        help="score this folder of segmentations (CASE<file ending>) against -l; no model is run")
    parser.add_argument("-i", "--images", help="labelled test images (model: default the fold's validation cases; "
                                               "--predictions: the images they were predicted from, for the subsets)")
    parser.add_argument("-l", "--labels", help="reference labels for --images or --predictions")
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
                        help="Dice HD95 (default), NSD, the BraTS 2023 lesion-wise LesionDice LesionHD95, and/or "
                             "brats2025 (the official BraTS 2025 numbers, computed by panoptica)")


def _scorer(dataset_json, plans, args):
    """The case scorer for the options; ``--compare``'s regions checked before anything runs."""
    from nnunet_prism.evaluation import targets_from_dataset_json
    from nnunet_prism.evaluation.results import check_comparable
    from nnunet_prism.evaluation.scoring import CaseScorer

    convention = args.convention
    if convention is None and args.compare is not None:
        from nnunet_prism.evaluation.published import load_published, rows_convention
        convention = rows_convention(load_published(args.compare or None))
    scorer = CaseScorer(targets_from_dataset_json(dataset_json, plans), convention or "nnunet", args.et_min_voxels,
                        args.metrics, dataset_json["labels"], dataset_json=dataset_json)
    if args.compare is not None:
        check_comparable(scorer.regions)
    return scorer


def _write_outputs(results, scorer, output: Path, title: str, label: str, args, extra_notes=()) -> None:
    from nnunet_prism.evaluation import comparison_text, plot_subset_heatmap, write_all

    notes = [f"Evaluation convention: {scorer.convention.name} ({scorer.convention.description}).", *extra_notes,
             *scorer.notes()]
    if scorer.et_target is not None:
        notes.append(f"{scorer.regions[-1]}: {scorer.et_target.short} after relabelling a predicted "
                     f"{scorer.et_target.short} of fewer than {scorer.et_min_voxels} voxels as necrosis.")
    files = write_all(results, output, title=title, notes=notes)
    files["heatmap"] = plot_subset_heatmap(results, output / "subsets_dice.png", title=title)
    print(files["md"].read_text())
    if args.compare is not None:
        print(comparison_text(results, dataset=args.compare or None, label=label,
                              convention=scorer.convention.name, et_min_voxels=args.et_min_voxels))
    for kind, path in files.items():
        print(f"{kind}: {path}")


def _one_fold(args):
    if len(args.fold) > 1:
        raise EvaluationError(f"evaluate scores one model fold per run (got -f {' '.join(args.fold)}): run it once "
                              f"per fold, each with its own -o (e.g. -f 0 -o eval/fold_0); -f all is the model "
                              f"trained on every case")
    return args.fold[0]


def _run_model(args):
    from nnunet_prism.inference.absent_modalities import check_output_outside
    from nnunet_prism.inference.evaluation_cases import check_case_files, folder_cases, validation_cases
    from nnunet_prism.inference.subset_evaluation import evaluate_subsets

    if not args.dataset or not args.configuration:
        raise EvaluationError("give a trained model (-d DATASET -c CONFIGURATION [-tr TRAINER -f FOLD]) or a "
                              "folder of segmentations (--predictions DIR -l LABELS)")
    if bool(args.images) != bool(args.labels):
        raise SetupError("give both --images and --labels, or neither (fold validation cases)")
    fold_arg = _one_fold(args)
    output = Path(args.output)
    check_output_outside(output, {"-i": args.images, "-l": args.labels}, "evaluate")
    folder = model_folder(args.dataset, args.trainer, args.plans, args.configuration)
    fold = resolve_folds(folder, [fold_arg], args.checkpoint)[0]
    dataset_json = json.loads((folder / "dataset.json").read_text())
    plans = json.loads((folder / "plans.json").read_text())
    scorer = _scorer(dataset_json, plans, args)
    if args.images:
        cases = folder_cases(args.images, args.labels, dataset_json)
    elif fold == "all":
        raise EvaluationError("fold 'all' was trained on every case, so it has no validation cases: give "
                              "-i IMAGES -l LABELS")
    else:
        cases = validation_cases(folder.parent.name, fold, dataset_json)
    # every case's image grid and label (values, grid) checked before the model is loaded
    check_case_files(cases, dataset_json, image_reader_writer(folder))
    predictor = load_predictor(folder, fold, args.checkpoint, args.device, not args.disable_tta)
    results = evaluate_subsets(predictor, cases, output / "predictions" if args.save_predictions else None,
                               scorer=scorer)
    title = f"{args.trainer} {predictor.plans_manager.dataset_name} {args.configuration} fold {fold}"
    _write_outputs(results, scorer, output, title, args.trainer, args)


def _predictions_dataset_json(args) -> dict:
    """dataset.json of ``-d`` (the raw dataset's), else the one nnU-Net wrote beside its predictions."""
    if args.dataset:
        import os

        from nnunet_prism.datasets import dataset_name
        path = Path(os.environ.get("nnUNet_raw", "")) / dataset_name(args.dataset) / "dataset.json"
        if not path.is_file():
            raise MissingFileError(f"{path} not found: -d names a dataset whose raw folder (nnUNet_raw) "
                                    f"holds no dataset.json")
    else:
        if not Path(args.predictions).is_dir():
            raise MissingFileError(f"--predictions folder {args.predictions} does not exist")
        path = Path(args.predictions) / "dataset.json"
        if not path.is_file():
            raise MissingFileError(f"{path} not found (nnUNetv2_predict and nnUNetv2_ensemble write it): give "
                                    f"-d DATASET for the labels of the predictions")
    return json.loads(path.read_text())


def _run_predictions(args):
    from nnunet_prism.evaluation.metrics import _reader_writer
    from nnunet_prism.evaluation.prediction_folders import prediction_cases, score_cases
    from nnunet_prism.inference.absent_modalities import check_output_outside, group_case_files
    from nnunet_prism.modalities import modality_names

    if not args.labels:
        raise EvaluationError("--predictions needs -l LABELS: the reference label of every case")
    if args.save_predictions:
        raise EvaluationError("--save-predictions writes a model's subset segmentations; --predictions scores "
                              "segmentations that already exist")
    output = Path(args.output)
    check_output_outside(output, {"--predictions": args.predictions, "-l": args.labels, "-i": args.images},
                         "evaluate")
    dataset_json = _predictions_dataset_json(args)
    scorer = _scorer(dataset_json, None, args)
    ending = dataset_json["file_ending"]
    example = next(Path(args.labels).glob(f"*{ending}"), None) if Path(args.labels).is_dir() else None
    reader_writer = _reader_writer(dataset_json, str(example or f"x{ending}"))
    image_files = None
    if args.images:
        image_files = group_case_files(args.images, ending, len(modality_names(dataset_json)))
    cases, source = prediction_cases(args.predictions, args.labels, dataset_json, reader_writer, args.images,
                                     image_files)
    results = score_cases(cases, dataset_json, reader_writer, scorer)
    name = Path(args.predictions).resolve().name
    title = f"{name} ({dataset_json.get('name', 'predictions')})"
    _write_outputs(results, scorer, output, title, name, args,
                   [f"Segmentations of {args.predictions}; modality subsets from {source}."])


def run(args):
    return _run_predictions(args) if args.predictions else _run_model(args)
