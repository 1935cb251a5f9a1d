"""Where an image lies in space, read from its header, and how two images disagree.

A label scored against a prediction (or the images it was predicted from), and the modality
files of one case, must share one voxel grid: the same size, spacing, origin and direction.
nnU-Net compares arrays and only warns about a different origin or direction, so a shifted or
flipped label would be scored voxel by voxel as if it lay on the image. ``geometry_mismatch``
says what differs, in one phrase, so that callers can refuse with their own error type.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from nnunet_prism.image_io import read_image_information

#: Tolerances: spacing relative (as nnU-Net's evaluation), origin in mm, direction cosines.
SPACING_RTOL, ORIGIN_ATOL, DIRECTION_ATOL = 1e-3, 1e-3, 1e-4


@dataclass(frozen=True)
class Geometry:
    """Size and spacing in SimpleITK's (x, y, z) order; origin and direction as in the header."""
    size: Tuple[int, ...]
    spacing: Tuple[float, ...]
    origin: Tuple[float, ...]
    direction: Tuple[float, ...]

    @classmethod
    def of(cls, header) -> "Geometry":
        """From a SimpleITK reader after ``ReadImageInformation`` (or an image)."""
        return cls(tuple(header.GetSize()), tuple(header.GetSpacing()), tuple(header.GetOrigin()),
                   tuple(header.GetDirection()))


def read_geometry(path: os.PathLike) -> Geometry:
    """The geometry in the header of ``path`` (the voxels are not read); a file SimpleITK cannot
    read is an ``ImageFileError`` naming it."""
    return Geometry.of(read_image_information(path))


def _show(values) -> str:
    return "(" + ", ".join(f"{v + 0.0:g}" for v in values) + ")"  # + 0.0: no "-0"


def geometry_mismatch(a: Geometry, b: Geometry) -> Optional[str]:
    """None when ``a`` and ``b`` describe the same grid, else "origin (..) vs (..)" for the first
    property that differs (size, spacing, origin, direction, in this order)."""
    if a.size != b.size:
        return f"size {'x'.join(map(str, a.size))} vs {'x'.join(map(str, b.size))}"
    if not np.allclose(a.spacing, b.spacing, rtol=SPACING_RTOL, atol=1e-6):
        return f"spacing {_show(a.spacing)} vs {_show(b.spacing)}"
    if not np.allclose(a.origin, b.origin, rtol=0, atol=ORIGIN_ATOL):
        return f"origin {_show(a.origin)} vs {_show(b.origin)}"
    if len(a.direction) != len(b.direction) or not np.allclose(a.direction, b.direction, rtol=0,
                                                                 atol=DIRECTION_ATOL):
        return f"direction {_show(a.direction)} vs {_show(b.direction)}"
    return None
