"""Where the tests' own files are."""
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
REPOSITORY = TESTS.parent
DATA = TESTS / "data"                 # small inputs written by hand (a protocol list, trainers of a user)
OFFICIAL_FIXTURES = TESTS / "fixtures" / "official"  # numbers computed by the official method code
BENCHMARKS = REPOSITORY / "benchmarks"
