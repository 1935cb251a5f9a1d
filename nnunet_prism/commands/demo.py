"""``nnunet_prism demo``: the whole pipeline on data it makes itself, through nnU-Net's own CLI.

1. write a synthetic BraTS-like set (BraTS 2020 layout),
2. convert it to an nnU-Net raw dataset with imbalanced missing rates (PASSION's mr2468),
3. ``nnUNetv2_plan_and_preprocess``,
4. ``nnUNetv2_train`` the chosen trainers on a short schedule,
5. ``nnUNetv2_predict`` the held-out synthetic cases.

Everything lives under ``--workdir``; rerunning starts the steps afresh.
"""
import time
from pathlib import Path

from nnunet_prism import pipeline

DEFAULT_TRAINERS = ["nnUNetTrainerModalityDropout"]


def add_arguments(parser):
    parser.add_argument("--workdir", default="nnunet_prism_demo", help="folder for all demo data and results")
    parser.add_argument("--dataset-id", type=int, default=901)
    parser.add_argument("--num-cases", type=int, default=12, help="labelled synthetic training cases")
    parser.add_argument("--num-test-cases", type=int, default=3, help="held-out cases to predict")
    parser.add_argument("--shape", type=int, nargs=3, default=(48, 48, 48))
    parser.add_argument("--missing-rates", default="0.2,0.4,0.6,0.8",
                        help="per-modality missing rates of the training set (FLAIR,T1,T1c,T2)")
    parser.add_argument("--trainers", nargs="+", default=DEFAULT_TRAINERS)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=10, help="training iterations per epoch")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--seed", type=int, default=0)


def _step(title: str):
    print(f"\n=== {title} ===", flush=True)
    return time.time()


def run(args):
    from nnunet_prism.synthetic_dataset import prepare_synthetic_dataset

    workdir = Path(args.workdir).resolve()
    env = pipeline.nnunet_environment(workdir)
    log = workdir / "demo_log.txt"
    configuration = "3d_fullres"

    t0 = _step("1-3/5 synthetic BraTS-like set -> nnU-Net raw dataset -> nnUNetv2_plan_and_preprocess")
    rates = [float(r) for r in args.missing_rates.split(",")] if args.missing_rates else None
    dataset_folder = prepare_synthetic_dataset(workdir, args.dataset_id, env, args.num_cases, args.num_test_cases,
                                               args.shape, rates, args.seed, log_file=log)
    print(f"dataset: {dataset_folder}")

    hyperparameters = {"num_epochs": args.epochs, "num_iterations_per_epoch": args.iterations,
                       "num_val_iterations_per_epoch": max(1, args.iterations // 5)}
    train_env = pipeline.nnunet_environment(workdir, hyperparameters)
    for i, trainer in enumerate(args.trainers, 1):
        _step(f"4/5 nnUNetv2_train {trainer} ({i}/{len(args.trainers)})")
        pipeline.train(args.dataset_id, configuration, 0, trainer, train_env, device=args.device, log_file=log)

    predictions = {}
    for trainer in args.trainers:
        _step(f"5/5 nnUNetv2_predict {trainer}")
        out = workdir / "predictions" / trainer
        pipeline.predict(Path(dataset_folder) / "imagesTs", out, args.dataset_id, configuration, trainer,
                         train_env, device=args.device, log_file=log)
        predictions[trainer] = out

    print(f"\nDone in {time.time() - t0:.0f} s. Everything is under {workdir}:")
    print(f"  nnU-Net results:  {workdir / 'nnUNet_results'}")
    for trainer, out in predictions.items():
        print(f"  predictions ({trainer}): {out}")
    print(f"  full log:         {log}")
