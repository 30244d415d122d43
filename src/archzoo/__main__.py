"""`python -m archzoo`: the same command as `archzoo`."""

import sys

from .cli import main

sys.exit(main())
