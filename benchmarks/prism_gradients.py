"""Where PRISM's training signal goes: gradient norms of each loss term on a trained network.

    python benchmarks/prism_gradients.py --workdir WORKDIR --run nnUNetTrainerPRISM__seed0 [--batches 8]

For a finished (or checkpointed) run of ``quality.py`` (``runs/<name>.json`` or its fold), loads
the network weights (``checkpoint_final.pth``, else ``checkpoint_latest.pth``) into a PRISM
trainer with the run's plans and the default hyperparameters, draws ``--batches`` training
batches (numpy and torch seeded per batch: every run sees the same cases and augmentations) and, for each batch, computes
PRISM's loss terms on the same forward pass:

* ``fused``: nnU-Net's deep-supervised Dice+BCE of the fused output;
* ``unimodal``: the sum of the unimodal Dice+BCE losses (PASSION's L_task);
* ``pixel``: lambda1 * sum_m E^m L_pixel^m (the pixel KL, E^m as at the run's start: 1/(1-FR^m));
* ``proto``: lambda2 * sum_m omega^m L_proto^m;

and the L2 norm of each term's gradient over the encoders, the projections and the decoder,
the norm of their sum (nnU-Net clips it at 12 before every step: ``clip factor`` = min(1, 12 /
norm)), the cosine between each distillation term's and the task terms' gradients on the
decoder, and the pixel KL split by output channel (region) and modality. The network is
unchanged (no step is taken). A MissingModality run's weights go through the same PRISM terms:
what distillation would ask of that network.

Prints a Markdown table and writes ``gradients_<run>.json`` into the work folder.
"""
import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CLIP_NORM = 12.0  # nnU-Net's (and our base trainer's) clip_grad_norm_
TERMS = ("fused", "unimodal", "pixel", "proto")
PARTS = ("encoders", "projections", "decoder")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True, help="a quality.py work folder")
    parser.add_argument("--run", required=True, help="runs/<RUN>.json of that folder, e.g. nnUNetTrainerPRISM__seed0")
    parser.add_argument("--batches", type=int, default=8)
    return parser.parse_args(argv)


def part_of(name: str) -> str:
    """Which part of a MultiEncoderUNet a parameter belongs to."""
    return next((p for p in PARTS if name.startswith(p)), "other")


def grouped_norms(named_grads) -> dict:
    """{part: L2 norm, "all": L2 norm} of (name, gradient or None) pairs."""
    sums = {p: 0.0 for p in (*PARTS, "other")}
    for name, g in named_grads:
        if g is not None:
            sums[part_of(name)] += float(g.double().square().sum())
    norms = {p: s ** 0.5 for p, s in sums.items() if p != "other" or s}
    norms["all"] = sum(sums.values()) ** 0.5
    return norms


def cosine(a, b) -> float:
    """Cosine between two gradient lists (None = zero)."""
    import torch

    dot = na = nb = 0.0
    for x, y in zip(a, b):
        x = torch.zeros(()) if x is None else x.double()
        y = torch.zeros(()) if y is None else y.double()
        dot += float((x * y).sum()) if x.ndim and y.ndim else 0.0
        na += float(x.square().sum())
        nb += float(y.square().sum())
    return dot / (na * nb) ** 0.5 if na and nb else float("nan")


def pixel_kl_by_channel(output, temperature: float, target=None) -> dict:
    """Per modality and output channel, over a modality's student rows and the full-resolution
    voxels: ``kl`` (M, C) the mean Bernoulli (or per-class) KL term; ``agreeing_share`` (M, C) the
    part of it from voxels where teacher and student make the same decision (both logits > 0 or
    both <= 0: the KL there only matches confidence); with the region ``target`` (B, C, *s) also
    ``teacher_logit`` / ``student_logit`` {"inside", "outside"} (M, C): mean logit inside and
    outside the channel's region. NaN where the modality is absent."""
    import torch

    from nnunet_prism.deep_supervision import full_resolution
    from nnunet_prism.losses.distillation import kl_divergence_map

    fused, students = full_resolution(output.fused), full_resolution(output.students)
    num_modalities, channels = output.modality_mask.shape[1], fused.shape[1]
    empty = lambda: np.full((num_modalities, channels), np.nan)  # noqa: E731
    out = {"kl": empty(), "agreeing_share": empty()}
    if target is not None:
        out.update({f"{who}_logit_{where}": empty() for who in ("teacher", "student") for where in ("inside", "outside")})
    with torch.no_grad():
        teacher = fused[output.samples].float()
        kl = kl_divergence_map(teacher, students, temperature, region_based=True).flatten(2)  # (P, C, V)
        agree = ((teacher > 0) == (students > 0)).flatten(2)
        region = None if target is None else (full_resolution(target)[output.samples][:, :channels] > 0.5).flatten(2)
        for m in range(num_modalities):
            rows = output.student_rows(m)
            if not rows.numel():
                continue
            out["kl"][m] = kl[rows].mean((0, 2)).numpy()
            total = kl[rows].sum((0, 2))
            out["agreeing_share"][m] = (torch.where(agree[rows], kl[rows], 0).sum((0, 2)) / total.clamp(min=1e-12)).numpy()
            if region is None:
                continue
            for who, logits in (("teacher", teacher), ("student", students)):
                values = logits[rows].flatten(2)
                for where, inside in (("inside", region[rows]), ("outside", ~region[rows])):
                    out[f"{who}_logit_{where}"][m] = (torch.where(inside, values, 0).sum((0, 2))
                                                      / inside.sum((0, 2)).clamp(min=1)).numpy()
    return out


