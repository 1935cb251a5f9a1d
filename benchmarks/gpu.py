"""Every trainer on nnU-Net's default GPU path, compiled and not: seconds per training iteration
after warm-up with torch.compile (nnU-Net's default on CUDA) and with ``nnUNet_compile=f``, the
time spent compiling, the graphs dynamo compiled (in the warm-up and after it) and its graph
breaks, the peak memory of the AMP steps, and each ratio to nnU-Net's own ``nnUNetTrainer`` in
the same run. Prints a Markdown table headed by the GPU, torch and nnU-Net versions and the date.

    python benchmarks/gpu.py -d 990 [-c 3d_fullres] [--trainers ...] [--warmup 3] [--iterations 10]
                             [--modes compiled eager] [--json gpu.json [--append]]
    python benchmarks/gpu.py -d ID --device cpu --backend eager --iterations 1    # CPU smoke run

Each (trainer, mode) runs in a process of its own (its own dynamo caches and peak memory; an
out-of-memory or a crash is one row, ``--timeout-s`` bounds it). The batches are drawn before the
timing (numpy seeded per batch, as ``trainer_step.py``: with ``nnUNet_n_proc_DA=0`` every trainer
gets the same cases), so data loading is not timed. The time per iteration is the mean over the
timed steps in which dynamo compiled nothing; the compile time is what the steps that did compile
took beyond that mean. ``--json`` writes the rows after every process, ``--append`` adds them to
an existing file (several calls, one table). ``--device cpu`` forces nnU-Net's compile path on a
CPU (nnU-Net compiles on CUDA only) and ``--backend eager`` makes dynamo trace without building
kernels: the smoke run of this script and of the trainers' compile path (tests/e2e/test_e2e_gpu_benchmark.py).
"""
import argparse
import contextlib
import datetime
import functools
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

TRAINERS = ["nnUNetTrainer", "nnUNetTrainerModalityDropout", "nnUNetTrainerMissingModality", "nnUNetTrainerPRISM",
            "nnUNetTrainerShaSpec", "nnUNetTrainerGMD", "nnUNetTrainerDS"]
BASELINE = "nnUNetTrainer"
MODES = ("compiled", "eager")
#: issue 24: compiled s/it over nnUNetTrainer's compiled s/it, nnU-Net's defaults (AMP), same plans
TARGETS = {"nnUNetTrainerMissingModality": 1.5, "nnUNetTrainerShaSpec": 1.5, "nnUNetTrainerDS": 1.5,
           "nnUNetTrainerPRISM": 2.0, "nnUNetTrainerGMD": 2.5}
RESULT = "GPU-BENCHMARK-RESULT "


# -- one (trainer, mode), in its own process ------------------------------------------------------
@contextlib.contextmanager
def compile_backend(backend: str):
    """Every ``torch.compile`` in here (nnU-Net's, the regions', the Dice term's) with ``backend``."""
    import torch
    if backend == "inductor":
        yield
        return
    original = torch.compile
    torch.compile = functools.partial(original, backend=backend)
    try:
        yield
    finally:
        torch.compile = original


