import json
import re

import pytest

from helpers.paths import REPOSITORY
from nnunet_prism.training import hyperparameters as hp
from nnunet_prism.training.hyperparameters import Hyperparameter
from nnunet_prism.training.hyperparameters.table import markdown_table
from nnunet_prism.training.registry import trainer_classes

TABLE_PAGE = REPOSITORY / "docs" / "hyperparameters.md"


class Base(hp.HyperparameterMixin):
    HYPERPARAMETERS = {"lambda1": Hyperparameter("float", 0.5, "a weight", minimum=0),
                       "flag": Hyperparameter("bool", False, "a switch")}


class nnUNetTrainerChild(Base):
    HYPERPARAMETERS = {"k": Hyperparameter("int", 5, "a count", minimum=1, special=("all",))}
    DEFAULT_OVERRIDES = {"lambda1": 0.25}


KNOWN = ["nnUNetTrainerChild", "nnUNetTrainerOther"]


def test_defaults_merge_along_mro():
    d = hp.collect_defaults(nnUNetTrainerChild)
    assert d["lambda1"] == 0.25 and d["k"] == 5 and d["flag"] is False and d["num_epochs"] == 1000
    assert hp.collect_defaults(Base)["lambda1"] == 0.5, "an override changes only the subclass"


def test_overrides_inline_file_and_sections(tmp_path):
    env = {hp.ENV_VAR: '{"num_epochs": 3, "nnUNetTrainerChild": {"k": 2}, "lambda1": 1}'}
    values = hp.resolve(nnUNetTrainerChild, hp.load_overrides(env), KNOWN)
    assert values["num_epochs"] == 3 and values["k"] == 2
    assert values["lambda1"] == 1.0 and isinstance(values["lambda1"], float)
    f = tmp_path / "h.json"
    f.write_text(json.dumps({"k": "all"}))
    assert hp.resolve(nnUNetTrainerChild, hp.load_overrides({hp.ENV_VAR: str(f)}), KNOWN)["k"] == "all"
    # a section for another known trainer does not apply here
    other = hp.load_overrides({hp.ENV_VAR: '{"nnUNetTrainerOther": {"k": 9}}'})
    assert hp.resolve(nnUNetTrainerChild, other, KNOWN)["k"] == 5


@pytest.mark.parametrize("overrides,message", [
    ({"lamda1": 0.1}, "unknown hyperparameter.s. lamda1 for nnUNetTrainerChild"),
    ({"k": "five"}, r"k='five': expected an integer >= 1 or 'all'"),
    ({"k": 2.5}, r"k=2.5: expected an integer"),
    ({"k": 0}, r"k=0: must be >= 1"),
    ({"k": True}, r"k=True: expected an integer"),
    ({"lambda1": -0.5}, r"lambda1=-0.5: must be >= 0"),
    ({"flag": "yes"}, r"flag='yes': expected true or false"),
    ({"num_epochs": None}, r"num_epochs=None: expected an integer >= 1"),
    ({"save_every": 0}, r"save_every=0: must be >= 1"),
    ({"num_iterations_per_epoch": 0}, r"num_iterations_per_epoch=0: must be >= 1"),
    ({"nnUNetTrainerChlid": {"k": 2}}, r"section 'nnUNetTrainerChlid' names no nnunet_prism trainer"),
    ({"nnUNetTrainerChild": 3}, r"section 'nnUNetTrainerChild' must be a JSON object"),
])
def test_bad_values_are_one_line_errors_naming_the_value(overrides, message):
    with pytest.raises(hp.HyperparameterError, match=message) as error:
        hp.resolve(nnUNetTrainerChild, overrides, KNOWN)
    assert "\n" not in str(error.value)


def test_bad_override_sources_are_one_line(tmp_path):
    with pytest.raises(hp.HyperparameterError, match="not valid JSON"):
        hp.load_overrides({hp.ENV_VAR: "{oops"})
    with pytest.raises(hp.HyperparameterError, match="neither a JSON object nor an existing file"):
        hp.load_overrides({hp.ENV_VAR: str(tmp_path / "missing.json")})
    with pytest.raises(hp.HyperparameterError, match="NaN is not a valid"):
        hp.load_overrides({hp.ENV_VAR: '{"lambda1": NaN}'})


