"""What ``evaluate`` and ``predict`` refuse, with a really trained model (the session's
nnUNetTrainerMissingModality on the region set) and the phantom set's images: every bad label
stops ``evaluate`` with one line naming the file before anything is written; a fold that was
never trained stops both commands; ``predict`` without ``-f`` uses the folds that exist."""
import json

import numpy as np
import pytest
import SimpleITK as sitk

from helpers.cli import cli
from helpers.input_checks import hashes

pytestmark = pytest.mark.e2e

MIRRORED = (-1, 0, 0, 0, 1, 0, 0, 0, 1)


def label_like(image_file, path, values=(0, 1, 2, 3), dtype=np.uint8, origin=None, direction=None,
               spacing=None, crop=False):
    """A label on the grid of ``image_file`` holding ``values`` (slabs along the first axis),
    optionally moved, flipped, rescaled or cropped."""
    image = sitk.ReadImage(str(image_file))
    seg = np.zeros(sitk.GetArrayViewFromImage(image).shape)
    for i, v in enumerate(values):
        seg[i * 5:(i + 1) * 5] = v
    label = sitk.GetImageFromArray((seg[:, :, :-1] if crop else seg).astype(dtype))
    label.SetSpacing(image.GetSpacing())
    label.SetOrigin(image.GetOrigin())
    label.SetDirection(image.GetDirection())
    for value, setter in ((origin, label.SetOrigin), (direction, label.SetDirection), (spacing, label.SetSpacing)):
        if value is not None:
            setter(value)
    sitk.WriteImage(label, str(path))


BAD = {
    "brats": (dict(values=(0, 1, 2, 4)), "BraTS convention"),
    "unknown_value": (dict(values=(0, 1, 9)), "label value 9 not in dataset.json's labels"),
    "float": (dict(values=(0, 1.5, 3), dtype=np.float32), "non-integer label values (1.5)"),
    "origin": (dict(origin=(5.0, 5.0, 5.0)), "origin"),
    "direction": (dict(direction=MIRRORED), "direction"),
    "spacing": (dict(spacing=(1.0, 1.0, 3.0)), "spacing"),
    "size": (dict(crop=True), "size"),
}


def test_evaluate_and_predict_refuse_bad_input_with_a_trained_model(region_dataset, trained, tmp_path):
    model = trained(region_dataset, "nnUNetTrainerMissingModality")
    env, ds = model.env, region_dataset
    common = ["-d", ds.dataset_id, "-c", "3d_fullres", "-tr", model.trainer, "-device", "cpu", "--disable_tta"]
    source = sorted((ds.dataset_folder / "imagesTs").glob("SynTest_000_*.nii.gz"))
    assert len(source) == 4
    images, labels, out = tmp_path / "images", tmp_path / "labels", tmp_path / "eval"
    for folder in (images, labels, out):
        folder.mkdir()
    (out / "subsets.csv").write_text("an earlier result")

    for kind, (written, needle) in BAD.items():
        for f in source:
            (images / f.name.replace("SynTest_000", kind)).write_bytes(f.read_bytes())
        label = labels / f"{kind}.nii.gz"
        label_like(source[0], label, **written)
        before = hashes(images, labels, out)
        r = cli("evaluate", *common, "-f", 0, "-i", images, "-l", labels, "-o", out, env=env)
        err = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(err) == 1, (kind, r.stderr[-2000:])
        assert err[0].startswith("nnunet_prism evaluate: error: ") and str(label) in err[0] and needle in err[0], err
        assert hashes(images, labels, out) == before, kind
        for f in list(images.iterdir()) + [label]:
            f.unlink()

    r = cli("evaluate", *common, "-f", 3, "-o", out, env=env)
    err = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(err) == 1 and "fold 3 was never trained" in err[0], r.stderr[-2000:]

    given, predictions = tmp_path / "given", tmp_path / "pred"
    given.mkdir()
    for f in source[:2]:
        (given / f.name).write_bytes(f.read_bytes())
    before = hashes(given)
    r = cli("predict", *common, "-f", 0, 3, "-i", given, "-o", predictions, env=env)
    err = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(err) == 1 and "fold 3 was never trained" in err[0], r.stderr[-2000:]
    assert not predictions.exists()
    r = cli("predict", *common, "-i", given, "-o", predictions, env=env)  # default: the trained folds (fold 0)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "-f 0 -device" in r.stdout, "nnUNetv2_predict ran on the folds that exist"
    assert json.loads((predictions / "modalities_used.json").read_text())["SynTest_000"]["present"] == ["FLAIR", "T1"]
    assert hashes(given) == before
