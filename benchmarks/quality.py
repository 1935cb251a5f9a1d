"""The quality benchmark: which trainer segments best with missing modalities, over several seeds.

    python benchmarks/quality.py [--workdir benchmarks/output/quality] [--device cpu]
                                 [--trainers ...] [--seeds 0 1 2] [--epochs 10 --iterations 100]
    python benchmarks/quality.py --smoke          # 2 trainers, 1 seed, 1 epoch x 5 iterations
    python benchmarks/quality.py --preset 3d      # 3d_fullres: PRISM, MissingModality, ModalityDropout

Every trainer (plain nnU-Net on zero-filled inputs, represented by nnUNetTrainerPrismBase as in
``run.py``: nnUNetTrainer's network and train_step, availability masking, a settable schedule;
then ModalityDropout, MissingModality, PRISM, ShaSpec, GMD) is trained with each seed (the
``seed`` hyperparameter, ``nnUNet_n_proc_DA=0``) through ``nnUNetv2_train`` on one synthetic
incomplete training set (missing rates FLAIR 0.2, T1 0.4, T1c 0.6, T2 0.8, written by the
converter) and scored by ``nnunet_prism evaluate -i IMAGES -l LABELS`` on all 15 modality subsets
of complete held-out cases. The default configuration is nnU-Net's ``2d`` on 40^3 volumes with
12 slices per batch, which fits the 18 runs of 1000 iterations into about 3 hours on a 2-core
CPU (docs/benchmarks.md, "Quality benchmark", says why this measures what 3d_fullres runs would); the
evaluation runs without test-time mirroring unless ``--tta``.

``--preset 3d`` (``PRESET_3D``) is the 3d_fullres benchmark of PRISM against its baseline on whole
tumour: nnU-Net's own 3d_fullres plans (patch and batch as planned) on 48^3 volumes, 40 training
cases with missing rates FLAIR 0.55, T1 0.10, T1c 0.35, T2 0.70 trained on fold ``all``, 6 epochs
x 50 iterations, 12 complete held-out cases; PRISM, MissingModality and ModalityDropout, each pair
compared, also per region (WT, TC, ET). Its own work folder (``benchmarks/output/quality3d``).

Interrupted? Run the same command again: a finished (trainer, seed) has ``runs/<trainer>__seed<k>.json``
and is not redone; a trained but unevaluated one is only evaluated; an interrupted training
continues from its latest checkpoint (``nnUNetv2_train --c``, saved every epoch). The work
folder remembers its data set and schedule (``setup.json``) and refuses other ones.
``--report-only`` trains nothing and reports the finished runs among ``--trainers`` x ``--seeds``
(e.g. ModalityDropout with one seed beside the others' three).

Writes into the work folder: ``results.json`` (every number, per seed; the realised missing rates
of the cases trained on), ``summary.md`` (mean ± std over seeds per trainer and per region; paired
Wilcoxon tests, default: against plain nnU-Net and PRISM against MissingModality, ``--compare
A:B`` others; per subset and pooled, averaged over regions and per region) and
``quality_dice.png`` (per-subset Dice with seed error bars, a panel per region); the statistics
are in ``quality_stats.py``. Runs that are not done yet are listed, and the outputs are written
from the finished ones.
"""
import argparse
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import quality_stats  # noqa: E402
from run import QUALITY_BASELINE, machine  # noqa: E402

from nnunet_prism import pipeline  # noqa: E402
from nnunet_prism.modalities import missing_rates, read_availability  # noqa: E402

TRAINERS = [QUALITY_BASELINE, "nnUNetTrainerModalityDropout", "nnUNetTrainerMissingModality", "nnUNetTrainerPRISM",
            "nnUNetTrainerShaSpec", "nnUNetTrainerGMD"]
# (a, b): a is tested against b; every trainer against plain nnU-Net, and PRISM against its baseline
EXTRA_COMPARISONS = [("nnUNetTrainerPRISM", "nnUNetTrainerMissingModality")]
DATASET_ID, TEST_DATASET_ID = 983, 984
MISSING_RATES = (0.2, 0.4, 0.6, 0.8)  # FLAIR, T1, T1c, T2
PLANS = "nnUNetPlans"
SMOKE = {"trainers": [QUALITY_BASELINE, "nnUNetTrainerPRISM"], "seeds": [0], "epochs": 1, "iterations": 5,
         "val_iterations": 1, "num_cases": 10, "test_cases": 2, "workdir": str(REPO / "benchmarks" / "output" / "quality_smoke")}
