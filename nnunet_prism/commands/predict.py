"""``nnunet_prism predict``: nnUNetv2_predict on a folder in which some modality files are absent.

Absent channels are filled with all-zero images in a scratch folder (the input is never
touched), nnU-Net's own ``nnUNetv2_predict`` runs on it, and ``modalities_used.json`` beside the
outputs records which modalities each case had. Outputs are nnU-Net's own (segmentations and,
with ``--save_probabilities``, the .npz/.pkl files), so ensembling and postprocessing work.
Unknown options are passed to nnUNetv2_predict unchanged. Before anything is written, the
input is checked (file names, channels, one grid per case, ``-o`` outside ``-i``) and so are the
model and its folds (default: every ``fold_*`` with the checkpoint); see docs/input_checks.md.
"""
import json
import tempfile
from pathlib import Path

from nnunet_prism import pipeline
from nnunet_prism.inference.absent_modalities import check_output_outside, complete_cases, group_case_files
from nnunet_prism.inference.model_loading import model_folder, resolve_folds
from nnunet_prism.modalities import modality_names

RECORD_FILE = "modalities_used.json"


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
    parser.add_argument("--ignore-unknown-files", action="store_true",
                        help="skip (and list on stderr) files whose case id or channel cannot be read, "
                             "instead of refusing the folder")
    parser.add_argument("-device", "--device", default="cuda", choices=["cuda", "cpu", "mps"])


def run(args):
    # cheap checks first, all before anything is written: folders, model and folds, then the files
    output = Path(args.output)
    check_output_outside(output, {"-i": args.input}, "predict")
    folder = model_folder(args.dataset, args.trainer, args.plans, args.configuration)
    folds = resolve_folds(folder, args.folds, args.checkpoint)
    dataset_json = json.loads((folder / "dataset.json").read_text())
    names = modality_names(dataset_json)
    ending = dataset_json["file_ending"]
    cases = group_case_files(args.input, ending, len(names), ignore_unknown=args.ignore_unknown_files,
                             ignore_option="--ignore-unknown-files")
    with tempfile.TemporaryDirectory(prefix="nnunet_prism_predict_") as scratch:
        record = complete_cases(cases, scratch, ending, len(names), names)
        for case, used in record.items():
            print(f"{case}: present {'+'.join(used['present'])}" +
                  (f", absent {'+'.join(used['absent'])}" if used["absent"] else ""))
        env = pipeline.nnunet_environment()
        extra = ["-p", args.plans, "-chk", args.checkpoint, *getattr(args, "passthrough", [])]
        pipeline.predict(scratch, output, args.dataset, args.configuration, args.trainer, env,
                         folds=folds, device=args.device, extra=extra)
    output.mkdir(parents=True, exist_ok=True)
    (output / RECORD_FILE).write_text(json.dumps(record, indent=2))
    print(f"predictions and {RECORD_FILE} in {output}")
