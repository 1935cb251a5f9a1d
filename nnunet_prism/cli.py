"""The ``nnunet_prism`` command. Each subcommand lives in its own module that provides
``add_arguments(parser)`` and ``run(args)``; this file only wires them together and turns
user-caused errors into one line on stderr (exit code 2) instead of a traceback."""
from __future__ import annotations

import argparse
import importlib
import re
import sys

# subcommand -> (module, one-line help)
SUBCOMMANDS = {
    "demo": ("nnunet_prism.commands.demo", "run the whole pipeline on a synthetic BraTS-like set"),
    "train": ("nnunet_prism.commands.train", "nnUNetv2_train with our trainers and --hp overrides"),
    "predict": ("nnunet_prism.commands.predict", "nnUNetv2_predict on a folder where some modality files are absent"),
    "evaluate": ("nnunet_prism.commands.evaluate", "Dice and HD95 on all modality subsets: tables and heatmap"),
    "record-availability": ("nnunet_prism.commands.record_availability",
                            "write which modalities each case has (all-zero image = absent) into dataset.json"),
    "env": ("nnunet_prism.commands.env", "print the export line that registers our trainers with nnU-Net"),
    "doctor": ("nnunet_prism.commands.doctor", "check that nnU-Net finds every nnunet_prism trainer"),
    "m2dn": ("nnunet_prism.commands.m2dn", "M2DN diffusion: train, impute absent modality files, evaluate PSNR/SSIM"),
    "make-phantom": ("dataset_conversion.commands.make_phantom", "write a synthetic BraTS-like phantom set (BraTS 2020 layout)"),
    "convert-brats": ("dataset_conversion.commands.convert_brats", "BraTS folder -> nnU-Net raw dataset"),
    "brats-labels": ("dataset_conversion.commands.brats_labels", "nnU-Net predictions -> BraTS label convention"),
    "cch": ("nnunet_prism.commands.cch", "which teacher to distil from: the CCH I(T;S) > I(S;Y) per modality pair"),
    "protocol": ("nnunet_prism.commands.protocol", "apply a published split (RFNet, PASSION masks) to a dataset"),
}

# old subcommand name -> new name: still accepted (not shown in --help), with a notice on stderr
DEPRECATED = {"synth": "m2dn", "synthetic": "make-phantom"}

# options whose value may start with '-' (argparse would take "-0.2,0.4" for an option and say
# only "expected one argument"; our own check then says what is wrong with the value)
DASH_VALUE_OPTIONS = ("--missing-rates",)

# subcommands that hand unknown options to the nnU-Net command they wrap
PASSTHROUGH = {"train", "predict"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnunet_prism",
        description="nnU-Net v2 extension for multimodal segmentation with missing modalities.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        module = importlib.import_module(module_name)
        module.add_arguments(sp)
        sp.set_defaults(_run=module.run)
    return parser


def replace_deprecated(argv, prog: str = "nnunet_prism", deprecated=DEPRECATED) -> list:
    """``argv`` with a deprecated subcommand name (its first non-option word) replaced by the new
    one, after a one-line notice on stderr; other arguments are returned unchanged."""
    argv = list(sys.argv[1:] if argv is None else argv)
    for i, word in enumerate(argv):
        if not word.startswith("-"):
            if word in deprecated:
                new = deprecated[word]
                print(f"{prog}: '{word}' is deprecated, use '{prog} {new}' (same arguments)", file=sys.stderr)
                argv[i] = new
            break
    return argv


def attach_dash_values(argv) -> list:
    """``argv`` with ``OPTION VALUE`` written as ``OPTION=VALUE`` for the options of
    ``DASH_VALUE_OPTIONS`` when VALUE looks like a negative number ("-0.2,0.4,...")."""
    argv, out = list(argv), []
    while argv:
        word = argv.pop(0)
        if word in DASH_VALUE_OPTIONS and argv and re.match(r"-[\d.]", argv[0]):
            word = f"{word}={argv.pop(0)}"
        out.append(word)
    return out


def user_errors():
    """Exception types whose message is meant for the user (printed as one line)."""
    from nnunet_prism.modalities import ModalityError
    from nnunet_prism.pipeline import PipelineError
    from nnunet_prism.training.hyperparameters import HyperparameterError

    from nnunet_prism.evaluation.metrics import EvaluationError

    from nnunet_prism.image_io import IncompleteImageError

    errors = [ModalityError, PipelineError, HyperparameterError, EvaluationError, IncompleteImageError,
              FileNotFoundError]
    try:
        from dataset_conversion.errors import ConversionError
        errors.append(ConversionError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


def main(argv=None) -> int:
    parser = build_parser()
    args, passthrough = parser.parse_known_args(attach_dash_values(replace_deprecated(argv)))
    if passthrough and args.command not in PASSTHROUGH:
        parser.error(f"unrecognized arguments: {' '.join(passthrough)}")
    args.passthrough = passthrough
    try:
        result = args._run(args)
    except user_errors() as e:
        print(f"nnunet_prism {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
