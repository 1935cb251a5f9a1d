"""Refuse NIfTI files that SimpleITK would read wrongly, before anyone reads them.

SimpleITK (and with it nnU-Net) reads a ``.nii.gz`` whose gzip stream ends early, or whose voxel
data is shorter than its header says, without complaint and fills the missing voxels with zeros:
a truncated label silently loses tumour. It also reads NaN and infinite voxels as 0, so a
modality that is all NaN looks absent and a partly NaN one gets silent holes.
``check_nifti_complete`` reads a file once, completely, and raises an ``ImageFileError`` (one
sentence naming the file) when

- the gzip stream ends before its end-of-stream marker, is not gzip at all, or fails its CRC or
  length check (``IncompleteImageError``; the message says how many bytes it held);
- the header (NIfTI-1: 348 bytes, NIfTI-2: 540 bytes, either byte order) is missing or names no
  valid dimensions and data type (``IncompleteImageError``);
- fewer voxel bytes follow ``vox_offset`` than ``dim`` and ``bitpix`` call for
  (``IncompleteImageError``);
- a floating-point voxel is NaN or infinite (``NonFiniteImageError``, with the counts).

Plain ``.nii`` files get the same checks without decompression.
"""
from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Union

import numpy as np

from nnunet_prism.errors import NnunetPrismError

_CHUNK = 1 << 20
_NIFTI1, _NIFTI2 = 348, 540
#: NIfTI datatype codes of the floating-point types that can hold NaN or infinity
_FLOAT_TYPES = {16: "f4", 64: "f8"}


class ImageFileError(NnunetPrismError, ValueError):
    """An image file SimpleITK would read wrongly; the message is one sentence naming the file."""


class IncompleteImageError(ImageFileError):
    """A NIfTI file that cannot be read completely."""


class NonFiniteImageError(ImageFileError):
    """An image file with NaN or infinite voxels (SimpleITK's NIfTI reader turns them into 0)."""


@dataclass(frozen=True)
class VoxelLayout:
    """Where the voxels of a NIfTI file lie: bytes ``offset`` to ``offset + size``, numpy dtype
    ``dtype`` (None for types that cannot hold NaN)."""
    offset: int
    size: int
    dtype: Optional[np.dtype]

    @property
    def end(self) -> int:
        return self.offset + self.size


