"""``nnunet_prism evaluate`` refuses reference labels that it would score wrongly (BraTS 1/2/4,
values dataset.json does not name, non-integer values, another grid than the image or the
prediction). The checks live in one function, ``read_reference_label``, tested directly here;
the command runs them on every case before the model is loaded, so the real-command tests need
only a stand-in model folder (no weights). tests/e2e/test_e2e_evaluate_checks.py repeats them with a
trained model."""
import numpy as np
import pytest

from helpers.input_checks import (CONFIGURATION, DATASET_ID, TRAINER, assert_one_line_error, fake_model, hashes,
                                  label_map, run_cli, signal, use_results, write_image)
from nnunet_prism.evaluation.metrics import EvaluationError, evaluate_case_files
from nnunet_prism.evaluation.reference_labels import read_reference_label

REGIONS = {"labels": {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": [3]},
           "regions_class_order": [1, 2, 3], "file_ending": ".nii.gz"}
MIRRORED = (-1, 0, 0, 0, 1, 0, 0, 0, 1)

# (case id, label written, substrings the error must contain); None: the label is fine
BAD_LABELS = {
    "brats": (dict(values=(0, 1, 2, 4)), ["BraTS convention", "nnunet_prism convert-brats"]),
    "unknown_value": (dict(values=(0, 1, 7)), ["label value 7 not in dataset.json's labels"]),
    "float": (dict(values=(0, 0.5, 1, 3), dtype=np.float32), ["non-integer label values (0.5)"]),
    "origin": (dict(origin=(1.0, 2.0, 4.5)), ["grid differs", "origin"]),
    "direction": (dict(direction=MIRRORED), ["grid differs", "direction"]),
    "spacing": (dict(spacing=(1.0, 1.0, 2.0)), ["grid differs", "spacing"]),
    "size": (dict(shape=(6, 7, 9)), ["grid differs", "size"]),
}


def write_label(path, values=(0, 1, 2, 3), dtype=np.uint8, shape=None, **geometry):
    seg = label_map(values) if shape is None else np.zeros(shape)
    return write_image(path, seg, dtype=dtype, **geometry)


def reader():
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    return SimpleITKIO()


# --------------------------------------------------------------- read_reference_label, directly

def test_good_label_is_read_with_its_spacing(tmp_path):
    image = write_image(tmp_path / "img.nii.gz", signal(), spacing=(0.5, 1.0, 2.0))
    label = write_label(tmp_path / "lab.nii.gz", spacing=(0.5, 1.0, 2.0))
    seg, spacing = read_reference_label(label, REGIONS, reader(), grid_of=image)
    assert seg.shape == (6, 7, 8) and sorted(np.unique(seg)) == [0, 1, 2, 3]
    assert spacing.tolist() == [2.0, 1.0, 0.5]


def test_float_file_with_whole_numbers_and_the_ignore_label_pass(tmp_path):
    label = write_label(tmp_path / "lab.nii.gz", values=(0, 1, 4), dtype=np.float32)
    read_reference_label(label, {"labels": {"background": 0, "a": 1, "ignore": 4}}, reader())


@pytest.mark.parametrize("kind", sorted(BAD_LABELS))
def test_bad_label_is_refused_naming_the_file(tmp_path, kind):
    written, needles = BAD_LABELS[kind]
    image = write_image(tmp_path / "img.nii.gz", signal())
    label = write_label(tmp_path / f"{kind}.nii.gz", **written)
    with pytest.raises(EvaluationError) as error:
        read_reference_label(label, REGIONS, reader(), grid_of=image)
    message = str(error.value)
    assert str(label) in message and "\n" not in message
    for needle in needles:
        assert needle in message, (needle, message)


def test_brats_like_values_with_another_unknown_value_get_the_plain_message(tmp_path):
    label = write_label(tmp_path / "lab.nii.gz", values=(0, 4, 5))
    with pytest.raises(EvaluationError, match=r"label values 4, 5 not in dataset.json's labels"):
        read_reference_label(label, REGIONS, reader())


def test_evaluate_case_files_uses_the_same_checks(tmp_path):
    """The file-pair path (``evaluate_case_files``/``evaluate_folder``) reads its reference
    through ``read_reference_label`` too, with the prediction's grid."""
    prediction = write_label(tmp_path / "pred.nii.gz")
    with pytest.raises(EvaluationError, match="BraTS convention"):
        evaluate_case_files(write_label(tmp_path / "brats.nii.gz", values=(0, 1, 2, 4)), prediction, REGIONS)
    with pytest.raises(EvaluationError, match=r"shifted.nii.gz: the label's grid differs from its prediction.*origin"):
        evaluate_case_files(write_label(tmp_path / "shifted.nii.gz", origin=(0.0, 0.0, 0.0)), prediction, REGIONS)
    good = evaluate_case_files(write_label(tmp_path / "good.nii.gz"), prediction, REGIONS)
    assert all(v["Dice"] == 1.0 for v in good.values())


# ------------------------------------------------------------------------ through the command

@pytest.fixture
def labelled(tmp_path, monkeypatch):
    """A stand-in model (fold 0), a complete image folder with case 'good', its labels, and an
    earlier evaluation output folder."""
    use_results(monkeypatch, tmp_path)
    model = fake_model(tmp_path)
    images, labels, out = tmp_path / "images", tmp_path / "labels", tmp_path / "eval"
    for folder in (images, labels, out):
        folder.mkdir()
    for c in range(4):
        write_image(images / f"good_{c:04d}.nii.gz", signal(c))
    write_label(labels / "good.nii.gz")
    (out / "subsets.csv").write_text("an earlier result")

    def reached_model(*args, **kwargs):  # the checks passed: stop where the network would be loaded
        raise EvaluationError("reached model loading")
    monkeypatch.setattr("nnunet_prism.commands.evaluate.load_predictor", reached_model)
    return model, images, labels, out


def evaluate(capsys, images, labels, out, *extra):
    return run_cli(capsys, "evaluate", "-d", DATASET_ID, "-c", CONFIGURATION, "-tr", TRAINER, "-i", images,
                   "-l", labels, "-o", out, "-device", "cpu", *extra)


def test_good_case_passes_every_check(labelled, capsys):
    model, images, labels, out = labelled
    code, _, err = evaluate(capsys, images, labels, out)
    assert_one_line_error(code, err, "evaluate", "reached model loading")


@pytest.mark.parametrize("kind", sorted(BAD_LABELS))
def test_bad_label_stops_evaluate_before_the_model_with_one_line(labelled, capsys, kind):
    model, images, labels, out = labelled
    written, needles = BAD_LABELS[kind]
    for c in range(4):
        write_image(images / f"{kind}_{c:04d}.nii.gz", signal(c))
    write_label(labels / f"{kind}.nii.gz", **written)
    before = hashes(images, labels, out)
    code, _, err = evaluate(capsys, images, labels, out)
    assert_one_line_error(code, err, "evaluate", labels / f"{kind}.nii.gz", *needles)
    assert hashes(images, labels, out) == before


def test_fold_never_trained_is_one_line(labelled, capsys):
    model, images, labels, out = labelled
    before = hashes(images, labels, out)
    code, _, err = evaluate(capsys, images, labels, out, "-f", "3")
    assert_one_line_error(code, err, "evaluate", "fold 3", "fold_3/checkpoint_final.pth", "trained folds: 0")
    assert hashes(images, labels, out) == before


def test_fold_all_is_evaluated_on_given_cases_and_has_no_validation_cases(labelled, tmp_path, capsys):
    model, images, labels, out = labelled
    (model / "fold_all").mkdir()
    (model / "fold_all" / "checkpoint_final.pth").write_bytes(b"placeholder")
    before = hashes(images, labels, out)
    code, _, err = evaluate(capsys, images, labels, out, "-f", "all")  # fold_all found, cases checked
    assert_one_line_error(code, err, "evaluate", "reached model loading")
    code, _, err = run_cli(capsys, "evaluate", "-d", DATASET_ID, "-c", CONFIGURATION, "-tr", TRAINER, "-f", "all",
                           "-o", tmp_path / "eval_all", "-device", "cpu")
    assert_one_line_error(code, err, "evaluate", "fold 'all'", "no validation cases", "-i IMAGES -l LABELS")
    code, _, err = evaluate(capsys, images, labels, out, "-f", "first")
    assert_one_line_error(code, err, "evaluate", "fold 'first'", "neither a number nor 'all'")
    assert hashes(images, labels, out) == before and not (tmp_path / "eval_all").exists()


def test_unreadable_image_names_and_output_inside_input_are_refused(labelled, capsys):
    model, images, labels, out = labelled
    before = hashes(images, labels, out)
    code, _, err = evaluate(capsys, images, labels, labels / "eval")
    assert_one_line_error(code, err, "evaluate", labels / "eval", "-l folder")
    assert not (labels / "eval").exists()
    write_image(images / "other_t1.nii.gz", signal())
    code, _, err = evaluate(capsys, images, labels, out)
    assert_one_line_error(code, err, "evaluate", "other_t1.nii.gz", str(images))
    assert {k: v for k, v in hashes(images, labels, out).items() if "other_t1" not in k} == before


@pytest.mark.parametrize("which", ["label", "image"])
def test_a_truncated_label_or_image_is_named(labelled, capsys, which):
    model, images, labels, out = labelled
    damaged = labels / "good.nii.gz" if which == "label" else images / "good_0001.nii.gz"
    data = damaged.read_bytes()
    damaged.write_bytes(data[:len(data) // 2])  # read as is, it would lose voxels silently
    before = hashes(images, labels, out)
    code, _, err = evaluate(capsys, images, labels, out)
    assert_one_line_error(code, err, "evaluate", damaged, "truncated")
    assert hashes(images, labels, out) == before
