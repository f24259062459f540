"""`python -m gaitforge.cli ...` runs the `gaitforge` command."""

import sys

from gaitforge.cli import main

sys.exit(main())
