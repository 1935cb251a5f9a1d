"""The benchmark entry point: every claim about speed, memory and robustness as a measured ratio.

    python benchmarks/run.py [--workdir benchmarks/output] [--device cpu] [--trainers ...]
                             [--epochs 4 --iterations 20] [--skip-quality]

(a) training step time, peak memory, parameters and per-patch inference time of every trainer
    as ratios to plain nnUNetTrainer on the same plans, each trainer in its own process;
(b) time of ``nnunet_prism evaluate`` (all 15 subsets) divided by one ``nnUNetv2_predict`` of
    the same cases with the same model (both with nnU-Net's default test-time mirroring);
(c) quality: mean and worst Dice over the 15 subsets, and the Dice of the most-missing modality
    alone, for every trainer at the same iteration budget on the synthetic incomplete set
    (missing rates 0.2/0.4/0.6/0.8), scored on complete held-out cases; plain nnU-Net is
    represented there by nnUNetTrainerPrismBase (nnUNetTrainer's train_step, settable schedule).
Writes ``results.json`` and ``summary.md`` into the work folder and prints the summary.
"""
import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nnunet_prism import pipeline  # noqa: E402
from dataset_conversion.phantom_dataset import prepare_complete_test_set, prepare_synthetic_dataset  # noqa: E402

BASELINE = "nnUNetTrainer"
# plain nnUNetTrainer ignores nnUNet_prism_hparams (it would train 1000 x 250 iterations); our base
# trainer runs nnUNetTrainer's exact train_step on the same incomplete data with a settable schedule
QUALITY_BASELINE = "nnUNetTrainerPrismBase"
TRAINERS = ["nnUNetTrainerModalityDropout", "nnUNetTrainerMissingModality", "nnUNetTrainerPRISM",
            "nnUNetTrainerGMD", "nnUNetTrainerShaSpec"]
DATASET_ID, TEST_DATASET_ID = 981, 982
CONFIGURATION = "3d_fullres"


def machine() -> str:
    import os

    import torch
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {device}, torch {torch.__version__}"


def step_benchmark(trainer, env, args):
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "trainer_step.py"), str(DATASET_ID), trainer,
                          "--steps", str(args.steps), "--device", args.device],
                         env=env, capture_output=True, text=True)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"step benchmark of {trainer} failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def timed_run(args_list, env, log):
    start = time.perf_counter()
    pipeline.run(args_list, env, log_file=log, echo=False)
    return time.perf_counter() - start


def quality_and_inference(trainer, env, test_folder, workdir, args, log):
    train_env = pipeline.nnunet_environment(workdir, {"num_epochs": args.epochs,
                                                      "num_iterations_per_epoch": args.iterations,
                                                      "num_val_iterations_per_epoch": 2,
                                                      "final_validation": False}, base=env)
    start = time.perf_counter()
    pipeline.train(DATASET_ID, CONFIGURATION, 0, trainer, train_env, device=args.device, log_file=log, echo=False)
    train_s = time.perf_counter() - start
    predict_s = timed_run(pipeline.nnunet_command("nnUNetv2_predict") + [
        "-i", str(test_folder / "imagesTr"), "-o", str(workdir / "predict" / trainer), "-d", str(DATASET_ID),
        "-c", CONFIGURATION, "-tr", trainer, "-f", "0", "-device", args.device, "-npp", "1", "-nps", "1"],
        train_env, log)
    evaluation = workdir / "evaluation" / trainer
    evaluate_s = timed_run([sys.executable, "-m", "nnunet_prism.cli", "evaluate", "-d", str(DATASET_ID), "-c",
                            CONFIGURATION, "-tr", trainer, "-f", "0", "-i", str(test_folder / "imagesTr"),
                            "-l", str(test_folder / "labelsTr"), "-o", str(evaluation), "-device", args.device],
                           train_env, log)
    return {"train_s": train_s, "predict_s": predict_s, "evaluate_15_subsets_s": evaluate_s,
            "evaluate_over_predict": evaluate_s / predict_s}


def add_quality(report, evaluations, workdir) -> None:
    """Mean and worst Dice over the 15 subsets and the most-missing modality alone, per trainer,
    from one side-by-side comparison (also written as comparison.md/.csv/_dice.png)."""
    from nnunet_prism.evaluation.comparison import TrainerComparison, write_comparison
    from nnunet_prism.evaluation.results import SubsetResults

    comparison = TrainerComparison.from_results({t: SubsetResults.load_json(folder / "subsets.json")
                                                 for t, folder in evaluations.items()})
    write_comparison(comparison, workdir, title=f"Dice (%) per modality subset after {report['budget']}")
    most_missing = comparison.modalities[-1]  # T2, missing rate 0.8
    for trainer, summary in comparison.summary().items():
        report["quality"][trainer].update({
            "mean_dice_15_subsets": summary["mean_dice"], "worst_subset": summary["worst_subset"],
            "worst_subset_dice": summary["worst_dice"], "most_missing_alone": most_missing,
            "most_missing_alone_dice": summary["dice_per_subset"][most_missing]})


