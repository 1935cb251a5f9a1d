"""No silent wrong results in dataset conversion: truncated files, NaN or infinite voxels, files of
a case folder that would not be read (broken links, folders, capitals, another case's id), a
destination that holds or lies in the source, interrupted runs, non-finite or negative rates and
negative seeds are refused by the real commands with exit code 2 and one line naming the file or
case, and neither the input nor an earlier output changes."""
import gzip
import os
import shutil
import zlib

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from dataset_conversion.brats import convert_brats
from dataset_conversion.synthetic import generate_synthetic_brats
from helpers.cli import cli
from helpers.files import tree_hashes
from helpers.input_checks import assert_one_line_error
from nnunet_prism.cli import main
from nnunet_prism.image_io import IncompleteImageError, check_nifti_complete

SHAPE = (16, 16, 16)


# ---------------------------------------------------------------- the check on hand-made files

@pytest.fixture
def valid_file(tmp_path):
    array = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)
    path = tmp_path / "valid.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    return path


def test_valid_files_pass(valid_file, tmp_path):
    check_nifti_complete(valid_file)
    plain = tmp_path / "plain.nii"
    plain.write_bytes(gzip.decompress(valid_file.read_bytes()))
    check_nifti_complete(plain)
    for name, image in (("two.nii.gz", nib.Nifti2Image(np.ones(SHAPE, np.int16), np.eye(4))),
                        ("big_endian.nii.gz", nib.Nifti1Image(np.ones(SHAPE, ">f4"), np.eye(4),
                                                              nib.Nifti1Header(endianness=">")))):
        nib.save(image, str(tmp_path / name))
        check_nifti_complete(tmp_path / name)


def test_gzip_stream_cut_in_the_middle(valid_file):
    data = valid_file.read_bytes()
    valid_file.write_bytes(data[:len(data) // 2])
    with pytest.raises(IncompleteImageError, match="truncated: its gzip stream ends early") as info:
        check_nifti_complete(valid_file)
    assert str(valid_file) in str(info.value)
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(valid_file))).shape == SHAPE[::-1], \
        "SimpleITK itself reads the cut file without complaint (what the check is for)"


def test_complete_gzip_with_short_payload(valid_file):
    raw = gzip.decompress(valid_file.read_bytes())
    valid_file.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(IncompleteImageError, match=r"announces 16384 bytes of voxel data but only 16284 follow"):
        check_nifti_complete(valid_file)
    plain = valid_file.with_name("short.nii")
    plain.write_bytes(raw[:-1])
    with pytest.raises(IncompleteImageError, match="short.nii is truncated"):
        check_nifti_complete(plain)


def test_crc_error_header_only_and_not_gzip(valid_file, tmp_path):
    data = bytearray(valid_file.read_bytes())
    data[-8] ^= 0xFF  # CRC32 of the gzip trailer
    valid_file.write_bytes(bytes(data))
    with pytest.raises(IncompleteImageError, match="damaged or truncated gzip"):
        check_nifti_complete(valid_file)
    header_only = tmp_path / "header.nii.gz"
    header_only.write_bytes(gzip.compress((348).to_bytes(4, "little") + bytes(100)))
    with pytest.raises(IncompleteImageError, match="ends inside its 348-byte NIfTI header"):
        check_nifti_complete(header_only)
    text = tmp_path / "text.nii.gz"
    text.write_bytes(b"not an image")
    with pytest.raises(IncompleteImageError, match="text.nii.gz"):
        check_nifti_complete(text)


# ---------------------------------------------------------------- the real commands

def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.err.strip().splitlines()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("pristine")
    generate_synthetic_brats(root / "train", num_cases=3, shape=SHAPE, seed=0)
    return root / "train"


@pytest.fixture
def src(pristine, tmp_path):
    shutil.copytree(pristine, tmp_path / "src")
    return tmp_path / "src"


def cut_gzip(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) * 2 // 3])


def short_payload(path):
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-SHAPE[0] * SHAPE[1]]))


@pytest.mark.parametrize("file_key, damage", [("t1ce", cut_gzip), ("seg", cut_gzip), ("t2", short_payload),
                                              ("seg", short_payload)])
