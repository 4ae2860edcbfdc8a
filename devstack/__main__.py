"""`python -m devstack COMMAND`: see devstack/cli.py."""

import sys

from devstack.cli import main

sys.exit(main())
