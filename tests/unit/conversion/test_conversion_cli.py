"""``python -m dataset_conversion``: make-phantom -> convert-brats -> brats-labels, and one-line errors."""
import json
import subprocess
import sys

import numpy as np
import SimpleITK as sitk

from dataset_conversion.availability import simulate_availability
from dataset_conversion.cli import main
from nnunet_prism.modalities import AVAILABILITY_KEY


def test_phantom_convert_and_back(tmp_path, capsys):
    src, test_src, raw = tmp_path / "src", tmp_path / "test", tmp_path / "raw"
    assert main(["make-phantom", "-o", str(src), "-n", "4", "--shape", "16", "16", "16", "--seed", "3",
                 "--drop", "2:t1ce"]) == 0
    assert main(["make-phantom", "-o", str(test_src), "-n", "1", "--shape", "16", "16", "16",
                 "--prefix", "SynTest", "--unlabelled"]) == 0
    assert not (src / "SynBraTS_002" / "SynBraTS_002_t1ce.nii.gz").exists()
    assert main(["convert-brats", "-i", str(src), str(test_src), "-d", "41", "-n", "Cli", "--raw", str(raw),
                 "--missing-rates", "0.2,0.4,0.6,0.8", "--seed", "1", "--label-based", "--layout", "2020"]) == 0
    out = capsys.readouterr().out
    assert "4 training and 1 test cases" in out
    assert "training-set missing rates FR^m: FLAIR 0.25, T1 0.50, T1c 0.75, T2 0.75" in out.splitlines()
    folder = raw / "Dataset041_Cli"
    dj = json.loads((folder / "dataset.json").read_text())
    assert dj["labels"]["enhancing"] == 3 and dj["missing_simulation"]["seed"] == 1
    genuine = np.ones((4, 4), dtype=bool)
    genuine[2, 2] = False  # SynBraTS_002 has no T1c file
    expected = simulate_availability(genuine, [0.2, 0.4, 0.6, 0.8], 1).astype(int).tolist()
    assert [dj[AVAILABILITY_KEY][f"SynBraTS_{i:03d}"] for i in range(4)] == expected
    assert dj[AVAILABILITY_KEY]["SynBraTS_002"][2] == 0 and dj[AVAILABILITY_KEY]["SynTest_000"] == [1, 1, 1, 1]

    assert main(["brats-labels", "-i", str(folder / "labelsTr"), "-o", str(tmp_path / "back"), "--layout", "2020"]) == 0
    back = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "back" / "SynBraTS_000.nii.gz")))
    original = sitk.GetArrayFromImage(sitk.ReadImage(str(src / "SynBraTS_000" / "SynBraTS_000_seg.nii.gz")))
    np.testing.assert_array_equal(back, original)


def test_user_error_is_one_line_and_exit_code_2(tmp_path, capsys):
    assert main(["convert-brats", "-i", str(tmp_path / "nowhere"), "-d", "42", "--raw", str(tmp_path / "raw")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nnunet_prism convert-brats: error: source folder") and err.count("\n") == 1
    assert main(["convert-brats", "-i", str(tmp_path), "-d", "42", "--raw", str(tmp_path / "raw"),
                 "--missing-rates", "0.2,x"]) == 2
    assert "missing rates" in capsys.readouterr().err
    assert main(["make-phantom", "-o", str(tmp_path / "s"), "-n", "1", "--drop", "oops"]) == 2
    assert "--drop" in capsys.readouterr().err


def test_python_m_entry_point(tmp_path):
    result = subprocess.run([sys.executable, "-m", "dataset_conversion", "brats-labels", "-i", str(tmp_path),
                             "-o", str(tmp_path / "out"), "--layout", "2023"], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"nnunet_prism brats-labels: error: prediction folder {tmp_path} holds no .nii.gz file."]
    assert "Traceback" not in result.stderr