def test_parse_assignments():
    assert hp.parse_assignments(["a=1", "b=[0.2,0.4]", "c=text", "d=true"]) == \
        {"a": 1, "b": [0.2, 0.4], "c": "text", "d": True}
    with pytest.raises(hp.HyperparameterError):
        hp.parse_assignments(["novalue"])


def test_every_real_trainer_rejects_the_values_users_tried():
    """Values that used to pass and fail later (or never) are refused by the schema."""
    by_name = {c.__name__: c for c in trainer_classes()}
    cases = [("nnUNetTrainerPRISM", {"coefficient_rule": "nope"}, "coefficient_rule='nope': expected one of"),
             ("nnUNetTrainerPRISM", {"kl_prob_floor": "high"}, "kl_prob_floor='high': expected a number"),
             ("nnUNetTrainerPRISM", {"lambda1": -1}, "lambda1=-1: must be >= 0"),
             ("nnUNetTrainerPRISM", {"temperature": 0}, "temperature=0: must be > 0"),
             ("nnUNetTrainerGMD", {"gmd_subsets": -3}, "gmd_subsets=-3: must be >= 1"),
             ("nnUNetTrainerGMD", {"gmd_reduction": "max"}, "gmd_reduction='max': expected one of 'sum', 'mean'"),
             ("nnUNetTrainerModalityDropout", {"modality_dropout": 1.5}, "modality_dropout=1.5: must be <= 1"),
             ("nnUNetTrainerMissingModality", {"missing_rates": [0.2, float("nan")]}, "missing_rates=.*expected"),
             ("nnUNetTrainerMissingModality", {"missing_rates": [0.2, 1.0]}, "must lie in \\[0, 1\\)"),
             ("nnUNetTrainerShaSpec", {"save_every": 0}, "save_every=0: must be >= 1")]
    for trainer, overrides, message in cases:
        with pytest.raises(hp.HyperparameterError, match=message):
            hp.resolve(by_name[trainer], overrides)


def test_dataset_checks_name_the_value(tmp_path):
    by_name = {c.__name__: c for c in trainer_classes()}
    names = ["FLAIR", "T1", "T1c", "T2"]
    prism = by_name["nnUNetTrainerPRISM"]
    with pytest.raises(hp.HyperparameterError, match=r"missing_rates=\[0.2, 0.4\]: need one missing rate per modality"):
        prism.check_against_dataset(hp.resolve(prism, {"missing_rates": [0.2, 0.4]}), names)
    with pytest.raises(hp.HyperparameterError, match="cch_table='.*nowhere.csv'"):
        prism.check_against_dataset(hp.resolve(prism, {"cch_table": str(tmp_path / "nowhere.csv")}), names)
    prism.check_against_dataset(hp.resolve(prism, {"missing_rates": [0.2, 0.4, 0.6, 0.8]}), names)


