"""M2DN benchmark on the synthetic BraTS-like set (complete cases), everything measured.

    python benchmarks/m2dn.py [--workdir /tmp/m2dn_bench] [--budget 300] [--eval-steps 10]
                              [--seg-epochs 3 --seg-iterations 20] [--skip-dice]

(a) time per sampled slice by number of DDIM steps (batch of 16 slices of a held-out case);
(b) after a fixed CPU training budget (seconds) on fold 0: PSNR/SSIM per missing subset on the
    fold's held-out cases for M2DN, zero fill and the mean of the present modalities (all in
    nnU-Net's normalised space, see nnunet_prism/m2dn/evaluation.py);
(c) 15-subset Dice (mean over WT/TC/ET) of plain nnU-Net (nnUNetTrainerPrismBase: nnUNetTrainer with
    a short, overridable schedule; identical steps on complete data; same fold) on
    the same held-out cases with absent modalities zero-filled vs imputed by M2DN (no test-time
    mirroring in either, to keep it short).
Writes results.json and summary.md into the work folder and prints the summary.
"""
import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: nnUNetTrainer with the schedule overridable (plain nnUNetTrainer ignores nnUNet_prism_hparams and
#: would train 1000 x 250 iterations); on complete data its steps are nnUNetTrainer's own.
SEG_TRAINER = "nnUNetTrainerPrismBase"
pipeline = None  # nnunet_prism.pipeline, imported in main() once nnU-Net's folders are set
DATASET_ID = 988
CONFIGURATION = "3d_fullres"


def machine(threads) -> str:
    import os

    import torch
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return f"{platform.machine()}, {os.cpu_count()} cores ({threads} torch thread(s)), {device}, torch {torch.__version__}"


def prepare(workdir: Path, env, args):
    from dataset_conversion.phantom_dataset import prepare_synthetic_dataset

    pre = workdir / "nnUNet_preprocessed"
    if args.reuse and any(pre.glob(f"Dataset{DATASET_ID}_*/nnUNetPlans_3d_fullres/*.pkl")):
        return next((workdir / "nnUNet_raw").glob(f"Dataset{DATASET_ID}_*"))
    return prepare_synthetic_dataset(workdir, DATASET_ID, env, num_cases=args.num_cases, num_test_cases=0,
                                     shape=(args.shape,) * 3, missing_rates=None, name="SynM2DN",
                                     log_file=workdir / "benchmark_log.txt", echo=False)


def train_m2dn(args):
    from nnunet_prism.m2dn.training import M2DNTrainer, TrainingOptions

    probe = M2DNTrainer(DATASET_ID, 0, CONFIGURATION, options=TrainingOptions(iterations=10 ** 6))
    probe.train_step()
    start = time.perf_counter()
    for _ in range(10):
        probe.train_step()
    per_it = (time.perf_counter() - start) / 10
    iterations = max(int(args.budget / per_it), 10)
    options = TrainingOptions(iterations=iterations, save_every=max(iterations // 4, 1), log_every=max(iterations // 20, 1))
    trainer = M2DNTrainer(DATASET_ID, 0, CONFIGURATION, options=options)
    start = time.perf_counter()
    checkpoint = trainer.run(max_seconds=1.25 * args.budget)
    return checkpoint, {"iterations": trainer.iteration, "planned_iterations": iterations,
                        "train_s": time.perf_counter() - start, "s_per_iteration_probe": per_it,
                        "final_loss": trainer.losses[-1][1] if trainer.losses else None}


def sampling_times(network, diffusion, reader, case, steps_list, batch=16):
    import torch

    images, _ = reader.volume(case)
    x = torch.from_numpy(np.ascontiguousarray(images[:, :batch].transpose(1, 0, 2, 3)))
    present = torch.zeros(x.shape[0], x.shape[1], dtype=torch.bool)
    present[:, 0] = True
    out = {}
    for steps in steps_list:
        times = []
        for repeat in range(2):
            start = time.perf_counter()
            diffusion.sample(network, x, present, num_steps=steps, seed=repeat)
            times.append((time.perf_counter() - start) / x.shape[0])
        out[steps] = min(times)
    return out, list(x.shape[2:])


def synthesis_quality(network, diffusion, reader, held_out, modalities, args, workdir):
    from nnunet_prism.m2dn.evaluation import evaluate_cases, summarise, write_tables

    rows = evaluate_cases(network, diffusion, reader, held_out, args.eval_steps, 0, progress=lambda s: None)
    table = summarise(rows, modalities)
    write_tables(table, rows, workdir / "synthesis", f"M2DN vs baselines, {args.eval_steps} DDIM steps")
    return table


def segmentation_dice(checkpoint, held_out, raw_folder: Path, workdir: Path, args, env):
    """Mean Dice over regions and held-out cases per subset, absent channels zero vs M2DN-imputed."""
    import SimpleITK as sitk
    import torch
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    from nnunet_prism.evaluation.metrics import evaluate_case, targets_from_dataset_json
    from nnunet_prism.modalities import all_subsets, subset_name
    from nnunet_prism.m2dn.imputation import impute_folder

    train_env = pipeline.nnunet_environment(workdir, {"num_epochs": args.seg_epochs,
                                                      "num_iterations_per_epoch": args.seg_iterations,
                                                      "num_val_iterations_per_epoch": 2}, base=env)
    start = time.perf_counter()
    pipeline.train(DATASET_ID, CONFIGURATION, 0, SEG_TRAINER, train_env, device="cpu",
                   log_file=workdir / "benchmark_log.txt", echo=False)
    seg_train_s = time.perf_counter() - start
    dataset_json = json.loads((raw_folder / "dataset.json").read_text())
    names = [dataset_json["channel_names"][k] for k in sorted(dataset_json["channel_names"], key=int)]
    model = next((workdir / "nnUNet_results").glob(f"Dataset{DATASET_ID}_*/{SEG_TRAINER}__nnUNetPlans__{CONFIGURATION}"))
    predictor = nnUNetPredictor(use_mirroring=False, perform_everything_on_device=False, device=torch.device("cpu"),
                                verbose=False, verbose_preprocessing=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(model), (0,), "checkpoint_final.pth")
    targets = targets_from_dataset_json(dataset_json)
    io = SimpleITKIO()
    ending = dataset_json["file_ending"]
    results = []
    for subset in all_subsets(len(names)):
        row = {"subset": subset_name(subset, names), "zero fill": [], "M2DN imputed": []}
        folder = workdir / "subsets" / row["subset"]
        shutil.rmtree(folder, ignore_errors=True)
        (folder / "in").mkdir(parents=True)
        for case in held_out:
            for c in subset:
                shutil.copyfile(raw_folder / "imagesTr" / f"{case}_{c:04d}{ending}", folder / "in" / f"{case}_{c:04d}{ending}")
        if len(subset) < len(names):
            impute_folder(folder / "in", folder / "imputed", checkpoint, args.eval_steps, 0, progress=lambda s: None)
        for case in held_out:
            files = [str(raw_folder / "imagesTr" / f"{case}_{c:04d}{ending}") for c in range(len(names))]
            data, props = io.read_images(files)
            zero = data.copy()
            zero[[c for c in range(len(names)) if c not in subset]] = 0
            imputed = data if len(subset) == len(names) else io.read_images(
                [str(folder / "imputed" / f"{case}_{c:04d}{ending}") for c in range(len(names))])[0]
            ref = sitk.GetArrayFromImage(sitk.ReadImage(str(raw_folder / "labelsTr" / f"{case}{ending}")))
            for key, x in (("zero fill", zero), ("M2DN imputed", imputed)):
                seg = predictor.predict_single_npy_array(x.astype(np.float32), props, None, None, False)
                scores = evaluate_case(ref, seg, targets, props["spacing"])
                row[key].append(np.nanmean([v["Dice"] for v in scores.values()]))
        results.append({"subset": row["subset"], "dice_zero_fill": float(np.nanmean(row["zero fill"])),
                        "dice_m2dn_imputed": float(np.nanmean(row["M2DN imputed"]))})
    return results, seg_train_s


def summary_markdown(report) -> str:
    lines = [f"Machine: {report['machine']}; {report['date']}; command: `{report['command']}`", "",
             f"M2DN training: {report['m2dn']['iterations']} iterations in {report['m2dn']['train_s']:.0f} s "
             f"(budget {report['budget_s']} s), final loss {report['m2dn']['final_loss']:.4f}; "
             f"{len(report['held_out'])} held-out cases ({', '.join(report['held_out'])}).", "",
             f"(a) sampling time per slice ({report['slice_shape'][0]}x{report['slice_shape'][1]}, batch 16):", "",
             "| DDIM steps | ms / slice |", "|---|---|"]
    lines += [f"| {s} | {t * 1000:.1f} |" for s, t in report["sampling_s_per_slice"].items()]
    lines += ["", f"(b) synthesis quality ({report['eval_steps']} DDIM steps), mean over missing subsets:", "",
              "| method | PSNR (dB) | SSIM |", "|---|---|---|"]
    avg = report["synthesis"][-1]
    for method in ("M2DN", "zero fill", "mean of present"):
        lines.append(f"| {method} | {avg[f'PSNR {method}']:.2f} | {avg[f'SSIM {method}']:.4f} |")
    lines += ["", "Per missing subset: synthesis/synthesis_metrics.md"]
    if report.get("dice"):
        lines += ["", f"(c) {SEG_TRAINER} = nnUNetTrainer ({report['seg_budget']}, trained in {report['seg_train_s']:.0f} s), "
                      f"Dice mean over WT/TC/ET and held-out cases:", "",
                  "| present subset | zero fill | M2DN imputed |", "|---|---|---|"]
        lines += [f"| {r['subset']} | {r['dice_zero_fill']:.3f} | {r['dice_m2dn_imputed']:.3f} |" for r in report["dice"]]
        lines.append(f"| **mean of 15** | {np.mean([r['dice_zero_fill'] for r in report['dice']]):.3f} | "
                     f"{np.mean([r['dice_m2dn_imputed'] for r in report['dice']]):.3f} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="/tmp/m2dn_bench")
    parser.add_argument("--budget", type=float, default=300, help="M2DN CPU training budget in seconds")
    parser.add_argument("--num-cases", type=int, default=12)
    parser.add_argument("--shape", type=int, default=40)
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 5, 10, 25, 50])
    parser.add_argument("--eval-steps", type=int, default=10)
    parser.add_argument("--seg-epochs", type=int, default=3)
    parser.add_argument("--seg-iterations", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: stable timings on a busy CPU)")
    parser.add_argument("--skip-dice", action="store_true")
    parser.add_argument("--reuse", action="store_true", help="reuse the preprocessed set in --workdir")
    args = parser.parse_args()

    import os

    workdir = Path(args.workdir).resolve()
    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):  # nnU-Net reads them once, at import
        (workdir / key).mkdir(parents=True, exist_ok=True)
        os.environ[key] = str(workdir / key)
    import torch
    global pipeline
    from nnunet_prism import pipeline
    torch.set_num_threads(args.threads)
    env = pipeline.nnunet_environment(workdir)
    env.setdefault("nnUNet_n_proc_DA", "0")
    env["nnUNet_def_n_proc"] = "1"

    print("preparing the synthetic complete set ...", flush=True)
    raw_folder = prepare(workdir, env, args)
    report = {"machine": machine(args.threads), "date": time.strftime("%Y-%m-%d"),
              "command": "python " + " ".join(sys.argv), "budget_s": args.budget, "eval_steps": args.eval_steps}
    print(f"(b) training M2DN for {args.budget:.0f} s ...", flush=True)
    checkpoint, report["m2dn"] = train_m2dn(args)

    from nnunet_prism.m2dn.data import CaseReader, open_preprocessed
    from nnunet_prism.m2dn.training import load_model
    network, diffusion, config = load_model(checkpoint)
    pre = open_preprocessed(DATASET_ID, CONFIGURATION)
    held_out = config["held_out"]
    report["held_out"] = held_out
    reader = CaseReader(pre, held_out)
    print("(a) sampling time by step count ...", flush=True)
    times, report["slice_shape"] = sampling_times(network, diffusion, reader, held_out[0], args.steps)
    report["sampling_s_per_slice"] = {str(k): v for k, v in times.items()}
    print("(b) PSNR/SSIM on held-out cases ...", flush=True)
    report["synthesis"] = synthesis_quality(network, diffusion, reader, held_out, config["modalities"], args, workdir)
    if not args.skip_dice:
        print("(c) nnUNetTrainer Dice on zero-filled vs imputed inputs ...", flush=True)
        report["seg_budget"] = f"{args.seg_epochs} epochs x {args.seg_iterations} iterations"
        report["dice"], report["seg_train_s"] = segmentation_dice(checkpoint, held_out, Path(raw_folder), workdir, args, env)
    (workdir / "results.json").write_text(json.dumps(report, indent=2, default=str))
    summary = summary_markdown(report)
    (workdir / "summary.md").write_text(summary)
    print(summary)


if __name__ == "__main__":
    main()
