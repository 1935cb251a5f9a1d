"""Which PRISM term costs whole-tumour Dice? Ablations on a development set, not the held-out one.

    python benchmarks/prism_ablation.py [--workdir benchmarks/output/quality] [--seeds 0]
                                        [--variants default no_pixel no_proto temperature_1 ...]

Uses the quality benchmark's work folder (``quality.py``, 2d or ``--preset 3d``: same training
set, configuration, fold and schedule, same seeds) and adds a *development* set: complete synthetic cases drawn with another seed than
the benchmark's held-out cases (which stay untouched for the quality table of docs/benchmarks.md), so that a change
of a default chosen here is not tuned on the cases it is reported on. Every variant is PRISM with
one hyperparameter changed (``VARIANTS``), trained as its own run; the benchmark's own
MissingModality and PRISM runs (when finished) are scored on the development set too, and the
training logs' last-epoch loss terms and E^m are read back.

Writes ``ablation.json`` and ``ablation.md`` (mean Dice over the 15 subsets per region, full set,
worst subset; per variant and seed; paired tests of the mean over regions and of each region)
into the work folder.
"""
import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import quality  # noqa: E402
import quality_stats  # noqa: E402

from nnunet_prism import pipeline  # noqa: E402

PRISM, BASELINE = "nnUNetTrainerPRISM", "nnUNetTrainerMissingModality"
DEV_DATASET_ID, DEV_SEED = 985, 555
#: variant -> PRISM hyperparameters changed (PASSION, ACM MM 2024: each isolates one term)
VARIANTS = {
    "no_pixel": {"lambda1": 0.0},          # without the pixel-wise KL distillation
    "small_pixel": {"lambda1": 0.1},       # the pixel-wise KL at a fifth of the paper's weight (0.5)
    "no_proto": {"lambda2": 0.0},          # without the semantic (prototype) distillation
    "temperature_1": {"temperature": 1.0},  # KL on unsoftened probabilities
    "fixed_E": {"gamma": 0.0},             # E^m stays 1/(1-FR^m): no preference update
    # prototypes of the disjoint classes (background, ED, NCR, ET) as in the paper, not of the overlapping regions
    "disjoint_prototypes": {"prototype_region_classes": "disjoint"},
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=str(REPO / "benchmarks" / "output" / "quality"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--dev-cases", type=int, default=8)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    return parser.parse_args(argv)


def development_set(workdir: Path, env: dict, setup: dict, num_cases: int) -> Path:
    """Complete labelled cases from another generator seed than the held-out set (made once)."""
    from dataset_conversion.phantom_dataset import prepare_complete_test_set

    folder = workdir / "ablation"
    existing = sorted(Path(env["nnUNet_raw"]).glob(f"Dataset{DEV_DATASET_ID}_*"))
    if existing and (folder / "dev_set.json").is_file():
        return existing[0]
    folder.mkdir(parents=True, exist_ok=True)
    raw = prepare_complete_test_set(folder, DEV_DATASET_ID, env, num_cases=num_cases, shape=setup["setup"]["shape"],
                                    seed=DEV_SEED, name="SynDev")
    (folder / "dev_set.json").write_text(json.dumps({"raw": str(raw), "seed": DEV_SEED, "cases": num_cases}))
    return raw


def score_on(trainer: str, results: Path, workdir: Path, env: dict, dev: Path, out: Path, bench_args) -> dict:
    """``nnunet_prism evaluate`` of a trained fold on the development set (once), as the benchmark
    evaluates (its configuration, device and mirroring)."""
    if not (out / "subsets.json").is_file():
        quality.evaluate(trainer, {**env, "nnUNet_results": str(results)}, dev, out, bench_args,
                         workdir / "ablation" / "evaluate_log.txt")
    return summarise(out / "subsets.json")


def summarise(subsets_json: Path) -> dict:
    """Mean over the 15 subsets per region, the full set and the worst subset (mean of regions)."""
    from nnunet_prism.evaluation.results import SubsetResults

    results = SubsetResults.load_json(subsets_json)
    means = results.subset_means("Dice")  # (15, regions)
    full = means[[len(s) for s in results.subsets].index(len(results.modalities))]
    worst, worst_value = results.worst_subset("Dice")
    return {"subsets_json": str(subsets_json), "regions": list(results.regions),
            "mean_over_subsets": results.average("Dice").tolist(),
            "full_set": full.tolist(), "worst_subset": results.name(worst), "worst_subset_dice": worst_value}


def last_epoch_terms(fold: Path) -> str:
    """The last 'PRISM ...' line of the training log (E^m, mean RP, L_pixel, L_proto per modality)."""
    lines = [line for log in sorted(fold.glob("training_log_*.txt")) for line in log.read_text().splitlines()
             if re.search(r"PRISM FLAIR: E=", line)]
    return lines[-1].split("PRISM ", 1)[1] if lines else ""


def main(argv=None):
    args = parse_args(argv)
    workdir = Path(args.workdir).resolve()
    # the benchmark's set-up, prepared by quality.py (2d or --preset 3d)
    setup = quality.stored_setup(json.loads((workdir / "setup.json").read_text()))
    bench_args = quality.args_of_setup(setup["setup"], workdir, args.device)
    env = pipeline.nnunet_environment(workdir)
    env.setdefault("nnUNet_n_proc_DA", "0")
    dev = development_set(workdir, env, setup, args.dev_cases)
    rows = {}
    for seed in args.seeds:
        for trainer in (BASELINE, PRISM):  # the benchmark's own runs, scored on the development set
            marker = workdir / "runs" / f"{trainer}__seed{seed}.json"
            if trainer == PRISM and not marker.is_file():
                quality.run_one(PRISM, seed, workdir, env, setup, bench_args)  # the benchmark's PRISM run
            if not marker.is_file():
                print(f"{trainer} seed {seed}: not trained by quality.py yet, skipped", flush=True)
                continue
            record = json.loads(marker.read_text())
            results = workdir / "nnUNet_results" / f"seed_{seed}"
            rows[f"{trainer}__seed{seed}"] = {
                "trainer": trainer, "variant": "default", "seed": seed, "hyperparameters": {},
                **score_on(trainer, results, workdir, env, dev, workdir / "ablation" / trainer / f"seed_{seed}",
                           bench_args),
                "terms": last_epoch_terms(workdir / record["fold"]) if trainer == PRISM else ""}
            print(f"{trainer} seed {seed}: {rows[f'{trainer}__seed{seed}']['mean_over_subsets']}", flush=True)
        for variant in args.variants:
            record = quality.run_one(PRISM, seed, workdir, env, setup, bench_args, variant=variant,
                                     extra_hyperparameters=VARIANTS[variant], test_set=dev)
            rows[f"{variant}__seed{seed}"] = {
                "trainer": PRISM, "variant": variant, "seed": seed, "hyperparameters": VARIANTS[variant],
                **summarise(workdir / record["evaluation"] / "subsets.json"),
                "terms": last_epoch_terms(workdir / record["fold"])}
            print(f"{variant} seed {seed}: {rows[f'{variant}__seed{seed}']['mean_over_subsets']}", flush=True)
    comparisons = paired_tests(rows)
    (workdir / "ablation.json").write_text(json.dumps({"runs": rows, "comparisons": comparisons}, indent=1,
                                                      default=float))
    (workdir / "ablation.md").write_text(markdown(rows, dev, comparisons))
    print(markdown(rows, dev, comparisons))


def run_name(row: dict) -> str:
    return row["trainer"].replace("nnUNetTrainer", "") + ("" if row["variant"] == "default" else f" {row['variant']}")


def paired_tests(rows: dict) -> list:
    """Every variant against PRISM and against MissingModality on the development set: the
    quality benchmark's paired Wilcoxon test over (seed, case) on the mean over the 15 subsets,
    of the mean over regions and of each region's Dice; and of the WT fusion gain (the full set's
    WT minus the mean over the single modalities, per (seed, case))."""
    from nnunet_prism.evaluation.results import SubsetResults

    per_run = {}
    for row in rows.values():
        per_run.setdefault(run_name(row), {})[row["seed"]] = SubsetResults.load_json(row["subsets_json"])
    tables = {name: quality_stats.DiceTable.from_subset_results(name, seeds) for name, seeds in per_run.items()}
    prism, baseline = run_name({"trainer": PRISM, "variant": "default"}), run_name({"trainer": BASELINE,
                                                                                     "variant": "default"})
    out = []
    for name in tables:
        for reference in (baseline, prism):
            if name not in (baseline, reference) and reference in tables:
                for region in [None, *tables[name].regions]:
                    c = quality_stats.compare(tables[name], tables[reference], region=region)
                    out.append({"a": name, "b": reference, "region": region or "mean", "seeds": c["seeds"],
                                **c["pooled"]})
                    if region == "WT":  # the full set's gain over one modality alone: what fusion adds
                        out.append({"a": name, "b": reference, "region": "WT fusion gain", "seeds": c["seeds"],
                                    **c["fusion_gain"]})
    return out


def markdown(rows: dict, dev: Path, comparisons: list = ()) -> str:
    if not rows:
        return "no runs\n"
    regions = next(iter(rows.values()))["regions"]
    lines = [f"# PRISM ablations on the development set {dev.name} (not the benchmark's held-out cases)", "",
             "| run | seed | changed | mean over 15 subsets " + " / ".join(regions) + " (mean) | full set | "
             "worst subset |", "|---|---|---|---|---|---|"]
    for row in rows.values():
        name = run_name(row)
        mean, full, worst = row["mean_over_subsets"], row["full_set"], row["worst_subset_dice"]
        lines.append(f"| {name} | {row['seed']} | {json.dumps(row['hyperparameters']) if row['hyperparameters'] else '–'}"
                     f" | {' / '.join(f'{v:.3f}' for v in mean)} ({np.mean(mean):.3f}) | "
                     f"{' / '.join(f'{v:.3f}' for v in full)} | {row['worst_subset']} {worst:.3f} |")
    terms = [f"- {r['trainer'].replace('nnUNetTrainer', '')} {r['variant']} seed {r['seed']}: {r['terms']}"
             for r in rows.values() if r["terms"]]
    tests = ["", "Paired Wilcoxon signed-rank over (seed, case) of the mean Dice over the 15 subsets "
                 "(of the mean over regions, and of each region) and of the WT fusion gain (full set minus the "
                 "mean over the single modalities):", "",
             "| run | against | Dice | seeds | mean difference | n | p |", "|---|---|---|---|---|---|---|"] + [
        f"| {c['a']} | {c['b']} | {c.get('region', 'mean')} | {', '.join(map(str, c['seeds']))} | "
        f"{c['mean_diff']:+.4f} | {c['n']} | {c['p_value']:.2g} |" for c in comparisons] if comparisons else []
    return "\n".join(lines + tests + (["", "Last epoch's PRISM terms (training log):", *terms] if terms else [])) + "\n"


if __name__ == "__main__":
    sys.exit(main())
