"""Publishing a prediction run's outputs into ``-o``: runs that publish into one folder at the same
time (``nnUNetv2_predict -num_parts``, one process per GPU) keep every case's record."""
import json
import threading

from nnunet_prism.inference.prediction_output import RECORD_FILE, publish, staging_folder


def test_concurrent_runs_keep_every_cases_record(tmp_path):
    out = tmp_path / "out"

    def one_part(case):
        with staging_folder(out) as stage:
            (stage / f"{case}.nii.gz").write_bytes(case.encode())
            publish(stage, out, ".nii.gz", {case: {"present": ["FLAIR"], "absent": []}}, overwrite=False)

    parts = [threading.Thread(target=one_part, args=(f"case{i}",)) for i in range(8)]
    for part in parts:
        part.start()
    for part in parts:
        part.join()
    assert sorted(json.loads((out / RECORD_FILE).read_text())) == [f"case{i}" for i in range(8)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"], "no hidden folder left behind"
