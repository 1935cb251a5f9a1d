"""``nnunet_prism demo``: the whole pipeline on data it makes itself, through nnU-Net's own CLI.

1. write a synthetic BraTS-like set and convert it to an nnU-Net raw dataset with imbalanced
   missing rates (PASSION's mr2468: FLAIR 0.2, T1 0.4, T1c 0.6, T2 0.8), plus complete labelled
   held-out cases; ``nnUNetv2_plan_and_preprocess``;
2. ``nnUNetv2_train`` each trainer on a short schedule (same budget for all);
3. ``nnunet_prism predict`` the unlabelled test cases from a folder in which their absent
   modality files are simply missing (each case says which modalities it used);
4. ``nnunet_prism evaluate`` every trainer on all 15 modality subsets of the held-out cases;
5. a side-by-side table (Markdown + CSV) and heatmap of the trainers.

Everything lives under ``--workdir``; rerunning starts the steps afresh.
"""
import sys
import time
from pathlib import Path

from nnunet_prism import pipeline

DEFAULT_TRAINERS = ["nnUNetTrainerModalityDropout", "nnUNetTrainerPRISM"]
CONFIGURATION = "3d_fullres"


def add_arguments(parser):
    parser.add_argument("--workdir", default="nnunet_prism_demo", help="folder for all demo data and results")
    parser.add_argument("--dataset-id", type=int, default=901, help="id of the training set (id + 1: held-out set)")
    parser.add_argument("--num-cases", type=int, default=16, help="labelled synthetic training cases")
    parser.add_argument("--num-test-cases", type=int, default=2, help="unlabelled incomplete cases to predict")
    parser.add_argument("--num-heldout-cases", type=int, default=3,
                        help="complete labelled cases scored on all 15 subsets")
    parser.add_argument("--shape", type=int, nargs=3, default=(48, 48, 48))
    parser.add_argument("--missing-rates", default="0.2,0.4,0.6,0.8",
                        help="per-modality missing rates of the training set (FLAIR,T1,T1c,T2)")
    parser.add_argument("--trainers", nargs="+", default=DEFAULT_TRAINERS,
                        help="trainers to compare (any nnunet_prism trainer, or nnUNetTrainer)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=15, help="training iterations per epoch")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--disable-tta", action="store_true", help="no test-time mirroring in the evaluation")
    parser.add_argument("--seed", type=int, default=0)


class _Progress:
    """Numbered step headers with the time since the start."""

    def __init__(self, total: int):
        self.total, self.number, self.start = total, 0, time.time()

    def step(self, title: str) -> None:
        self.number += 1
        print(f"\n=== [{self.number}/{self.total}] {title}   (+{time.time() - self.start:.0f} s) ===", flush=True)

    def elapsed(self) -> float:
        return time.time() - self.start


def _nnunet_prism(*args) -> list:
    return [sys.executable, "-m", "nnunet_prism.cli", *map(str, args)]


def what_the_table_shows(epochs: int, iterations: int) -> str:
    """The demo's closing words on its table: a short schedule checks the pipeline, it ranks nothing."""
    return ("This table shows the pipeline working end to end (train, predict with absent files, evaluate\n"
            f"15 subsets). It is not a ranking of the trainers: after {epochs} epochs x {iterations} iterations\n"
            "(nnU-Net trains 1000 x 250) it says how fast each trainer starts learning, and at this length\n"
            "the numbers move between runs by several Dice points, sometimes tens. Which trainer segments\n"
            "best is measured by the quality benchmark (6 trainers x 3 seeds x 1000 iterations, paired\n"
            "tests): docs/benchmarks.md in the repository, section 'Quality benchmark'.\n")


