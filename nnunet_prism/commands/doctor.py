"""``nnunet_prism doctor``: resolve every trainer the way ``nnUNetv2_train -tr`` does; with
``--cuda -d ID [-c CONFIG]``, also run one AMP training step, one validation step and one
sliding-window prediction per trainer on the GPU at that dataset's plans and report time and
peak memory (what fits, before a long run finds out), and what torch.compile made of it: the
whole network, its regions or nothing (``nnUNet_compile=f``), the graphs dynamo compiled in the
warm-up step and after it (recompilations), and its graph breaks. ``--vram GB``: per trainer,
whether its training step fits that much GPU memory and by how much it misses: measured with
``--cuda``, else estimated on the CPU from the activation bytes its step saves
(``nnunet_prism.memory_count``), clearly labelled as an estimate."""
import contextlib
import io
import sys
import time
from typing import Optional

from nnunet_prism import discovery

NO_CUDA = ("nnunet_prism doctor --cuda: torch sees no CUDA device (torch.cuda.is_available() is False); "
           "run it on the GPU machine you will train on")


def add_arguments(parser):
    parser.add_argument("--cuda", action="store_true",
                        help="also run one AMP training step, one validation step and one sliding-window "
                             "prediction per trainer on the GPU (needs -d) and report time, peak memory and "
                             "torch.compile's graphs and graph breaks")
    parser.add_argument("-d", dest="dataset", default=None, help="dataset name or ID, as for nnUNetv2_train")
    parser.add_argument("-c", dest="configuration", default="3d_fullres")
    parser.add_argument("-tr", dest="trainers", nargs="+", default=None,
                        help="trainers to run (default: nnUNetTrainer and every nnunet_prism trainer)")
    parser.add_argument("--vram", type=positive_gib, default=None, metavar="GB",
                        help="GPU memory budget in GiB (needs -d): says per trainer whether its training step "
                             "fits and by how much it misses; measured with --cuda (peak memory PyTorch's "
                             "allocator reserved in the step; the CUDA context needs a few hundred MiB more), "
                             "else estimated on the CPU from the activation bytes the step saves")


