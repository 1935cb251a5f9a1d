"""How much the modalities' features still differ where the multi-encoder network fuses them.

    python benchmarks/prism_features.py --workdir WORKDIR --runs nnUNetTrainerMissingModality__seed0
                                        nnUNetTrainerPRISM__seed0 [...] [--batches 8]

The multi-encoder network (MissingModality, PRISM) fuses the present modalities by the mean of
their projected skips at every scale (``nnunet_prism.networks.decoding.decode_mixtures``). The
mean gains from more modalities only where their features differ. Per sample with n >= 2 present
modalities and per scale s, with p_m the projected skip of modality m (C_s x voxels):

    R = ||mean_m p_m||^2 / mean_m ||p_m||^2

1 when the modalities' features are identical, 1/n when they are orthogonal with equal norms;
``1/R`` reads as the number of distinct modalities the fused skip still carries. PRISM distils
the fused output into every modality alone through the same decoder, which can make the
modalities' skips alike (R up) and the fusion gain less from combining them.

For each run of a ``quality.py`` work folder (``runs/<run>.json``: ``prism_gradients.py`` loads its
weights), the same ``--batches`` training batches (numpy and torch seeded per batch), the network
in eval mode, no gradient. Prints a Markdown table (mean R per scale, 1/R at the highest and the
lowest resolution, by number of present modalities) and writes ``features.json`` into the work
folder (one entry per run, earlier entries kept).
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import prism_gradients  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True, help="a quality.py work folder")
    parser.add_argument("--runs", nargs="+", required=True, help="runs/<RUN>.json of that folder")
    parser.add_argument("--batches", type=int, default=8)
    return parser.parse_args(argv)


def redundancy(projected, samples, num_samples: int):
    """R per sample of one scale: projected (P, C, *spatial), one row per present (sample,
    modality) pair, ``samples`` (P,) the pairs' samples -> (num_samples,) float64, NaN where the
    sample has fewer than two present modalities."""
    import torch

    rows = projected.double().flatten(1)                                               # (P, C*V)
    count = torch.bincount(samples, minlength=num_samples).double()                    # (B,)
    total = torch.zeros(num_samples, rows.shape[1], dtype=torch.float64).index_add_(0, samples, rows)
    mean_norm = torch.zeros(num_samples, dtype=torch.float64).index_add_(0, samples, rows.square().sum(1))
    r = (total / count.clamp(min=1)[:, None]).square().sum(1) / (mean_norm / count.clamp(min=1)).clamp(min=1e-30)
    return torch.where(count >= 2, r, torch.full_like(r, float("nan")))


def batch_redundancy(network, data, mask) -> dict:
    """{"present": (B,) modalities per sample, "R": (scales, B)} of one batch (highest resolution
    first), from the network's own encoders and projections."""
    import torch

    with torch.no_grad():
        encoded = network._encode(data, mask)
        r = [redundancy(projection(features), encoded.samples, data.shape[0]).numpy()
             for projection, features in zip(network.projections, encoded.features)]
    return {"present": mask.sum(1).numpy(), "R": np.stack(r)}


def measure(workdir: Path, run: str, batches: int) -> dict:
    """R of ``run``'s network on ``batches`` seeded training batches: per scale and, at the
    highest and lowest resolution, by number of present modalities."""
    import torch

    trainer, checkpoint = prism_gradients.trained_trainer(workdir, run)
    network = trainer.network
    network.eval()
    loader, _ = trainer.get_dataloaders()
    present, per_scale = [], []
    for i in range(batches):
        np.random.seed(i)
        torch.manual_seed(i)  # the augmentation draws from both
        inputs = trainer.step_inputs(next(loader), training=True)
        found = batch_redundancy(network, inputs.data, inputs.mask)
        present.append(found["present"])
        per_scale.append(found["R"])
    present, r = np.concatenate(present), np.concatenate(per_scale, axis=1)     # (N,), (scales, N)
    fused = present >= 2
    by_present = {str(n): {"samples": int((present == n).sum()),
                           "R_highest": float(np.mean(r[0, present == n])),
                           "R_lowest": float(np.mean(r[-1, present == n]))}
                  for n in sorted(set(present[fused].tolist()))}
    return {"run": run, "checkpoint": checkpoint, "batches": batches, "samples_fused": int(fused.sum()),
            "R_per_scale": np.nanmean(r[:, fused], axis=1).tolist(), "by_present": by_present}


def markdown(results) -> str:
    scales = len(results[0]["R_per_scale"])
    counts = sorted({n for r in results for n in r["by_present"]})
    lines = ["| run | samples | R per scale (highest resolution first) | "
             + " | ".join(f"1/R with {n} present: highest / lowest" for n in counts) + " |",
             "|---|---|---|" + "---|" * len(counts)]
    for r in results:
        by = r["by_present"]
        lines.append(f"| {r['run']} | {r['samples_fused']} | " + " / ".join(f"{v:.3f}" for v in r["R_per_scale"])
                     + " | " + " | ".join(f"{1 / by[n]['R_highest']:.2f} / {1 / by[n]['R_lowest']:.2f}" if n in by
                                          else "–" for n in counts) + " |")
    return "\n".join(lines) + f"\n\n{scales} scales; R = 1: the modalities' skips identical, 1/n: orthogonal.\n"


def main(argv=None):
    args = parse_args(argv)
    workdir = Path(args.workdir).resolve()
    out = workdir / "features.json"
    stored = json.loads(out.read_text()) if out.is_file() else {}
    results = []
    for run in args.runs:
        results.append(measure(workdir, run, args.batches))
        stored[run] = results[-1]
        out.write_text(json.dumps(stored, indent=1))
        print(f"{run}: R per scale " + ", ".join(f"{v:.3f}" for v in results[-1]["R_per_scale"]), flush=True)
    print(markdown(results))


if __name__ == "__main__":
    sys.exit(main())
