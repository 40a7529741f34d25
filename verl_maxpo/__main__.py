"""`python -m verl_maxpo <command>`: same as the `verl-maxpo` console script."""

import sys

from verl_maxpo.cli.main import main

sys.exit(main())
