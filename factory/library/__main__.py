"""`python -m factory.library ...`: the library's command line (factory/library/cli.py)."""

import sys

from factory.library.cli import main

sys.exit(main())
