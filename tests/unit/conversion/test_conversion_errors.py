"""Bad input: one ConversionError sentence naming the case and file, validated before anything is
written, and never a half-written or clobbered dataset."""
import json
import shutil

import pytest
import SimpleITK as sitk

import dataset_conversion.brats as brats
from dataset_conversion.brats import convert_brats
from dataset_conversion.errors import ConversionError
from dataset_conversion.synthetic import generate_synthetic_brats

SHAPE = (16, 16, 16)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("pristine")
    generate_synthetic_brats(root / "train", num_cases=3, shape=SHAPE, seed=0)
    generate_synthetic_brats(root / "test", num_cases=1, shape=SHAPE, seed=1, prefix="SynTest", labelled=False)
    return root


@pytest.fixture
def src(pristine, tmp_path):
    """A fresh copy of 3 labelled cases (train/) and one unlabelled (test/) to break."""
    shutil.copytree(pristine, tmp_path / "src")
    return tmp_path / "src"


def case_file(src, case, key):
    return src / "train" / case / f"{case}_{key}.nii.gz"


def rewrite(path, change):
    image = sitk.ReadImage(str(path))
    changed = change(image)
    sitk.WriteImage(changed, str(path))


def with_spacing(image):
    image.SetSpacing((1.0, 1.0, 2.0))
    return image


def with_origin(image):
    image.SetOrigin([o + 3 for o in image.GetOrigin()])
    return image


def with_direction(image):
    image.SetDirection((0, 1, 0, 1, 0, 0, 0, 0, 1))
    return image


def with_shape(image):
    return image[:, :, :-2]


def with_label_3(image):
    array = sitk.GetArrayFromImage(image)
    array[0, 0, 0] = 3
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(image)
    return out


def break_geometry(change):
    return lambda src: rewrite(case_file(src, "SynBraTS_002", "t2"), change)


def remove_all_images(src):
    for key in ("flair", "t1", "t1ce", "t2"):
        case_file(src, "SynBraTS_001", key).unlink()


def zero_all_images(src):
    for key in ("flair", "t1", "t1ce", "t2"):
        rewrite(case_file(src, "SynBraTS_001", key), lambda image: image * 0)


def empty_case_folder(src):
    shutil.rmtree(src / "train" / "SynBraTS_001")
    (src / "train" / "SynBraTS_001").mkdir()


def mixed_layouts(src):
    folder = src / "train" / "SynBraTS_002"
    for old, new in (("flair", "t2f"), ("t1", "t1n"), ("t1ce", "t1c"), ("t2", "t2w"), ("seg", "seg")):
        (folder / f"SynBraTS_002_{old}.nii.gz").rename(folder / f"SynBraTS_002-{new}.nii.gz")


BAD_INPUTS = {
    "missing label": (lambda src: case_file(src, "SynBraTS_001", "seg").unlink(),
                      ["SynBraTS_001", "SynBraTS_001_seg.nii.gz", "missing"]),
    "spacing": (break_geometry(with_spacing), ["SynBraTS_002", "SynBraTS_002_t2.nii.gz", "spacing"]),
    "origin": (break_geometry(with_origin), ["SynBraTS_002", "SynBraTS_002_t2.nii.gz", "origin"]),
    "direction": (break_geometry(with_direction), ["SynBraTS_002", "SynBraTS_002_t2.nii.gz", "direction"]),
    "shape": (break_geometry(with_shape), ["SynBraTS_002", "SynBraTS_002_t2.nii.gz", "shape"]),
    "label grid": (lambda src: rewrite(case_file(src, "SynBraTS_000", "seg"), with_spacing),
                   ["SynBraTS_000", "SynBraTS_000_seg.nii.gz", "spacing"]),
    "unknown label": (lambda src: rewrite(case_file(src, "SynBraTS_001", "seg"), with_label_3),
                      ["SynBraTS_001", "SynBraTS_001_seg.nii.gz", "value 3"]),
    "unreadable": (lambda src: case_file(src, "SynBraTS_000", "t1").write_bytes(b"not an image"),
                   ["SynBraTS_000", "SynBraTS_000_t1.nii.gz", "cannot read"]),
    "no modality": (remove_all_images, ["SynBraTS_001", "no modality file"]),
    "all zero": (zero_all_images, ["SynBraTS_001", "all zero"]),
    "empty case folder": (empty_case_folder, ["SynBraTS_001", "is empty"]),
    "mixed layouts": (mixed_layouts, ["SynBraTS_002", "2023 layout"]),
    "duplicate case": (lambda src: shutil.copytree(src / "train" / "SynBraTS_000", src / "test" / "SynBraTS_000"),
                       ["SynBraTS_000", "appears twice"]),
    "two files for one modality": (lambda src: shutil.copy(case_file(src, "SynBraTS_000", "t1"),
                                                           src / "train" / "SynBraTS_000" / "SynBraTS_000_t1.nii"),
                                   ["SynBraTS_000", "SynBraTS_000_t1.nii", "two files"]),
}


