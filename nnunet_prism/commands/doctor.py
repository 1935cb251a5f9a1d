"""``nnunet_prism doctor``: resolve every trainer the way ``nnUNetv2_train -tr`` does; with
``--cuda -d ID [-c CONFIG]``, also run one AMP training step, one validation step and one
sliding-window prediction per trainer on the GPU at that dataset's plans and report time and
peak memory (what fits, before a long run finds out), and what torch.compile made of it: the
whole network, its regions or nothing (``nnUNet_compile=f``), the graphs dynamo compiled in the
warm-up step and after it (recompilations), and its graph breaks."""
import contextlib
import io
import sys
import time

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


def _synchronized(device, function):
    """(seconds, peak GiB of torch.cuda.max_memory_allocated) of ``function()`` on ``device``."""
    import torch
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    function()
    torch.cuda.synchronize(device)
    return time.perf_counter() - start, torch.cuda.max_memory_allocated(device) / 2 ** 30


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


def describe(r: dict) -> str:
    """One trainer's line of ``doctor --cuda``."""
    compiled = (f"torch.compile {r['compiled']}: {r['graphs_warmup']} graphs in the warm-up step, "
                f"{r['graphs_later']} recompiled after it, {r['graph_breaks']} graph breaks"
                if r["compiled"] != "off" else "torch.compile off")
    return (f"batch {r['batch']} x {'x'.join(map(str, r['patch']))}; "
            + "; ".join(f"{k} {r[k][0]:.2f} s, {r[k][1]:.2f} GiB" for k in ("train", "validation", "predict"))
            + f"; {compiled}")


def run_cuda(args) -> int:
    """``doctor --cuda``: one line per trainer; 1 if any failed (CUDA out of memory included)."""
    import torch
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
            print(f"  FAIL {name}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            torch.cuda.empty_cache()
            continue
        print(f"  ok   {name}: {describe(r)}")
        torch.cuda.empty_cache()
    return 1 if failures else 0


def run(args):
    if getattr(args, "cuda", False):
        import torch
        if not torch.cuda.is_available():  # before anything else: one clear line
            print(NO_CUDA, file=sys.stderr)
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
    return run_cuda(args) if getattr(args, "cuda", False) else 0
