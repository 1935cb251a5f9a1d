"""``nnunet_prism predict``: nnUNetv2_predict on a folder in which some modality files are absent.

Absent channels are filled with all-zero images in a scratch folder (the input is never
touched), nnU-Net's own ``nnUNetv2_predict`` runs on it, and ``modalities_used.json`` beside the
outputs records which modalities each case had and which run predicted it. Outputs are nnU-Net's
own (segmentations and, with ``--save_probabilities``, the .npz/.pkl files), so ensembling and
postprocessing work. Unknown options are passed to nnUNetv2_predict unchanged. Before anything is
written, the input is checked (file names, channels, dimensions, one grid per case, finite
voxels, ``-o`` outside ``-i``) and so are the model and its folds (default: every ``fold_*``
with the checkpoint) and the earlier outputs in ``-o`` (``inference.prediction_output``); see
docs/input_checks.md.
"""
import json
import tempfile
from pathlib import Path

from nnunet_prism import pipeline
from nnunet_prism.errors import SetupError
from nnunet_prism.inference.absent_modalities import check_output_outside, complete_cases, group_case_files
from nnunet_prism.inference.model_loading import image_dimension, model_folder, resolve_folds
from nnunet_prism.inference.prediction_output import (RECORD_FILE, PredictionRun, check_earlier_outputs, publish,
                                                      staging_folder)
from nnunet_prism.modalities import modality_names


def add_arguments(parser):
    parser.add_argument("-i", "--input", required=True, help="folder with CASE_XXXX.nii.gz files; some may be absent")
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("-d", "--dataset", required=True)
    parser.add_argument("-c", "--configuration", required=True)
    parser.add_argument("-tr", "--trainer", default="nnUNetTrainerPRISM")
    parser.add_argument("-p", "--plans", default="nnUNetPlans")
    parser.add_argument("-f", "--folds", nargs="+", default=None,
                        help="folds to ensemble, numbers or 'all' (default: every fold_* with the checkpoint)")
    parser.add_argument("-chk", "--checkpoint", default="checkpoint_final.pth", help="checkpoint file name in each fold")
    parser.add_argument("--save_probabilities", action="store_true",
                        help="also write <case>.npz and <case>.pkl (for nnUNetv2_ensemble), as nnUNetv2_predict")
    parser.add_argument("--continue_prediction", action="store_true",
                        help="skip the cases whose outputs of this run are already in -o, as nnUNetv2_predict")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace every earlier output in -o, also those of another model or run (default: "
                             "refuse them; outputs of the same run are kept and the cases predicted again replaced)")
    parser.add_argument("--ignore-unknown-files", action="store_true",
                        help="skip (and list on stderr) files whose case id or channel cannot be read, "
                             "instead of refusing the folder")
    parser.add_argument("-device", "--device", default="cuda", choices=["cuda", "cpu", "mps"])


def _skip_predicted(cases: dict, earlier: dict, ending: str, probabilities: bool) -> dict:
    """``cases`` without those whose outputs of this run are all in ``earlier``."""
    wanted = [ending, *((".npz", ".pkl") if probabilities else ())]
    done = [c for c in cases if c in earlier and all(any(p.name == c + w for p in earlier[c]) for w in wanted)]
    if done:
        print(f"--continue_prediction: {len(done)} case(s) already predicted by this run, skipped: {', '.join(done)}")
    return {c: files for c, files in cases.items() if c not in done}


def run(args):
    # cheap checks first, all before anything is written: folders, model and folds, the files'
    # names, the earlier outputs in -o, then every file's header and voxels
    output = Path(args.output)
    check_output_outside(output, {"-i": args.input}, "predict")
    if args.overwrite and args.continue_prediction:
        raise SetupError("--continue_prediction keeps earlier outputs, --overwrite replaces them: give one of them")
    folder = model_folder(args.dataset, args.trainer, args.plans, args.configuration)
    folds = resolve_folds(folder, args.folds, args.checkpoint)
    dataset_json = json.loads((folder / "dataset.json").read_text())
    names = modality_names(dataset_json)
    ending = dataset_json["file_ending"]
    cases = group_case_files(args.input, ending, len(names), ignore_unknown=args.ignore_unknown_files,
                             ignore_option="--ignore-unknown-files")
    passthrough = list(getattr(args, "passthrough", []))
    this_run = PredictionRun.of(folder, folds, args.checkpoint, passthrough)
    earlier = check_earlier_outputs(output, ending, this_run, args.overwrite)
    if args.continue_prediction:
        cases = _skip_predicted(cases, earlier, ending, args.save_probabilities)
        if not cases:
            print(f"every case is already predicted in {output}; nothing to do")
            return 0
    with tempfile.TemporaryDirectory(prefix="nnunet_prism_predict_") as scratch:
        record = complete_cases(cases, scratch, ending, len(names), names, image_dimension(folder))
        for case, used in record.items():
            print(f"{case}: present {'+'.join(used['present'])}" +
                  (f", absent {'+'.join(used['absent'])}" if used["absent"] else ""))
        env = pipeline.nnunet_environment()
        extra = ["-p", args.plans, "-chk", args.checkpoint, *(["--save_probabilities"] if args.save_probabilities
                                                              else []), *passthrough]
        with staging_folder(output) as stage:
            pipeline.predict(scratch, stage, args.dataset, args.configuration, args.trainer, env,
                             folds=folds, device=args.device, extra=extra)
            predicted = publish(stage, output, ending,
                                {case: {**used, "predicted_by": this_run.as_json()} for case, used in record.items()},
                                args.overwrite)
    print(f"predictions of {len(predicted)} case(s) and {RECORD_FILE} in {output}")
