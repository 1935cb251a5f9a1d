"""Functions and constants that several test modules share (fixtures live in ``conftest.py``;
test modules import nothing from each other or from a conftest). ``tests/`` is on ``sys.path``
(``pythonpath`` in ``pyproject.toml``), so a test writes ``from helpers.cli import cli``."""
