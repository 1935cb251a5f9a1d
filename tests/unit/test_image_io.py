"""What ``check_nifti_complete`` counts: the decompressed bytes of a cut gzip stream, and the NaN
and infinite voxels that SimpleITK would read as 0 (also where a voxel straddles two chunks of
the stream, and in either byte order)."""
import gzip
import zlib

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_prism import image_io
from nnunet_prism.image_io import IncompleteImageError, NonFiniteImageError, check_nifti_complete

SHAPE = (12, 10, 9)


def noise(dtype=np.float32):
    return np.random.default_rng(0).random(SHAPE).astype(dtype) + 1


def test_a_cut_stream_names_the_bytes_it_really_held(tmp_path):
    path = tmp_path / "cut.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(noise()), str(path))
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    held = len(zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data[:len(data) // 2]))
    assert held > 0
    with pytest.raises(IncompleteImageError) as info:
        check_nifti_complete(path)
    assert f"ends early, after {held:,} decompressed bytes" in str(info.value)


@pytest.mark.parametrize("chunk", [7, 1 << 20])  # 7 bytes: voxels straddle the chunks
@pytest.mark.parametrize("dtype", ["<f4", ">f8"])
def test_nan_and_infinite_voxels_are_counted(tmp_path, monkeypatch, chunk, dtype):
    monkeypatch.setattr(image_io, "_CHUNK", chunk)
    array = noise(dtype)
    array[0, 0, :3] = np.nan
    array[5, 5, 5], array[11, 9, 8] = np.inf, -np.inf
    path = tmp_path / "nan.nii.gz"
    header = nib.Nifti1Header(endianness=dtype[0])
    nib.save(nib.Nifti1Image(array, np.eye(4), header), str(path))
    assert not np.any(np.isnan(sitk.GetArrayFromImage(sitk.ReadImage(str(path))))), \
        "SimpleITK reads NaN as a number (what the check is for)"
    with pytest.raises(NonFiniteImageError) as info:
        check_nifti_complete(path)
    assert str(info.value).startswith(f"{path} has 5 non-finite voxels (3 NaN, 2 infinite, of 1,080)")
    plain = tmp_path / "nan.nii"
    plain.write_bytes(gzip.decompress(path.read_bytes()))
    with pytest.raises(NonFiniteImageError, match="3 NaN, 2 infinite"):
        check_nifti_complete(plain)


def test_finite_and_integer_images_pass(tmp_path, monkeypatch):
    monkeypatch.setattr(image_io, "_CHUNK", 5)
    for name, array in (("float.nii.gz", noise()), ("int.nii.gz", np.full(SHAPE, -1, np.int16))):
        sitk.WriteImage(sitk.GetImageFromArray(array), str(tmp_path / name))
        check_nifti_complete(tmp_path / name)
