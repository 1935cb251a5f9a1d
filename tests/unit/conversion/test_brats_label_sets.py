"""BraTS 2024-2025 label sets through the real commands: a 2024 post-treatment glioma phantom
(resection cavity, label 4) is detected and converted with the RC region, exported back to BraTS
labels exactly; the paediatric set (other label meanings, same file names) converts by its table
row; label 4 under ``--layout 2023`` is refused naming the label and the route (issue 27, item 14)."""
import json
import shutil

import numpy as np
import SimpleITK as sitk

from dataset_conversion.cli import main
from helpers.input_checks import hashes
from nnunet_prism.brats_label_sets import LAYOUTS

SHAPE = ["20", "20", "20"]


def phantom_2024(folder, n=2, seed=5):
    assert main(["make-phantom", "-o", str(folder), "-n", str(n), "--shape", *SHAPE, "--seed", str(seed),
                 "--layout", "2024"]) == 0
    return sorted(p.name for p in folder.iterdir())


def read(path):
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def test_2024_phantom_is_detected_converted_with_rc_and_exported_back(tmp_path, capsys):
    src, raw = tmp_path / "src", tmp_path / "raw"
    cases = phantom_2024(src)
    assert cases == ["BraTS-GLI-00000-100", "BraTS-GLI-00001-100"]
    seg_file = src / cases[0] / f"{cases[0]}-seg.nii.gz"
    assert set(np.unique(read(seg_file))) == {0, 1, 2, 3, 4}
    assert main(["convert-brats", "-i", str(src), "-d", "61", "-n", "Post", "--raw", str(raw)]) == 0
    assert "BraTS 2024 layout: BraTS 2024-2025 post-treatment glioma" in capsys.readouterr().out
    folder = raw / "Dataset061_Post"
    dj = json.loads((folder / "dataset.json").read_text())
    assert dj["brats_layout"] == "2024"
    assert dj["labels"] == {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3],
                            "enhancing tumor": [3], "resection cavity": [4]}
    assert dj["regions_class_order"] == [1, 2, 3, 4]
    source, converted = read(seg_file), read(folder / "labelsTr" / f"{cases[0]}.nii.gz")
    # BraTS 1 NETC -> nnU-Net 2, 2 SNFH -> 1, 3 ET -> 3, 4 RC -> 4
    for brats, nnunet in ((1, 2), (2, 1), (3, 3), (4, 4)):
        assert np.array_equal(source == brats, converted == nnunet), brats
    assert main(["brats-labels", "-i", str(folder / "labelsTr"), "-o", str(tmp_path / "back"),
                 "--layout", "2025"]) == 0
    np.testing.assert_array_equal(read(tmp_path / "back" / f"{cases[0]}.nii.gz"), source)


def test_paediatric_set_converts_by_its_table_row(tmp_path):
    src, raw = tmp_path / "src", tmp_path / "raw"
    phantom_2024(tmp_path / "gli", n=1)
    # the same files under a BraTS-PED case id: values 1..4 now mean ET, NETC, CC, ED
    (src / "BraTS-PED-00007-000").mkdir(parents=True)
    for f in (tmp_path / "gli" / "BraTS-GLI-00000-100").iterdir():
        shutil.copy(f, src / "BraTS-PED-00007-000" / f.name.replace("BraTS-GLI-00000-100", "BraTS-PED-00007-000"))
    assert main(["convert-brats", "-i", str(src), "-d", "62", "-n", "Ped", "--raw", str(raw)]) == 0
    folder = raw / "Dataset062_Ped"
    dj = json.loads((folder / "dataset.json").read_text())
    assert dj["brats_layout"] == "ped"
    assert dj["labels"] == {"background": 0, "whole tumor": [1, 2, 3, 4], "tumor core": [2, 3, 4],
                            "cystic component": [4], "enhancing tumor": [3]}
    source = read(src / "BraTS-PED-00007-000" / "BraTS-PED-00007-000-seg.nii.gz")
    converted = read(folder / "labelsTr" / "BraTS-PED-00007-000.nii.gz")
    for brats, nnunet in LAYOUTS["ped"].to_nnunet.items():
        assert np.array_equal(source == brats, converted == nnunet), brats


def test_label_4_under_the_2023_layout_names_the_label_and_the_route(tmp_path, capsys):
    src, raw = tmp_path / "src", tmp_path / "raw"
    phantom_2024(src, n=1)
    before = hashes(src)
    assert main(["convert-brats", "-i", str(src), "-d", "63", "-n", "Wrong", "--raw", str(raw),
                 "--layout", "2023"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "value 4 that are not BraTS 2023 labels" in err[0], err
    assert "resection cavity (RC) in the BraTS 2024-2025 post-treatment glioma set (--layout 2024)" in err[0]
    assert hashes(src) == before and not (raw / "Dataset063_Wrong").exists()


def test_every_set_maps_one_to_one_and_its_groups_use_its_labels():
    for layout in LAYOUTS.values():
        values = list(layout.to_nnunet.values())
        assert len(set(values)) == len(values), layout.name
        members = {v for _, labels in layout.groups for v in labels}
        assert members <= set(layout.brats_labels) - {0}, layout.name
        region_labels = {v for _, labels, _ in layout.regions for v in labels}
        assert region_labels == set(values) - {0}, layout.name
