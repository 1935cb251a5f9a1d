"""Subcommands that live in this package, one module each (``add_arguments(parser)``, ``run(args)``).

``SUBCOMMANDS`` is registered as ``nnunet_prism`` subcommands through the entry-point group
``nnunet_prism.commands`` in ``setup.py`` (``nnunet_prism`` imports nothing from this package);
``CONVERSION`` are also ``python -m dataset_conversion``'s.
"""
#: subcommand -> (module, one-line help), as ``nnunet_prism.cli.SUBCOMMANDS``
CONVERSION = {
    "make-phantom": ("dataset_conversion.commands.make_phantom",
                     "write a synthetic BraTS-like phantom set (BraTS 2020 layout)"),
    "convert-brats": ("dataset_conversion.commands.convert_brats", "BraTS folder -> nnU-Net raw dataset"),
    "brats-labels": ("dataset_conversion.commands.brats_labels", "nnU-Net predictions -> BraTS label convention"),
}
SUBCOMMANDS = {"demo": ("dataset_conversion.commands.demo", "run the whole pipeline on a synthetic BraTS-like set"),
               **CONVERSION}