#: PRISM against its own network without distillation and against modality dropout, in 3d_fullres
PRESET_3D = {"configuration": "3d_fullres", "shape": (48, 48, 48), "batch_size": 0, "num_cases": 40,
             "test_cases": 12, "missing_rates": (0.55, 0.10, 0.35, 0.70), "fold": "all", "epochs": 6,
             "iterations": 50, "trainers": ["nnUNetTrainerPRISM", "nnUNetTrainerMissingModality",
                                            "nnUNetTrainerModalityDropout"],
             "comparisons": ["nnUNetTrainerPRISM:nnUNetTrainerMissingModality",
                             "nnUNetTrainerPRISM:nnUNetTrainerModalityDropout",
                             "nnUNetTrainerMissingModality:nnUNetTrainerModalityDropout"],
             "workdir": str(REPO / "benchmarks" / "output" / "quality3d")}
PRESETS = {"3d": PRESET_3D}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=str(REPO / "benchmarks" / "output" / "quality"))
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--trainers", nargs="+", default=TRAINERS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=100, help="training iterations per epoch")
    parser.add_argument("--val-iterations", type=int, default=2, help="validation iterations per epoch")
    parser.add_argument("--configuration", default="2d", choices=["2d", "3d_fullres"])
    parser.add_argument("--shape", type=int, nargs=3, default=(40, 40, 40), help="synthetic volume size (z y x)")
    parser.add_argument("--batch-size", type=int, default=12,
                        help="written into the benchmark's own plans for --configuration (0: nnU-Net's choice)")
    parser.add_argument("--num-cases", type=int, default=24, help="labelled training cases (fold 0: 80 %%)")
    parser.add_argument("--missing-rates", type=float, nargs=4, default=MISSING_RATES, metavar="RATE",
                        help="simulated missing rates of the training cases, FLAIR T1 T1c T2")
    parser.add_argument("--fold", type=fold_name, default=0, help="nnU-Net fold to train and evaluate (a number or all)")
    parser.add_argument("--test-cases", type=int, default=8, help="complete held-out cases scored on 15 subsets")
    parser.add_argument("--tta", action="store_true",
                        help="evaluate with nnU-Net's test-time mirroring (4x the evaluation time in 2d; off by default, "
                             "the same for every trainer)")
    parser.add_argument("--compare", dest="comparisons", nargs="+", default=None, metavar="A:B",
                        help="trainer pairs to test (A against B); default: every trainer against plain nnU-Net "
                             "and PRISM against MissingModality")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: the statistics and report of the runs already finished in the work "
                             "folder (the others are listed as not finished), e.g. a trainer with fewer seeds")
    parser.add_argument("--smoke", action="store_true",
                        help="a tiny end-to-end run: " + ", ".join(f"{k}={v}" for k, v in SMOKE.items()))
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="a named set-up; 3d: " + ", ".join(f"{k}={v}" for k, v in PRESET_3D.items()))
    known, _ = parser.parse_known_args(argv)
    if known.preset:
        parser.set_defaults(**PRESETS[known.preset])
    if known.smoke:
        parser.set_defaults(**SMOKE)  # explicit options still win
    args = parser.parse_args(argv)
    args.missing_rates = tuple(args.missing_rates)
    return args


def fold_name(text) -> object:
    """An nnU-Net fold: a number (int) or ``all``."""
    text = str(text).strip()
    if text == "all":
        return "all"
    if text.isdigit():
        return int(text)
    raise argparse.ArgumentTypeError(f"fold '{text}' is neither a number nor 'all'")


def comparison_pairs(trainers, comparisons=None) -> list:
    """(a, b) pairs to test, a against b, among ``trainers``: ``comparisons`` ("A:B") when given,
    else every trainer against plain nnU-Net and PRISM against MissingModality."""
    if comparisons is None:
        pairs = [(t, QUALITY_BASELINE) for t in trainers if t != QUALITY_BASELINE] + EXTRA_COMPARISONS
    else:
        pairs = []
        for text in comparisons:
            a, sep, b = text.partition(":")
            if not sep or not a or not b:
                raise SystemExit(f"--compare: '{text}' is not A:B (two trainer names)")
            pairs.append((a, b))
    return [(a, b) for a, b in pairs if a in trainers and b in trainers]