def measure(dataset: str, configuration: str, name: str, mode: str, device_name: str, backend: str,
            warmup: int, iterations: int) -> dict:
    """Warm-up and timed training steps of one trainer, then one validation step (its graphs
    and breaks count too)."""
    import numpy
    import torch

    from nnunet_prism.training.compilation import DynamoCounts, compile_mode
    from nnunet_prism.training.trial import log_lines, trial_trainer
    from trainer_step import peak_memory_mb, present_modalities, step_times

    os.environ["nnUNet_compile"] = "t" if mode == "compiled" else "f"
    device = torch.device(device_name)
    force = True if mode == "compiled" and device.type != "cuda" else None  # nnU-Net compiles on CUDA only
    with compile_backend(backend), trial_trainer(dataset, configuration, name, device, force) as trainer:
        batches = []
        for i in range(warmup + iterations):
            numpy.random.seed(i)
            batches.append(next(trainer.dataloader_train))
        trainer.network.train()
        start = warmed = DynamoCounts.now()
        steps = []
        for i, batch in enumerate(batches):
            if i == warmup:
                warmed = DynamoCounts.now()
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
            before = DynamoCounts.now()
            seconds = step_times(lambda: trainer.train_step(batch), device, 1)[0]
            steps.append({"seconds": seconds, "graphs": (DynamoCounts.now() - before).graphs})
        peak = peak_memory_mb(device)
        timed_end = DynamoCounts.now()
        trainer.network.eval()
        with torch.no_grad():
            validation = next(trainer.dataloader_val)
            trainer.validation_step(validation)
            end = DynamoCounts.now()
            difference = compiled_minus_eager(trainer, validation) if mode == "compiled" else None
        return {"trainer": name, "mode": mode, "compiled": compile_mode(trainer.network),
                "log_lines": log_lines(trainer, "torch.compile: "), "steps": steps, "warmup": warmup,
                "peak_memory_mb": peak, "graphs_warmup": (warmed - start).graphs,
                "graphs_later": (timed_end - warmed).graphs, "graphs_validation": (end - timed_end).graphs,
                "graph_breaks": (end - start).graph_breaks, "break_reasons": DynamoCounts.break_reasons()[:5],
                "relative_difference_to_eager": difference,
                "present_modalities_per_sample": present_modalities(trainer, batches),
                "patch_size": list(trainer.configuration_manager.patch_size),
                "batch_size": trainer.configuration_manager.batch_size}


def compiled_minus_eager(trainer, batch) -> float:
    """max |compiled - eager| / max |eager| of the full-resolution validation logits of one batch,
    under the validation step's autocast (float16 on CUDA: the graphs already compiled, no new
    ones): the same network with every torch.compile ignored
    (``torch.compiler.set_stance("force_eager")``) is the reference."""
    import torch

    from nnunet_prism.deep_supervision import full_resolution

    def logits():
        if hasattr(trainer, "step_inputs"):  # ours: the modality mask and zeroed channels of the step
            out = trainer.forward(trainer.step_inputs(batch, training=False), training=False)
        else:
            out = trainer.network(batch["data"].to(trainer.device))
        return full_resolution(getattr(out, "fused", out)).float()

    amp = torch.autocast(trainer.device.type) if trainer.device.type == "cuda" else contextlib.nullcontext()
    with amp:
        compiled = logits()
        with torch.compiler.set_stance("force_eager"):
            eager = logits()
    return float((compiled - eager).abs().max() / eager.abs().max().clamp(min=1e-12))


# -- summary ----------------------------------------------------------------------------------------
def summarise(row: dict) -> dict:
    """Seconds per iteration (mean over the timed steps that compiled nothing) and compile time
    (what the steps that compiled took beyond it) of one measured row."""
    timed_steps = row["steps"][row["warmup"]:]
    quiet = [s["seconds"] for s in timed_steps if s["graphs"] == 0]
    per_iteration = sum(quiet) / len(quiet) if quiet else float("nan")
    compiling = [s["seconds"] for s in row["steps"] if s["graphs"] > 0]
    compile_s = sum(s - per_iteration for s in compiling) if quiet else float("nan")
    return {"s_per_it": per_iteration, "compile_s": compile_s,
            "timed_steps": len(timed_steps), "timed_steps_compiling": len(timed_steps) - len(quiet)}


def ratio(rows: dict, trainer: str, mode: str) -> float:
    """s/it of ``trainer`` over nnUNetTrainer's in the same mode (NaN when either is missing)."""
    own, base = rows.get((trainer, mode)), rows.get((BASELINE, mode))
    if not own or not base or "error" in own or "error" in base:
        return float("nan")
    return summarise(own)["s_per_it"] / summarise(base)["s_per_it"]


def _cell(value: float, fmt: str, unit: str = "") -> str:
    return "–" if value is None or value != value else format(value, fmt) + unit


