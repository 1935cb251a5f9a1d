"""GMD's cost in one run: training step time and peak memory of nnUNetTrainerGMD for k = 2, 5 and
all 15 subsets, against plain nnUNetTrainer and against the same DS network without GMD
(nnUNetTrainerDS: the same k = 5 subsets, one summed loss). Target: GMD k=5 <= 3x DS.

    python benchmarks/gmd_step.py [--workdir /tmp/gmd_bench] [--steps 3] [--device cpu]

Each configuration runs in its own process through ``benchmarks/trainer_step.py`` (so peak
memory is that configuration's alone; on the CPU it is the process's peak RSS, which includes
the interpreter and torch). Writes ``gmd_step.json`` into the work folder and prints a table.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nnunet_prism import pipeline  # noqa: E402
from dataset_conversion.phantom_dataset import prepare_synthetic_dataset  # noqa: E402

DATASET_ID = 983
#: name -> (trainer, hyperparameters)
CONFIGURATIONS = {
    "nnUNetTrainer": ("nnUNetTrainer", {}),
    "DS, summed loss (k=5)": ("nnUNetTrainerDS", {"gmd_subsets": 5}),
    "GMD k=2": ("nnUNetTrainerGMD", {"gmd_subsets": 2}),
    "GMD k=5": ("nnUNetTrainerGMD", {"gmd_subsets": 5}),
    "GMD k=15 (all)": ("nnUNetTrainerGMD", {"gmd_subsets": "all"}),
}
PLAIN, DS = "nnUNetTrainer", "DS, summed loss (k=5)"


def measure(trainer, hyperparameters, env, args) -> dict:
    run_env = pipeline.nnunet_environment(None, hyperparameters, base=env)
    if not hyperparameters:
        run_env.pop("nnUNet_prism_hparams", None)
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "trainer_step.py"), str(DATASET_ID), trainer,
                          "--steps", str(args.steps), "--device", args.device],
                         env=run_env, capture_output=True, text=True)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"step benchmark of {trainer} {hyperparameters} failed:\n"
                           f"{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def table(results: dict) -> str:
    plain, ds = results[PLAIN], results[DS]
    rows = ["| configuration | step time | / nnUNetTrainer | / DS summed | peak memory | / nnUNetTrainer | / DS summed |",
            "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        rows.append(f"| {name} | {r['step_s']:.2f} s | {r['step_s'] / plain['step_s']:.2f}x | "
                    f"{r['step_s'] / ds['step_s']:.2f}x | {r['peak_memory_mb']:.0f} MB | "
                    f"{r['peak_memory_mb'] / plain['peak_memory_mb']:.2f}x | "
                    f"{r['peak_memory_mb'] / ds['peak_memory_mb']:.2f}x |")
    return "\n".join(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="/tmp/gmd_bench")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per configuration (median)")
    parser.add_argument("--num-cases", type=int, default=8)
    parser.add_argument("--shape", type=int, nargs=3, default=(40, 40, 40))
    args = parser.parse_args()

    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    env = pipeline.nnunet_environment(workdir)
    env.pop("nnUNet_prism_hparams", None)
    env["nnUNet_n_proc_DA"] = env.get("nnUNet_n_proc_DA", "0" if args.device == "cpu" else "8")
    if not list((workdir / "nnUNet_preprocessed").glob(f"Dataset{DATASET_ID:03d}_*/nnUNetPlans_3d_fullres")):
        print(f"preparing the synthetic incomplete set in {workdir} ...", flush=True)
        prepare_synthetic_dataset(workdir, DATASET_ID, env, num_cases=args.num_cases, num_test_cases=0,
                                  shape=args.shape, log_file=workdir / "prepare_log.txt", echo=False)
    results = {}
    for name, (trainer, hyperparameters) in CONFIGURATIONS.items():
        print(f"step benchmark: {name}", flush=True)
        results[name] = measure(trainer, hyperparameters, env, args)
        print(f"  {results[name]['step_s']:.2f} s/step, peak {results[name]['peak_memory_mb']:.0f} MB", flush=True)
    report = {"command": "python " + " ".join(sys.argv), "device": args.device, "steps": args.steps,
              "patch_size": results[PLAIN]["patch_size"], "batch_size": results[PLAIN]["batch_size"],
              "results": results,
              "gmd_k5_over_ds": results["GMD k=5"]["step_s"] / results[DS]["step_s"]}
    (workdir / "gmd_step.json").write_text(json.dumps(report, indent=2))
    print(f"patch {report['patch_size']}, batch {report['batch_size']}, device {args.device}, "
          f"median of {args.steps} steps after one warm-up step")
    print(table(results))
    verdict = "meets" if report["gmd_k5_over_ds"] <= 3 else "misses"
    print(f"GMD k=5 / DS summed = {report['gmd_k5_over_ds']:.2f}x ({verdict} the target of at most 3x)")


if __name__ == "__main__":
    main()