def training_cases(labelled, fold, splits=None):
    """The cases a fold trains on: every labelled case (``labelled``) for ``all``, else the fold's
    ``train`` list in nnU-Net's ``splits_final.json`` (``splits``, loaded); None while that file is
    not written (nnU-Net writes it when the first training starts)."""
    if fold == "all":
        return sorted(labelled)
    if splits is None:
        return None
    return sorted(splits[int(fold)]["train"])


def realised_missing_rates(raw: Path, preprocessed: Path, fold) -> dict:
    """{"cases": N, "rates": [FR^m]} of the cases ``fold`` trains on, from the availability the
    converter recorded in ``dataset.json``; {} while the fold's split is unknown."""
    dataset_json = json.loads((raw / "dataset.json").read_text())
    labelled = [f.name[:-len(dataset_json["file_ending"])] for f in (raw / "labelsTr").iterdir()
                if f.name.endswith(dataset_json["file_ending"])]
    splits_file = preprocessed / "splits_final.json"
    cases = training_cases(labelled, fold, json.loads(splits_file.read_text()) if splits_file.is_file() else None)
    if not cases:
        return {}
    return {"cases": len(cases), "rates": [float(r) for r in missing_rates(read_availability(dataset_json, cases))]}


def setup_of(args) -> dict:
    """What the work folder's data and schedule are; a rerun must match it to resume."""
    return {"configuration": args.configuration, "shape": list(args.shape), "batch_size": args.batch_size,
            "num_cases": args.num_cases, "test_cases": args.test_cases, "missing_rates": list(args.missing_rates),
            "epochs": args.epochs, "iterations": args.iterations, "val_iterations": args.val_iterations,
            "tta": args.tta, "fold": args.fold}


def args_of_setup(setup: dict, workdir, device: str = "cpu"):
    """The options of the run that wrote ``setup`` (``setup_of``'s inverse): what a later script
    (``prism_ablation.py``) trains and evaluates with to match the benchmark's runs."""
    argv = ["--workdir", str(workdir), "--device", device, "--configuration", setup["configuration"],
            "--shape", *map(str, setup["shape"]), "--batch-size", str(setup["batch_size"]),
            "--num-cases", str(setup["num_cases"]), "--test-cases", str(setup["test_cases"]),
            "--missing-rates", *map(str, setup["missing_rates"]), "--fold", str(setup["fold"]),
            "--epochs", str(setup["epochs"]), "--iterations", str(setup["iterations"]),
            "--val-iterations", str(setup["val_iterations"]), *(["--tta"] if setup["tta"] else [])]
    return parse_args(argv)


#: set-up keys added later, with the value every work folder written before them had
SETUP_DEFAULTS = {"fold": 0}


def stored_setup(done: dict) -> dict:
    """A work folder's ``setup.json`` content with ``SETUP_DEFAULTS`` filled in for older folders."""
    return {**done, "setup": {**SETUP_DEFAULTS, **done["setup"]}}


def set_batch_size(preprocessed: Path, configuration: str, batch_size: int) -> dict:
    """Write ``batch_size`` into the configuration of the benchmark's own plans (nnU-Net reads it
    at training time); returns that configuration's patch and batch size."""
    path = preprocessed / f"{PLANS}.json"
    plans = json.loads(path.read_text())
    config = plans["configurations"][configuration]
    if batch_size:
        config["batch_size"] = batch_size
        path.write_text(json.dumps(plans, indent=1))
    return {"patch_size": config["patch_size"], "batch_size": config["batch_size"]}


