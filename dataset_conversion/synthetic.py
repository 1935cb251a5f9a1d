"""Synthetic BraTS-like cases in the BraTS 2020 layout (or the 2024 post-treatment one), for tests and demos.

``<out>/<case>/<case>_{flair,t1,t1ce,t2,seg}.nii.gz``; labels 0 background, 1 necrotic core,
2 edema, 4 enhancing. With ``layout="2024"``: ``<out>/<case>/<case>-{t2f,t1n,t1c,t2w,seg}.nii.gz``
with case ids ``BraTS-GLI-00000-100, ...`` and the 2024-2025 post-treatment glioma labels 1 NETC,
2 SNFH, 3 ET, 4 resection cavity: each case also gets a cavity (fluid: dark on FLAIR, T1 and
T1c, bright on T2) next to its tumour. Each case: a skull-stripped, smoothly irregular ellipsoidal brain (white
and grey matter, two ventricles) and one tumour (necrotic core inside an enhancing rim inside
edema) of random position, size and shape. The modalities carry different evidence as in BraTS:
FLAIR and T2 show the edema bright (T2 also CSF), T1c shows a bright enhancing rim around a dark
core, T1 shows little (the tumour slightly dark). Each modality gets texture, a smooth
multiplicative bias field, Gaussian noise and a per-case intensity scale; images are int16.

Case i depends only on (seed, i): the same seed writes byte-identical files.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import SimpleITK as sitk
from scipy.ndimage import gaussian_filter

from dataset_conversion.errors import ConversionError
from dataset_conversion.layouts import conversion_layout
from nnunet_prism.brats_label_sets import LAYOUT_2020
from nnunet_prism.modalities import BRATS_MODALITIES

FILE_KEYS = LAYOUT_2020.image_keys  # flair, t1, t1ce, t2 (channel order FLAIR, T1, T1c, T2)
_KEY_BY_NAME = {**{k: k for k in FILE_KEYS}, **{n.lower(): k for n, k in zip(BRATS_MODALITIES, FILE_KEYS)}}

# tissue classes of the label-free ground truth
BACKGROUND, WHITE, GREY, CSF, EDEMA, ENHANCING, NECROSIS, CAVITY = range(8)
#: mean intensity per tissue (order above) and modality, before texture, bias, noise and scale
TISSUE_MEANS = {
    "flair": (0.0, 0.45, 0.55, 0.12, 1.00, 0.85, 0.60, 0.08),
    "t1":    (0.0, 0.75, 0.55, 0.20, 0.62, 0.60, 0.45, 0.12),
    "t1ce":  (0.0, 0.75, 0.55, 0.20, 0.60, 1.30, 0.25, 0.12),
    "t2":    (0.0, 0.35, 0.50, 1.00, 0.85, 0.70, 0.90, 1.05),
}
#: nnU-Net label of each tissue class (0 bg, 1 edema, 2 necrosis, 3 enhancing, 4 resection cavity)
TISSUE_TO_NNUNET = np.array([0, 0, 0, 0, 1, 3, 2, 4], dtype=np.uint8)
#: BraTS 2020 label of each tissue class (no cavity in that set)
TISSUE_TO_BRATS = np.array([0, 0, 0, 0, 2, 4, 1, 0], dtype=np.uint8)


def _norm(vectors: np.ndarray) -> np.ndarray:
    return np.sqrt(np.einsum("i...,i...->...", vectors, vectors))


def _lumpy(directions: np.ndarray, rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """Smooth radius multiplier in [1 - amplitude, 1 + amplitude] from unit ``directions`` (3, *S):
    a random linear plus quadratic form of the direction."""
    a = rng.normal(size=3)
    b = rng.normal(size=(3, 3))
    b = (b + b.T) / 2
    raw = np.einsum("i,i...->...", a, directions) + np.einsum("ij,i...,j...->...", b, directions, directions)
    return 1.0 + amplitude * raw / (np.linalg.norm(a) + np.linalg.norm(b, 2) + 1e-8)


def _smooth_field(points: np.ndarray, rng: np.random.Generator, waves: int = 6) -> np.ndarray:
    """Sum of ``waves`` random low-frequency cosines over normalised ``points`` (3, *S), unit variance."""
    field = np.zeros(points.shape[1:], dtype=np.float32)
    for _ in range(waves):
        frequency = rng.normal(size=3) * 2.0
        field += np.cos(np.einsum("i,i...->...", frequency, points) * np.pi + rng.uniform(0, 2 * np.pi))
    return field / np.sqrt(waves / 2)


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


def _tissue_map(rng: np.random.Generator, shape: Tuple[int, int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """(tissue classes (*shape) uint8, normalised coordinates (3, *shape))."""
    size = np.array(shape, dtype=np.float32)
    points = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float32) - (s - 1) / 2 for s in shape], indexing="ij"))
    unit = points / (size / 2)[:, None, None, None]  # roughly [-1, 1] per axis

    axes = size / 2 * rng.uniform(0.72, 0.88, 3)
    scaled = points / axes[:, None, None, None]
    radius = _norm(scaled)
    rho = radius / _lumpy(scaled / np.maximum(radius, 1e-6), rng, 0.08)
    brain = rho < 1
    tissue = np.where(brain, WHITE, BACKGROUND).astype(np.uint8)
    tissue[brain & (rho + 0.06 * _smooth_field(unit, rng) > 0.8)] = GREY

    # two ventricles beside the midline (last array axis = left-right)
    half_axes = np.array([0.22, 0.32, 0.11]) * axes
    for side in (-1, 1):
        centre = np.array([0.05, -0.05, side * 0.16]) * axes
        inside = _norm((points - centre[:, None, None, None]) / half_axes[:, None, None, None]) < 1
        tissue[inside & brain] = CSF

    # tumour: edema > enhancing rim > necrotic core, each boundary its own smooth irregularity
    direction = rng.normal(size=3)
    centre = direction / np.linalg.norm(direction) * rng.uniform(0.1, 0.45) * axes
    stretch = rng.uniform(0.8, 1.25, 3)
    local = np.einsum("ij,j...->i...", _rotation(rng) / stretch[:, None], points - centre[:, None, None, None])
    distance = _norm(local)
    local_dir = local / np.maximum(distance, 1e-6)
    r_edema = axes.min() * rng.uniform(0.35, 0.6)
    r_rim = r_edema * rng.uniform(0.6, 0.8)
    r_core = max(1.5, r_rim * rng.uniform(0.5, 0.75))
    r_rim = max(r_rim, r_core + 1.5)
    r_edema = max(r_edema, r_rim + 2.0)
    for radius_, amplitude, label in ((r_edema, 0.2, EDEMA), (r_rim, 0.12, ENHANCING), (r_core, 0.12, NECROSIS)):
        tissue[brain & (distance < radius_ * _lumpy(local_dir, rng, amplitude))] = label
    return tissue, unit


def _modality_image(tissue: np.ndarray, unit: np.ndarray, means: Sequence[float],
                    rng: np.random.Generator) -> np.ndarray:
    """int16 image (*shape): tissue means x texture, blurred, x bias field, + noise, x scale; 0 outside."""
    brain = tissue != BACKGROUND
    image = np.asarray(means, dtype=np.float32)[tissue]
    image *= 1 + 0.07 * _smooth_field(unit, rng)
    image = gaussian_filter(image, 0.6)
    linear = np.einsum("i,i...->...", rng.normal(0, 0.12, 3).astype(np.float32), unit)
    quadratic = rng.normal(0, 0.06) * np.einsum("i...,i...->...", unit, unit)
    image *= np.exp(linear + quadratic)
    image += rng.normal(0, 0.025, tissue.shape).astype(np.float32)
    image = np.clip(image, 0, None) * rng.uniform(300, 1500)
    return np.where(brain, np.rint(image), 0).astype(np.int16)


def _add_cavity(tissue: np.ndarray, rng: np.random.Generator) -> None:
    """Paint a resection cavity (a ball about the tumour's size) beside the tumour, inside the brain."""
    tumour = np.argwhere(np.isin(tissue, (EDEMA, ENHANCING, NECROSIS)))
    centre = tumour.mean(axis=0)
    radius = max(2.0, 0.6 * (len(tumour) * 3 / (4 * np.pi)) ** (1 / 3))
    direction = rng.normal(size=3)
    centre = centre + direction / np.linalg.norm(direction) * radius * 1.3
    grid = np.indices(tissue.shape).astype(np.float32)
    inside = _norm(grid - centre[:, None, None, None]) < radius
    tissue[inside & (tissue != BACKGROUND)] = CAVITY


def synthesize_case(shape: Tuple[int, int, int], rng: np.random.Generator,
                    cavity: bool = False) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
    """({file key: int16 image (*shape)}, tissue classes (*shape) uint8) for one case; file keys
    of the 2020 layout. ``cavity``: add a resection cavity beside the tumour."""
    tissue, unit = _tissue_map(rng, shape)
    if cavity:
        _add_cavity(tissue, rng)
    images = {key: _modality_image(tissue, unit, TISSUE_MEANS[key], rng) for key in FILE_KEYS}
    return images, tissue


def _drop_keys(drop_files: Optional[Mapping[int, Sequence[str]]], num_cases: int) -> Dict[int, set]:
    """{case index: set of file keys}; accepts file keys (``t1ce``) or modality names (``T1c``)."""
    result: Dict[int, set] = {}
    for index, names in (drop_files or {}).items():
        if not 0 <= int(index) < num_cases:
            raise ConversionError(f"drop_files names case index {index}, but only {num_cases} cases are made.")
        unknown = [n for n in names if str(n).lower() not in _KEY_BY_NAME]
        if unknown:
            raise ConversionError(f"drop_files: unknown modality '{unknown[0]}'; use one of {', '.join(FILE_KEYS)}.")
        result[int(index)] = {_KEY_BY_NAME[str(n).lower()] for n in names}
    return result


def _write(array: np.ndarray, path: Path, spacing_xyz: Sequence[float], origin: Sequence[float]) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing([float(s) for s in spacing_xyz])
    image.SetOrigin([float(o) for o in origin])
    sitk.WriteImage(image, str(path))


def generate_synthetic_brats(out_dir: Union[str, os.PathLike], num_cases: int = 10,
                             shape: Sequence[int] = (48, 48, 48), seed: int = 0, prefix: str = "SynBraTS",
                             labelled: bool = True, spacing: Union[float, Sequence[float]] = 1.0,
                             drop_files: Optional[Mapping[int, Sequence[str]]] = None,
                             layout: str = "2020") -> List[str]:
    """Write ``num_cases`` cases ``<prefix>_000, ...`` into ``out_dir`` (BraTS 2020 layout); return their ids.

    ``layout="2024"``: the 2024-2025 post-treatment glioma layout, ids ``<prefix>-00000-100, ...``
    (``prefix`` defaults to BraTS-GLI there), labels 1 NETC, 2 SNFH, 3 ET, 4 resection cavity.

    ``shape`` and ``spacing`` (mm) in array order (z, y, x); each side >= 16. ``labelled=False``
    writes no seg files. ``drop_files``: {case index: modalities (``flair``/``FLAIR``, ``t1ce``/``T1c``,
    ...)} whose files are left out, to exercise absent modality files.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 16:
        raise ConversionError(f"shape must be three sides of at least 16 voxels, got {shape}.")
    spacing_zyx = np.broadcast_to(np.asarray(spacing, dtype=float), (3,))
    if np.any(spacing_zyx <= 0):
        raise ConversionError(f"spacing must be positive, got {spacing_zyx.tolist()}.")
    if int(seed) < 0 or int(num_cases) < 0:
        raise ConversionError(f"seed and number of cases must be >= 0, got seed {seed}, {num_cases} cases.")
    dropped = _drop_keys(drop_files, num_cases)
    target = conversion_layout(layout)
    if target.name not in ("2020", "2024"):
        raise ConversionError(f"phantoms are written in the 2020 or the 2024 layout, not '{layout}'.")
    post_treatment = target.name == "2024"
    if post_treatment and prefix == "SynBraTS":
        prefix = "BraTS-GLI"
    to_brats = np.zeros(TISSUE_TO_NNUNET.max() + 1, dtype=np.uint8)
    for brats, nnunet in target.to_nnunet.items():
        to_brats[nnunet] = brats

    out_dir = Path(out_dir)
    case_ids = []
    for index in range(num_cases):
        rng = np.random.default_rng([int(seed), index])
        case_id = f"{prefix}-{index:05d}-100" if post_treatment else f"{prefix}_{index:03d}"
        images, tissue = synthesize_case(shape, rng, cavity=post_treatment)
        seg = to_brats[TISSUE_TO_NNUNET[tissue]] if post_treatment else TISSUE_TO_BRATS[tissue]
        spacing_xyz = spacing_zyx[::-1]
        origin = -np.array(shape[::-1]) * spacing_xyz / 2 + np.round(rng.uniform(-8, 8, 3), 2)
        folder = out_dir / case_id
        folder.mkdir(parents=True, exist_ok=True)
        outputs = {key: images[key] for key in FILE_KEYS if key not in dropped.get(index, ())}
        if labelled:
            outputs["seg"] = seg
        names = dict(zip(FILE_KEYS + ("seg",), target.image_keys + (target.seg_key,)))
        for key in FILE_KEYS + ("seg",):
            path = folder / target.file_name(case_id, names[key])
            if key in outputs:
                _write(outputs[key], path, spacing_xyz, origin)
            elif path.exists():  # stale file from an earlier run into the same folder
                path.unlink()
        case_ids.append(case_id)
    return case_ids