def same_batches(step_results: dict) -> bool:
    """Whether every trainer's step time was measured on the same training cases."""
    keys = [r.get("batch_keys") for r in step_results.values()]
    return all(k == keys[0] for k in keys)


def summary_markdown(report) -> str:
    lines = [f"Machine: {report['machine']}; device {report['device']}; "
             f"{report['date']}; command: `{report['command']}`", ""]
    base = report["step"][BASELINE]
    lines += ["| trainer | step time | ratio | modalities / sample | peak memory | ratio | params | ratio | "
              "patch inference | ratio | 15 subsets / patch |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in report["step"].items():
        subsets = f"{r['patch_all_subsets_s'] / r['patch_forward_s']:.2f}x" if "patch_all_subsets_s" in r else "–"
        lines.append(f"| {name} | {r['step_s']:.2f} s | {r['step_s'] / base['step_s']:.2f}x | "
                     f"{r.get('present_modalities_per_sample', float('nan')):.2f} | "
                     f"{r['peak_memory_mb']:.0f} MB | {r['peak_memory_mb'] / base['peak_memory_mb']:.2f}x | "
                     f"{r['parameters'] / 1e6:.2f} M | {r['parameters'] / base['parameters']:.2f}x | "
                     f"{r['patch_forward_s'] * 1000:.0f} ms | {r['patch_forward_s'] / base['patch_forward_s']:.2f}x | "
                     f"{subsets} |")
    batches = "the same cases for every trainer" if same_batches(report["step"]) else \
        "NOT the same cases for every trainer: compare with care"
    lines += ["", f"Step time: mean over {base['steps']} training batches ({batches}); "
                  "medians and every step's time are in results.json."]
    if report.get("quality"):
        q = report["quality"]
        lines += ["", f"Quality after {report['budget']} (same for every trainer), "
                      f"{report['test_cases']} complete held-out cases; Dice averaged over regions:", "",
                  "| trainer | mean Dice (15 subsets) | worst subset | most-missing alone | "
                  "evaluate 15 subsets / nnUNetv2_predict |", "|---|---|---|---|---|"]
        for name, r in q.items():
            lines.append(f"| {name} | {r['mean_dice_15_subsets']:.3f} | {r['worst_subset']} {r['worst_subset_dice']:.3f} | "
                         f"{r['most_missing_alone']} {r['most_missing_alone_dice']:.3f} | "
                         f"{r['evaluate_over_predict']:.2f}x ({r['evaluate_15_subsets_s']:.0f} s / {r['predict_s']:.0f} s) |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=str(REPO / "benchmarks" / "output"))
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--trainers", nargs="+", default=TRAINERS)
    parser.add_argument("--steps", type=int, default=12,
                        help="training steps timed per trainer (different batches; the mean is reported)")
    parser.add_argument("--num-cases", type=int, default=16)
    parser.add_argument("--test-cases", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--skip-quality", action="store_true")
    args = parser.parse_args()

    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "benchmark_log.txt"
    env = pipeline.nnunet_environment(workdir)
    env["nnUNet_n_proc_DA"] = env.get("nnUNet_n_proc_DA", "0" if args.device == "cpu" else "8")
    print(f"preparing the synthetic incomplete set in {workdir} ...", flush=True)
    prepare_synthetic_dataset(workdir, DATASET_ID, env, num_cases=args.num_cases, num_test_cases=0,
                              log_file=log, echo=False)
    test_folder = prepare_complete_test_set(workdir, TEST_DATASET_ID, env, num_cases=args.test_cases)

    report = {"machine": machine(), "device": args.device, "date": time.strftime("%Y-%m-%d"),
              "command": "python " + " ".join(sys.argv), "step": {}, "quality": {},
              "budget": f"{args.epochs} epochs x {args.iterations} iterations", "test_cases": args.test_cases}
    for trainer in [BASELINE] + args.trainers:
        print(f"(a) step benchmark: {trainer}", flush=True)
        report["step"][trainer] = step_benchmark(trainer, env, args)
    if not args.skip_quality:
        for trainer in [QUALITY_BASELINE] + args.trainers:
            print(f"(b, c) train {report['budget']}, predict and evaluate: {trainer}", flush=True)
            report["quality"][trainer] = quality_and_inference(trainer, env, Path(test_folder), workdir, args, log)
        add_quality(report, {t: workdir / "evaluation" / t for t in report["quality"]}, workdir)
    (workdir / "results.json").write_text(json.dumps(report, indent=2))
    summary = summary_markdown(report)
    (workdir / "summary.md").write_text(summary)
    print(summary)
    print(f"written: {workdir / 'results.json'}, {workdir / 'summary.md'}")


if __name__ == "__main__":
    main()