def positive_gib(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(text)
    return value


def _synchronized(device, function):
    """(seconds, peak GiB of torch.cuda.max_memory_allocated, peak GiB reserved by the caching
    allocator) of ``function()`` on ``device``."""
    import torch
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    function()
    torch.cuda.synchronize(device)
    return (time.perf_counter() - start, torch.cuda.max_memory_allocated(device) / 2 ** 30,
            torch.cuda.max_memory_reserved(device) / 2 ** 30)


def _check_trainer(name: str, args, device) -> dict:
    """One training step (after a warm-up step), one validation step, one sliding-window
    prediction of ``name``, and dynamo's counts over them."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    from nnunet_prism.training.compilation import DynamoCounts, compile_mode
    from nnunet_prism.training.trial import trial_trainer

    with trial_trainer(args.dataset, args.configuration, name, device) as trainer:
        start = DynamoCounts.now()
        batch = next(trainer.dataloader_train)
        trainer.network.train()
        trainer.train_step(batch)  # warm-up: compilation, cuDNN autotuning, momentum buffers
        warmed = DynamoCounts.now()
        train = _synchronized(device, lambda: trainer.train_step(next(trainer.dataloader_train)))
        trainer.network.eval()
        validation = _synchronized(device, lambda: trainer.validation_step(next(trainer.dataloader_val)))
        trainer.set_deep_supervision_enabled(False)
        predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False, device=device,
                                    verbose=False, allow_tqdm=False)
        predictor.manual_initialization(trainer.network, trainer.plans_manager, trainer.configuration_manager, None,
                                        trainer.dataset_json, type(trainer).__name__, None)
        patch = trainer.configuration_manager.patch_size
        image = torch.randn(trainer.num_input_channels, *[int(p * 1.5) for p in patch])
        with torch.no_grad():
            predict = _synchronized(device, lambda: predictor.predict_sliding_window_return_logits(image))
        end = DynamoCounts.now()
        return {"train": train, "validation": validation, "predict": predict, "patch": list(patch),
                "batch": trainer.configuration_manager.batch_size, "compiled": compile_mode(trainer.network),
                "graphs_warmup": (warmed - start).graphs, "graphs_later": (end - warmed).graphs,
                "graph_breaks": (end - start).graph_breaks}


def describe(r: dict, vram: Optional[float] = None) -> str:
    """One trainer's line of ``doctor --cuda`` (with ``vram``: whether the training step fits)."""
    compiled = (f"torch.compile {r['compiled']}: {r['graphs_warmup']} graphs in the warm-up step, "
                f"{r['graphs_later']} recompiled after it, {r['graph_breaks']} graph breaks"
                if r["compiled"] != "off" else "torch.compile off")
    from nnunet_prism.memory_count import Fit
    fit = f"; training step {Fit(r['train'][2], vram).describe()} reserved" if vram is not None else ""
    return (f"batch {r['batch']} x {'x'.join(map(str, r['patch']))}; "
            + "; ".join(f"{k} {r[k][0]:.2f} s, {r[k][1]:.2f} GiB" for k in ("train", "validation", "predict"))
            + f"; {compiled}{fit}")


def run_cuda(args) -> int:
    """``doctor --cuda``: one line per trainer; 1 if any failed (CUDA out of memory included)."""
    import torch

    from nnunet_prism.memory_count import Fit
    if args.dataset is None:
        print("nnunet_prism doctor --cuda: give the dataset with -d ID (its plans are used)", file=sys.stderr)
        return 2
    device = torch.device("cuda", torch.cuda.current_device())
    names = args.trainers or ["nnUNetTrainer"] + discovery.list_trainers()
    print(f"{torch.cuda.get_device_name(device)}, {torch.cuda.get_device_properties(device).total_memory / 2 ** 30:.0f} "
          f"GiB; dataset {args.dataset}, {args.configuration}; time and peak torch.cuda.max_memory_allocated")
    failures = 0
    for name in names:
        try:
            r = _check_trainer(name, args, device)
        except Exception as e:  # one line per trainer, whatever failed (OOM, missing data)
            failures += 1
            print(f"  FAIL {name}: {type(e).__name__}: {_first_line(e)}")
            torch.cuda.empty_cache()
            continue
        fits = args.vram is None or Fit(r["train"][2], args.vram).fits
        failures += not fits
        print(f"  {'ok  ' if fits else 'FAIL'} {name}: {describe(r, args.vram)}")
        torch.cuda.empty_cache()
    return 1 if failures else 0


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error) else ""


