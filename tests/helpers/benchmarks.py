"""Load a script of ``benchmarks/`` as a module for a test, and leave nothing behind."""
import contextlib
import importlib.util
import sys

from helpers.paths import BENCHMARKS


@contextlib.contextmanager
def benchmark_module(name: str):
    """``benchmarks/<name>.py`` loaded as the module ``benchmark_<name>`` (registered while in use,
    for dataclasses that look their module up); on exit ``sys.path`` and ``sys.modules`` are as
    before (the scripts put ``benchmarks/`` on the path and import each other, e.g. ``quality``)."""
    path, modules = list(sys.path), set(sys.modules)
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path[:] = path
        for added in set(sys.modules) - modules:
            if added == spec.name or str(getattr(sys.modules[added], "__file__", None) or "").startswith(str(BENCHMARKS)):
                del sys.modules[added]
