"""``nnunet_prism predict`` into a folder that already holds outputs, with a really trained model
(the session's nnUNetTrainerMissingModality on the region set): the same run's outputs are
merged per case (a case predicted again replaces its files, its stale probabilities included;
the other cases and their records stay), another run's are refused before the model loads, and
``--overwrite`` replaces all of them."""
import json
import shutil

from helpers.cli import cli
from helpers.input_checks import assert_one_line_error, hashes


def test_predict_merges_the_same_runs_outputs_refuses_another_runs_and_overwrites_on_request(
        region_dataset, trained, tmp_path):
    model = trained(region_dataset, "nnUNetTrainerMissingModality")
    ds, env = region_dataset, model.env
    common = ["-d", ds.dataset_id, "-c", "3d_fullres", "-tr", model.trainer, "-f", 0, "-device", "cpu"]
    both, again, out = tmp_path / "both", tmp_path / "again", tmp_path / "out"
    for folder, files in ((both, {"SynTest_000": (0, 1), "SynTest_001": (2, 3)}), (again, {"SynTest_000": (0,)})):
        folder.mkdir()
        for case, channels in files.items():
            for c in channels:
                shutil.copy(ds.dataset_folder / "imagesTs" / f"{case}_{c:04d}.nii.gz", folder)

    r = cli("predict", "-i", both, "-o", out, *common, "--disable_tta", "--save_probabilities", env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == [
        "SynTest_000.nii.gz", "SynTest_000.npz", "SynTest_000.pkl", "SynTest_001.nii.gz", "SynTest_001.npz",
        "SynTest_001.pkl", "dataset.json", "modalities_used.json", "plans.json", "predict_from_raw_data_args.json"]
    first = json.loads((out / "modalities_used.json").read_text())
    run = {"model": f"Dataset{ds.dataset_id:03d}_SynRegions/{model.folder.name}", "folds": [0],
           "checkpoint": "checkpoint_final.pth", "options": ["--disable_tta"]}
    assert first["SynTest_001"] == {"present": ["T1c", "T2"], "absent": ["FLAIR", "T1"], "predicted_by": run}
    assert str(out) in (out / "predict_from_raw_data_args.json").read_text(), "names -o, not the hidden folder"
    kept = {k: v for k, v in hashes(out).items() if "SynTest_001" in k}

    # the same run again, on one case with FLAIR only and without probabilities: merged per case
    r = cli("predict", "-i", again, "-o", out, *common, "--disable_tta", env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    record = json.loads((out / "modalities_used.json").read_text())
    assert record["SynTest_000"]["present"] == ["FLAIR"] and record["SynTest_001"] == first["SynTest_001"]
    assert not (out / "SynTest_000.npz").exists() and not (out / "SynTest_000.pkl").exists(), "stale probabilities"
    assert {k: v for k, v in hashes(out).items() if "SynTest_001" in k} == kept

    # another run (other sliding-window steps): refused before the model loads, nothing changes
    other = ["--disable_tta", "-step_size", "0.75"]
    before = hashes(both, out)
    r = cli("predict", "-i", both, "-o", out, *common, *other, env=env)
    assert_one_line_error(r.returncode, r.stderr.strip().splitlines(), "predict", "holds predictions of another run",
                          "--disable_tta", "2 case(s) (SynTest_000, SynTest_001)", "--overwrite")
    assert hashes(both, out) == before

    # ... unless told to replace them: then every earlier output goes
    r = cli("predict", "-i", again, "-o", out, *common, *other, "--overwrite", env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["SynTest_000.nii.gz", "dataset.json", "modalities_used.json",
                                                     "plans.json", "predict_from_raw_data_args.json"]
    assert json.loads((out / "modalities_used.json").read_text())["SynTest_000"]["predicted_by"]["options"] == other
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again", "both", "out"], "no hidden folder left behind"
