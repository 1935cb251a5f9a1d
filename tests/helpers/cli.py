"""Running the ``nnunet_prism`` command as a user would."""
import subprocess
import sys


def cli(*args, env=None):
    """Run ``nnunet_prism ARGS`` in a fresh interpreter; return the completed process."""
    return subprocess.run([sys.executable, "-m", "nnunet_prism.cli", *map(str, args)], env=env,
                          capture_output=True, text=True)