def run(args):
    from nnunet_prism.evaluation.comparison import TrainerComparison, write_comparison
    from nnunet_prism.evaluation.results import SubsetResults
    from nnunet_prism.modalities import BRATS_MODALITIES, ModalityError, parse_rates
    from dataset_conversion.phantom_dataset import copy_present_files, prepare_complete_test_set, prepare_synthetic_dataset

    rates = parse_rates(args.missing_rates, len(BRATS_MODALITIES)).tolist() if args.missing_rates else None
    if args.seed < 0:
        raise ModalityError(f"--seed must be a non-negative integer, got {args.seed}")
    workdir = Path(args.workdir).resolve()
    env = pipeline.nnunet_environment(workdir)
    if args.device == "cpu":
        env.setdefault("nnUNet_n_proc_DA", "0")
    log = workdir / "demo_log.txt"
    trainers = list(dict.fromkeys(args.trainers))
    progress = _Progress(2 + 3 * len(trainers))

    progress.step("synthetic BraTS-like set -> nnU-Net raw dataset -> nnUNetv2_plan_and_preprocess")
    dataset_folder = prepare_synthetic_dataset(workdir, args.dataset_id, env, args.num_cases, args.num_test_cases,
                                               args.shape, rates, args.seed, log_file=log)
    heldout = prepare_complete_test_set(workdir, args.dataset_id + 1, env, args.num_heldout_cases, args.shape,
                                        seed=args.seed + 777)
    test_cases = copy_present_files(dataset_folder / "imagesTs", workdir / "test_cases_with_absent_files")
    print(f"training set: {dataset_folder}\nheld-out complete cases: {heldout}\n"
          f"test cases with absent modality files: {test_cases}", flush=True)

    hyperparameters = {"num_epochs": args.epochs, "num_iterations_per_epoch": args.iterations,
                       "num_val_iterations_per_epoch": max(1, args.iterations // 5)}
    train_env = pipeline.nnunet_environment(workdir, hyperparameters, base=env)
    device = ["-device", args.device]
    results = {}
    for trainer in trainers:
        progress.step(f"nnUNetv2_train {args.dataset_id} {CONFIGURATION} 0 -tr {trainer} "
                      f"({args.epochs} epochs x {args.iterations} iterations)")
        pipeline.train(args.dataset_id, CONFIGURATION, 0, trainer, train_env, device=args.device, log_file=log)

        progress.step(f"nnunet_prism predict {trainer}: test cases with their absent modality files")
        pipeline.run(_nnunet_prism("predict", "-i", test_cases, "-o", workdir / "predictions" / trainer,
                                   "-d", args.dataset_id, "-c", CONFIGURATION, "-tr", trainer, "-f", 0, *device),
                     train_env, log_file=log)

        progress.step(f"nnunet_prism evaluate {trainer}: all 15 modality subsets of the held-out cases")
        evaluation = workdir / "evaluation" / trainer
        pipeline.run(_nnunet_prism("evaluate", "-d", args.dataset_id, "-c", CONFIGURATION, "-tr", trainer, "-f", 0,
                                   "-i", heldout / "imagesTr", "-l", heldout / "labelsTr", "-o", evaluation, *device,
                                   *(["--disable_tta"] if args.disable_tta else [])),
                     train_env, log_file=log)
        results[trainer] = SubsetResults.load_json(evaluation / "subsets.json")

    progress.step("side-by-side comparison")
    title = (f"Dice (%) per modality subset after {args.epochs}x{args.iterations} iterations, "
             f"missing rates {args.missing_rates}")
    files = write_comparison(TrainerComparison.from_results(results), workdir, title=title)
    print(files["md"].read_text())
    print(what_the_table_shows(args.epochs, args.iterations))
    print(f"Done in {progress.elapsed():.0f} s. Everything is under {workdir}:")
    print(f"  comparison table:  {files['md']}\n                     {files['csv']}")
    print(f"  comparison plot:   {files['heatmap']}")
    print(f"  per-trainer tables and heatmaps: {workdir / 'evaluation'}/<trainer>/")
    print(f"  predictions with absent modalities: {workdir / 'predictions'}/<trainer>/")
    print(f"  nnU-Net results (checkpoints, progress.png): {workdir / 'nnUNet_results'}")
    print(f"  full log:          {log}")
