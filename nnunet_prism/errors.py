"""User errors: problems the user can fix in the input, the arguments or the set-up.

Every such error derives from ``NnunetPrismError`` and carries a one-line message that names the
case, file or value (the classes live next to the code that raises them: ``ModalityError``,
``HyperparameterError``, ``ConversionError``, ...; each keeps ``ValueError`` and the like as a
second base where callers catch that). ``report`` is the one place that turns one into the line
``nnunet_prism CMD: error: MESSAGE`` on stderr and exit code 2: for every ``nnunet_prism``
subcommand (``nnunet_prism.cli``), and, through ``install_excepthook``, for a trainer built by
plain ``nnUNetv2_train`` (nnU-Net's own errors keep Python's report there).
"""
from __future__ import annotations

import sys
from typing import Optional

#: exit code of a user error, as argparse uses for bad arguments
EXIT_CODE = 2
#: exit code after Ctrl-C (128 + SIGINT), as shells report it
INTERRUPTED_EXIT_CODE = 130


class NnunetPrismError(Exception):
    """A problem the user can fix; the message is one line naming the case, file or value."""


class MissingFileError(NnunetPrismError, FileNotFoundError):
    """A file or folder that the user named, or that an earlier step should have written, does not exist."""


class SetupError(NnunetPrismError, ValueError):
    """Arguments, environment or data that cannot work together: an unset ``nnUNet_results``,
    options that go together given alone, a fold that is no number, a model without what a
    command needs."""


class EvaluationError(NnunetPrismError, ValueError):
    """A user-visible problem with references or predictions (shape mismatch, label values, ...);
    ``nnunet_prism.evaluation.metrics`` and ``protocols`` raise it (``ProtocolError`` derives)."""


def user_error_types() -> tuple:
    """What a command reports as one line: our user errors, and the operating system's file errors
    (their message names the file: ``[Errno 2] No such file or directory: 'x'``)."""
    return NnunetPrismError, OSError


def report(error: BaseException, command: Optional[str] = None) -> int:
    """Print ``error`` as the one line ``nnunet_prism[ COMMAND]: error: MESSAGE`` on stderr;
    returns the exit code (2)."""
    print(f"{_prefix(command)}: error: {error}", file=sys.stderr)
    return EXIT_CODE


def report_interrupt(command: Optional[str] = None) -> int:
    """Print ``nnunet_prism[ COMMAND]: interrupted`` on stderr (Ctrl-C); returns the exit code (130)."""
    print(f"{_prefix(command)}: interrupted", file=sys.stderr)
    return INTERRUPTED_EXIT_CODE


def _prefix(command: Optional[str]) -> str:
    return f"nnunet_prism {command}" if command else "nnunet_prism"


def install_excepthook() -> None:
    """Make an uncaught ``NnunetPrismError`` (raised while nnU-Net's own ``nnUNetv2_train`` builds
    one of our trainers) one line and exit code 2 instead of a traceback; other errors keep
    Python's report. Installed once, by the module of our trainers' base class
    (``nnunet_prism.training.base``), which every trainer of ours or derived from ours imports."""
    previous = sys.excepthook
    if getattr(previous, "nnunet_prism_one_line", False):
        return

    def one_line(kind, value, traceback):
        if not issubclass(kind, NnunetPrismError):
            return previous(kind, value, traceback)
        # SystemExit raised by the hook itself sets the exit code; Python still shuts down normally
        raise SystemExit(report(value))

    one_line.nnunet_prism_one_line = True
    sys.excepthook = one_line
