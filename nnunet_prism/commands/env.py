"""``nnunet_prism env``: print the shell line that registers our trainers with nnU-Net.

Only needed where the installed site hook does not run; ``eval "$(nnunet_prism env)"``.
"""
from nnunet_prism import discovery


def add_arguments(parser):
    pass


def run(args):
    print(discovery.export_line())
