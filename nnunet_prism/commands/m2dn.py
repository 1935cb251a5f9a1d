"""``nnunet_prism m2dn``: M2DN modality synthesis on nnU-Net's preprocessed data.

    nnunet_prism m2dn train    -d D -f FOLD [--iterations N] [-device cpu|cuda] [--c]
    nnunet_prism m2dn impute   -d D -f FOLD -i IN -o OUT [--steps 10] [--seed 0]
    nnunet_prism m2dn evaluate -d D -f FOLD [--steps 10] [-o OUT]

The model lives in nnUNet_results/<dataset>/M2DN__<plans>__2d/fold_X (checkpoint_latest.pth,
checkpoint_final.pth). ``impute`` writes the absent modality files of every case of IN into
OUT (present files copied unchanged, ``m2dn_imputation.json`` records what was synthesised);
``evaluate`` scores PSNR/SSIM per missing subset on the fold's held-out cases for M2DN, zero
fill and the mean of the present modalities. ``nnunet_prism synth`` is a deprecated alias.
"""
from pathlib import Path

from nnunet_prism.datasets import dataset_name


def _common(parser, device_default="cpu"):
    parser.add_argument("-d", "--dataset", required=True, help="dataset id or name")
    parser.add_argument("-f", "--fold", default="0", help="0-4 (or 'all' for train)")
    parser.add_argument("-p", "--plans", default="nnUNetPlans")
    parser.add_argument("-device", "--device", default=device_default, choices=["cpu", "cuda", "mps"])


def _sampling(parser):
    parser.add_argument("--steps", type=int, default=10, help="DDIM sampling steps (default 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=32, help="slices per network call")
    parser.add_argument("-chk", "--checkpoint", default=None,
                        help="checkpoint file name in the fold folder (default: final, else latest)")


def add_arguments(parser):
    actions = parser.add_subparsers(dest="m2dn_action", metavar="ACTION", required=True)
    train = actions.add_parser("train", help="train M2DN on 2D slices of the fold's training cases")
    _common(train)
    train.add_argument("-c", "--configuration", default="3d_fullres",
                       help="preprocessed configuration whose data is sliced (default 3d_fullres)")
    train.add_argument("--iterations", type=int, default=None, help="training iterations (default 20000)")
    train.add_argument("--batch-size", type=int, default=None)
    train.add_argument("--lr", type=float, default=None)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--c", dest="resume", action="store_true", help="continue from checkpoint_latest.pth")
    impute = actions.add_parser("impute", help="write absent modality files synthesised by M2DN")
    _common(impute)
    _sampling(impute)
    impute.add_argument("-i", "--input", required=True, help="folder with CASE_XXXX<ending> files; some absent")
    impute.add_argument("-o", "--output", required=True)
    evaluate = actions.add_parser("evaluate", help="PSNR/SSIM per missing subset on held-out cases vs baselines")
    _common(evaluate)
    _sampling(evaluate)
    evaluate.add_argument("-o", "--output", default=None, help="table folder (default: fold folder/synthesis_evaluation)")
    evaluate.add_argument("--max-cases", type=int, default=None, help="score at most this many held-out cases")


def _checkpoint(args):
    from nnunet_prism.m2dn.training import find_checkpoint, fold_folder

    folder = fold_folder(dataset_name(args.dataset), args.fold, args.plans)
    return find_checkpoint(folder, args.checkpoint)


def run_train(args):
    from nnunet_prism.m2dn.training import M2DNTrainer, TrainingOptions

    options = TrainingOptions(seed=args.seed)
    for name, value in (("iterations", args.iterations), ("batch_size", args.batch_size), ("learning_rate", args.lr)):
        if value is not None:
            setattr(options, name, value)
    options.save_every = min(options.save_every, max(options.iterations, 1))
    options.log_every = min(options.log_every, max(options.iterations, 1))
    trainer = M2DNTrainer(args.dataset, args.fold, args.configuration, args.plans, args.device, options)
    trainer.run(resume=args.resume)


def run_impute(args):
    from nnunet_prism.m2dn.imputation import RECORD_FILE, impute_folder

    impute_folder(args.input, args.output, _checkpoint(args), args.steps, args.seed, args.device, args.batch_size)
    print(f"imputed cases and {RECORD_FILE} in {args.output}")


def run_evaluate(args):
    from nnunet_prism.modalities import ModalityError
    from nnunet_prism.m2dn.data import CaseReader, open_preprocessed
    from nnunet_prism.m2dn.evaluation import evaluate_cases, summarise, write_tables
    from nnunet_prism.m2dn.training import load_model

    checkpoint = _checkpoint(args)
    network, diffusion, config = load_model(checkpoint, args.device)
    if not config["held_out"]:
        raise ModalityError(f"{checkpoint} was trained on fold {config['fold']}, which holds no cases out")
    pre = open_preprocessed(config["dataset_name"], config["configuration"], config["plans_identifier"])
    reader = CaseReader(pre, config["held_out"])
    held_out = [c for c in config["held_out"] if reader.availability(c).sum() >= 2][: args.max_cases or None]
    if not held_out:
        raise ModalityError(f"no held-out case of fold {config['fold']} has two or more modalities to score")
    rows = evaluate_cases(network, diffusion, reader, held_out, args.steps, args.seed, args.device, args.batch_size)
    table = summarise(rows, config["modalities"])
    output = Path(args.output) if args.output else checkpoint.parent / "synthesis_evaluation"
    title = f"M2DN {config['dataset_name']} fold {config['fold']} ({checkpoint.name}, {args.steps} DDIM steps)"
    files = write_tables(table, rows, output, title)
    print(files["md"].read_text())
    for kind, path in files.items():
        print(f"{kind}: {path}")


def run(args):
    return {"train": run_train, "impute": run_impute, "evaluate": run_evaluate}[args.m2dn_action](args)
