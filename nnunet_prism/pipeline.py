"""Run nnU-Net's own commands (plan, train, predict) as subprocesses with the right environment.

Used by the CLI (``train``, ``demo``) and by the end-to-end tests, so every path goes through
nnU-Net's real command-line tools exactly as a user would type them.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

from nnunet_prism import discovery
from nnunet_prism.errors import NnunetPrismError
from nnunet_prism.training.hyperparameters import ENV_VAR as HPARAMS_ENV_VAR

logger = logging.getLogger(__name__)


class PipelineError(NnunetPrismError, RuntimeError):
    """An nnU-Net command failed; the message names the command and where its log is."""


def nnunet_environment(workdir: Optional[os.PathLike] = None, hyperparameters: Optional[Mapping] = None,
                       base: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """Environment for nnU-Net commands: our trainers registered, nnU-Net's three folders under
    ``workdir`` (when given), CPU-friendly worker counts unless the user set them, and
    ``hyperparameters`` passed to our trainers through ``nnUNet_prism_hparams``."""
    env = dict(os.environ if base is None else base)
    discovery.register(env)
    if workdir is not None:
        workdir = Path(workdir).resolve()
        for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
            env[name] = str(workdir / name)
            (workdir / name).mkdir(parents=True, exist_ok=True)
    if hyperparameters:
        env[HPARAMS_ENV_VAR] = json.dumps(dict(hyperparameters))
    env.setdefault("nnUNet_def_n_proc", str(min(os.cpu_count() or 1, 8)))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def nnunet_command(name: str) -> List[str]:
    """Path of an nnU-Net console script next to this interpreter (falls back to PATH)."""
    candidate = Path(sys.executable).with_name(name)
    if candidate.exists():
        return [str(candidate)]
    found = shutil.which(name)
    if found is None:
        raise PipelineError(f"'{name}' is not installed; install nnunetv2 (pip install -e .) first.")
    return [found]


def run(args: Sequence[str], env: Mapping[str, str], log_file: Optional[os.PathLike] = None,
        echo: bool = True) -> None:
    """Run one command, its output streamed to ``log_file`` and, with ``echo``, line by line to this
    module's logger (the ``nnunet_prism`` command prints it)."""
    cmd = list(args)
    if echo:
        logger.info("$ " + " ".join(cmd))
    log = open(log_file, "a", encoding="utf-8") if log_file else None
    try:
        proc = subprocess.Popen(cmd, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1)
        tail: List[str] = []
        for line in proc.stdout:
            if echo:
                logger.info(line.rstrip("\n"))
            if log:
                log.write(line)
            tail = (tail + [line])[-30:]
        code = proc.wait()
    finally:
        if log:
            log.close()
    if code != 0:
        where = f" (full log: {log_file})" if log_file else ""
        shown = " ".join([os.path.basename(cmd[0])] + cmd[1:])
        raise PipelineError(f"'{shown}' failed with exit code {code}{where}. Last lines:\n{''.join(tail)}")


def plan_and_preprocess(dataset_id: int, env: Mapping[str, str], configurations=("3d_fullres",),
                        num_processes: int = 1, planner: Optional[str] = None, **kw) -> None:
    args = nnunet_command("nnUNetv2_plan_and_preprocess") + [
        "-d", str(dataset_id), "-c", *configurations, "-np", str(num_processes), "--verify_dataset_integrity"]
    if planner:
        args += ["-pl", planner]
    run(args, env, **kw)


def train(dataset_id: int, configuration: str, fold, trainer: str, env: Mapping[str, str],
          device: str = "cpu", extra: Sequence[str] = (), **kw) -> None:
    args = nnunet_command("nnUNetv2_train") + [
        str(dataset_id), configuration, str(fold), "-tr", trainer, "-device", device, *extra]
    run(args, env, **kw)


def predict(input_folder, output_folder, dataset_id: int, configuration: str, trainer: str,
            env: Mapping[str, str], folds=(0,), device: str = "cpu", extra: Sequence[str] = (), **kw) -> None:
    args = nnunet_command("nnUNetv2_predict") + [
        "-i", str(input_folder), "-o", str(output_folder), "-d", str(dataset_id), "-c", configuration,
        "-tr", trainer, "-f", *map(str, folds), "-device", device, "-npp", "1", "-nps", "1", *extra]
    run(args, env, **kw)
