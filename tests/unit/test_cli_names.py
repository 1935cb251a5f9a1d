"""Subcommand names that cannot be confused: ``m2dn`` (diffusion synthesis of absent modality
files) and ``make-phantom`` (a synthetic BraTS-like data set). The old names ``synth`` and
``synthetic`` still work, hidden from --help, with a one-line deprecation notice on stderr."""
import subprocess
import sys

import pytest

from dataset_conversion import cli as conversion_cli
from nnunet_prism import cli


@pytest.mark.parametrize("argv, command", [
    (["m2dn", "train", "-d", "7", "-f", "0"], "m2dn"),
    (["m2dn", "impute", "-d", "7", "-i", "IN", "-o", "OUT"], "m2dn"),
    (["m2dn", "evaluate", "-d", "7"], "m2dn"),
    (["make-phantom", "-o", "OUT", "-n", "2"], "make-phantom"),
])
def test_new_names_parse_without_notice(argv, command, capsys):
    args = cli.build_parser().parse_args(cli.replace_deprecated(argv))
    assert args.command == command
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("old, new, rest", [
    ("synth", "m2dn", ["impute", "-d", "7", "-i", "IN", "-o", "OUT"]),
    ("synthetic", "make-phantom", ["-o", "OUT", "-n", "2"]),
])
def test_deprecated_aliases_parse_and_print_one_notice(old, new, rest, capsys):
    argv = cli.replace_deprecated([old, *rest])
    assert argv == [new, *rest]
    args = cli.build_parser().parse_args(argv)
    assert args.command == new
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"'{old}' is deprecated" in err and f"nnunet_prism {new}" in err


def test_aliases_hidden_from_help_and_only_the_command_word_is_renamed(capsys):
    help_text = cli.build_parser().format_help()
    assert "m2dn" in help_text and "make-phantom" in help_text
    assert "synth " not in help_text and "synthetic " not in help_text.replace("synthetic BraTS", "")
    # a value that happens to be an old name is left alone
    assert cli.replace_deprecated(["make-phantom", "-o", "synth", "-n", "1"]) == ["make-phantom", "-o", "synth", "-n", "1"]
    assert capsys.readouterr().err == ""


def test_alias_runs_the_new_command(tmp_path, capsys):
    assert cli.main(["synthetic", "-o", str(tmp_path / "s"), "-n", "1", "--shape", "16", "16", "16"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "deprecated" in captured.err
    assert (tmp_path / "s" / "SynBraTS_000" / "SynBraTS_000_flair.nii.gz").exists()
    assert conversion_cli.main(["synthetic", "-o", str(tmp_path / "t"), "-n", "1", "--shape", "16", "16", "16"]) == 0
    assert "python -m dataset_conversion make-phantom" in capsys.readouterr().err


def test_alias_on_the_real_command_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "nnunet_prism.cli", "synthetic", "-o", str(tmp_path / "s"),
                             "-n", "1", "--shape", "16", "16", "16"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines() == [
        "nnunet_prism: 'synthetic' is deprecated, use 'nnunet_prism make-phantom' (same arguments)"]
    assert "wrote 1 phantom cases" in result.stdout
