"""``nnunet_prism train``: ``nnUNetv2_train`` with our trainers registered and hyperparameters
given on the command line (``--hp name=value``, JSON values), e.g.

    nnunet_prism train 137 3d_fullres 0 -tr nnUNetTrainerPRISM --hp num_epochs=300 --hp lambda1=0.5

Every value is checked (types, ranges, and against the dataset's modalities) before nnU-Net
starts. Everything after the known options is passed to nnUNetv2_train unchanged (``--c``, ...).
"""
import json
import os

from nnunet_prism import discovery, pipeline
from nnunet_prism.datasets import dataset_name
from nnunet_prism.errors import MissingFileError
from nnunet_prism.modalities import modality_names
from nnunet_prism.training.hyperparameters import (ALLOW_CHANGES_ENV_VAR, HyperparameterError, load_overrides,
                                                   parse_assignments, resolve)


def add_arguments(parser):
    parser.add_argument("dataset", help="dataset id or name, as for nnUNetv2_train")
    parser.add_argument("configuration", help="2d, 3d_fullres, ...")
    parser.add_argument("fold", help="0-4 or all")
    parser.add_argument("-tr", "--trainer", default="nnUNetTrainerPRISM")
    parser.add_argument("--hp", action="append", metavar="NAME=VALUE", default=[],
                        help="override a hyperparameter (repeatable); see hyperparameters.json in the fold folder")
    parser.add_argument("--allow-changed-hp", action="store_true",
                        help="with --c: resume although the hyperparameters differ from the run's")
    parser.add_argument("-device", "--device", default="cuda", choices=["cuda", "cpu", "mps"])


def preprocessed_dataset_json(dataset: str) -> dict:
    """The dataset.json nnU-Net copied into nnUNet_preprocessed (one-line error when absent)."""
    path = os.path.join(os.environ.get("nnUNet_preprocessed", ""), dataset_name(dataset), "dataset.json")
    if not os.path.isfile(path):
        raise MissingFileError(f"{path} does not exist; run nnUNetv2_plan_and_preprocess -d {dataset} first.")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def run(args):
    overrides = {**load_overrides(), **parse_assignments(args.hp)}
    trainer_class = discovery.find_trainer_class(args.trainer)
    if hasattr(trainer_class, "check_against_dataset"):  # one of ours: check everything now
        values = resolve(trainer_class, overrides)
        trainer_class.check_against_dataset(values, modality_names(preprocessed_dataset_json(args.dataset)))
    elif overrides:
        raise HyperparameterError(f"{args.trainer} is not an nnunet_prism trainer: it takes no --hp.")
    env = pipeline.nnunet_environment(hyperparameters=overrides)
    if args.allow_changed_hp:
        env[ALLOW_CHANGES_ENV_VAR] = "1"
    pipeline.train(args.dataset, args.configuration, args.fold, args.trainer, env,
                   device=args.device, extra=list(getattr(args, "passthrough", [])))
