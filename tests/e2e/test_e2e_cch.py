"""CCH end to end: nnUNetTrainerMissingModality trained for 1 epoch x 2 iterations on the
synthetic region set, then ``nnunet_prism cch`` on fold 0's validation cases (2 cases)."""
import csv

import pytest

from helpers.cli import cli

pytestmark = pytest.mark.e2e
TRAINER = "nnUNetTrainerMissingModality"
MODALITIES = ["FLAIR", "T1", "T1c", "T2"]


def test_cch_cli_on_a_trained_multi_encoder_model(region_dataset, trained, tmp_path):
    ds = region_dataset
    env = trained(ds, TRAINER).env  # shared with the core end-to-end test
    out = tmp_path / "cch"
    r = cli("cch", "-d", ds.dataset_id, "-c", "3d_fullres", "-tr", TRAINER, "-f", 0, "-o", out,
            "-device", "cpu", "--max-cases", 2, "--patches-per-case", 1, "--voxels-per-class", 150,
            "--max-samples", 400, env=env)
    assert r.returncode == 0, r.stderr
    assert "recommended teacher for FLAIR" in r.stdout
    rows = list(csv.DictReader(open(out / "cch_table.csv")))
    assert {row["student"] for row in rows} == set(MODALITIES)
    for student in MODALITIES:
        teachers = [row["teacher"] for row in rows if row["student"] == student]
        assert teachers == ["fused"] + [m for m in MODALITIES if m != student]
    computed = [row for row in rows if row["margin"] != "nan"]
    assert computed, "at least the pairs present in the 2 cases are estimated"
    for row in computed:
        i_ts, i_sy = float(row["I_teacher_student"]), float(row["I_student_label"])
        assert i_ts >= 0 and i_sy >= 0
        assert (row["cch"] == "True") == (i_ts > i_sy)
    assert sum(row["recommended"] == "True" for row in rows) <= len(MODALITIES)
    assert (out / "cch_heatmap.png").stat().st_size > 0

    bad = cli("cch", "-d", ds.dataset_id, "-c", "3d_fullres", "-tr", "nnUNetTrainerPRISM", "-f", 3, "-o", out,
              "-device", "cpu", env=env)
    assert bad.returncode == 2 and "error" in bad.stderr and "Traceback" not in bad.stderr