def _counted_step(name: str, args) -> dict:
    """The activation bytes (saved + the largest recomputed region + the gradient buffers the
    trainer's backward holds, ``backward_held_bytes``) of one training step of ``name`` on the
    CPU, as it would run on CUDA (``activation_checkpointing`` ``auto`` in force), with every
    modality present (the most a multi-encoder step holds), at a patch reduced from the plan's
    and scaled to it; nnU-Net's own network's planner estimate with it."""
    import numpy as np
    import torch

    from nnunet_prism.training.base import StepInputs, nnUNetTrainerPrismBase
    from nnunet_prism.memory_count import count_step, nnunet_vram_estimate, reduced_patch
    from nnunet_prism.training.trial import trial_trainer

    with trial_trainer(args.dataset, args.configuration, name, torch.device("cpu")) as trainer:
        cm = trainer.configuration_manager
        plan_patch = [int(p) for p in cm.patch_size]
        patch = reduced_patch(plan_patch, cm.pool_op_kernel_sizes)
        batch = next(trainer.dataloader_train)
        strides = np.cumprod(np.vstack(cm.pool_op_kernel_sizes), axis=0)
        targets = batch["target"] if isinstance(batch["target"], list) else [batch["target"]]
        target = [t[(Ellipsis, *(slice(0, p // int(s)) for p, s in zip(patch, stride)))]
                  for t, stride in zip(targets, strides)]
        data = batch["data"][(Ellipsis, *(slice(0, p) for p in patch))]
        network = getattr(trainer.network, "_orig_mod", trainer.network)
        if isinstance(trainer, nnUNetTrainerPrismBase):
            if getattr(trainer, "activation_checkpointing", None) == "auto":
                trainer.activation_checkpointing = "on"  # what auto means on CUDA
            if hasattr(network, "activation_checkpointing"):
                network.activation_checkpointing = trainer.checkpointing_in_force
            mask = torch.ones(data.shape[:2], dtype=torch.bool)
            inputs = StepInputs(data, target if isinstance(batch["target"], list) else target[0], mask,
                                list(batch["keys"]))
            outputs = []

            def step():
                outputs.append(trainer.forward(inputs, training=True))
                return trainer.compute_loss(outputs[0], inputs)[0]
            counter = count_step(network, step, include=[data])
            grows, fixed = trainer.backward_held_bytes(outputs[0])
        else:  # nnU-Net's own trainer
            counter = count_step(network, lambda: trainer.loss(network(data), target), include=[data])
            grows, fixed = 0, 0
        scale = float(np.prod(plan_patch) / np.prod(patch))
        return {"counted": (counter.total + counter.largest_region + grows) * scale + fixed, "patch": patch,
                "plan_patch": plan_patch,
                "nnunet_estimate": nnunet_vram_estimate(network, plan_patch, cm.batch_size)
                if not isinstance(trainer, nnUNetTrainerPrismBase) or trainer.network_builder is None else None}


def run_estimate(args) -> int:
    """``doctor --vram GB`` without ``--cuda``: the CPU estimate per trainer, relative to nnU-Net's
    own network (``_counted_step`` of nnUNetTrainer); 1 if any trainer misses the budget or
    failed."""
    from nnunet_prism.memory_count import GIB, Fit, estimate_need

    names = args.trainers or ["nnUNetTrainer"] + discovery.list_trainers()
    reference = _counted_step("nnUNetTrainer", args)
    print(f"ESTIMATE, not a GPU measurement (no --cuda): dataset {args.dataset}, {args.configuration}; bytes autograd "
          f"saves in one training step with every modality present (float32, activation checkpointing as on CUDA), "
          f"counted on the CPU at patch {'x'.join(map(str, reference['patch']))} and scaled to the plan's "
          f"{'x'.join(map(str, reference['plan_patch']))}, relative to nnUNetTrainer's "
          f"({reference['counted'] / GIB:.2f} GiB), times nnU-Net's planner estimate for its own network "
          f"({reference['nnunet_estimate']:.2f} GiB; measured peaks are lower, e.g. 4.76 GiB against 6.48 at the "
          "BraTS2021-like plan on an H200); doctor --cuda --vram measures it")
    failures = 0
    for name in names:
        try:
            counted = reference if name == "nnUNetTrainer" else _counted_step(name, args)
        except Exception as e:  # one line per trainer
            failures += 1
            print(f"  FAIL {name}: {type(e).__name__}: {_first_line(e)}")
            continue
        fit = Fit(estimate_need(counted["counted"], reference["counted"], reference["nnunet_estimate"]), args.vram)
        failures += not fit.fits
        print(f"  {'ok  ' if fit.fits else 'FAIL'} {name}: {counted['counted'] / reference['counted']:.2f}x "
              f"nnUNetTrainer's activations; estimated {fit.describe()}")
    return 1 if failures else 0


def run(args):
    if getattr(args, "cuda", False):
        import torch
        if not torch.cuda.is_available():  # before anything else: one clear line
            print(NO_CUDA, file=sys.stderr)
            return 2
    if getattr(args, "vram", None) is not None and args.dataset is None:
        print("nnunet_prism doctor --vram: give the dataset with -d ID (its plans are used)", file=sys.stderr)
        return 2
    print(f"nnUNet_extTrainer lists our trainer folder: {discovery.is_registered()}")
    failures = 0
    for name in discovery.list_trainers():
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # nnU-Net prints its search path
                cls = discovery.find_trainer_class(name)
            print(f"  ok   {name}  ({cls.__module__})")
        except RuntimeError as e:
            failures += 1
            print(f"  FAIL {name}: {e}")
    if failures:
        print(discovery.how_to_fix())
        return 1
    if getattr(args, "cuda", False):
        return run_cuda(args)
    return run_estimate(args) if getattr(args, "vram", None) is not None else 0
