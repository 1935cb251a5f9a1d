import json

import pytest

from nnunet_prism.training import hyperparameters as hp


class Base(hp.HyperparameterMixin):
    HYPERPARAMETERS = {"lambda1": 0.5, "flag": False}


class nnUNetTrainerChild(Base):
    HYPERPARAMETERS = {"lambda1": 0.25, "k": 5}


def test_defaults_merge_along_mro():
    d = hp.collect_defaults(nnUNetTrainerChild)
    assert d["lambda1"] == 0.25 and d["k"] == 5 and d["flag"] is False and d["num_epochs"] == 1000


def test_overrides_inline_file_and_sections(tmp_path):
    env = {hp.ENV_VAR: '{"num_epochs": 3, "nnUNetTrainerChild": {"k": 2}, "lambda1": 1}'}
    values = hp.resolve(nnUNetTrainerChild, hp.load_overrides(env))
    assert values["num_epochs"] == 3 and values["k"] == 2
    assert values["lambda1"] == 1.0 and isinstance(values["lambda1"], float)
    f = tmp_path / "h.json"
    f.write_text(json.dumps({"k": 7}))
    assert hp.resolve(nnUNetTrainerChild, hp.load_overrides({hp.ENV_VAR: str(f)}))["k"] == 7
    # a section for another trainer does not apply here
    other = hp.load_overrides({hp.ENV_VAR: '{"nnUNetTrainerOther": {"k": 9}}'})
    assert hp.resolve(nnUNetTrainerChild, other)["k"] == 5


def test_bad_overrides_name_the_problem(tmp_path):
    with pytest.raises(hp.HyperparameterError, match="lamda1"):
        hp.resolve(nnUNetTrainerChild, {"lamda1": 0.1})
    with pytest.raises(hp.HyperparameterError, match="'k' expects int"):
        hp.resolve(nnUNetTrainerChild, {"k": "five"})
    with pytest.raises(hp.HyperparameterError, match="not valid JSON"):
        hp.load_overrides({hp.ENV_VAR: "{oops"})
    with pytest.raises(hp.HyperparameterError, match="neither a JSON object nor an existing file"):
        hp.load_overrides({hp.ENV_VAR: str(tmp_path / "missing.json")})


def test_parse_assignments():
    assert hp.parse_assignments(["a=1", "b=[0.2,0.4]", "c=text", "d=true"]) == \
        {"a": 1, "b": [0.2, 0.4], "c": "text", "d": True}
    with pytest.raises(hp.HyperparameterError):
        hp.parse_assignments(["novalue"])


def test_apply_sets_attributes_and_saves(tmp_path, monkeypatch):
    monkeypatch.setenv(hp.ENV_VAR, '{"k": 3}')
    trainer = nnUNetTrainerChild()
    trainer.output_folder = str(tmp_path)
    trainer.print_to_log_file = lambda *a, **k: None
    trainer.apply_hyperparameters()
    assert trainer.k == 3 and trainer.num_epochs == 1000
    trainer.save_hyperparameters()
    saved = json.loads((tmp_path / hp.FILENAME).read_text())
    assert saved["k"] == 3 and saved["trainer"] == "nnUNetTrainerChild"