def test_convert_brats_refuses_truncated_files(src, tmp_path, capsys, file_key, damage):
    damage(src / "SynBraTS_001" / f"SynBraTS_001_{file_key}.nii.gz")
    raw = tmp_path / "raw"
    before = tree_hashes(src)
    code, err = run_cli(capsys, "convert-brats", "-i", src, "-d", 51, "--raw", raw)
    assert code == 2 and len(err) == 1, err
    assert "case 'SynBraTS_001'" in err[0] and f"SynBraTS_001_{file_key}.nii.gz is truncated" in err[0]
    assert tree_hashes(src) == before and tree_hashes(raw) == {}


def test_convert_brats_overwrite_never_touches_a_source_inside_or_around_the_destination(src, tmp_path, capsys):
    raw = tmp_path / "raw"
    assert run_cli(capsys, "convert-brats", "-i", src, "-d", 52, "-n", "Syn", "--raw", raw)[0] == 0
    dataset = raw / "Dataset052_Syn"
    inner = dataset / "cases"
    shutil.copytree(src, inner)
    before = tree_hashes(raw)
    code, err = run_cli(capsys, "convert-brats", "-i", inner, "-d", 52, "-n", "Syn", "--raw", raw, "--overwrite")
    assert code == 2 and len(err) == 1, err
    assert f"destination {dataset} holds the source folder {inner}" in err[0]
    assert tree_hashes(raw) == before
    # the destination inside the source (raw folder = source folder) is refused the same way
    before = tree_hashes(src)
    code, err = run_cli(capsys, "convert-brats", "-i", src, "-d", 53, "--raw", src, "--overwrite")
    assert code == 2 and len(err) == 1 and f"lies inside the source folder {src}" in err[0], err
    assert tree_hashes(src) == before


def test_interrupted_conversion_is_cleaned_up_by_the_next_run(src, tmp_path, capsys):
    raw = tmp_path / "raw"
    stale = raw / ".tmp_Dataset054_Syn_abcd1234"
    (stale / "imagesTr").mkdir(parents=True)
    (stale / "imagesTr" / "half.nii.gz").write_bytes(b"half")
    other = raw / ".tmp_Dataset054_Syn_2_abcd1234"  # another dataset's temporary folder stays
    other.mkdir()
    code, err = run_cli(capsys, "convert-brats", "-i", src, "-d", 54, "-n", "Syn", "--raw", raw)
    assert code == 0
    assert len(err) == 1 and f"removed {stale}, the temporary folder of an interrupted run" in err[0], err
    assert sorted(p.name for p in raw.iterdir()) == [other.name, "Dataset054_Syn"]


def test_dataset_kept_aside_by_an_interrupted_overwrite_is_restored(src, tmp_path, capsys):
    raw = tmp_path / "raw"
    assert run_cli(capsys, "convert-brats", "-i", src, "-d", 55, "-n", "Syn", "--raw", raw)[0] == 0
    dataset = raw / "Dataset055_Syn"
    before = tree_hashes(dataset)
    aside = raw / ".old_Dataset055_Syn_zz99zz99"  # killed between moving the old one aside and the new one in
    aside.mkdir()
    dataset.rename(aside / dataset.name)
    code, err = run_cli(capsys, "convert-brats", "-i", src, "-d", 55, "-n", "Syn", "--raw", raw)
    assert code == 2 and len(err) == 2, err
    assert f"restored {dataset} from {aside}" in err[0] and "already exists" in err[1]
    assert tree_hashes(dataset) == before and sorted(p.name for p in raw.iterdir()) == [dataset.name]
    # a replacement that had finished but not yet removed the old copy: the old copy goes
    aside.mkdir()
    shutil.copytree(dataset, aside / dataset.name)
    code, err = run_cli(capsys, "convert-brats", "-i", src, "-d", 55, "-n", "Syn", "--raw", raw, "--overwrite")
    assert code == 0 and len(err) == 1 and f"removed {aside}" in err[0], err
    assert sorted(p.name for p in raw.iterdir()) == [dataset.name]


