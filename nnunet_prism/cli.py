"""The ``nnunet_prism`` command. Each subcommand lives in its own module that provides
``add_arguments(parser)`` and ``run(args)``; this file only wires them together and turns user
errors into one line on stderr (exit code 2, ``nnunet_prism.errors``) instead of a traceback.

The subcommands of ``SUBCOMMANDS`` live in this package. Other packages add theirs through the
entry-point group ``nnunet_prism.commands`` (``setup.py``): each entry names a table like
``SUBCOMMANDS``. That is how the conversion commands and the demo, which live in
``dataset_conversion`` (built on this package, which imports nothing from it), become
``nnunet_prism`` subcommands.

While a subcommand runs, the log records of the library code (progress, notices) are printed as
its output: INFO on stdout, warnings on stderr.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import logging
import re
import sys
from pathlib import Path
from typing import Dict, Mapping, Optional, Tuple

from nnunet_prism import errors

DESCRIPTION = "nnU-Net v2 extension for multimodal segmentation with missing modalities."

#: subcommand -> (module, one-line help)
Table = Mapping[str, Tuple[str, str]]

SUBCOMMANDS: Table = {
    "train": ("nnunet_prism.commands.train", "nnUNetv2_train with our trainers and --hp overrides"),
    "predict": ("nnunet_prism.commands.predict", "nnUNetv2_predict on a folder where some modality files are absent"),
    "evaluate": ("nnunet_prism.commands.evaluate",
                 "Dice, HD95 and more per modality subset, of a model or a prediction folder: tables and heatmap"),
    "record-availability": ("nnunet_prism.commands.record_availability",
                            "write which modalities each case has (all-zero image = absent) into dataset.json"),
    "env": ("nnunet_prism.commands.env", "print the export line that registers our trainers with nnU-Net"),
    "doctor": ("nnunet_prism.commands.doctor", "check that nnU-Net finds every nnunet_prism trainer"),
    "m2dn": ("nnunet_prism.commands.m2dn", "M2DN diffusion: train, impute absent modality files, evaluate PSNR/SSIM"),
    "cch": ("nnunet_prism.commands.cch", "which teacher to distil from: the CCH I(T;S) > I(S;Y) per modality pair"),
    "protocol": ("nnunet_prism.commands.protocol", "apply a published split (RFNet, PASSION masks) to a dataset"),
}

#: entry-point group whose entries each name a table of further subcommands
PLUGIN_GROUP = "nnunet_prism.commands"


def plugin_entry_points(group: str = PLUGIN_GROUP) -> list:
    """The entry points of ``group`` in the installed metadata; where there are none, as declared
    by the ``setup.py`` beside this package (a source checkout whose install predates the group:
    ``pip install -e .`` again writes them into the metadata)."""
    from importlib.metadata import entry_points  # here: the command's start-up stays short

    found = list(entry_points(group=group))
    return found or declared_entry_points(Path(__file__).resolve().parents[1] / "setup.py", group)


def declared_entry_points(setup_py: Path, group: str) -> list:
    """The entry points (``importlib.metadata.EntryPoint``) of ``group`` in the literal
    ``entry_points={...}`` of ``setup_py``'s ``setup()`` call ([] without the file, the group or
    a literal)."""
    from importlib.metadata import EntryPoint

    if not setup_py.is_file():
        return []
    for node in ast.walk(ast.parse(setup_py.read_text(encoding="utf-8"), str(setup_py))):
        if isinstance(node, ast.keyword) and node.arg == "entry_points":
            try:
                declared = ast.literal_eval(node.value)
            except ValueError:
                return []
            specs = declared.get(group, []) if isinstance(declared, dict) else []
            return [EntryPoint(*(part.strip() for part in spec.split("=", 1)), group) for spec in specs]
    return []


def command_table() -> Dict[str, Tuple[str, str]]:
    """This package's subcommands, then those of every plugin table (in declaration order)."""
    table = dict(SUBCOMMANDS)
    for entry_point in plugin_entry_points():
        table.update(entry_point.load())
    return table


