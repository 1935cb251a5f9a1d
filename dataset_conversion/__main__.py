import sys

from dataset_conversion.cli import main

sys.exit(main())
