"""The packages' layers import only downwards, and nothing imports in a circle.

* losses know no networks or trainers, inference and evaluation know no trainers, no command
  imports another command (shared code lives in the library);
* ``dataset_conversion`` builds on ``nnunet_prism``, never the other way round (nnunet_prism's
  ``cli`` finds the conversion commands through an entry point);
* the import graph of both packages (every import statement, also inside functions, plus the
  package ``__init__`` each import runs) has no circle;
* test modules import neither a conftest nor each other (shared code lives in tests/helpers).
"""
import ast
from pathlib import Path

import pytest

from helpers.paths import REPOSITORY

ROOT = REPOSITORY
PACKAGES = ("nnunet_prism", "dataset_conversion")

#: folder (relative to the repository) -> module prefixes its modules must not import
FORBIDDEN = {
    "nnunet_prism/losses": ("nnunet_prism.networks", "nnunet_prism.training"),
    "nnunet_prism/inference": ("nnunet_prism.training",),
    "nnunet_prism/evaluation": ("nnunet_prism.training", "nnunet_prism.inference"),
    "nnunet_prism/commands": ("nnunet_prism.commands",),
    "nnunet_prism": ("dataset_conversion",),
}


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_statements(path: Path, root: Path = ROOT):
    """Per import statement (anywhere in the file, also inside functions) the absolute module
    names it may load: ``import a.b`` -> [a.b]; ``from a.b import c`` -> [a.b, a.b.c]; relative
    imports resolved against the module's package."""
    own = module_name(path, root)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield [alias.name]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            yield [base, *(f"{base}.{alias.name}" for alias in node.names)]


def violations(folder: str, forbidden, root: Path = ROOT):
    """'<module> imports <name>' for every import in ``root/folder/**.py`` under a forbidden prefix
    (a command may import its own package, ``nnunet_prism.commands``)."""
    found = []
    for path in sorted((root / folder).rglob("*.py")):
        own = module_name(path, root)
        allowed = {own, "nnunet_prism.commands"} if folder.endswith("commands") else {own}
        for names in import_statements(path, root):
            bad = [n for n in names if n not in allowed
                   and any(n == prefix or n.startswith(prefix + ".") for prefix in forbidden)]
            if bad:
                found.append(f"{own} imports {bad[0]}")
    return found


def import_graph(root: Path = ROOT, packages=PACKAGES):
    """{module: set of modules it imports} within ``packages``: each imported name resolved to
    the module it lives in, plus the packages whose ``__init__`` that import runs first (not
    the module's own enclosing packages, which are being imported already)."""
    files = {module_name(p, root): p for package in packages for p in (root / package).rglob("*.py")}

    def owner(name):
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name

    graph = {}
    for module, path in files.items():
        targets = set()
        for names in import_statements(path, root):
            for name in filter(None, map(owner, names)):
                parts = name.split(".")
                targets.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
        graph[module] = {t for t in targets if t in files and t != module and not module.startswith(t + ".")}
    return graph


def circles(graph):
    """Every import circle as a path [a, b, ..., a], one per strongly connected component
    (Tarjan's algorithm; iterative, so deep graphs need no recursion)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(_cycle_through(min(component), component, graph))
    return found


def _cycle_through(start, component, graph):
    """A shortest path start -> ... -> start inside one strongly connected component."""
    previous, frontier = {start: None}, [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node] & component):
                if child == start:
                    path = [node]
                    while previous[path[-1]] is not None:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start] if node != start else [start, start]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError("not a strongly connected component")


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_layers_import_only_downwards(folder):
    found = violations(folder, FORBIDDEN[folder])
    assert not found, "layering broken: " + "; ".join(found)


def test_no_import_circle_in_the_packages():
    found = circles(import_graph())
    assert not found, "import circles: " + "; ".join(" -> ".join(c) for c in found)


def test_the_checks_name_the_offending_modules(tmp_path):
    def write(relative, text):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)

    write("nnunet_prism/__init__.py", "")
    write("nnunet_prism/losses/__init__.py", "")
    write("nnunet_prism/losses/bad.py", "import torch\nfrom nnunet_prism.networks.decoding import as_level_list\n")
    write("nnunet_prism/commands/__init__.py", "")
    write("nnunet_prism/commands/a.py", "def run():\n    from nnunet_prism.commands import b\n"
                                        "    from nnunet_prism.inference import model_loading\n")
    write("nnunet_prism/cli.py", "def main():\n    import dataset_conversion.commands\n")
    write("nnunet_prism/networks/__init__.py", "from .decoding import as_level_list\n")
    write("nnunet_prism/networks/decoding.py", "def f():\n    from nnunet_prism.networks import helper\n")
    write("nnunet_prism/networks/helper.py", "from ..losses import bad\n")
    write("dataset_conversion/__init__.py", "")
    write("dataset_conversion/commands/__init__.py", "from nnunet_prism import cli\n")
    assert violations("nnunet_prism/losses", FORBIDDEN["nnunet_prism/losses"], tmp_path) == [
        "nnunet_prism.losses.bad imports nnunet_prism.networks.decoding"]
    assert violations("nnunet_prism/commands", FORBIDDEN["nnunet_prism/commands"], tmp_path) == [
        "nnunet_prism.commands.a imports nnunet_prism.commands.b"]
    assert violations("nnunet_prism", FORBIDDEN["nnunet_prism"], tmp_path) == [
        "nnunet_prism.cli imports dataset_conversion.commands"]
    # a circle through a function-level import and a relative import (and one through
    # dataset_conversion's package __init__ and nnunet_prism.cli)
    found = circles(import_graph(tmp_path))
    assert ["nnunet_prism.losses.bad", "nnunet_prism.networks.decoding", "nnunet_prism.networks.helper",
            "nnunet_prism.losses.bad"] in found
    assert ["dataset_conversion.commands", "nnunet_prism.cli", "dataset_conversion.commands"] in found
    assert len(found) == 2


def test_tests_import_no_conftest_and_no_other_test_module():
    """Fixtures come from conftest.py through pytest, shared functions from tests/helpers."""
    found = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for names in import_statements(path, ROOT):
            roots = {n.split(".")[0] for n in names}
            bad = sorted(r for r in roots if r in ("conftest", "tests", "unit", "e2e") or r.startswith("test_"))
            if bad:
                found.append(f"{path.relative_to(ROOT)} imports {bad[0]}")
    assert not found, found