def prepare(workdir: Path, env: dict, args) -> dict:
    """The training set (converted with the missing rates, planned, preprocessed for the
    configuration) and the complete held-out cases, once per work folder."""
    from dataset_conversion.phantom_dataset import prepare_complete_test_set, prepare_synthetic_dataset

    marker = workdir / "setup.json"
    wanted = setup_of(args)
    if marker.is_file():
        done = stored_setup(json.loads(marker.read_text()))
        if done["setup"] != wanted:
            raise SystemExit(f"{workdir} holds a run of another set-up:\n  {done['setup']}\nnot\n  {wanted}\n"
                             "give another --workdir, or the options of that run to resume it")
        return done
    log = workdir / "prepare_log.txt"
    print(f"preparing the synthetic incomplete set in {workdir} ...", flush=True)
    raw = prepare_synthetic_dataset(workdir, DATASET_ID, env, num_cases=args.num_cases, num_test_cases=0,
                                    shape=args.shape, missing_rates=args.missing_rates, seed=0, log_file=log, echo=False)
    plan_env = {k: v for k, v in env.items() if k != "nnUNet_n_proc_DA"}  # the planner fails on 0
    if args.configuration != "3d_fullres":  # prepare_synthetic_dataset preprocesses 3d_fullres only
        pipeline.run(pipeline.nnunet_command("nnUNetv2_preprocess") + [
            "-d", str(DATASET_ID), "-c", args.configuration, "-np", "1"], plan_env, log_file=log, echo=False)
    plan = set_batch_size(Path(env["nnUNet_preprocessed"]) / raw.name, args.configuration, args.batch_size)
    heldout = prepare_complete_test_set(workdir, TEST_DATASET_ID, env, num_cases=args.test_cases, shape=args.shape,
                                        seed=777)
    done = {"setup": wanted, "dataset": raw.name, "heldout": str(heldout), **plan}
    marker.write_text(json.dumps(done, indent=1))
    return done


def epoch_times(fold: Path) -> list:
    """nnU-Net's per-epoch wall times ("Epoch time: X s") from the fold's training logs."""
    return [float(t) for log in sorted(fold.glob("training_log_*.txt"))
            for t in re.findall(r"Epoch time: ([0-9.]+) s", log.read_text(errors="replace"))]


def run_one(trainer: str, seed: int, workdir: Path, env: dict, setup: dict, args, variant: str = "",
            extra_hyperparameters: dict = None, test_set: Path = None) -> dict:
    """Train (or continue) and evaluate one (trainer, seed); the marker file says it is done.

    ``variant`` names a run with ``extra_hyperparameters`` on top of the schedule (its own
    results, evaluation and marker); ``test_set``: another raw data set of complete labelled
    cases to score on (default: the benchmark's held-out cases)."""
    name = f"{trainer}__{variant}" if variant else trainer
    marker = workdir / "runs" / f"{name}__seed{seed}.json"
    if marker.is_file():
        return json.loads(marker.read_text())
    hyperparameters = {"num_epochs": args.epochs, "num_iterations_per_epoch": args.iterations,
                       "num_val_iterations_per_epoch": args.val_iterations, "final_validation": False,
                       "save_every": 1, "seed": seed, **(extra_hyperparameters or {})}
    run_env = pipeline.nnunet_environment(workdir, hyperparameters, base=env)
    # nnU-Net's fold folder names neither the seed nor the variant
    results = workdir / "nnUNet_results" / (f"{variant}/seed_{seed}" if variant else f"seed_{seed}")
    results.mkdir(parents=True, exist_ok=True)
    run_env["nnUNet_results"] = str(results)
    fold = results / setup["dataset"] / f"{trainer}__{PLANS}__{args.configuration}" / f"fold_{args.fold}"
    log = workdir / "logs" / f"{name}__seed{seed}.txt"
    log.parent.mkdir(parents=True, exist_ok=True)
    record = {"trainer": trainer, "variant": variant, "hyperparameters": extra_hyperparameters or {}, "seed": seed,
              "resumed": fold.exists(), "train_s": 0.0}
    if not (fold / "checkpoint_final.pth").is_file():
        # --c continues from checkpoint_latest (or starts afresh, nnU-Net says so, when there is none)
        start = time.perf_counter()
        pipeline.train(DATASET_ID, args.configuration, args.fold, trainer, run_env, device=args.device,
                       extra=["--c"] if fold.exists() else [], log_file=log, echo=False)
        record["train_s"] = time.perf_counter() - start
    evaluation = workdir / "evaluation" / name / f"seed_{seed}"
    start = time.perf_counter()
    evaluate(trainer, run_env, Path(setup["heldout"]) if test_set is None else Path(test_set), evaluation, args, log)
    epochs = epoch_times(fold)
    record.update({"evaluate_s": time.perf_counter() - start, "epoch_times_s": epochs,
                   "s_per_iteration": sum(epochs) / (len(epochs) * args.iterations) if epochs else None,
                   "evaluation": str(evaluation.relative_to(workdir)), "fold": str(fold.relative_to(workdir))})
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(record, indent=1))
    return record


