"""``python -m nnunet_prism.training.hyperparameters [docs/hyperparameters.md]``: regenerate the
table in that file (or print it); see ``table``."""
import sys

from nnunet_prism.training.hyperparameters.table import main

main(sys.argv[1:])
