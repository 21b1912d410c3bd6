"""``python -m fillers``: the ``fillers`` command."""
import sys

from fillers.cli import main

sys.exit(main())
