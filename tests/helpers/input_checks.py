"""Small inputs and a stand-in model folder for the tests of what ``predict`` and ``evaluate``
refuse (tests/unit/inference/test_predict_checks.py, tests/unit/evaluation/test_evaluate_checks.py).

The stand-in model has nnU-Net's layout (dataset.json, plans.json, fold_0/checkpoint_final.pth)
but no weights: every refusal tested with it happens before a network is loaded."""
import hashlib
import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from dataset_conversion.labels import dataset_json_labels
from nnunet_prism.cli import main

TRAINER, CONFIGURATION, DATASET_ID = "nnUNetTrainerPRISM", "3d_fullres", 990
SHAPE = (6, 7, 8)  # numpy order (z, y, x)


def write_image(path, array, spacing=(1.0, 1.0, 1.0), origin=(1.0, 2.0, 3.0), direction=None, dtype=np.float32):
    image = sitk.GetImageFromArray(np.asarray(array).astype(dtype))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    sitk.WriteImage(image, str(path))
    return Path(path)


def signal(seed=0):
    return np.random.default_rng(seed).random(SHAPE) + 0.1


def label_map(values=(0, 1, 2, 3)):
    """A label map on SHAPE holding each of ``values``."""
    seg = np.zeros(SHAPE)
    for i, v in enumerate(values):
        seg[i] = v
    return seg


def fake_model(root: Path, folds=("0",), label_based=False) -> Path:
    """nnUNet_results/Dataset990_Fake/<trainer>__nnUNetPlans__3d_fullres with dataset.json,
    plans.json and a placeholder checkpoint in each of ``folds``; returns the model folder."""
    folder = root / "nnUNet_results" / f"Dataset{DATASET_ID}_Fake" / f"{TRAINER}__nnUNetPlans__{CONFIGURATION}"
    folder.mkdir(parents=True)
    dataset_json = {"channel_names": {"0": "FLAIR", "1": "T1", "2": "T1c", "3": "T2"},
                    **dataset_json_labels(label_based), "numTraining": 0, "file_ending": ".nii.gz"}
    (folder / "dataset.json").write_text(json.dumps(dataset_json))
    (folder / "plans.json").write_text(json.dumps({"dataset_name": f"Dataset{DATASET_ID}_Fake",
                                                   "image_reader_writer": "SimpleITKIO", "configurations": {},
                                                   "original_median_spacing_after_transp": [1.0, 1.0, 1.0]}))
    for fold in folds:
        (folder / f"fold_{fold}").mkdir()
        (folder / f"fold_{fold}" / "checkpoint_final.pth").write_bytes(b"placeholder")
    return folder


def use_results(monkeypatch, root: Path) -> None:
    """Point nnU-Net's three folders at ``root`` for an in-process command."""
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (root / name).mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(name, str(root / name))


def hashes(*folders) -> dict:
    """{path: sha256} of every file below ``folders`` (those that exist)."""
    out = {}
    for folder in folders:
        for path in sorted(Path(folder).rglob("*")) if Path(folder).exists() else []:
            if path.is_file():
                out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def run_cli(capsys, *args):
    """``nnunet_prism ARGS`` in this process: (exit code, stdout, stderr lines)."""
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip().splitlines()


def assert_one_line_error(code, err, command, *needles):
    assert code == 2, err
    assert len(err) == 1, err
    assert err[0].startswith(f"nnunet_prism {command}: error: "), err
    for needle in needles:
        assert str(needle) in err[0], (needle, err[0])
