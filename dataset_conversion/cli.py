"""``python -m dataset_conversion``: the converter subcommands on their own (the ``nnunet_prism``
command wires the same ``dataset_conversion.commands`` modules). User errors print one line
``nnunet_prism: error: <sentence>`` and exit with code 2."""
from __future__ import annotations

import argparse
import importlib
import sys

from dataset_conversion.errors import ConversionError

SUBCOMMANDS = {
    "make-phantom": ("dataset_conversion.commands.make_phantom", "write a synthetic BraTS-like phantom set (BraTS 2020 layout)"),
    "convert-brats": ("dataset_conversion.commands.convert_brats", "BraTS folder -> nnU-Net raw dataset"),
    "brats-labels": ("dataset_conversion.commands.brats_labels", "nnU-Net predictions -> BraTS label convention"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dataset_conversion",
                                     description="BraTS and synthetic data for nnU-Net.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        sp = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(sp)
        sp.set_defaults(_run=module.run)
    return parser


def main(argv=None) -> int:
    from nnunet_prism.cli import attach_dash_values, replace_deprecated
    from nnunet_prism.modalities import ModalityError

    argv = replace_deprecated(argv, "python -m dataset_conversion", {"synthetic": "make-phantom"})
    args = build_parser().parse_args(attach_dash_values(argv))
    try:
        return int(args._run(args) or 0)
    except (ConversionError, ModalityError, OSError) as e:
        print(f"nnunet_prism: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
