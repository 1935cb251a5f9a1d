"""``nnunet_prism train``: ``nnUNetv2_train`` with our trainers registered and hyperparameters
given on the command line (``--hp name=value``, JSON values), e.g.

    nnunet_prism train 137 3d_fullres 0 -tr nnUNetTrainerPRISM --hp num_epochs=300 --hp lambda1=0.5

Everything after the known options is passed to nnUNetv2_train unchanged (``--c``, ``-p``, ...).
"""
from nnunet_prism import discovery, pipeline
from nnunet_prism.training.hyperparameters import load_overrides, parse_assignments, resolve


def add_arguments(parser):
    parser.add_argument("dataset", help="dataset id or name, as for nnUNetv2_train")
    parser.add_argument("configuration", help="2d, 3d_fullres, ...")
    parser.add_argument("fold", help="0-4 or all")
    parser.add_argument("-tr", "--trainer", default="nnUNetTrainerPRISM")
    parser.add_argument("--hp", action="append", metavar="NAME=VALUE", default=[],
                        help="override a hyperparameter (repeatable); see hyperparameters.json in the fold folder")
    parser.add_argument("-device", "--device", default="cuda", choices=["cuda", "cpu", "mps"])


def run(args):
    overrides = {**load_overrides(), **parse_assignments(args.hp)}
    resolve(discovery.find_trainer_class(args.trainer), overrides)  # fail fast on a typo
    env = pipeline.nnunet_environment(hyperparameters=overrides)
    pipeline.train(args.dataset, args.configuration, args.fold, args.trainer, env,
                   device=args.device, extra=list(getattr(args, "passthrough", [])))
