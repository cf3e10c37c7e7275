"""`python -m pole_chain ...` is the `pole` command."""
import sys

from pole_chain.cli.main import main

sys.exit(main())
