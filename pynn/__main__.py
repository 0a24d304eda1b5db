"""``python -m pynn``: the same as the ``pynn`` command."""
import sys

from .cli import main

sys.exit(main())