def test_apply_sets_attributes_and_save_keeps_history(tmp_path, monkeypatch):
    monkeypatch.setenv(hp.ENV_VAR, '{"k": 3}')
    trainer = nnUNetTrainerChild()
    trainer.output_folder = str(tmp_path)
    trainer.print_to_log_file = lambda *a, **k: None
    trainer.apply_hyperparameters()
    assert trainer.k == 3 and trainer.num_epochs == 1000
    trainer.save_hyperparameters()
    saved = json.loads((tmp_path / hp.FILENAME).read_text())
    assert saved["k"] == 3 and saved["trainer"] == "nnUNetTrainerChild" and len(saved["history"]) == 1
    # resuming with the same values appends to the history
    trainer.save_hyperparameters(resumed_at_epoch=4)
    saved = json.loads((tmp_path / hp.FILENAME).read_text())
    assert [h["resumed_at_epoch"] for h in saved["history"]] == [None, 4]
    # resuming with other values is refused, and the record is left as it was
    monkeypatch.setenv(hp.ENV_VAR, '{"k": 4}')
    trainer.apply_hyperparameters()
    before = (tmp_path / hp.FILENAME).read_text()
    with pytest.raises(hp.HyperparameterError, match=r"other hyperparameters than its run \(k: 3 -> 4\)"):
        trainer.save_hyperparameters(resumed_at_epoch=5)
    assert (tmp_path / hp.FILENAME).read_text() == before
    # ... unless the user says so
    monkeypatch.setenv(hp.ALLOW_CHANGES_ENV_VAR, "1")
    trainer.save_hyperparameters(resumed_at_epoch=5)
    saved = json.loads((tmp_path / hp.FILENAME).read_text())
    assert saved["k"] == 4 and [h["values"]["k"] for h in saved["history"]] == [3, 3, 4]


def test_docs_table_is_generated_from_the_schema():
    """docs/hyperparameters.md's table is exactly ``markdown_table`` of the registered trainers
    (regenerate it with ``python -m nnunet_prism.training.hyperparameters docs/hyperparameters.md``)."""
    text = TABLE_PAGE.read_text(encoding="utf-8")
    found = re.search(r"<!-- hyperparameters:start -->\n(.*?)<!-- hyperparameters:end -->", text, re.S)
    assert found, "docs/hyperparameters.md lacks the generated hyperparameter table"
    assert found.group(1) == markdown_table(trainer_classes())


class SettledBase(hp.HyperparameterMixin):
    """Like our trainers' base: the values applied at the end of its __init__, a derived object
    built from them."""
    HYPERPARAMETERS = {"k": Hyperparameter("int", 5, "a count", minimum=1)}

    def __init__(self):
        self.apply_hyperparameters()

    def build_from_hyperparameters(self):
        self.sampler_k = self.k


class Variant(SettledBase):
    """A variant made the nnU-Net way: its __init__ sets values after super().__init__()."""

    def __init__(self, epochs=6):
        super().__init__()
        self.num_epochs, self.k = epochs, 2


def test_a_subclass_init_attribute_is_the_value_in_force_and_an_explicit_value_wins(monkeypatch):
    monkeypatch.delenv(hp.ENV_VAR, raising=False)
    trainer = Variant()
    assert (trainer.num_epochs, trainer.k, trainer.sampler_k) == (6, 2, 2)
    assert (trainer.hyperparameters["num_epochs"], trainer.hyperparameters["k"]) == (6, 2), "the record says what ran"
    monkeypatch.setenv(hp.ENV_VAR, '{"num_epochs": 3}')
    trainer = Variant()
    assert (trainer.num_epochs, trainer.hyperparameters["num_epochs"]) == (3, 3), "the user's explicit value wins"
    assert (trainer.k, trainer.hyperparameters["k"], trainer.sampler_k) == (2, 2, 2)
    monkeypatch.delenv(hp.ENV_VAR)
    with pytest.raises(hp.HyperparameterError, match=r"^Variant.__init__ sets an invalid value: hyperparameter "
                                                     r"num_epochs=0: must be >= 1.$"):
        Variant(epochs=0)


def test_a_section_may_name_a_subclass_of_the_trainer_being_built():
    """nnUNet_prism_hparams with a PRISM section while MissingModality (PRISM's parent) trains."""
    from nnunet_prism.training.hyperparameters.resolution import loaded_trainer_names
    from nnunet_prism.training.trainers.nnUNetTrainerMissingModality import nnUNetTrainerMissingModality
    from nnunet_prism.training.trainers.nnUNetTrainerPRISM import nnUNetTrainerPRISM  # noqa: F401 (loaded)
    names = loaded_trainer_names(nnUNetTrainerMissingModality)
    assert {"nnUNetTrainerPRISM", "nnUNetTrainerMissingModality", "nnUNetTrainerShaSpec"} <= set(names)