def trained_trainer(workdir: Path, run: str):
    """(a PRISM trainer with the network weights of ``runs/<run>.json``, the checkpoint file's
    name): the run's plans, PRISM's default hyperparameters, ``nnUNet_n_proc_DA=0`` (batches
    drawn in this process), its own output folder a scratch folder."""
    record = json.loads((workdir / "runs" / f"{run}.json").read_text())
    setup = json.loads((workdir / "setup.json").read_text())
    fold_dir = workdir / record["fold"]
    checkpoint = next(p for p in (fold_dir / "checkpoint_final.pth", fold_dir / "checkpoint_latest.pth") if p.is_file())
    scratch = Path(tempfile.mkdtemp(prefix="prism_gradients_"))
    from nnunet_prism import pipeline

    env = pipeline.nnunet_environment(workdir)
    env["nnUNet_results"] = str(scratch)  # the trainer's own output folder: not the run's
    env["nnUNet_n_proc_DA"] = "0"
    env.pop("nnUNet_prism_hparams", None)  # PRISM's defaults
    os.environ.update(env)

    import torch
    from nnunetv2.run.run_training import get_trainer_from_args

    configuration = setup["setup"]["configuration"]
    fold = setup["setup"].get("fold", 0)
    trainer = get_trainer_from_args(str(setup["dataset"]), configuration, fold, "nnUNetTrainerPRISM",
                                    device=torch.device("cpu"))
    trainer.initialize()
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    trainer.network.load_state_dict(state["network_weights"])
    return trainer, checkpoint.name


