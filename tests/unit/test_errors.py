"""One base for every user error, one report: ``nnunet_prism CMD: error: MESSAGE`` and exit code 2
for every command (library errors and the system's file errors alike) and, through the
excepthook nnU-Net's import of our trainers installs, under plain ``nnUNetv2_train``."""
import ast
import importlib
import subprocess
import sys

import pytest

from dataset_conversion.errors import ConversionError
from helpers.paths import REPOSITORY
from nnunet_prism import errors
from nnunet_prism.brats_label_sets import LabelSetError
from nnunet_prism.cch.criterion import CCHTableError
from nnunet_prism.cch.estimators import MIError
from nnunet_prism.errors import EvaluationError, MissingFileError, NnunetPrismError, SetupError
from nnunet_prism.discovery import TrainerNotFoundError
from nnunet_prism.image_io import IncompleteImageError, NonFiniteImageError
from nnunet_prism.modalities import ModalityError
from nnunet_prism.pipeline import PipelineError
from nnunet_prism.protocols import ProtocolError
from nnunet_prism.training.hyperparameters import HyperparameterError


@pytest.mark.parametrize("error, also", [
    (ModalityError, ValueError), (HyperparameterError, ValueError), (EvaluationError, ValueError),
    (ProtocolError, EvaluationError), (IncompleteImageError, ValueError), (ConversionError, ValueError),
    (CCHTableError, ValueError), (MIError, ValueError), (SetupError, ValueError),
    (MissingFileError, FileNotFoundError), (PipelineError, RuntimeError), (LabelSetError, ValueError),
    (NonFiniteImageError, ValueError), (TrainerNotFoundError, RuntimeError)])
def test_every_user_error_derives_from_the_base_and_keeps_what_callers_catch(error, also):
    assert issubclass(error, NnunetPrismError) and issubclass(error, also)


def test_no_exception_class_of_the_packages_stands_outside_the_base():
    """Every class the two packages define that is an exception is a user error (AST scan, then
    the class itself)."""
    outside = []
    for package in ("nnunet_prism", "dataset_conversion"):
        for path in sorted((REPOSITORY / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            names = [node.name for node in tree.body if isinstance(node, ast.ClassDef)
                     and any(isinstance(b, (ast.Name, ast.Attribute)) and
                             (getattr(b, "id", None) or getattr(b, "attr", "")).endswith(("Error", "Exception"))
                             for b in node.bases)]
            if not names:
                continue
            parts = path.relative_to(REPOSITORY).with_suffix("").parts
            module = importlib.import_module(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
            outside += [f"{module.__name__}.{n}" for n in names if not issubclass(getattr(module, n), NnunetPrismError)]
    assert not outside, outside


def test_report_is_one_line_on_stderr_with_exit_code_2(capsys):
    assert errors.report(ModalityError("case 'x': no modality present"), "predict") == 2
    assert errors.report(HyperparameterError("hyperparameter k=0: must be >= 1.")) == 2
    assert capsys.readouterr().err.splitlines() == ["nnunet_prism predict: error: case 'x': no modality present",
                                                    "nnunet_prism: error: hyperparameter k=0: must be >= 1."]


@pytest.mark.parametrize("raised, code, expected", [
    ("HyperparameterError('hyperparameter k=0: must be >= 1.')", 2,
     ["nnunet_prism: error: hyperparameter k=0: must be >= 1."]),
    ("ValueError('a bug')", 1, None)])
def test_the_excepthook_reports_user_errors_as_one_line_and_nothing_else(raised, code, expected):
    """What nnUNetv2_train shows when our trainer refuses its hyperparameters; other errors keep
    Python's traceback (and exit code 1)."""
    program = ("from nnunet_prism.errors import install_excepthook\n"
               "from nnunet_prism.training.hyperparameters import HyperparameterError\n"
               "install_excepthook(); install_excepthook()\n"
               f"raise {raised}\n")
    r = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert r.returncode == code
    if expected is None:
        assert "Traceback" in r.stderr and r.stderr.strip().endswith("ValueError: a bug")
    else:
        assert r.stderr.splitlines() == expected