def evaluate(trainer: str, run_env: dict, test_set: Path, out: Path, args, log: Path) -> None:
    """``nnunet_prism evaluate`` of ``args.fold`` (from ``run_env``'s nnUNet_results) on a raw set of
    complete labelled cases, all 15 subsets, into ``out``."""
    pipeline.run([sys.executable, "-m", "nnunet_prism.cli", "evaluate", "-d", str(DATASET_ID), "-c",
                  args.configuration, "-tr", trainer, "-f", str(args.fold), "-i", str(test_set / "imagesTr"),
                  "-l", str(test_set / "labelsTr"), "-o", str(out), "-device", args.device,
                  *([] if args.tta else ["--disable_tta"])], run_env, log_file=log, echo=False)


def analyse(workdir: Path, runs: dict, args, report: dict) -> str:
    """Statistics over the finished runs -> report (in place), quality_dice.png; returns summary.md."""
    from nnunet_prism.evaluation.results import SubsetResults

    tables = {}
    for trainer in args.trainers:
        done = {r["seed"]: SubsetResults.load_json(workdir / r["evaluation"] / "subsets.json")
                for r in runs.values() if r["trainer"] == trainer}
        if done:
            tables[trainer] = quality_stats.DiceTable.from_subset_results(trainer, done)
    if not tables:
        return "no finished runs yet\n"
    first = next(iter(tables.values()))
    modalities = SubsetResults.load_json(workdir / next(iter(runs.values()))["evaluation"] / "subsets.json").modalities
    rates = args.missing_rates
    most_missing = modalities[max(range(len(rates)), key=lambda i: rates[i])]
    report["summaries"] = {t: quality_stats.trainer_summary(table, most_missing) for t, table in tables.items()}
    report["comparisons"] = [quality_stats.compare(tables[a], tables[b], region=region)
                             for a, b in comparison_pairs(list(tables), args.comparisons)
                             for region in [None, *first.regions]]
    report["per_case_dice"] = {t: {"seeds": table.seeds, "subsets": table.subsets, "cases": table.cases,
                                   "regions": table.regions, "dice": table.dice.tolist()}
                               for t, table in tables.items()}
    title = (f"Dice per subset after {args.epochs} x {args.iterations} iterations, {args.configuration}, "
             f"seeds {', '.join(map(str, args.seeds))} (error bars: std over seeds)")
    quality_stats.plot_subset_dice(list(tables.values()), workdir / "quality_dice.png", title, per_region=True)
    s = report["setup"]
    realised = report.get("training_missing_rates") or {}
    realised_text = (f", realised on the {realised['cases']} cases trained on "
                     f"{'/'.join(f'{r:.3f}' for r in realised['rates'])}" if realised else "")
    header = [f"# Quality benchmark: {len(tables)} trainers x seeds {', '.join(map(str, args.seeds))}", "",
              f"Machine: {report['machine']}; OMP_NUM_THREADS={report.get('omp_num_threads') or 'unset'}; "
              f"device {args.device}; {report['date']}; command: `{report['command']}`",
              "", f"nnU-Net `{s['configuration']}` on {'x'.join(map(str, s['shape']))} synthetic volumes "
                  f"(patch {s['patch_size']}, batch {s['batch_size']}); {s['num_cases']} training cases "
                  f"(fold {s['fold']}) with missing rates FLAIR/T1/T1c/T2 {'/'.join(map(str, rates))}"
                  f"{realised_text}; "
                  f"{args.epochs} epochs x {args.iterations} iterations per run; {len(first.cases)} complete "
                  f"held-out cases, 15 subsets; regions {', '.join(first.regions)}; test-time mirroring "
                  f"{'on' if s['tta'] else 'off'}.", ""]
    if report["missing_runs"]:
        header += [f"**Not finished yet** ({len(report['missing_runs'])}): {', '.join(report['missing_runs'])}.", ""]
    header += ["| trainer | runs | s / iteration (nnU-Net epoch time) | train per run | evaluate per run |",
               "|---|---|---|---|---|"]
    for trainer in tables:
        mine = [r for r in runs.values() if r["trainer"] == trainer]
        per_it = [r["s_per_iteration"] for r in mine if r.get("s_per_iteration")]
        header.append(f"| {trainer} | {len(mine)} | {_median_text(per_it, '.2f')} s | "
                      f"{_median_text([r['train_s'] for r in mine if r['train_s']], '.0f')} s | "
                      f"{_median_text([r['evaluate_s'] for r in mine], '.0f')} s |")
    header += ["", "(Times: medians over a trainer's runs.)", ""]
    return quality_stats.summary_markdown(report["summaries"], report["comparisons"], first.regions, header)


