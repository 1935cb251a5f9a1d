"""Bad hyperparameters through the real ``nnunet_prism train``: one line, exit code 2, nothing written
(the checks against a real dataset, also under plain nnUNetv2_train: tests/e2e/test_e2e_hyperparameter_errors.py)."""

import pytest

from helpers.cli import cli
from nnunet_prism import pipeline
from nnunet_prism.cli import main


def run_in_process(monkeypatch, capsys, environment, *args):
    """``nnunet_prism ARGS`` in this process (the command's own code path, without the ~10 s of
    a fresh interpreter); returns (exit code, stderr)."""
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    if "nnUNet_prism_hparams" not in environment:
        monkeypatch.delenv("nnUNet_prism_hparams", raising=False)
    code = main(list(map(str, args)))
    return code, capsys.readouterr().err


@pytest.mark.parametrize("assignment,message", [
    ("coefficient_rule=nope", "coefficient_rule='nope': expected one of 'paper', 'official'"),
    ("kl_prob_floor=high", "kl_prob_floor='high': expected a number"),
    ("temperature=0", "temperature=0: must be > 0"),
    ("lambda1=-0.5", "lambda1=-0.5: must be >= 0"),
    ("save_every=0", "save_every=0: must be >= 1"),
    ("num_iterations_per_epoch=0", "num_iterations_per_epoch=0: must be >= 1"),
    ("missing_rates=[0.2,NaN,0.6,0.8]", "NaN is not a valid hyperparameter value"),
    ("lamda1=0.3", "unknown hyperparameter(s) lamda1 for nnUNetTrainerPRISM"),
])
def test_nnunet_prism_train_refuses_bad_values_before_nnunet_starts(tmp_path, monkeypatch, capsys, assignment,
                                                                    message):
    env = {k: v for k, v in pipeline.nnunet_environment(tmp_path).items() if k.startswith("nnUNet_")}
    code, stderr = run_in_process(monkeypatch, capsys, env, "train", "999", "3d_fullres", "0", "-tr",
                                  "nnUNetTrainerPRISM", "--hp", assignment, "-device", "cpu")
    assert code == 2
    errors = [line for line in stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("nnunet_prism train: error: ") and message in errors[0]
    assert not any((tmp_path / "nnUNet_results").iterdir()), "nothing written"


@pytest.mark.parametrize("overrides,trainer,message", [
    ("{oops", "nnUNetTrainerGMD", "nnUNet_prism_hparams (inline JSON) is not valid JSON"),
    ('{"nnUNetTrainerPRSIM": {"lambda1": 0.3}}', "nnUNetTrainerPRISM",
     "section 'nnUNetTrainerPRSIM' names no nnunet_prism trainer"),
    ('{"gmd_subsets": -3}', "nnUNetTrainerGMD", "gmd_subsets=-3: must be >= 1"),
    ('{"gmd_reduction": "max"}', "nnUNetTrainerGMD", "gmd_reduction='max': expected one of 'sum', 'mean'"),
    ('{"modality_dropout": 1.5}', "nnUNetTrainerModalityDropout", "modality_dropout=1.5: must be <= 1"),
])
def test_overrides_from_the_environment_are_checked_by_nnunet_prism_train(tmp_path, monkeypatch, capsys, overrides,
                                                                         trainer, message):
    env = {k: v for k, v in pipeline.nnunet_environment(tmp_path).items() if k.startswith("nnUNet_")}
    code, stderr = run_in_process(monkeypatch, capsys, {**env, "nnUNet_prism_hparams": overrides},
                                  "train", "999", "3d_fullres", "0", "-tr", trainer, "-device", "cpu")
    assert code == 2 and message in stderr
    assert len([line for line in stderr.splitlines() if "error" in line]) == 1


def test_a_bad_value_through_a_fresh_interpreter(tmp_path):
    env = pipeline.nnunet_environment(tmp_path)
    env.pop("nnUNet_prism_hparams", None)
    r = cli("train", "999", "3d_fullres", "0", "-tr", "nnUNetTrainerPRISM", "--hp", "gamma=-1", "-device", "cpu",
            env=env)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == "nnunet_prism train: error: hyperparameter gamma=-1: must be >= 0."