def assert_nothing_written(raw):
    assert not raw.exists() or list(raw.iterdir()) == [], list(raw.iterdir())


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_names_case_and_file_and_writes_nothing(src, tmp_path, name):
    breaker, words = BAD_INPUTS[name]
    breaker(src)
    raw = tmp_path / "raw"
    with pytest.raises(ConversionError) as info:
        convert_brats([src / "train", src / "test"], 31, raw_root=raw)
    message = str(info.value)
    for word in words:
        assert word in message, (word, message)
    assert "\n" not in message and message.replace("e.g. ", "").count(". ") == 0, "one sentence"
    assert_nothing_written(raw)


def test_require_labels_and_empty_or_repeated_sources(src, tmp_path):
    raw = tmp_path / "raw"
    with pytest.raises(ConversionError, match=r"SynTest_000.*SynTest_000_seg\.nii\.gz.*required"):
        convert_brats([src / "train", src / "test"], 32, raw_root=raw, require_labels=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConversionError, match="empty"):
        convert_brats([src / "train", tmp_path / "empty"], 32, raw_root=raw)
    with pytest.raises(ConversionError, match="holds image files .* but no case folders"):
        convert_brats([src / "train" / "SynBraTS_000"], 32, raw_root=raw)
    with pytest.raises(ConversionError, match="does not exist"):
        convert_brats([tmp_path / "nowhere"], 32, raw_root=raw)
    with pytest.raises(ConversionError, match="appears twice"):
        convert_brats([src / "train", src / "train"], 32, raw_root=raw)
    assert_nothing_written(raw)
    # without the per-folder rule an unlabelled case simply goes to imagesTs
    case_file(src, "SynBraTS_001", "seg").unlink()
    folder = convert_brats(src / "train", 32, raw_root=raw, require_labels=False)
    assert [p.name for p in (folder / "imagesTs").iterdir()][0].startswith("SynBraTS_001_")


@pytest.mark.parametrize("kwargs, words", [
    ({"dataset_id": 0}, "dataset id"),
    ({"dataset_id": 1000}, "dataset id"),
    ({"dataset_name": "my set/1"}, "dataset name"),
    ({"missing_rates": [0.2, 0.4, 0.6]}, "missing rate"),
    ({"missing_rates": [0.2, 0.4, 0.6, 1.0]}, "missing rate"),
    ({"layout": "2017"}, "layout"),
])
def test_bad_arguments(src, tmp_path, kwargs, words):
    args = {"dataset_id": 33, "raw_root": tmp_path / "raw", **kwargs}
    with pytest.raises(ConversionError, match=words):
        convert_brats(src / "train", **args)
    assert_nothing_written(tmp_path / "raw")


def test_raw_root_from_environment_required(src, monkeypatch):
    monkeypatch.delenv("nnUNet_raw", raising=False)
    with pytest.raises(ConversionError, match="nnUNet_raw"):
        convert_brats(src / "train", 34)


def test_existing_dataset_kept_unless_overwrite(src, tmp_path):
    raw = tmp_path / "raw"
    folder = convert_brats(src / "train", 35, "Syn", raw_root=raw)
    (folder / "marker.txt").write_text("user data")
    with pytest.raises(ConversionError, match="already exists"):
        convert_brats([src / "train", src / "test"], 35, "Syn", raw_root=raw)
    assert (folder / "marker.txt").exists()
    with pytest.raises(ConversionError, match="already used"):
        convert_brats(src / "train", 35, "Other", raw_root=raw, overwrite=True)
    assert convert_brats([src / "train", src / "test"], 35, "Syn", raw_root=raw, overwrite=True) == folder
    assert not (folder / "marker.txt").exists()
    assert json.loads((folder / "dataset.json").read_text())["numTest"] == 1
    assert [p.name for p in raw.iterdir()] == [folder.name]


def test_failure_while_writing_leaves_old_dataset_and_no_half_written_one(src, tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    folder = convert_brats(src / "train", 36, "Syn", raw_root=raw)
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    real_write_case = brats.write_case
    calls = []

    def failing_write_case(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_write_case(*args, **kwargs)

    monkeypatch.setattr(brats, "write_case", failing_write_case)
    with pytest.raises(OSError, match="disk full"):
        convert_brats(src / "train", 36, "Syn", raw_root=raw, overwrite=True)
    calls.clear()
    with pytest.raises(OSError, match="disk full"):
        convert_brats(src / "train", 37, "New", raw_root=raw)
    assert [p.name for p in raw.iterdir()] == [folder.name], "no temporary or partial folder left"
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before