def json_safe(value):
    """NaN (a mean over nothing, a std of one seed) as null: results.json stays strict JSON."""
    if isinstance(value, float):
        return None if value != value else value
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _median_text(values, spec: str) -> str:
    """The median: a run that shared the CPU with another job does not set the figure."""
    return format(statistics.median(values), spec) if values else "–"


def recorded_command(argv: list, workdir: Path) -> str:
    """The command line as summary.md and results.json record it: the work folder relative to the
    repository, or ``WORKDIR`` outside it, so that committed outputs carry no machine's paths."""
    shown = workdir.relative_to(REPO).as_posix() if workdir.is_relative_to(REPO) else "WORKDIR"
    words, after_workdir = [], False
    for word in argv:
        option, equals, _ = word.partition("=")
        is_workdir = len(option) > 2 and "--workdir".startswith(option)  # argparse takes --work too
        if after_workdir:
            word, after_workdir = shown, False
        elif is_workdir and equals:
            word = f"{option}={shown}"
        elif is_workdir:
            after_workdir = True
        words.append(word)
    return " ".join(["python", Path(__file__).resolve().relative_to(REPO).as_posix(), *words])


def main(argv=None):
    args = parse_args(argv)
    args.trainers = list(dict.fromkeys(args.trainers))
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    env = pipeline.nnunet_environment(workdir)
    env.setdefault("nnUNet_n_proc_DA", "0")  # the seed makes CPU runs repeatable only without DA workers
    setup = prepare(workdir, env, args)
    report = {"machine": machine(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
              "date": time.strftime("%Y-%m-%d"), "command": recorded_command(sys.argv[1:], workdir),
              "setup": {**setup["setup"], "patch_size": setup["patch_size"], "batch_size": setup["batch_size"]},
              "trainers": args.trainers, "seeds": args.seeds, "runs": {}, "missing_runs": []}
    todo = [(trainer, seed) for seed in args.seeds for trainer in args.trainers]  # every trainer's seed 0 first
    start = time.perf_counter()
    for i, (trainer, seed) in enumerate(todo):
        key = f"{trainer}__seed{seed}"
        if args.report_only and not (workdir / "runs" / f"{key}.json").is_file():
            report["missing_runs"].append(key)
            continue
        print(f"[{i + 1}/{len(todo)}] {key} (+{time.perf_counter() - start:.0f} s)", flush=True)
        try:
            report["runs"][key] = run_one(trainer, seed, workdir, env, setup, args)
        except pipeline.PipelineError as error:  # the others still run; a rerun retries this one
            print(f"  FAILED: {error}", flush=True)
            report["missing_runs"].append(key)
    preprocessed = Path(env["nnUNet_preprocessed"]) / setup["dataset"]
    report["training_missing_rates"] = realised_missing_rates(Path(env["nnUNet_raw"]) / setup["dataset"], preprocessed,
                                                              args.fold)
    summary = analyse(workdir, report["runs"], args, report)
    (workdir / "results.json").write_text(json.dumps(json_safe(report), indent=1, allow_nan=False))
    (workdir / "summary.md").write_text(summary)
    print(summary)
    print(f"written: {workdir / 'results.json'}, {workdir / 'summary.md'}, {workdir / 'quality_dice.png'}")
    return 1 if report["missing_runs"] and not args.report_only else 0


if __name__ == "__main__":
    sys.exit(main())
