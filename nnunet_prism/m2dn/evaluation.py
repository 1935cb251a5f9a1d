"""PSNR and SSIM of synthesised modalities per missing subset, for M2DN and two baselines.

Everything is scored in nnU-Net's normalised space on the preprocessed held-out cases. For a
case with available modalities A, every non-empty proper subset P of A is given as present,
and each modality of A \\ P is scored against its real image:
  PSNR = 10 log10(R^2 / MSE) with MSE over nnU-Net's nonzero region, R = max - min of the
         reference inside that region (skimage.metrics.peak_signal_noise_ratio);
  SSIM = mean over slices that contain region voxels of the 2D SSIM of Wang et al. 2004 with
         a Gaussian window (sigma 1.5, population covariance; skimage.metrics.structural_similarity)
All methods' outputs are 0 outside the region (the normalised background).
"""
from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Sequence

import numpy as np

from nnunet_prism.modalities import all_subsets, subset_name, subset_to_mask
from nnunet_prism.m2dn.inference import mean_of_present, synthesise_volume, zero_fill

METHODS = ("M2DN", "zero fill", "mean of present")


def psnr(reference: np.ndarray, test: np.ndarray, region: np.ndarray) -> float:
    """reference, test (D, H, W); region (D, H, W) bool -> PSNR in dB over the region."""
    from skimage.metrics import peak_signal_noise_ratio

    ref, tst = reference[region], test[region]
    data_range = float(ref.max() - ref.min()) or 1.0
    return float(peak_signal_noise_ratio(ref, tst, data_range=data_range))


def ssim(reference: np.ndarray, test: np.ndarray, region: np.ndarray) -> float:
    """Mean 2D SSIM (Wang 2004, Gaussian window) over slices (axis 0) that contain region voxels."""
    from skimage.metrics import structural_similarity

    data_range = float(reference[region].max() - reference[region].min()) or 1.0
    values = [structural_similarity(reference[z], test[z], data_range=data_range, gaussian_weights=True,
                                    sigma=1.5, use_sample_covariance=False)
              for z in range(reference.shape[0]) if region[z].any()]
    return float(np.mean(values)) if values else float("nan")


def evaluation_subsets(available: np.ndarray) -> List[tuple]:
    """Present subsets to test for a case with availability (M,) bool: non-empty, inside it, not all of it."""
    avail = set(np.flatnonzero(available).tolist())
    return [s for s in all_subsets(len(available)) if set(s) < avail]


def evaluate_cases(network, diffusion, reader, identifiers: Sequence[str], num_steps: int = 10, seed: int = 0,
                   device: str = "cpu", batch_size: int = 32, progress: Callable[[str], None] = print) -> List[dict]:
    """One row per (case, present subset, scored missing modality, method) with PSNR and SSIM."""
    rows = []
    names = None
    for identifier in identifiers:
        images, region = reader.volume(identifier)
        available = reader.availability(identifier)
        names = names or [str(i) for i in range(images.shape[0])]
        for subset in evaluation_subsets(available):
            present = subset_to_mask(subset, images.shape[0])
            outputs = {
                "M2DN": synthesise_volume(network, diffusion, images, present, num_steps, seed, batch_size, region, device),
                "zero fill": zero_fill(images, present) * region[None],
                "mean of present": mean_of_present(images, present) * region[None],
            }
            for m in np.flatnonzero(available & ~present):
                for method, out in outputs.items():
                    rows.append({"case": identifier, "present": tuple(subset),
                                 "missing": tuple(int(v) for v in np.flatnonzero(available & ~present)),
                                 "modality": int(m), "method": method,
                                 "psnr": psnr(images[m], out[m], region), "ssim": ssim(images[m], out[m], region)})
        progress(f"{identifier}: {len(evaluation_subsets(available))} present subsets scored")
    return rows


def summarise(rows: Sequence[Mapping], modality_names: Sequence[str]) -> List[dict]:
    """Table rows: one per missing subset (present -> scored missing), PSNR/SSIM per method as the
    mean over cases and scored modalities, then an 'average' row over the subset rows."""
    groups: Dict[tuple, Dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        groups[(r["present"], r["missing"])][r["method"]].append((r["psnr"], r["ssim"]))
    order = {s: i for i, s in enumerate(all_subsets(len(modality_names)))}
    table = []
    for (present, missing), by_method in sorted(groups.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])):
        row = {"present": subset_name(present, modality_names), "missing (scored)": subset_name(missing, modality_names),
               "n": len(next(iter(by_method.values())))}
        for method in METHODS:
            values = np.array(by_method.get(method, [(np.nan, np.nan)]))
            row[f"PSNR {method}"] = float(np.nanmean(values[:, 0]))
            row[f"SSIM {method}"] = float(np.nanmean(values[:, 1]))
        table.append(row)
    if table:
        avg = {"present": "average", "missing (scored)": "", "n": sum(r["n"] for r in table)}
        for key in table[0]:
            if key.startswith(("PSNR", "SSIM")):
                avg[key] = float(np.nanmean([r[key] for r in table]))
        table.append(avg)
    return table


def write_tables(table: Sequence[Mapping], rows: Sequence[Mapping], output: Path, title: str) -> Dict[str, Path]:
    """synthesis_metrics.csv / .md (per subset), synthesis_metrics_cases.json (every row)."""
    output.mkdir(parents=True, exist_ok=True)
    files = {"csv": output / "synthesis_metrics.csv", "md": output / "synthesis_metrics.md",
             "json": output / "synthesis_metrics_cases.json"}
    keys = list(table[0]) if table else ["present", "missing (scored)", "n"]
    with open(files["csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(table)

    def fmt(k, v):
        return (f"{v:.2f}" if k.startswith("PSNR") else f"{v:.4f}") if isinstance(v, float) else str(v)

    lines = [f"# {title}", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(k, r[k]) for k in keys) + " |" for r in table]
    files["md"].write_text("\n".join(lines) + "\n")
    files["json"].write_text(json.dumps([{**r, "present": list(r["present"]), "missing": list(r["missing"])}
                                         for r in rows], indent=1))
    return files
