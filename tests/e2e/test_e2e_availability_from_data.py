"""A dataset without an availability record (as other tools prepare them: absent modalities are
all-zero images, nothing recorded) trains and evaluates on the same modality masks as the same
dataset with the record: the masks come from the data."""
import json
import shutil

import nnunetv2.run.run_training as run_training
import numpy as np
import pytest
import torch

from nnunet_prism.availability import FROM_DATA, RECORDED
from nnunet_prism.inference.evaluation_cases import validation_cases
from nnunet_prism.modalities import AVAILABILITY_KEY

NO_RECORD_ID = 975


def without_record(dataset):
    """Copy raw and preprocessed folders of ``dataset`` as Dataset975, record removed."""
    name = f"Dataset{NO_RECORD_ID:03d}_NoRecord"
    for root in ("nnUNet_raw", "nnUNet_preprocessed"):
        source = next((dataset.workdir / root).glob(f"Dataset{dataset.dataset_id:03d}_*"))
        target = dataset.workdir / root / name
        if not target.exists():
            shutil.copytree(source, target)
        dataset_json = json.loads((target / "dataset.json").read_text())
        dataset_json.pop(AVAILABILITY_KEY, None)
        (target / "dataset.json").write_text(json.dumps(dataset_json))
    plans_file = dataset.workdir / "nnUNet_preprocessed" / name / "nnUNetPlans.json"
    plans = json.loads(plans_file.read_text())
    plans["dataset_name"] = name
    plans_file.write_text(json.dumps(plans))
    return name


def fold_masks(dataset, dataset_id, monkeypatch, results):
    """(training table, validation masks, source) of fold 0 as the trainer builds them (its
    output folder in ``results``, away from the session's trained models)."""
    for root in ("nnUNet_raw", "nnUNet_preprocessed"):
        monkeypatch.setenv(root, str(dataset.workdir / root))
    monkeypatch.setenv("nnUNet_results", str(results))
    monkeypatch.setenv("nnUNet_prism_hparams", json.dumps({"missing_rates": [0.0, 0.0, 0.5, 0.0]}))
    trainer = run_training.get_trainer_from_args(str(dataset_id), "3d_fullres", 0, "nnUNetTrainerPRISM",
                                                 device=torch.device("cpu"))
    table = trainer._availability_table()
    val_keys = sorted(trainer.do_split()[1])
    return table, trainer.case_availability(val_keys).numpy(), trainer.availability_source, trainer.preference.E


@pytest.mark.e2e
def test_masks_rates_and_evaluated_subsets_equal_with_and_without_record(region_dataset, monkeypatch, tmp_path):
    name = without_record(region_dataset)
    table, val, source, coefficients = fold_masks(region_dataset, region_dataset.dataset_id, monkeypatch, tmp_path)
    table_nr, val_nr, source_nr, coefficients_nr = fold_masks(region_dataset, NO_RECORD_ID, monkeypatch, tmp_path)
    assert (source, source_nr) == (RECORDED, FROM_DATA)
    assert table.keys() == table_nr.keys() and all(np.array_equal(table[k], table_nr[k]) for k in table)
    np.testing.assert_array_equal(val, val_nr)
    assert torch.equal(coefficients, coefficients_nr), "PRISM's E^m_0 = 1/(1-FR^m) from the same realised rates"
    assert not np.stack(list(table.values())).all(), "the set is incomplete: the comparison means something"
    # evaluate: the validation cases carry the same availability, so the same subsets are scored
    recorded = json.loads(next((region_dataset.workdir / "nnUNet_raw").glob(
        f"Dataset{region_dataset.dataset_id:03d}_*/dataset.json")).read_text())
    dataset_json = json.loads((region_dataset.workdir / "nnUNet_raw" / name / "dataset.json").read_text())
    with_record = validation_cases(region_dataset.dataset_folder.name, 0, recorded)
    from_data = validation_cases(name, 0, dataset_json)
    assert [c.name for c in with_record] == [c.name for c in from_data]
    for a, b in zip(with_record, from_data):
        np.testing.assert_array_equal(a.availability, b.availability)
