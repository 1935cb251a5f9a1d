"""A synthetic BraTS-like nnU-Net dataset, planned and preprocessed: what the demo and the
benchmarks run on. Every step goes through the same code a user's data would."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Tuple

from nnunet_prism import pipeline

# modalities left out of the unlabelled test cases, in turn: what a clinic's folder may look like
TEST_CASE_ABSENT_MODALITIES: Tuple[Tuple[str, ...], ...] = (("T1c", "T2"), ("FLAIR", "T1", "T1c"), ("T1",), ())


def test_case_absent_modalities(num_test_cases: int) -> Dict[int, Tuple[str, ...]]:
    """{test case index: modalities whose files the generator leaves out}, cycling through
    ``TEST_CASE_ABSENT_MODALITIES``."""
    pattern = TEST_CASE_ABSENT_MODALITIES
    return {i: pattern[i % len(pattern)] for i in range(num_test_cases) if pattern[i % len(pattern)]}


def copy_present_files(images_folder: Path, destination: Path) -> Path:
    """Copy the channel files of ``images_folder`` that carry signal into ``destination``,
    leaving out the all-zero images the converter writes for absent modalities: the folder as a
    user would hand it to ``nnunet_prism predict``, absent files simply missing."""
    from nnunet_prism.availability import image_has_signal

    destination = Path(destination)
    shutil.rmtree(destination, ignore_errors=True)
    destination.mkdir(parents=True)
    for image in sorted(Path(images_folder).iterdir()):
        if image.is_file() and image_has_signal(image):
            shutil.copy2(image, destination / image.name)
    return destination


def prepare_synthetic_dataset(workdir: Path, dataset_id: int, env: Mapping[str, str], num_cases: int = 12,
                              num_test_cases: int = 3, shape: Sequence[int] = (48, 48, 48),
                              missing_rates: Optional[Sequence[float]] = (0.2, 0.4, 0.6, 0.8), seed: int = 0,
                              label_based: bool = False, name: str = "SynBraTS",
                              log_file: Optional[Path] = None, echo: bool = True) -> Path:
    """Generate labelled (+ unlabelled test) cases, convert them with ``missing_rates`` and run
    ``nnUNetv2_plan_and_preprocess`` for 3d_fullres. Returns the raw dataset folder.
    The test cases (``imagesTs``) lack modalities as in ``test_case_absent_modalities``."""
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
                                 prefix="SynBraTSTest", labelled=False,
                                 drop_files=test_case_absent_modalities(num_test_cases))
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
