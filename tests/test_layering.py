"""The package's layers import only downwards: losses know no networks or trainers, inference
knows no trainers, and no command imports another command (shared code lives in the library)."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nnunet_prism"

#: folder -> module prefixes its modules must not import
FORBIDDEN = {
    "losses": ("nnunet_prism.networks", "nnunet_prism.training"),
    "inference": ("nnunet_prism.training",),
    "commands": ("nnunet_prism.commands",),
}


def import_statements(path: Path):
    """Per import statement (anywhere in the file, also inside functions) the absolute module
    names it may load: ``import a.b`` -> [a.b]; ``from a.b import c`` -> [a.b, a.b.c]."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield [alias.name]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]


def violations(folder: str, forbidden, package: Path = PACKAGE):
    """'<module> imports <name>' for every import in ``package/folder/*.py`` under a forbidden prefix."""
    found = []
    for path in sorted((package / folder).glob("*.py")):
        own = f"nnunet_prism.{folder}.{path.stem}"
        allowed = {own, f"nnunet_prism.{folder}"} if folder == "commands" else set()
        for names in import_statements(path):
            bad = [n for n in names if n not in allowed
                   and any(n == prefix or n.startswith(prefix + ".") for prefix in forbidden)]
            if bad:
                found.append(f"{own} imports {bad[0]}")
    return found


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_layers_import_only_downwards(folder):
    found = violations(folder, FORBIDDEN[folder])
    assert not found, "layering broken: " + "; ".join(found)


def test_the_check_names_the_offending_module(tmp_path):
    (tmp_path / "losses").mkdir()
    (tmp_path / "losses" / "bad.py").write_text(
        "import torch\nfrom nnunet_prism.networks.decoding import as_level_list\n")
    (tmp_path / "commands").mkdir()
    (tmp_path / "commands" / "a.py").write_text(
        "def run():\n    from nnunet_prism.commands import b\n    from nnunet_prism.inference import model_loading\n")
    assert violations("losses", FORBIDDEN["losses"], tmp_path) == [
        "nnunet_prism.losses.bad imports nnunet_prism.networks.decoding"]
    assert violations("commands", FORBIDDEN["commands"], tmp_path) == [
        "nnunet_prism.commands.a imports nnunet_prism.commands.b"]