# old subcommand name -> new name: still accepted (not shown in --help), with a notice on stderr
DEPRECATED = {"synth": "m2dn", "synthetic": "make-phantom"}

# options whose value may start with '-' (argparse would take "-0.2,0.4" for an option and say
# only "expected one argument"; our own check then says what is wrong with the value)
DASH_VALUE_OPTIONS = ("--missing-rates",)

# subcommands that hand unknown options to the nnU-Net command they wrap
PASSTHROUGH = {"train", "predict"}


def build_parser(table: Optional[Table] = None, prog: str = "nnunet_prism",
                 description: str = DESCRIPTION) -> argparse.ArgumentParser:
    """The parser of ``table``'s subcommands (default: ``command_table()``)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in (command_table() if table is None else table).items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        module = importlib.import_module(module_name)
        module.add_arguments(sp)
        sp.set_defaults(_run=module.run)
    return parser


def replace_deprecated(argv, prog: str = "nnunet_prism", deprecated=DEPRECATED) -> list:
    """``argv`` with a deprecated subcommand name (its first non-option word) replaced by the new
    one, after a one-line notice on stderr; other arguments are returned unchanged."""
    argv = list(sys.argv[1:] if argv is None else argv)
    for i, word in enumerate(argv):
        if not word.startswith("-"):
            if word in deprecated:
                new = deprecated[word]
                print(f"{prog}: '{word}' is deprecated, use '{prog} {new}' (same arguments)", file=sys.stderr)
                argv[i] = new
            break
    return argv


def attach_dash_values(argv) -> list:
    """``argv`` with ``OPTION VALUE`` written as ``OPTION=VALUE`` for the options of
    ``DASH_VALUE_OPTIONS`` when VALUE looks like a negative number ("-0.2,0.4,...")."""
    argv, out = list(argv), []
    while argv:
        word = argv.pop(0)
        if word in DASH_VALUE_OPTIONS and argv and re.match(r"-[\d.]", argv[0]):
            word = f"{word}={argv.pop(0)}"
        out.append(word)
    return out


class ConsoleHandler(logging.Handler):
    """Log records as plain lines: warnings and errors on stderr, the rest on stdout (the streams of
    the moment, so that redirections and captures see them)."""

    def emit(self, record: logging.LogRecord) -> None:
        stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
        stream.write(self.format(record) + "\n")
        stream.flush()


#: the loggers of the library code a command runs (its progress and notices are the command's output)
LIBRARY_LOGGERS = ("nnunet_prism", "dataset_conversion")


@contextlib.contextmanager
def console_logging(level: int = logging.INFO):
    """While a command runs, the library's log records at ``level`` and above are printed."""
    handler = ConsoleHandler()
    loggers = [logging.getLogger(name) for name in LIBRARY_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(level)
    try:
        yield
    finally:
        for logger, previous in zip(loggers, levels):
            logger.removeHandler(handler)
            logger.setLevel(previous)


def main(argv=None, table: Optional[Table] = None, prog: str = "nnunet_prism", description: str = DESCRIPTION,
         deprecated=DEPRECATED) -> int:
    """Run one subcommand of ``table`` (default: ``command_table()``); a user error
    (``errors.user_error_types``) is reported as one line with exit code 2, Ctrl-C at any time
    (also while the subcommands' modules are imported) as one line with exit code 130."""
    command = None
    try:
        parser = build_parser(table, prog, description)
        args, passthrough = parser.parse_known_args(attach_dash_values(replace_deprecated(argv, prog, deprecated)))
        command = args.command
        if passthrough and args.command not in PASSTHROUGH:
            parser.error(f"unrecognized arguments: {' '.join(passthrough)}")
        args.passthrough = passthrough
        try:
            with console_logging():
                result = args._run(args)
        except errors.user_error_types() as e:
            return errors.report(e, args.command)
        return int(result or 0)
    except KeyboardInterrupt:
        return errors.report_interrupt(command)


if __name__ == "__main__":
    sys.exit(main())
