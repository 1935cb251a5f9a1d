"""nnU-Net finds our trainers through nnUNet_extTrainer, set by the installed site hook."""
import os
import subprocess
import sys

import pytest

from nnunet_prism import discovery


def test_site_hook_registers_shim_in_a_fresh_interpreter():
    env = {k: v for k, v in os.environ.items() if k != "nnUNet_extTrainer"}
    env["nnUNet_extTrainer"] = "/some/user/folder"
    out = subprocess.run([sys.executable, "-c", "import os; print(os.environ['nnUNet_extTrainer'])"],
                         env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert out.split(os.pathsep) == ["/some/user/folder", discovery.SHIM_FOLDER], \
        "the hook appends to the user's value and keeps it"


def test_nnunet_lookup_finds_our_trainer_with_real_module_name():
    cls = discovery.find_trainer_class("nnUNetTrainerModalityDropout")
    assert cls.__module__ == "nnunet_prism.training.trainers.nnUNetTrainerModalityDropout"
    import pickle
    assert pickle.loads(pickle.dumps(cls)) is cls


def test_missing_variable_tells_the_user_what_to_do(monkeypatch):
    monkeypatch.delenv("nnUNet_extTrainer", raising=False)
    with pytest.raises(RuntimeError) as info:
        discovery.find_trainer_class("nnUNetTrainerModalityDropout")
    assert "export nnUNet_extTrainer=" in str(info.value) and discovery.SHIM_FOLDER in str(info.value)


def test_unknown_trainer_lists_ours():
    with pytest.raises(RuntimeError, match="nnUNetTrainerModalityDropout"):
        discovery.find_trainer_class("nnUNetTrainerDoesNotExist")


def test_our_names_do_not_shadow_builtin_trainers():
    import nnunetv2
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class
    for name in discovery.list_trainers():
        assert recursive_find_python_class(os.path.join(nnunetv2.__path__[0], "training", "nnUNetTrainer"),
                                           name, "nnunetv2.training.nnUNetTrainer") is None, name


def test_a_misspelt_trainer_gets_the_closest_names_in_one_line(tmp_path):
    """``nnunet_prism train -tr nnUNetTrainerPRSIM`` (the user's command, in its own process):
    one line with the suggestion, exit code 2, nothing written."""
    env = {**os.environ, **{name: str(tmp_path / name) for name in ("nnUNet_raw", "nnUNet_preprocessed",
                                                                     "nnUNet_results")}}
    r = subprocess.run([sys.executable, "-m", "nnunet_prism.cli", "train", "1", "3d_fullres", "0", "-tr",
                        "nnUNetTrainerPRSIM", "-device", "cpu"], env=env, capture_output=True, text=True)
    assert r.returncode == 2 and r.stdout == "", r.stderr
    assert r.stderr == ("nnunet_prism train: error: no nnU-Net trainer named 'nnUNetTrainerPRSIM'; "
                        "did you mean nnUNetTrainerPRISM?\n")
    assert list(tmp_path.iterdir()) == []


def test_closest_names_are_compared_without_the_common_prefix():
    names = ["nnUNetTrainer", "nnUNetTrainerBN", "nnUNetTrainerPRISM", "nnUNetTrainer_5epochs", "nnUNetTrainer_50epochs"]
    assert discovery.closest_trainer_names("nnUNetTrainerPRSIM", names) == ["nnUNetTrainerPRISM"]
    assert discovery.closest_trainer_names("PRISM", names) == ["nnUNetTrainerPRISM"]
    assert discovery.closest_trainer_names("nnUNetTrainer_5epoch", names)[0] == "nnUNetTrainer_5epochs"
    assert discovery.closest_trainer_names("nnUNetTrainerQuantum", names) == []
