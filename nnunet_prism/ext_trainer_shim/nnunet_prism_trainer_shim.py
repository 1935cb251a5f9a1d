"""Imported by nnU-Net's trainer lookup (uniquely named so it cannot shadow anything)."""
from nnunet_prism.training import *  # noqa: F401,F403