def _voxel_layout(header: bytes, path: Path) -> VoxelLayout:
    """The voxel layout from the first bytes of a NIfTI file."""
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
        datatype, bitpix = struct.unpack(order + "2h", header[70:74])
        vox_offset = int(struct.unpack(order + "f", header[108:112])[0])
    else:
        datatype, bitpix = struct.unpack(order + "2h", header[12:16])
        dim = struct.unpack(order + "8q", header[16:80])
        vox_offset = struct.unpack(order + "q", header[168:176])[0]
    ndim = dim[0]
    if not 1 <= ndim <= 7 or any(d < 0 for d in dim[1:ndim + 1]) or bitpix <= 0 or bitpix % 8:
        raise bad(f"dim {list(dim)}, bitpix {bitpix}")
    voxels = 1
    for d in dim[1:ndim + 1]:
        voxels *= d
    dtype = np.dtype(order + _FLOAT_TYPES[datatype]) if datatype in _FLOAT_TYPES else None
    return VoxelLayout(max(vox_offset, size), voxels * (bitpix // 8), dtype)


def _gunzip(path: Path) -> Iterator[bytes]:
    """The decompressed bytes of ``path`` in chunks of at most ``_CHUNK``; IncompleteImageError
    (with the number of bytes it held) when the stream ends early or is damaged."""
    total, decompressor = 0, zlib.decompressobj(16 + zlib.MAX_WBITS)
    with open(path, "rb") as f:
        pending = f.read(_CHUNK)
        while True:
            try:
                out = decompressor.decompress(pending, _CHUNK)
            except zlib.error as e:
                raise IncompleteImageError(f"{path} is a damaged or truncated gzip file ({e}).") from None
            total += len(out)
            if out:
                yield out
            if decompressor.eof:
                # the member ended: zero padding, then possibly another member (as gzip allows)
                pending = decompressor.unused_data.lstrip(b"\0")
                while not pending:
                    more = f.read(_CHUNK)
                    if not more:
                        return
                    pending = more.lstrip(b"\0")
                decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
                continue
            pending = decompressor.unconsumed_tail or f.read(_CHUNK)
            if not pending and not out:  # no input left, and nothing more came out of what was read
                break
    raise IncompleteImageError(f"{path} is truncated: its gzip stream ends early, after {total:,} "
                               f"decompressed bytes.")


def _read_plain(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while True:
            chunk = f.read(_CHUNK)
            if not chunk:
                return
            yield chunk


class _VoxelCounter:
    """Counts the bytes of a NIfTI stream and, once its header is known, the NaN and infinite
    voxels among them (chunk by chunk: a voxel may straddle two chunks)."""

    def __init__(self, path: Path):
        self.path, self.total, self.nan, self.inf = path, 0, 0, 0
        self.layout: Optional[VoxelLayout] = None
        self._head, self._carry = b"", b""

    def feed(self, chunk: bytes) -> None:
        if self.layout is None:
            self._head += chunk
            if len(self._head) >= _NIFTI2:
                self.finish_header()
            return
        self._count(chunk)

    def finish_header(self) -> None:
        """Parse the header from what has come so far (at the end of a short stream, too)."""
        if self.layout is None:
            self.layout = _voxel_layout(self._head, self.path)
            head, self._head = self._head, b""
            self._count(head)

    def _count(self, chunk: bytes) -> None:
        start, self.total = self.total, self.total + len(chunk)
        layout = self.layout
        if layout.dtype is None:
            return
        first, last = max(layout.offset - start, 0), min(layout.end - start, len(chunk))
        if first >= last:
            return
        data = self._carry + chunk[first:last]
        whole = len(data) - len(data) % layout.dtype.itemsize
        values = np.frombuffer(data[:whole], dtype=layout.dtype)
        nan = int(np.count_nonzero(np.isnan(values)))
        self.nan += nan
        self.inf += int(np.count_nonzero(~np.isfinite(values))) - nan
        self._carry = data[whole:]


def nonfinite_message(path: os.PathLike, nan: int, inf: int, voxels: int) -> str:
    """The one-line refusal of an image with ``nan`` NaN and ``inf`` infinite voxels (of ``voxels``)."""
    count = nan + inf
    return (f"{path} has {count:,} non-finite voxel{'s' if count != 1 else ''} ({nan:,} NaN, {inf:,} infinite, "
            f"of {voxels:,}); SimpleITK, and with it nnU-Net, would read them as 0: replace them in the file "
            f"(with 0 where they mean no signal) or fix the step that wrote them.")


def check_nifti_complete(path: Union[str, os.PathLike]) -> None:
    """Raise ``IncompleteImageError`` unless ``path`` (``.nii.gz`` or ``.nii``) holds a complete
    NIfTI image (intact gzip stream, at least as many voxel bytes as its header announces), and
    ``NonFiniteImageError`` when a floating-point voxel is NaN or infinite."""
    path = Path(path)
    counter = _VoxelCounter(path)
    for chunk in (_gunzip(path) if path.name.endswith(".gz") else _read_plain(path)):
        counter.feed(chunk)
    counter.finish_header()
    layout = counter.layout
    have = max(counter.total - layout.offset, 0)
    if have < layout.size:
        raise IncompleteImageError(f"{path} is truncated: its header announces {layout.size} bytes of voxel data "
                                   f"but only {have} follow.")
    if counter.nan or counter.inf:
        itemsize = layout.dtype.itemsize
        raise NonFiniteImageError(nonfinite_message(path, counter.nan, counter.inf, layout.size // itemsize))


def read_image_information(path: Union[str, os.PathLike]):
    """SimpleITK's reader of ``path`` after reading its header only (size, spacing, dimension,
    components); a file SimpleITK cannot read is an ``ImageFileError`` naming it."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise ImageFileError(f"cannot read {path} as an image.") from None
    return reader


def write_zero_like(reference: Union[str, os.PathLike], destination: Union[str, os.PathLike]) -> None:
    """An all-zero image on the voxel grid of ``reference`` (size, spacing, origin, direction),
    with its pixel type and components per voxel, written to ``destination``; only the
    reference's header is read."""
    import SimpleITK as sitk

    header = read_image_information(reference)
    zero = sitk.Image(list(header.GetSize()), header.GetPixelID(), header.GetNumberOfComponents())
    zero.SetSpacing(header.GetSpacing())
    zero.SetOrigin(header.GetOrigin())
    zero.SetDirection(header.GetDirection())
    sitk.WriteImage(zero, str(destination))