@pytest.mark.parametrize("args, words", [
    (["--missing-rates", "nan,0.4,0.6,0.8"], "every missing rate must lie in [0, 1)"),
    (["--missing-rates", "0.2,inf,0.6,0.8"], "every missing rate must lie in [0, 1)"),
    (["--missing-rates", "-0.2,0.4,0.6,0.8"], "every missing rate must lie in [0, 1)"),
    (["--missing-rates=-0.2,0.4,0.6,0.8"], "every missing rate must lie in [0, 1)"),
    (["--seed", "-5"], "seed must be a non-negative integer, got -5"),
    (["--missing-rates", "0.2,0.4,0.6,0.8", "--seed", "-5"], "seed must be a non-negative integer, got -5"),
])
def test_bad_rates_and_seeds_are_one_line(src, tmp_path, capsys, args, words):
    raw = tmp_path / "raw"
    before = tree_hashes(src)
    code, err = run_cli(capsys, "convert-brats", "-i", src, "-d", 56, "--raw", raw, *args)
    assert code == 2 and len(err) == 1 and words in err[0], err
    assert tree_hashes(src) == before and not raw.exists()


# ---------------------------------------------------------------- brats-labels

@pytest.fixture
def predictions(tmp_path):
    folder = tmp_path / "pred"
    folder.mkdir()
    for i in range(3):
        seg = np.zeros(SHAPE, np.uint8)
        seg[4:8, 4:8, 4:8] = 1 + i
        sitk.WriteImage(sitk.GetImageFromArray(seg), str(folder / f"case_{i}.nii.gz"))
    return folder


@pytest.mark.parametrize("damage", [cut_gzip, short_payload])
def test_brats_labels_refuses_truncated_predictions(predictions, tmp_path, capsys, damage):
    damage(predictions / "case_2.nii.gz")
    before = tree_hashes(predictions)
    out = tmp_path / "out"
    code, err = run_cli(capsys, "brats-labels", "-i", predictions, "-o", out, "--layout", "2020")
    assert code == 2 and len(err) == 1 and f"prediction file {predictions / 'case_2.nii.gz'} is truncated" in err[0]
    assert tree_hashes(predictions) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred"], "no output and no hidden folder left"


def test_brats_labels_error_mid_way_leaves_an_earlier_output_as_it_was(predictions, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli(capsys, "brats-labels", "-i", predictions, "-o", out, "--layout", "2020")[0] == 0
    (out / "notes.txt").write_text("user file")
    earlier = tree_hashes(out)
    seg = np.zeros(SHAPE, np.uint8)
    seg[0, 0, 0] = 7
    sitk.WriteImage(sitk.GetImageFromArray(seg), str(predictions / "case_1.nii.gz"))
    before = tree_hashes(predictions)
    code, err = run_cli(capsys, "brats-labels", "-i", predictions, "-o", out, "--layout", "2023")
    assert code == 2 and len(err) == 1 and "case_1.nii.gz" in err[0] and "value 7" in err[0], err
    assert tree_hashes(out) == earlier and tree_hashes(predictions) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "pred"]
    # a good run replaces the converted files and keeps the user's file
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros(SHAPE, np.uint8)), str(predictions / "case_1.nii.gz"))
    assert run_cli(capsys, "brats-labels", "-i", predictions, "-o", out, "--layout", "2023")[0] == 0
    assert (out / "notes.txt").read_text() == "user file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "pred"]


@pytest.mark.parametrize("args, words", [
    (["--missing-rates", "nan,0.4,0.6,0.8"], "every missing rate must lie in [0, 1)"),
    (["--missing-rates", "-0.2,0.4,0.6,0.8"], "every missing rate must lie in [0, 1)"),
    (["--missing-rates", "0.2,x,0.6,0.8"], "comma-separated numbers"),
    (["--seed", "-5"], "--seed must be a non-negative integer, got -5"),
])
def test_demo_refuses_the_same_values_before_doing_anything(tmp_path, capsys, args, words):
    workdir = tmp_path / "demo"
    code, err = run_cli(capsys, "demo", "--workdir", workdir, *args)
    assert code == 2 and len(err) == 1 and words in err[0], err
    assert not workdir.exists()


