"""A synthetic BraTS-like nnU-Net dataset, planned and preprocessed: what the demo and the
benchmarks run on. Every step goes through the same code a user's data would."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Mapping, Optional, Sequence

from nnunet_prism import pipeline


def prepare_synthetic_dataset(workdir: Path, dataset_id: int, env: Mapping[str, str], num_cases: int = 12,
                              num_test_cases: int = 3, shape: Sequence[int] = (48, 48, 48),
                              missing_rates: Optional[Sequence[float]] = (0.2, 0.4, 0.6, 0.8), seed: int = 0,
                              label_based: bool = False, name: str = "SynBraTS",
                              log_file: Optional[Path] = None, echo: bool = True) -> Path:
    """Generate labelled (+ unlabelled test) cases, convert them with ``missing_rates`` and run
    ``nnUNetv2_plan_and_preprocess`` for 3d_fullres. Returns the raw dataset folder."""
    from dataset_conversion.brats import convert_brats
    from dataset_conversion.synthetic import generate_synthetic_brats

    workdir = Path(workdir)
    source, test_source = workdir / "synthetic_brats", workdir / "synthetic_brats_test"
    for folder in (source, test_source):
        shutil.rmtree(folder, ignore_errors=True)
    generate_synthetic_brats(source, num_cases=num_cases, shape=tuple(shape), seed=seed)
    sources = [source]
    if num_test_cases:
        generate_synthetic_brats(test_source, num_cases=num_test_cases, shape=tuple(shape), seed=seed + 1000,
                                 prefix="SynBraTSTest", labelled=False)
        sources.append(test_source)
    folder = convert_brats(sources, dataset_id, name, raw_root=env["nnUNet_raw"],
                           missing_rates=list(missing_rates) if missing_rates else None, seed=seed,
                           label_based=label_based, overwrite=True)
    plan_env = {k: v for k, v in env.items() if k != "nnUNet_n_proc_DA"}  # the planner fails on 0
    pipeline.plan_and_preprocess(dataset_id, plan_env, configurations=("3d_fullres",), log_file=log_file,
                                 echo=echo)
    return Path(folder)


def prepare_complete_test_set(workdir: Path, dataset_id: int, env: Mapping[str, str], num_cases: int = 4,
                              shape: Sequence[int] = (48, 48, 48), seed: int = 777, label_based: bool = False,
                              name: str = "SynHeldOut") -> Path:
    """Held-out labelled cases with every modality present, converted (no planning needed) into
    ``nnUNet_raw/DatasetXXX_<name>``: what ``nnunet_prism evaluate -i imagesTr -l labelsTr``
    scores every modality subset on. Returns the raw dataset folder."""
    from dataset_conversion.brats import convert_brats
    from dataset_conversion.synthetic import generate_synthetic_brats

    source = Path(workdir) / "synthetic_brats_heldout"
    shutil.rmtree(source, ignore_errors=True)
    generate_synthetic_brats(source, num_cases=num_cases, shape=tuple(shape), seed=seed, prefix=name)
    return Path(convert_brats([source], dataset_id, name, raw_root=env["nnUNet_raw"], label_based=label_based,
                              overwrite=True))
