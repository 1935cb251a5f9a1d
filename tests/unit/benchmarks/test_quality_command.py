"""benchmarks/quality.py records its command line in summary.md and results.json without the
machine's paths: the work folder relative to the repository, or WORKDIR outside it."""
import importlib.util
import sys
from pathlib import Path

import pytest

from helpers.paths import REPOSITORY as REPO


@pytest.fixture(scope="module")
def quality():
    path, modules = list(sys.path), set(sys.modules)
    spec = importlib.util.spec_from_file_location("benchmark_quality", REPO / "benchmarks" / "quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # puts benchmarks/ on sys.path and imports run.py, quality_stats.py
    yield module
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        if name in ("run", "quality_stats"):
            sys.modules.pop(name)


@pytest.mark.parametrize("argv", [["--workdir", "/root/quality_run", "--seeds", "0"],
                                  ["--workdir=/root/quality_run", "--seeds", "0"],
                                  ["--work", "/root/quality_run", "--seeds", "0"]])
def test_a_work_folder_outside_the_repository_is_recorded_as_a_placeholder(quality, argv):
    command = quality.recorded_command(argv, Path("/root/quality_run"))
    assert "/root" not in command
    assert command.startswith("python benchmarks/quality.py --work")
    assert command.endswith("WORKDIR --seeds 0")


def test_a_work_folder_inside_the_repository_is_recorded_relative_to_it(quality):
    command = quality.recorded_command(["--smoke", "--workdir", "x"], REPO / "benchmarks" / "output" / "x")
    assert command == "python benchmarks/quality.py --smoke --workdir benchmarks/output/x"
    assert quality.recorded_command([], REPO / "benchmarks" / "output" / "quality") == "python benchmarks/quality.py"
