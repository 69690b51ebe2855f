"""`python -m bprior_core` is the `bprior` command."""

import sys

from .cli import main

sys.exit(main())
