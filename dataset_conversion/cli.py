"""``python -m dataset_conversion``: the converter subcommands on their own (the ``nnunet_prism``
command has the same ones). User errors print one line ``nnunet_prism CMD: error: <sentence>``
and exit with code 2, as every ``nnunet_prism`` command does."""
from __future__ import annotations

import sys

from dataset_conversion.commands import CONVERSION
from nnunet_prism import cli

PROG = "python -m dataset_conversion"


def main(argv=None) -> int:
    return cli.main(argv, CONVERSION, PROG, "BraTS and synthetic data for nnU-Net.", {"synthetic": "make-phantom"})


if __name__ == "__main__":
    sys.exit(main())
