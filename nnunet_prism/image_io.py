"""Refuse incomplete NIfTI files before anyone reads them.

SimpleITK (and with it nnU-Net) reads a ``.nii.gz`` whose gzip stream ends early, or whose voxel
data is shorter than its header says, without complaint and fills the missing voxels with zeros:
a truncated label silently loses tumour. ``check_nifti_complete`` reads a file once, completely,
and raises ``IncompleteImageError`` (one sentence naming the file) when

- the gzip stream ends before its end-of-stream marker, is not gzip at all, or fails its CRC or
  length check;
- the header (NIfTI-1: 348 bytes, NIfTI-2: 540 bytes, either byte order) is missing or names no
  valid dimensions and data type;
- fewer voxel bytes follow ``vox_offset`` than ``dim`` and ``bitpix`` call for.

Plain ``.nii`` files get the same header and size check without decompression.
"""
from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path
from typing import Tuple, Union

from nnunet_prism.errors import NnunetPrismError

_CHUNK = 1 << 20
_NIFTI1, _NIFTI2 = 348, 540


class IncompleteImageError(NnunetPrismError, ValueError):
    """A NIfTI file that cannot be read completely; the message is one sentence naming the file."""


def _voxel_bytes(header: bytes, path: Path) -> Tuple[int, int]:
    """(vox_offset, bytes the voxel data needs) from the first bytes of a NIfTI file."""
    def bad(why: str) -> IncompleteImageError:
        return IncompleteImageError(f"{path} is not a valid NIfTI file ({why}).")

    if len(header) < 4:
        raise bad(f"only {len(header)} bytes, no header")
    for order in "<>":
        size = struct.unpack(order + "i", header[:4])[0]
        if size in (_NIFTI1, _NIFTI2):
            break
    else:
        raise bad("no NIfTI-1 or NIfTI-2 header")
    if len(header) < size:
        raise IncompleteImageError(f"{path} ends inside its {size}-byte NIfTI header ({len(header)} bytes).")
    if size == _NIFTI1:
        dim = struct.unpack(order + "8h", header[40:56])
        bitpix = struct.unpack(order + "h", header[72:74])[0]
        vox_offset = int(struct.unpack(order + "f", header[108:112])[0])
    else:
        bitpix = struct.unpack(order + "h", header[14:16])[0]
        dim = struct.unpack(order + "8q", header[16:80])
        vox_offset = struct.unpack(order + "q", header[168:176])[0]
    ndim = dim[0]
    if not 1 <= ndim <= 7 or any(d < 0 for d in dim[1:ndim + 1]) or bitpix <= 0 or bitpix % 8:
        raise bad(f"dim {list(dim)}, bitpix {bitpix}")
    voxels = 1
    for d in dim[1:ndim + 1]:
        voxels *= d
    return max(vox_offset, size), voxels * (bitpix // 8)


def _gunzip_counting(path: Path, keep: int) -> Tuple[bytes, int]:
    """(first ``keep`` decompressed bytes, total decompressed size) in one pass over ``path``."""
    head, total = b"", 0
    try:
        with gzip.open(path, "rb") as stream:
            while True:
                chunk = stream.read(_CHUNK)
                if not chunk:
                    break
                if len(head) < keep:
                    head += chunk[:keep - len(head)]
                total += len(chunk)
    except EOFError:
        raise IncompleteImageError(f"{path} is truncated: its gzip stream ends early "
                                   f"(after {total} decompressed bytes).") from None
    except (gzip.BadGzipFile, zlib.error) as e:
        raise IncompleteImageError(f"{path} is a damaged or truncated gzip file ({e}).") from None
    return head, total


def check_nifti_complete(path: Union[str, os.PathLike]) -> None:
    """Raise ``IncompleteImageError`` unless ``path`` (``.nii.gz`` or ``.nii``) holds a complete
    NIfTI image: intact gzip stream and at least as many voxel bytes as its header announces."""
    path = Path(path)
    if path.name.endswith(".gz"):
        head, total = _gunzip_counting(path, _NIFTI2)
    else:
        with open(path, "rb") as f:
            head = f.read(_NIFTI2)
        total = path.stat().st_size
    vox_offset, needed = _voxel_bytes(head, path)
    have = max(total - vox_offset, 0)
    if have < needed:
        raise IncompleteImageError(f"{path} is truncated: its header announces {needed} bytes of voxel data "
                                   f"but only {have} follow.")