# ---------------------------------------------------------------- case folders, through the command as a process
# A file that would be read wrongly is named instead of being written as an all-zero modality:
# a broken link or a folder under a modality's name, a modality file in capitals or with another
# case's id, NaN or infinite voxels (SimpleITK reads them as 0), a truncated file (with the bytes
# it held).

CASE = "SynBraTS_000"


def case_file(src, key, case=CASE):
    return src / case / f"{case}_{key}.nii.gz"


def broken_link(src):
    case_file(src, "t1ce").unlink()
    os.symlink(src / "gone.nii.gz", case_file(src, "t1ce"))


def folder_named_like_a_file(src):
    case_file(src, "t1ce").unlink()
    case_file(src, "t1ce").mkdir()


def capitals(src):
    case_file(src, "t1ce").rename(src / CASE / f"{CASE}_T1CE.nii.gz")


def other_case_id(src):
    case_file(src, "t1ce").unlink()
    shutil.copy(case_file(src, "t1ce", "SynBraTS_001"), src / CASE)


def with_voxels(change):
    """The case's T2 rewritten as float32 with ``change`` applied to its voxels."""
    def breaker(src):
        image = sitk.ReadImage(str(case_file(src, "t2")))
        array = sitk.GetArrayFromImage(image).astype(np.float32)
        change(array)
        changed = sitk.GetImageFromArray(array)
        changed.CopyInformation(image)
        sitk.WriteImage(changed, str(case_file(src, "t2")))
    return breaker


def some_nan_and_inf(array):
    array[0, 0, :2] = np.nan
    array[1, 1, 1] = -np.inf


def all_nan(array):
    array[...] = np.nan


BAD = {
    "broken link": (broken_link, [f"{CASE}_t1ce.nii.gz is a broken link to ", "gone.nii.gz"]),
    "folder": (folder_named_like_a_file, [f"{CASE}_t1ce.nii.gz is a folder, not an image file"]),
    "capitals": (capitals, [f"{CASE}_T1CE.nii.gz is not named {CASE}_t1ce.nii.gz (BraTS file names are lower case)"]),
    "other case id": (other_case_id, ["SynBraTS_001_t1ce.nii.gz carries the case id 'SynBraTS_001', not its "
                                      f"folder's '{CASE}'"]),
    "NaN and inf": (with_voxels(some_nan_and_inf), [f"{CASE}_t2.nii.gz has 3 non-finite voxels (2 NaN, 1 infinite, "
                                                    f"of 4,096)", "would read them as 0"]),
    "all NaN": (with_voxels(all_nan), [f"{CASE}_t2.nii.gz has 4,096 non-finite voxels (4,096 NaN, 0 infinite"]),
}


@pytest.mark.parametrize("name", list(BAD))
def test_a_file_that_would_be_read_wrongly_is_named(src, tmp_path, name):
    breaker, needles = BAD[name]
    breaker(src)
    raw = tmp_path / "raw"
    before = tree_hashes(src)
    r = cli("convert-brats", "-i", src, "-d", 41, "--raw", raw)
    assert_one_line_error(r.returncode, r.stderr.strip().splitlines(), "convert-brats", f"case '{CASE}'", *needles)
    assert tree_hashes(src) == before and not raw.exists()


def test_truncation_names_the_bytes_held_and_an_existing_dataset_names_the_option(src, tmp_path):
    raw = tmp_path / "raw"
    convert_brats(src, 42, raw_root=raw)
    earlier = tree_hashes(raw)
    r = cli("convert-brats", "-i", src, "-d", 42, "--raw", raw)
    assert_one_line_error(r.returncode, r.stderr.strip().splitlines(), "convert-brats", "already exists",
                          "pass --overwrite to replace it")
    path = case_file(src, "seg")
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    held = len(zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data[:len(data) // 2]))
    before = tree_hashes(src)
    r = cli("convert-brats", "-i", src, "-d", 42, "--raw", raw, "--overwrite")
    assert_one_line_error(r.returncode, r.stderr.strip().splitlines(), "convert-brats", f"case '{CASE}'",
                          f"{path} is truncated", f"after {held:,} decompressed bytes")
    assert tree_hashes(src) == before and tree_hashes(raw) == earlier
