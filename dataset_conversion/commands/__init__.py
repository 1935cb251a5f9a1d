"""Command-line subcommands of the converters; each module has ``add_arguments(parser)`` and ``run(args)``."""