def main(argv=None):
    import torch

    from nnunet_prism.losses.unimodal import unimodal_losses
    from nnunet_prism.training.trainers.nnUNetTrainerPRISM import prism_objective

    args = parse_args(argv)
    workdir = Path(args.workdir).resolve()
    trainer, checkpoint = trained_trainer(workdir, args.run)
    trainer.network.train()
    loader, _ = trainer.get_dataloaders()
    named = [(n, p) for n, p in trainer.network.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    coefficients = trainer.preference.coefficients()
    ds_weights = trainer.loss.weight_factors
    rows = []
    for i in range(args.batches):
        np.random.seed(i)
        torch.manual_seed(i)  # the augmentation draws from both
        batch = next(loader)
        inputs = trainer.step_inputs(batch, training=True)
        output = trainer.forward(inputs, training=True)
        fused = trainer.loss(output.fused, inputs.target)
        unimodal = unimodal_losses(trainer.unimodal_loss, output.students, output.samples, output.modalities,
                                   inputs.mask.shape[1], inputs.target).sum()
        terms = {"fused": fused, "unimodal": unimodal}
        for name, (l1, l2) in (("pixel", (trainer.lambda1, 0.0)), ("proto", (0.0, trainer.lambda2))):
            terms[name], _ = prism_objective(output, inputs.target, coefficients, trainer.label_manager, ds_weights,
                                             trainer.temperature, l1, l2, None, **trainer.official_options())
        grads = {k: torch.autograd.grad(v, params, retain_graph=True, allow_unused=True) for k, v in terms.items()}
        total = [sum(g[j] for g in grads.values() if g[j] is not None) if any(g[j] is not None for g in grads.values())
                 else None for j in range(len(params))]
        decoder = [j for j, (n, _) in enumerate(named) if part_of(n) == "decoder"]
        task = [None if (a is None and b is None) else (0 if a is None else a) + (0 if b is None else b)
                for a, b in zip(grads["fused"], grads["unimodal"])]
        total_norm = grouped_norms(zip([n for n, _ in named], total))["all"]
        rows.append({
            "keys": [str(k) for k in batch["keys"]], "modalities_present": inputs.mask.sum(1).tolist(),
            "loss": {k: float(v.detach()) for k, v in terms.items()},
            "grad_norm": {k: grouped_norms(zip([n for n, _ in named], g)) for k, g in grads.items()},
            "total_grad_norm": total_norm, "clip_factor": min(1.0, CLIP_NORM / total_norm) if total_norm else 1.0,
            "decoder_cosine_with_task": {k: cosine([grads[k][j] for j in decoder], [task[j] for j in decoder])
                                         for k in ("pixel", "proto")},
            "pixel_kl_by_channel": {k: v.tolist() for k, v in
                                    pixel_kl_by_channel(output, trainer.temperature, inputs.target).items()},
        })
        print(f"batch {i}: " + ", ".join(f"{k} {rows[-1]['loss'][k]:+.4f} |g| {rows[-1]['grad_norm'][k]['all']:.3f}"
                                         for k in TERMS) + f"; total |g| {total_norm:.2f}", flush=True)
    channels = [name for name in trainer.dataset_json["labels"] if name not in ("background", "ignore")]
    summary = summarise(rows, trainer.modality_names, channels)
    out = workdir / f"gradients_{args.run}.json"
    out.write_text(json.dumps({"run": args.run, "checkpoint": checkpoint, "batches": rows, "summary": summary},
                              indent=1, default=float))
    print(markdown(args.run, checkpoint, summary))


def summarise(rows, modalities, regions) -> dict:
    """Means over the batches of the numbers ``main`` records."""
    mean = lambda values: float(np.nanmean(values))  # noqa: E731
    return {
        "loss": {k: mean([r["loss"][k] for r in rows]) for k in TERMS},
        "grad_norm": {k: {p: mean([r["grad_norm"][k].get(p, 0.0) for r in rows]) for p in (*PARTS, "all")}
                      for k in TERMS},
        "total_grad_norm": mean([r["total_grad_norm"] for r in rows]),
        "clip_factor": mean([r["clip_factor"] for r in rows]),
        "clipped_batches": sum(r["clip_factor"] < 1 for r in rows), "batches": len(rows),
        "decoder_cosine_with_task": {k: mean([r["decoder_cosine_with_task"][k] for r in rows]) for k in ("pixel", "proto")},
        "pixel_kl_by_channel": {key: {m: dict(zip(map(str, regions), np.nanmean(
            [r["pixel_kl_by_channel"][key][i] for r in rows], axis=0).tolist())) for i, m in enumerate(modalities)}
            for key in rows[0]["pixel_kl_by_channel"]},
    }


def markdown(run: str, checkpoint: str, s: dict) -> str:
    lines = [f"### {run} ({checkpoint}), {s['batches']} training batches", "",
             "| term | loss | grad norm: all | encoders | projections | decoder |", "|---|---|---|---|---|---|"]
    for k in TERMS:
        g = s["grad_norm"][k]
        lines.append(f"| {k} | {s['loss'][k]:+.4f} | {g['all']:.3f} | {g['encoders']:.3f} | {g['projections']:.3f} | "
                     f"{g['decoder']:.3f} |")
    lines += ["", f"Norm of the summed gradient {s['total_grad_norm']:.2f} (clip at {CLIP_NORM:g}: mean factor "
                  f"{s['clip_factor']:.3f}, {s['clipped_batches']} of {s['batches']} batches clipped); cosine with the "
                  f"task gradient on the decoder: pixel {s['decoder_cosine_with_task']['pixel']:+.3f}, proto "
                  f"{s['decoder_cosine_with_task']['proto']:+.3f}.", "",
              "Pixel KL per modality and output channel (T^2-scaled KL, mean over voxels; in brackets the "
              "share from voxels where teacher and student decide alike); mean logits of teacher / student "
              "inside and outside the channel's reference region:", ""]
    by = s["pixel_kl_by_channel"]
    channels = list(next(iter(by["kl"].values())))
    logits = "teacher_logit_inside" in by
    lines += ["| modality | channel | KL (agreeing share) |" + (" logit inside: teacher / student | logit outside: "
                                                             "teacher / student |" if logits else ""),
              "|---|---|---|" + ("---|---|" if logits else "")]
    for m in by["kl"]:
        for c in channels:
            row = f"| {m} | {c} | {by['kl'][m][c]:.4f} ({by['agreeing_share'][m][c]:.2f}) |"
            if logits:
                row += (f" {by['teacher_logit_inside'][m][c]:+.2f} / {by['student_logit_inside'][m][c]:+.2f} | "
                        f"{by['teacher_logit_outside'][m][c]:+.2f} / {by['student_logit_outside'][m][c]:+.2f} |")
            lines.append(row)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