def table_row(trainer: str, rows: dict) -> str:
    """One trainer's line: its compiled and eager rows side by side, ratios to nnUNetTrainer."""
    compiled, eager = rows.get((trainer, "compiled")), rows.get((trainer, "eager"))
    failed = [f"{mode}: {row['error']}" for mode, row in (("compiled", compiled), ("eager", eager))
              if row and "error" in row]
    if failed:
        return f"| {trainer} | FAILED: {'; '.join(failed)} |" + " |" * 11
    c, e = (summarise(row) if row else {} for row in (compiled, eager))
    r, target = ratio(rows, trainer, "compiled"), TARGETS.get(trainer)
    verdict = "" if target is None or r != r else f" ({'met' if r <= target else 'NOT met'}: <= {target})"
    cells = [trainer, compiled["compiled"] if compiled else "–",
             _cell(c.get("s_per_it"), ".3f", " s"), _cell(e.get("s_per_it"), ".3f", " s"),
             _cell(c["s_per_it"] / e["s_per_it"] if c and e else None, ".2f", "x"),
             _cell(r, ".2f", "x") + verdict, _cell(ratio(rows, trainer, "eager"), ".2f", "x"),
             _cell(c.get("compile_s"), ".0f", " s"),
             " / ".join(str(compiled[k]) for k in ("graphs_warmup", "graphs_later", "graphs_validation"))
             if compiled else "–", str(compiled["graph_breaks"]) if compiled else "–",
             _cell(compiled.get("relative_difference_to_eager") if compiled else None, ".1e"),
             " / ".join(_cell(row["peak_memory_mb"] / 1024 if row else None, ".2f", " GiB") for row in (compiled, eager)),
             _cell((compiled or eager)["present_modalities_per_sample"], ".2f")]
    return "| " + " | ".join(cells) + " |"


