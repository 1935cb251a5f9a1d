"""``nnunet_prism protocol``: published splits and PASSION's masks applied to a tiny raw dataset
(files are placeholders: the protocol only moves them and writes JSON)."""
import json
from pathlib import Path

import pytest

from helpers.cli import cli
from helpers.paths import DATA
from nnunet_prism.protocols import ProtocolError, apply_protocol, available_protocols, load_protocol, normalise_case_id

TINY = DATA / "protocol_tiny.json"
ENDING = ".nii.gz"


def make_raw(root: Path, cases, name="Dataset975_Tiny"):
    raw = root / "nnUNet_raw" / name
    (raw / "imagesTr").mkdir(parents=True)
    (raw / "labelsTr").mkdir()
    for case in cases:
        for c in range(4):
            (raw / "imagesTr" / f"{case}_{c:04d}{ENDING}").write_text(f"{case} {c}")
        (raw / "labelsTr" / f"{case}{ENDING}").write_text(case)
    dataset_json = {"channel_names": {"0": "FLAIR", "1": "T1", "2": "T1c", "3": "T2"},
                    "labels": {"background": 0, "edema": 1, "necrosis": 2, "enhancing": 3},
                    "numTraining": len(cases), "file_ending": ENDING,
                    "modality_availability": {cases[1]: [1, 1, 1, 0]}}  # case 001 really lacks T2
    (raw / "dataset.json").write_text(json.dumps(dataset_json))
    pre = root / "nnUNet_preprocessed" / name
    pre.mkdir(parents=True)
    (pre / "dataset.json").write_text(json.dumps(dataset_json))
    return raw, pre


CASES = [f"SynBraTS_{i:03d}" for i in range(10)]


def test_shipped_protocols_load_and_are_disjoint():
    names = available_protocols()
    for required in ("passion-brats2020-mr2468", "rfnet-brats2020", "rfnet-brats2018-split1",
                     "rfnet-brats2018-split2", "rfnet-brats2018-split3"):
        assert required in names
    rfnet = load_protocol("rfnet-brats2020")
    assert (len(rfnet.folds[0]["train"]), len(rfnet.folds[0]["val"]), len(rfnet.test)) == (219, 50, 100)
    assert rfnet.test[0] == "BraTS20_Training_001" and len(set(rfnet.all_cases)) == 369
    passion = load_protocol("passion-brats2020-mr2468")
    assert passion.availability_order == ["FLAIR", "T1", "T1c", "T2"]
    assert sorted(passion.availability) == sorted(passion.folds[0]["train"])
    # PASSION's own statistics of mr2468 (present cases T1 184, T1c 135, FLAIR 90, T2 43)
    present = [sum(m[i] for m in passion.availability.values()) for i in range(4)]
    assert present == [90, 184, 135, 43]
    assert passion.availability["BraTS20_Training_003"] == [0, 1, 0, 0]  # PASSION [F, T1c, T1, T2] = [0, 0, 1, 0]: T1
    assert passion.availability["BraTS20_Training_008"] == [0, 1, 1, 0]  # [0, 1, 1, 0]: T1c + T1
    for name in ("rfnet-brats2018-split1", "rfnet-brats2018-split2", "rfnet-brats2018-split3"):
        p = load_protocol(name)
        assert (len(p.folds[0]["train"]), len(p.folds[0]["val"]), len(p.test)) == (199, 29, 57)
        assert len(set(p.all_cases)) == 285


def test_case_ids_are_mapped_to_ours():
    assert normalise_case_id("HG_BraTS20_Training_001") == "BraTS20_Training_001"
    assert normalise_case_id("LG_BraTS20_Training_260") == "BraTS20_Training_260"
    assert normalise_case_id("Brats18_CBICA_AAB_1") == "Brats18_CBICA_AAB_1"
    assert load_protocol(TINY).folds[0]["train"][0] == "SynBraTS_000"


def test_apply_moves_test_cases_writes_splits_and_masks(tmp_path):
    raw, pre = make_raw(tmp_path, CASES)
    summary = apply_protocol(load_protocol(TINY), raw, pre)
    assert summary["moved"] == ["SynBraTS_008", "SynBraTS_009"] and summary["num_training"] == 8
    assert sorted(p.name for p in (raw / "labelsTs").iterdir()) == ["SynBraTS_008.nii.gz", "SynBraTS_009.nii.gz"]
    assert len(list((raw / "imagesTs").iterdir())) == 8 and len(list((raw / "imagesTr").iterdir())) == 32
    splits = json.loads((pre / "splits_final.json").read_text())
    assert splits == [{"train": CASES[:6], "val": CASES[6:8]}]
    for folder in (raw, pre):
        dj = json.loads((folder / "dataset.json").read_text())
        record = dj["modality_availability"]
        assert record["SynBraTS_000"] == [1, 0, 1, 1]
        assert record["SynBraTS_001"] == [0, 1, 1, 0]   # protocol [0,1,1,1] AND recorded [1,1,1,0]
        assert record["SynBraTS_006"] == [1, 1, 1, 1]   # validation cases stay complete
        assert dj["availability_protocol"] == "protocol-tiny"
    assert json.loads((raw / "dataset.json").read_text())["numTraining"] == 8
    again = apply_protocol(load_protocol(TINY), raw, pre)   # a second run changes nothing
    assert again["moved"] == [] and again["num_training"] == 8


def test_link_keeps_training_folders_and_test_dir(tmp_path):
    raw, pre = make_raw(tmp_path, CASES)
    summary = apply_protocol(load_protocol(TINY), raw, pre, test_dir=tmp_path / "test", link=True)
    label = tmp_path / "test" / "labelsTs" / "SynBraTS_008.nii.gz"
    assert label.is_symlink() and label.read_text() == "SynBraTS_008"
    assert (raw / "labelsTr" / "SynBraTS_008.nii.gz").is_file() and summary["num_training"] == 10


def test_missing_cases_are_one_line_error_and_nothing_changes(tmp_path):
    raw, pre = make_raw(tmp_path, CASES[:7])
    before = (raw / "dataset.json").read_text()
    with pytest.raises(ProtocolError, match=r"3 case\(s\) not in .*SynBraTS_007, SynBraTS_008, SynBraTS_009"):
        apply_protocol(load_protocol(TINY), raw, pre)
    assert (raw / "dataset.json").read_text() == before and not (raw / "labelsTs").exists()
    assert not (pre / "splits_final.json").exists()


def test_unknown_protocol_and_cli(tmp_path):
    with pytest.raises(ProtocolError, match="unknown protocol 'nope'"):
        load_protocol("nope")
    make_raw(tmp_path, CASES[:7])
    env = {"nnUNet_raw": str(tmp_path / "nnUNet_raw"), "nnUNet_preprocessed": str(tmp_path / "nnUNet_preprocessed"),
           "nnUNet_results": str(tmp_path / "res"), "PATH": "/usr/bin:/bin"}
    import os
    env = {**os.environ, **env}
    r = cli("protocol", TINY, "-d", 975, env=env)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "not in" in r.stderr and "SynBraTS_009" in r.stderr
    make_raw(tmp_path / "ok", CASES, name="Dataset976_Tiny")
    env.update(nnUNet_raw=str(tmp_path / "ok" / "nnUNet_raw"), nnUNet_preprocessed=str(tmp_path / "ok" / "nnUNet_preprocessed"))
    r = cli("protocol", TINY, "-d", 976, env=env)
    assert r.returncode == 0, r.stderr
    assert "2 test case(s) moved" in r.stdout and "modality masks" in r.stdout
