"""The ``nnunet_prism`` command's wiring: subcommands of other packages come through the entry-point
group ``nnunet_prism.commands`` (dataset_conversion's conversion commands and the demo; the
installed metadata, or setup.py's declaration in a checkout whose install predates the group);
every subcommand reports user errors and file errors as one line with exit code 2; the library's
log records are the command's output while it runs, and only then; Ctrl-C while the command
starts is one line with exit code 130."""
import logging
import re
import signal
import subprocess
import sys
from importlib.metadata import EntryPoint

import pytest

from helpers.paths import REPOSITORY
from nnunet_prism import cli

CONVERSION = {"demo", "make-phantom", "convert-brats", "brats-labels"}


def test_the_conversion_commands_and_the_demo_are_subcommands():
    table = cli.command_table()
    assert CONVERSION <= set(table) and set(cli.SUBCOMMANDS) <= set(table)
    assert all(table[name][0].startswith("dataset_conversion.commands.") for name in CONVERSION)
    r = subprocess.run([sys.executable, "-m", "nnunet_prism.cli", "--help"], capture_output=True, text=True)
    listed = set(re.findall(r"^    (\S+)", r.stdout, re.M))
    assert r.returncode == 0 and CONVERSION | set(cli.SUBCOMMANDS) <= listed


def test_setup_py_declares_the_conversion_table_as_a_plugin():
    declared = cli.declared_entry_points(REPOSITORY / "setup.py", cli.PLUGIN_GROUP)
    assert declared == [EntryPoint("dataset_conversion", "dataset_conversion.commands:SUBCOMMANDS", cli.PLUGIN_GROUP)]
    assert set(declared[0].load()) == CONVERSION
    assert cli.declared_entry_points(REPOSITORY / "no_setup.py", cli.PLUGIN_GROUP) == []


PLUGIN_TABLE = 'TABLE = {"hello": ("fake_hello", "say hello"), "broken": ("fake_broken", "fail on a file")}\n'
HELLO = '''import logging

def add_arguments(parser):
    parser.add_argument("--name", default="world")

def run(args):
    print(f"hello {args.name}")
    logging.getLogger("nnunet_prism.fake").info("progress line")
    logging.getLogger("dataset_conversion.fake").warning("a notice")
    logging.getLogger("nnunet_prism.fake").debug("not shown")
'''
BROKEN = '''def add_arguments(parser):
    pass

def run(args):
    open("/nonexistent_folder_of_the_test/file.txt")
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """An installed distribution (a dist-info folder on sys.path) that declares a table of two
    subcommands in the entry-point group: the way a wheel or ``pip install -e .`` registers them."""
    dist_info = tmp_path / "fakeplugin-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplugin\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(f"[{cli.PLUGIN_GROUP}]\nfake = fake_commands:TABLE\n")
    (tmp_path / "fake_commands.py").write_text(PLUGIN_TABLE)
    (tmp_path / "fake_hello.py").write_text(HELLO)
    (tmp_path / "fake_broken.py").write_text(BROKEN)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_installed_metadata_adds_subcommands(plugin, capsys):
    assert "fake" in [ep.name for ep in cli.plugin_entry_points()]
    assert cli.main(["hello", "--name", "you"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == ["hello you", "progress line"], "INFO records of the library on stdout"
    assert err.splitlines() == ["a notice"], "warnings on stderr"
    # outside a command nothing of ours is attached to the library's loggers
    assert not any(isinstance(h, cli.ConsoleHandler) for name in cli.LIBRARY_LOGGERS
                   for h in logging.getLogger(name).handlers)


def test_a_file_error_of_any_command_is_one_line_with_exit_code_2(plugin, capsys):
    assert cli.main(["broken"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "nnunet_prism broken: error: [Errno 2] No such file or directory: '/nonexistent_folder_of_the_test/file.txt'"]


def test_nnunet_prism_error_from_the_conversion_cli_names_the_command(tmp_path, capsys):
    from dataset_conversion.cli import main

    assert main(["brats-labels", "-i", str(tmp_path), "-o", str(tmp_path / "out"), "--layout", "2023"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"nnunet_prism brats-labels: error: prediction folder {tmp_path} holds no .nii.gz file."]


#: run in a fresh interpreter: the command, with Ctrl-C (SIGINT to itself) when it first imports
#: a module whose last name is INTERRUPT_AT; deterministic, whatever the machine's load
CTRL_C_AT_IMPORT = """
import importlib.abc, os, runpy, signal, sys
class CtrlC(importlib.abc.MetaPathFinder):
    fired = False
    def find_spec(self, name, path, target=None):
        if not CtrlC.fired and name.rsplit(".", 1)[-1] == INTERRUPT_AT:
            CtrlC.fired = True
            os.kill(os.getpid(), signal.SIGINT)
        return None
sys.meta_path.insert(0, CtrlC())
sys.argv = ["nnunet_prism", "record-availability", "-d", "1"]
runpy.run_module("nnunet_prism.cli", run_name="__main__")
"""


@pytest.mark.parametrize("loading", ["_multiarray_umath", "_SimpleITK", "_nd_image"])  # numpy, SimpleITK, scipy
def test_ctrl_c_while_the_command_imports_is_one_line_with_exit_code_130(loading):
    """Ctrl-C while the command imports ``loading`` (a library the subcommands import while the
    command line is built, in its first second). The command starts with SIGINT's default
    disposition, as from a terminal: a shell that runs the tests in the background passes SIGINT
    on as ignored, and Python then never raises KeyboardInterrupt."""
    process = subprocess.run([sys.executable, "-c", f"INTERRUPT_AT = {loading!r}\n{CTRL_C_AT_IMPORT}"],
                             capture_output=True, text=True, timeout=120,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    out, err = process.stdout, process.stderr
    assert process.returncode == 130 and err == "nnunet_prism: interrupted\n" and out == "", err
