"""Subcommands of the ``nnunet_prism`` command, one module each (``add_arguments``, ``run``)."""