def markdown(results: dict) -> str:
    """The table of ``results`` ({"header": {...}, "rows": [row, ...]}), trainers in TRAINERS' order."""
    h = results["header"]
    rows = {(r["trainer"], r["mode"]): r for r in results["rows"]}
    first = next((r for r in results["rows"] if "error" not in r), {"patch_size": ["?"], "batch_size": "?"})
    measured = {trainer for trainer, _ in rows}
    trainers = [t for t in TRAINERS if t in measured] + sorted(measured - set(TRAINERS))
    lines = [f"{h['device']}; torch {h['torch']}; nnU-Net {h['nnunet']}; {h['date']}; dataset {h['dataset']} "
             f"{h['configuration']} (patch {'x'.join(map(str, first['patch_size']))}, batch {first['batch_size']}); "
             f"command: `{h['command']}`", "",
             "| trainer | compiled | s/it compiled | s/it eager | compiled / eager | ratio to nnUNetTrainer, compiled "
             "(target) | ratio, eager | compile time | graphs: warm-up / later / validation | graph breaks | "
             "logits vs eager | peak memory compiled / eager | modalities / sample |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [table_row(trainer, rows) for trainer in trainers]
    lines += ["", "s/it: mean over the timed steps in which dynamo compiled nothing (after "
              f"{h['warmup']} warm-up steps, {h['iterations']} timed); compile time: what the steps that compiled "
              "took beyond that; graphs: compiled by dynamo in the warm-up / in the timed steps / in one validation "
              "step; logits vs eager: max |compiled - eager| / max |eager| of one validation batch's logits "
              f"({h['precision']}). Peak memory: {h['memory']}. Ratios: to nnUNetTrainer in the same mode and run; "
              "targets: issue 24."]
    return "\n".join(lines) + "\n"


def header(args) -> dict:
    import importlib.metadata

    import torch
    if args.device == "cuda":
        device = torch.cuda.get_device_name(0)
        device += f" ({torch.cuda.get_device_properties(0).total_memory / 2 ** 30:.0f} GiB)"
        memory = "torch.cuda.max_memory_allocated over the timed AMP steps"
        precision = "under autocast, float16"
    else:
        device = f"CPU ({platform.machine()}, {os.cpu_count()} cores), backend {args.backend}"
        memory = "the process's resident peak (CPU)"
        precision = "float32"
    return {"device": device, "torch": torch.__version__, "nnunet": importlib.metadata.version("nnunetv2"),
            "date": datetime.date.today().isoformat(), "dataset": args.dataset, "configuration": args.configuration,
            "warmup": args.warmup, "iterations": args.iterations, "memory": memory, "precision": precision,
            "command": "python " + " ".join([Path(sys.argv[0]).name if i == 0 else a for i, a in enumerate(sys.argv)])}


# -- driver -----------------------------------------------------------------------------------------
def run_one(args, trainer: str, mode: str) -> dict:
    """``measure`` in a fresh process; an error or a timeout becomes a row with ``error``."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", trainer, mode, "-d", args.dataset,
               "-c", args.configuration, "--device", args.device, "--backend", args.backend,
               "--warmup", str(args.warmup), "--iterations", str(args.iterations)]
    # a session of its own: a timeout ends the worker and its data-augmentation processes together
    worker = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        stdout, stderr = worker.communicate(timeout=args.timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.communicate()
        return {"trainer": trainer, "mode": mode, "error": f"timed out after {args.timeout_s} s"}
    found = [line for line in stdout.splitlines() if line.startswith(RESULT)]
    if worker.returncode != 0 or not found:
        lines = (stderr or stdout).strip().splitlines()
        error = next((line for line in reversed(lines) if "Error" in line), lines[-1] if lines else f"exit {worker.returncode}")
        return {"trainer": trainer, "mode": mode, "error": error.strip()[:200]}
    return json.loads(found[-1][len(RESULT):])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-d", dest="dataset", required=True, help="dataset name or ID (preprocessed)")
    parser.add_argument("-c", dest="configuration", default="3d_fullres")
    parser.add_argument("--trainers", nargs="+", default=TRAINERS)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--backend", default="inductor", help="torch.compile backend (inductor: nnU-Net's)")
    parser.add_argument("--timeout-s", type=int, default=480, help="per trainer and mode")
    parser.add_argument("--budget-s", type=int, default=None,
                        help="start no new trainer or mode after this many seconds (the rest: 'not run')")
    parser.add_argument("--json", type=Path, default=None, help="write the rows here after every trainer")
    parser.add_argument("--append", action="store_true", help="add to the rows already in --json")
    parser.add_argument("--worker", nargs=2, metavar=("TRAINER", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        row = measure(args.dataset, args.configuration, *args.worker, args.device, args.backend, args.warmup,
                      args.iterations)
        print(RESULT + json.dumps(row), flush=True)
        return 0
    results = {"header": header(args), "rows": []}
    if args.append and args.json and args.json.is_file():
        results["rows"] = json.loads(args.json.read_text())["rows"]
    start = time.perf_counter()
    for trainer in ([BASELINE] if BASELINE not in args.trainers else []) + args.trainers:
        for mode in args.modes:
            if any((r["trainer"], r["mode"]) == (trainer, mode) and "error" not in r for r in results["rows"]):
                continue  # measured by an earlier call (--append)
            results["rows"] = [r for r in results["rows"] if (r["trainer"], r["mode"]) != (trainer, mode)]
            if args.budget_s is not None and time.perf_counter() - start > args.budget_s:
                row = {"trainer": trainer, "mode": mode, "error": f"not run (--budget-s {args.budget_s})"}
            else:
                row = run_one(args, trainer, mode)
            results["rows"].append(row)
            shown = row.get("error") or f"{summarise(row)['s_per_it']:.3f} s/it, {row['compiled']}"
            print(f"{trainer} {mode}: {shown}", flush=True)
            if args.json:
                args.json.write_text(json.dumps(results, indent=1))
    print(markdown(results))
    return 1 if any("error" in r for r in results["rows"]) else 0


if __name__ == "__main__":
    sys.exit(main())
